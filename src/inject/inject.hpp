#pragma once
// Fault injection into driver domains, the way the evaluation exercises
// nicguard. Faults that happen inside the domain (its packet loop crashes,
// hangs, stalls, corrupts, ...) are compiled into the driver but inert: the
// driver maps a small control file read-only, and only the manager, on a
// request from root on its control socket, writes it. Faults from outside
// (kill, freeze, link-down) are carried out by the manager itself.
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace ng::inject {

enum class Fault : uint32_t {
  none = 0,
  // inside the driver's packet loop
  crash,     // dereferences a bad pointer
  hang,      // spins forever without beating
  stall_tx,  // stops taking frames from the TX rings, heartbeat goes on
  stall_rx,  // stops reading the NIC, heartbeat goes on
  corrupt,   // writes malformed descriptors on the RX rings
  drop,      // silently drops every frame both ways
  slow,      // sleeps before every batch
  leak,      // leaks memory until its limit kills it
  // from outside, by the manager
  kill,       // SIGKILL
  freeze,     // SIGSTOP of the whole domain
  link_down,  // sets the domain's NIC down
  regflip,    // one bit of one register of one thread flipped through ptrace (regflip.hpp)
  // inside the domain again: a domain turned against its frontends
  wedge,   // tries to make its frontends block on their doorbells, then blocks itself
  deaf,    // stops answering control messages (new frontends never get past hello)
  hangup,  // hangs up on every frontend again and again while staying alive
  // a domain that lies in what it shares: each must be found, classified
  // and fenced by the frontend without harm to it (tests/integration/hostile_test.cpp)
  rx_index_jump,    // RX producer index 2^31 past what the frontend took
  rx_index_back,    // RX producer index moved behind what the frontend took
  tx_index_jump,    // TX done index past what the frontend posted
  tx_index_back,    // TX done index moved behind what it already finished
  desc_outside,     // an RX descriptor that runs past the end of its slot
  len_zero,         // an RX descriptor of length 0
  len_max,          // an RX descriptor of length 2^32-1
  desc_flip,        // an RX descriptor's length flips valid/invalid while it is read
  ctl_garbage,      // junk bytes on the control socket
  ctl_truncated,    // a control message cut short inside its body
  hello_truncated,  // hellos answered with a HelloAck shorter than its header says
  kick_storm,       // kicks the frontends' doorbells in a tight loop, otherwise healthy
};

struct FaultInfo {
  Fault fault;
  const char* name;
  const char* models;
};

const std::vector<FaultInfo>& faults();
const char* fault_name(Fault f);
std::optional<Fault> parse_fault(std::string_view name);
bool inside_domain(Fault f);
// "crash, kill, ..." for messages and --help.
std::string fault_list();

// The control file's layout: one word, (sequence << 8) | fault, so that
// arming the same fault twice is seen as a new request.
struct Control {
  uint32_t magic;
  uint32_t version;
  std::atomic<uint64_t> armed;
};

inline constexpr uint32_t kMagic = 0x494a474e;  // "NGJI"

class ControlFile {
 public:
  // The manager's side: creates (0600) or reuses the file, disarmed.
  static Result<ControlFile> create(const std::string& path);
  // The driver's side: maps it read-only.
  static Result<ControlFile> open(const std::string& path);

  void arm(Fault f);
  Fault armed() const {
    return static_cast<Fault>(ctl()->armed.load(std::memory_order_relaxed) & 0xff);
  }

 private:
  Control* ctl() const { return static_cast<Control*>(map_.data()); }
  Mapping map_;
};

}  // namespace ng::inject

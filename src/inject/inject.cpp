#include "inject/inject.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ng::inject {

const std::vector<FaultInfo>& faults() {
  static const std::vector<FaultInfo> list = {
      {Fault::crash, "crash", "the driver dereferences a bad pointer inside its packet loop"},
      {Fault::kill, "kill", "the driver domain is killed from outside (SIGKILL)"},
      {Fault::hang, "hang", "the packet loop spins forever and stops beating"},
      {Fault::freeze, "freeze", "the whole domain stops (SIGSTOP)"},
      {Fault::stall_tx, "stall-tx", "transmit stops while the heartbeat goes on"},
      {Fault::stall_rx, "stall-rx", "receive stops while the heartbeat goes on"},
      {Fault::corrupt, "corrupt", "the driver writes malformed descriptors to its frontends"},
      {Fault::drop, "drop", "the driver silently drops every frame, both ways"},
      {Fault::slow, "slow", "every batch is delayed by 5 ms"},
      {Fault::link_down, "link-down", "the domain's NIC goes down (no carrier)"},
      {Fault::leak, "leak", "the driver leaks memory until its memory limit kills it"},
      {Fault::regflip, "regflip",
       "one random bit of one random register of a driver thread flips at a random moment "
       "(ptrace; --seed makes the choice reproducible): a crash, a hang, wrong frames or nothing"},
      {Fault::wedge, "wedge",
       "the domain floods every descriptor it shares with its frontends and blocks (unsandboxed, "
       "it first clears their O_NONBLOCK, which the sandbox refuses)"},
      {Fault::deaf, "deaf",
       "the domain stops answering its control socket: a frontend that connects now never gets "
       "past its hello"},
      {Fault::hangup, "hangup", "the domain hangs up on every frontend, again and again, and stays alive"},
      {Fault::rx_index_jump, "rx-index-jump",
       "the domain moves its RX producer index 2^31 past what the frontend took"},
      {Fault::rx_index_back, "rx-index-back",
       "the domain moves its RX producer index back behind what the frontend took"},
      {Fault::tx_index_jump, "tx-index-jump",
       "the domain moves its TX consumer and done indices ring size + 1 past what the frontend posted"},
      {Fault::tx_index_back, "tx-index-back",
       "the domain moves its TX consumer and done indices back behind what it finished"},
      {Fault::desc_outside, "desc-outside",
       "the domain publishes RX descriptors that run past the end of their slot"},
      {Fault::len_zero, "len-zero", "the domain publishes RX descriptors of length 0"},
      {Fault::len_max, "len-max", "the domain publishes RX descriptors of length 2^32-1"},
      {Fault::desc_flip, "desc-flip",
       "the domain flips a published RX descriptor between valid and invalid while the frontend "
       "reads it (time of check to time of use)"},
      {Fault::ctl_garbage, "ctl-garbage", "the domain sends junk bytes on every frontend's control socket"},
      {Fault::ctl_truncated, "ctl-truncated",
       "the domain sends every frontend a control message cut short inside its body"},
      {Fault::hello_truncated, "hello-truncated",
       "the domain answers every new frontend's hello with a truncated hello_ack"},
      {Fault::kick_storm, "kick-storm",
       "the domain kicks every frontend's doorbell in a tight loop while otherwise healthy"},
  };
  return list;
}

const char* fault_name(Fault f) {
  for (const auto& i : faults()) {
    if (i.fault == f) return i.name;
  }
  return "none";
}

std::optional<Fault> parse_fault(std::string_view name) {
  for (const auto& i : faults()) {
    if (name == i.name) return i.fault;
  }
  return std::nullopt;
}

bool inside_domain(Fault f) {
  return f != Fault::none && f != Fault::kill && f != Fault::freeze && f != Fault::link_down &&
         f != Fault::regflip;
}

std::string fault_list() {
  std::string out;
  for (const auto& i : faults()) out += (out.empty() ? "" : ", ") + std::string(i.name);
  return out;
}

namespace {

Result<Mapping> map_file(int fd, int prot, const std::string& path) {
  void* p = ::mmap(nullptr, sizeof(Control), prot, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return fail_errno("mapping the fault-injection file {}", path);
  return Mapping(p, sizeof(Control));
}

}  // namespace

Result<ControlFile> ControlFile::create(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return fail_errno("creating the fault-injection file {}", path);
  if (::fchmod(fd.get(), 0600) != 0 || ::ftruncate(fd.get(), sizeof(Control)) != 0) {
    return fail_errno("preparing the fault-injection file {}", path);
  }
  auto m = map_file(fd.get(), PROT_READ | PROT_WRITE, path);
  if (!m) return tl::unexpected(m.error());
  ControlFile f;
  f.map_ = std::move(*m);
  f.ctl()->magic = kMagic;
  f.ctl()->version = 1;
  // Keep the sequence so that a driver still mapping the file from before a
  // manager restart sees the disarm as a change, not as its old request.
  uint64_t seq = f.ctl()->armed.load() >> 8;
  f.ctl()->armed.store(seq << 8);
  return f;
}

Result<ControlFile> ControlFile::open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return fail_errno("opening the fault-injection file {}", path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || st.st_size < static_cast<off_t>(sizeof(Control))) {
    return fail("fault-injection file {} is too short: let the manager create it", path);
  }
  if (st.st_uid != 0 || (st.st_mode & 022) != 0) {
    return fail("fault-injection file {} must belong to root and be writable by root alone", path);
  }
  auto m = map_file(fd.get(), PROT_READ, path);
  if (!m) return tl::unexpected(m.error());
  ControlFile f;
  f.map_ = std::move(*m);
  if (f.ctl()->magic != kMagic) return fail("{} is not a nicguard fault-injection file", path);
  return f;
}

void ControlFile::arm(Fault f) {
  uint64_t seq = (ctl()->armed.load() >> 8) + 1;
  ctl()->armed.store(seq << 8 | static_cast<uint32_t>(f));
}

}  // namespace ng::inject

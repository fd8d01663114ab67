#pragma once
// The salvage: frames a failed driver domain's NIC received and the domain
// never read. They are the socket queue it leaves behind, and whatever the
// switch still sends its port until it learns the app's new one. A client
// whose request is among them waits out a TCP retransmission timeout
// (200 ms at least), whatever the failover took.
//
// The manager keeps a duplicate of every driver domain's packet socket
// (pidfd_getfd: the same socket, so no extra copy of any frame while the
// domain lives). When the domain dies, the socket outlives it; the manager
// drains it and hands each app's unicast frames to that app's frontend over
// a datagram socket, and the frontend writes them to the app. It stops when
// the domain's next instance has its own socket, or after a bounded time.
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/addr.hpp"
#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/salvage_record.hpp"

namespace ng::manager {

// How long a failed domain's NIC is salvaged at most, if its next instance
// does not take over sooner.
inline constexpr uint64_t kSalvageWindowNs = 2'000'000'000;
// How often the manager looks for a new instance's packet socket.
inline constexpr uint64_t kSalvageGrabPollNs = 20'000'000;

struct SalvageTarget {
  Mac mac;
  std::string socket;  // the frontend's salvage socket
};

struct SalvageCounts {
  uint64_t read = 0;       // frames taken from the dead domain's socket
  uint64_t delivered = 0;  // handed to a frontend
  uint64_t unclaimed = 0;  // for no app of ours (broadcast, multicast, other MACs)
  uint64_t dropped = 0;    // a frontend had no room, or the cap was reached
};

class Salvage {
 public:
  // Takes a duplicate of descriptor `fd_number` of the process behind
  // `pidfd`, which must be a packet socket.
  Status grab(int pidfd, int fd_number);
  bool holding() const { return sock_.valid(); }
  // The domain died: from now until the deadline what its socket holds and
  // receives goes to the targets.
  Status begin(uint64_t now_ns, uint64_t window_ns);
  bool draining() const { return draining_; }
  uint64_t started_ns() const { return started_ns_; }
  uint64_t deadline_ns() const { return deadline_ns_; }
  int fd() const { return sock_.get(); }
  // Reads what is queued now and hands it over.
  void drain(const std::vector<SalvageTarget>& targets);
  // Closes the duplicate; returns what this salvage did.
  SalvageCounts end();

 private:
  void hand_over(const ::mmsghdr* in, unsigned got, const std::vector<SalvageTarget>& targets);

  UniqueFd sock_;  // the domain's packet socket
  UniqueFd out_;   // unbound datagram socket to the frontends
  bool draining_ = false;
  uint64_t started_ns_ = 0;
  uint64_t deadline_ns_ = 0;
  SalvageCounts counts_;
  std::vector<std::byte> buf_;
};

}  // namespace ng::manager

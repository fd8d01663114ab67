#pragma once
// The receive-path check: a domain can keep beating and taking TX frames
// while nothing it should receive reaches the app (its NIC read stopped, its
// frames dropped). The frontend asks a neighbour on the wire, through the
// active domain, an ARP question every interval; the answer must come back
// through the same domain. Unanswered for the timeout (and at least two
// questions), the receive path is broken: a stall. Only the active domain is
// asked: an ARP question from the app's MAC through the spare would move the
// MAC to the spare's switch port.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/addr.hpp"

namespace ng::frontend {

using Ipv4 = std::array<uint8_t, 4>;

class RxProbe {
 public:
  RxProbe() = default;  // off
  RxProbe(const Mac& mac, const Ipv4& sender, const Ipv4& target, uint64_t interval_ns, uint64_t timeout_ns);

  bool enabled() const { return interval_ns_ != 0; }
  // New timing (a reload); a check that is off stays off.
  void retime(uint64_t interval_ns, uint64_t timeout_ns) {
    if (!enabled()) return;
    interval_ns_ = interval_ns;
    timeout_ns_ = timeout_ns;
  }
  // A new active domain: it gets a whole timeout from now.
  void restart(uint64_t now);
  bool due(uint64_t now) const { return enabled() && now - sent_ns_ >= interval_ns_; }
  // The ARP request, a bare Ethernet frame.
  const std::vector<uint8_t>& frame() const { return frame_; }
  void sent(uint64_t now);
  // Whether an Ethernet frame is the target's ARP answer to the app.
  bool is_answer(const uint8_t* eth, size_t len) const;
  void answered(uint64_t now);
  // Any other frame the active domain delivered from the wire shows its
  // receive path works as well as an answer does: under a flood the
  // neighbour's answers can die in its own queue or the switch's while the
  // app gets everything else.
  void heard(uint64_t now) { answered(now); }
  bool failed(uint64_t now) const;
  // Longest the frontend may sleep before the next question is due.
  uint64_t wait_ns(uint64_t now) const;
  std::string detail(uint64_t now) const;

 private:
  Mac mac_{};
  Ipv4 target_{};
  uint64_t interval_ns_ = 0;
  uint64_t timeout_ns_ = 0;
  std::vector<uint8_t> frame_;
  uint64_t sent_ns_ = 0;
  uint64_t answered_ns_ = 0;  // or when the domain became active
  uint32_t unanswered_ = 0;
};

// The first IPv4 address of `addrs` in the target's /prefix, else the first
// IPv4 address; false when there is none.
bool pick_sender(const std::vector<Cidr>& addrs, const Ipv4& target, Ipv4& out);

}  // namespace ng::frontend

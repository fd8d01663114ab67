#include "frontend/rx_probe.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "frontend/announce.hpp"

namespace ng::frontend {
namespace {

constexpr size_t kArpFrame = 14 + 28;

bool same_prefix(const Ipv4& a, const Ipv4& b, int prefix) {
  uint32_t x = uint32_t{a[0]} << 24 | uint32_t{a[1]} << 16 | uint32_t{a[2]} << 8 | a[3];
  uint32_t y = uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 | uint32_t{b[2]} << 8 | b[3];
  uint32_t mask = prefix <= 0 ? 0 : ~uint32_t{0} << (32 - std::min(prefix, 32));
  return (x & mask) == (y & mask);
}

}  // namespace

RxProbe::RxProbe(const Mac& mac, const Ipv4& sender, const Ipv4& target, uint64_t interval_ns,
                 uint64_t timeout_ns)
    : mac_(mac),
      target_(target),
      interval_ns_(interval_ns),
      timeout_ns_(timeout_ns),
      frame_(arp_request(mac, sender.data(), target.data())) {}

void RxProbe::restart(uint64_t now) {
  answered_ns_ = now;
  sent_ns_ = 0;
  unanswered_ = 0;
}

void RxProbe::sent(uint64_t now) {
  sent_ns_ = now;
  ++unanswered_;
}

// An ARP reply (opcode 2) whose sender is the target and whose target
// hardware address is the app's MAC.
bool RxProbe::is_answer(const uint8_t* eth, size_t len) const {
  if (!enabled() || len < kArpFrame || eth[12] != 0x08 || eth[13] != 0x06) return false;
  const uint8_t* arp = eth + 14;
  return arp[6] == 0 && arp[7] == 2 && std::memcmp(arp + 14, target_.data(), 4) == 0 &&
         std::memcmp(arp + 18, mac_.data(), 6) == 0;
}

void RxProbe::answered(uint64_t now) {
  answered_ns_ = now;
  unanswered_ = 0;
}

bool RxProbe::failed(uint64_t now) const {
  return enabled() && unanswered_ >= 2 && now - answered_ns_ >= timeout_ns_;
}

uint64_t RxProbe::wait_ns(uint64_t now) const {
  if (!enabled()) return UINT64_MAX;
  uint64_t next = sent_ns_ + interval_ns_;
  return next > now ? next - now : 0;
}

std::string RxProbe::detail(uint64_t now) const {
  return fmt::format("no answer to {} ARP probes for {}.{}.{}.{} in {:.1f} ms: the receive path is broken",
                     unanswered_, target_[0], target_[1], target_[2], target_[3],
                     static_cast<double>(now - answered_ns_) / 1e6);
}

bool pick_sender(const std::vector<Cidr>& addrs, const Ipv4& target, Ipv4& out) {
  const Cidr* first = nullptr;
  for (const auto& a : addrs) {
    if (a.family != AF_INET) continue;
    Ipv4 v{a.addr[0], a.addr[1], a.addr[2], a.addr[3]};
    if (same_prefix(v, target, a.prefix)) {
      out = v;
      return true;
    }
    if (first == nullptr) first = &a;
  }
  if (first == nullptr) return false;
  out = {first->addr[0], first->addr[1], first->addr[2], first->addr[3]};
  return true;
}

}  // namespace ng::frontend

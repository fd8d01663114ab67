#include "vm/liveness.hpp"

#include <cstring>

namespace ng::vm {
namespace {

constexpr uint8_t kArpHeader[8] = {0, 1, 8, 0, 6, 4};  // Ethernet, IPv4, 6, 4; op follows

void put(std::byte* at, const void* p, size_t n) { std::memcpy(at, p, n); }

}  // namespace

std::array<std::byte, kArpFrameLen> guest_question(const Mac& host, const Mac& bridge,
                                                   const std::array<uint8_t, 4>& guest_ip) {
  std::array<std::byte, kArpFrameLen> f{};
  put(&f[0], bridge.data(), 6);
  put(&f[6], host.data(), 6);
  f[12] = std::byte{0x08};
  f[13] = std::byte{0x06};
  put(&f[14], kArpHeader, 6);
  f[21] = std::byte{1};  // request
  put(&f[22], host.data(), 6);
  put(&f[28], kHostLinkIp.data(), 4);
  // target hardware address left zero, as in any request
  put(&f[38], guest_ip.data(), 4);
  return f;
}

bool is_guest_answer(const std::byte* f, size_t len, const Mac& host, const Mac& bridge,
                     const std::array<uint8_t, 4>& guest_ip) {
  if (len < kArpFrameLen) return false;
  auto same = [&](size_t at, const void* p, size_t n) { return std::memcmp(f + at, p, n) == 0; };
  return same(0, host.data(), 6) && f[12] == std::byte{0x08} && f[13] == std::byte{0x06} &&
         same(14, kArpHeader, 6) && f[21] == std::byte{2} && same(22, bridge.data(), 6) &&
         same(28, guest_ip.data(), 4);
}

}  // namespace ng::vm

#pragma once
// What a driver VM's guest tells its host-side domain process by itself:
// that the NIC lost (or regained) its carrier. Only the guest sees the
// NIC's carrier (an emulated NIC's link, or a passed-through NIC's cable),
// so without this a pulled link shows only as lost traffic, found by the
// path check hundreds of milliseconds later.
//
// The report is sent on the link device alone, never through the guest's
// bridge, so it never reaches the wire; and it carries a token from the
// guest's kernel command line, which the wire never sees, so a frame from
// the wire cannot pass for one. Header-only: the guest's program
// (src/vm/guest/carrier.cpp) is built apart from nicguard's library.
//
// The frame (60 bytes, the Ethernet minimum): broadcast, from the guest
// bridge's MAC, EtherType 0x88B5 (as the path probes: never delivered to an
// app), "NGGR", the token (8 bytes, big-endian), the carrier (1 byte), the
// sequence number (4 bytes, big-endian), zeros.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>

namespace ng::vm {

inline constexpr size_t kGuestReportLen = 60;
inline constexpr uint16_t kGuestReportEtherType = 0x88B5;
inline constexpr std::array<char, 4> kGuestReportMagic = {'N', 'G', 'G', 'R'};

struct GuestReport {
  bool carrier = false;
  uint32_t seq = 0;
};

namespace guest_report_detail {
inline constexpr size_t kMagicAt = 14, kTokenAt = 18, kCarrierAt = 26, kSeqAt = 27;
inline void put_be(std::byte* at, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; ++i) at[i] = static_cast<std::byte>(v >> (8 * (n - 1 - i)));
}
inline uint64_t get_be(const std::byte* at, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v = v << 8 | static_cast<uint8_t>(at[i]);
  return v;
}
}  // namespace guest_report_detail

inline std::array<std::byte, kGuestReportLen> build_guest_report(const std::array<uint8_t, 6>& bridge,
                                                                 uint64_t token, bool carrier,
                                                                 uint32_t seq) {
  using namespace guest_report_detail;
  std::array<std::byte, kGuestReportLen> f{};
  std::memset(f.data(), 0xff, 6);
  std::memcpy(f.data() + 6, bridge.data(), 6);
  put_be(f.data() + 12, kGuestReportEtherType, 2);
  std::memcpy(f.data() + kMagicAt, kGuestReportMagic.data(), kGuestReportMagic.size());
  put_be(f.data() + kTokenAt, token, 8);
  f[kCarrierAt] = std::byte{carrier ? uint8_t{1} : uint8_t{0}};
  put_be(f.data() + kSeqAt, seq, 4);
  return f;
}

// Whether the frame is a report at all (its magic after the EtherType).
inline bool is_guest_report(const std::byte* eth, size_t len) {
  using namespace guest_report_detail;
  return len >= kGuestReportLen && get_be(eth + 12, 2) == kGuestReportEtherType &&
         std::memcmp(eth + kMagicAt, kGuestReportMagic.data(), kGuestReportMagic.size()) == 0;
}

// The report, if it is one with this guest's token; a report with another
// token (a forgery from the wire, or a guest of an earlier boot) is none.
inline std::optional<GuestReport> parse_guest_report(const std::byte* eth, size_t len, uint64_t token) {
  using namespace guest_report_detail;
  if (!is_guest_report(eth, len) || get_be(eth + kTokenAt, 8) != token) return std::nullopt;
  uint8_t carrier = static_cast<uint8_t>(eth[kCarrierAt]);
  if (carrier > 1) return std::nullopt;
  return GuestReport{carrier == 1, static_cast<uint32_t>(get_be(eth + kSeqAt, 4))};
}

}  // namespace ng::vm

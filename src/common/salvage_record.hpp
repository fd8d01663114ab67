#pragma once
// The datagrams in which the manager hands a frontend the frames it
// salvaged from a failed driver domain's NIC (manager/salvage.hpp): a run
// of records, each a host-order uint32 length and that many bytes of frame
// (virtio-net header first), one batch of one app's frames per datagram.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace ng {

inline constexpr unsigned kSalvageBatch = 32;
// A frame as a packet socket with the virtio-net header delivers it: the
// header, then up to a 64 KiB GSO frame.
inline constexpr size_t kSalvageFrameRoom = 10 + 65536;
inline constexpr size_t kSalvageDatagramMax = kSalvageBatch * (sizeof(uint32_t) + kSalvageFrameRoom);

// Calls f(frame) for each whole record; returns false if the datagram ends
// inside one (what came before it is still handed over).
template <typename F>
bool for_each_salvage_record(std::span<const std::byte> datagram, F&& f) {
  size_t at = 0;
  while (at < datagram.size()) {
    uint32_t len = 0;
    if (datagram.size() - at < sizeof(len)) return false;
    std::memcpy(&len, datagram.data() + at, sizeof(len));
    at += sizeof(len);
    if (len > datagram.size() - at) return false;
    f(datagram.subspan(at, len));
    at += len;
  }
  return true;
}

}  // namespace ng

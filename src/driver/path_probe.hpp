#pragma once
// Path probes: the two driver domains of a pair send each other a small
// frame across the switch every interval, NIC to NIC, whether they carry
// traffic or not. Each counts what it sent and what it saw from its peer,
// and publishes both in every frontend's shared header. A frontend that
// sees the spare's probes stop reaching the active domain (or the active's
// stop reaching the spare) knows within a few intervals that a path is
// broken, with no timeout on the app's own traffic to wait for
// (frontend/path_check.hpp decides whose path it is).
//
// The frame: Ethernet to the peer's NIC (broadcast until the peer is
// known, and now and then after, so a peer's new MAC is learned), from this
// NIC's MAC, EtherType 0x88B5 (IEEE 802 local experimental), then "NGPP",
// the pair's id, the sender's id and a sequence number.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "common/addr.hpp"

namespace ng::driver {

inline constexpr uint16_t kPathProbeEtherType = 0x88B5;
inline constexpr size_t kPathProbeLen = 60;  // the Ethernet minimum

struct PathProbe {
  Mac src{};
  uint32_t sender = 0;
  uint64_t seq = 0;
};

// The id a driver domain's name gives it in probes.
uint32_t path_probe_sender_id(std::string_view domain_name);

// An Ethernet frame (no virtio-net header) into `out`.
void build_path_probe(std::array<std::byte, kPathProbeLen>& out, const Mac& dst, const Mac& src,
                      uint64_t pair, uint32_t sender, uint64_t seq);

// Whether the frame is a probe at all (its EtherType): such frames are never
// delivered to an app, whoever sent them.
bool is_path_probe(const std::byte* eth, size_t len);

// The probe, if it is one of this pair's from another sender.
std::optional<PathProbe> parse_path_probe(const std::byte* eth, size_t len, uint64_t pair, uint32_t self);

}  // namespace ng::driver

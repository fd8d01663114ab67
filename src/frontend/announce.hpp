#pragma once
// Frames a newly active driver domain sends for each app so the switch moves
// the app's MAC to its port at once: a gratuitous ARP per IPv4 address and an
// unsolicited neighbour advertisement per IPv6 address.
#include <cstdint>
#include <vector>

#include "common/addr.hpp"

namespace ng::frontend {

// Each frame is a bare Ethernet frame (no virtio-net header).
std::vector<std::vector<uint8_t>> announcements(const Mac& mac, const std::vector<Cidr>& addrs);

}  // namespace ng::frontend

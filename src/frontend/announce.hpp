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

// A broadcast ARP request from mac/sender_ip for target_ip (4 bytes each).
std::vector<uint8_t> arp_request(const Mac& mac, const uint8_t* sender_ip, const uint8_t* target_ip);

}  // namespace ng::frontend

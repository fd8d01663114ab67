#include "frontend/announce.hpp"

#include <arpa/inet.h>

namespace ng::frontend {
namespace {

void put16(std::vector<uint8_t>& f, uint16_t v) {
  f.push_back(static_cast<uint8_t>(v >> 8));
  f.push_back(static_cast<uint8_t>(v));
}

void put(std::vector<uint8_t>& f, const uint8_t* p, size_t n) { f.insert(f.end(), p, p + n); }

// A gratuitous ARP is a request for one's own address: the form every
// stack accepts.
std::vector<uint8_t> garp(const Mac& mac, const Cidr& a) { return arp_request(mac, a.addr.data(), a.addr.data()); }

uint16_t icmp6_checksum(const uint8_t* src, const uint8_t* dst, const uint8_t* body, size_t len) {
  uint32_t sum = 0;
  auto add = [&](const uint8_t* p, size_t n) {
    for (size_t i = 0; i + 1 < n; i += 2) sum += uint32_t{p[i]} << 8 | p[i + 1];
    if (n & 1) sum += uint32_t{p[n - 1]} << 8;
  };
  add(src, 16);
  add(dst, 16);
  sum += static_cast<uint32_t>(len);
  sum += 58;
  add(body, len);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

std::vector<uint8_t> unsolicited_na(const Mac& mac, const Cidr& a) {
  static constexpr uint8_t kAllNodes[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  static constexpr uint8_t kAllNodesMac[6] = {0x33, 0x33, 0, 0, 0, 1};
  std::vector<uint8_t> icmp;
  icmp.push_back(136);  // neighbour advertisement
  icmp.push_back(0);
  put16(icmp, 0);  // checksum, filled below
  icmp.push_back(0x20);  // override
  icmp.insert(icmp.end(), 3, 0);
  put(icmp, a.addr.data(), 16);
  icmp.push_back(2);  // target link-layer address option
  icmp.push_back(1);
  put(icmp, mac.data(), 6);
  uint16_t sum = icmp6_checksum(a.addr.data(), kAllNodes, icmp.data(), icmp.size());
  icmp[2] = static_cast<uint8_t>(sum >> 8);
  icmp[3] = static_cast<uint8_t>(sum);

  std::vector<uint8_t> f;
  put(f, kAllNodesMac, 6);
  put(f, mac.data(), 6);
  put16(f, 0x86dd);
  f.push_back(0x60);
  f.insert(f.end(), 3, 0);
  put16(f, static_cast<uint16_t>(icmp.size()));
  f.push_back(58);   // ICMPv6
  f.push_back(255);  // hop limit required by RFC 4861
  put(f, a.addr.data(), 16);
  put(f, kAllNodes, 16);
  put(f, icmp.data(), icmp.size());
  return f;
}

}  // namespace

std::vector<uint8_t> arp_request(const Mac& mac, const uint8_t* sender_ip, const uint8_t* target_ip) {
  std::vector<uint8_t> f;
  static constexpr uint8_t kBroadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  static constexpr uint8_t kZero[6] = {};
  put(f, kBroadcast, 6);
  put(f, mac.data(), 6);
  put16(f, 0x0806);
  put16(f, 1);       // Ethernet
  put16(f, 0x0800);  // IPv4
  f.push_back(6);
  f.push_back(4);
  put16(f, 1);  // request
  put(f, mac.data(), 6);
  put(f, sender_ip, 4);
  put(f, kZero, 6);
  put(f, target_ip, 4);
  f.resize(60, 0);
  return f;
}

std::vector<std::vector<uint8_t>> announcements(const Mac& mac, const std::vector<Cidr>& addrs) {
  std::vector<std::vector<uint8_t>> out;
  for (const auto& a : addrs) {
    out.push_back(a.family == AF_INET ? garp(mac, a) : unsolicited_na(mac, a));
  }
  return out;
}

}  // namespace ng::frontend

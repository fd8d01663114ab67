#pragma once
// MAC and IP prefix values as read from configs and command lines.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/error.hpp"

namespace ng {

using Mac = std::array<uint8_t, 6>;

struct Cidr {
  int family = 0;  // AF_INET or AF_INET6
  std::array<uint8_t, 16> addr{};
  int prefix = 0;
  std::string text;  // as written, e.g. "10.99.0.11/24"
};

// "02:00:00:00:01:01"; refuses multicast and all-zero addresses.
Result<Mac> parse_mac(std::string_view text);
std::string format_mac(const Mac& mac);
// "10.99.0.11/24" or "fd99::11/64"; the prefix length is required.
Result<Cidr> parse_cidr(std::string_view text);
// Address part only, without the prefix ("10.99.0.11").
std::string address_text(const Cidr& c);

}  // namespace ng

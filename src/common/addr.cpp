#include "common/addr.hpp"

#include <arpa/inet.h>

#include <charconv>

namespace ng {

Result<Mac> parse_mac(std::string_view text) {
  Mac mac{};
  if (text.size() != 17) {
    return fail("'{}' is not a MAC address: expected six hex pairs like 02:00:00:00:01:01", text);
  }
  for (size_t i = 0; i < 6; ++i) {
    if (i > 0 && text[i * 3 - 1] != ':') {
      return fail("'{}' is not a MAC address: expected ':' between hex pairs", text);
    }
    auto part = text.substr(i * 3, 2);
    auto r = std::from_chars(part.data(), part.data() + 2, mac[i], 16);
    if (r.ec != std::errc{} || r.ptr != part.data() + 2) {
      return fail("'{}' is not a MAC address: '{}' is not a hex pair", text, part);
    }
  }
  if (mac[0] & 1) {
    return fail("'{}' is a multicast MAC address: an app needs a unicast one (first byte even, "
                "e.g. 02:...)",
                text);
  }
  if (mac == Mac{}) return fail("'{}' is the all-zero MAC address: choose a unicast one", text);
  return mac;
}

std::string format_mac(const Mac& m) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4],
                     m[5]);
}

Result<Cidr> parse_cidr(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos) {
    return fail("'{}' has no prefix length: write it as address/prefix, e.g. 10.99.0.11/24", text);
  }
  std::string addr(text.substr(0, slash));
  auto len = text.substr(slash + 1);
  Cidr c;
  c.text = std::string(text);
  if (::inet_pton(AF_INET, addr.c_str(), c.addr.data()) == 1) {
    c.family = AF_INET;
  } else if (::inet_pton(AF_INET6, addr.c_str(), c.addr.data()) == 1) {
    c.family = AF_INET6;
  } else {
    return fail("'{}' is not an IPv4 or IPv6 address", addr);
  }
  int max = c.family == AF_INET ? 32 : 128;
  auto r = std::from_chars(len.data(), len.data() + len.size(), c.prefix);
  if (r.ec != std::errc{} || r.ptr != len.data() + len.size() || c.prefix < 0 || c.prefix > max) {
    return fail("'{}' has a bad prefix length '{}': expected 0 to {}", text, len, max);
  }
  return c;
}

std::string address_text(const Cidr& c) {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(c.family, c.addr.data(), buf, sizeof(buf));
  return buf;
}

}  // namespace ng

#include "frontend/tap.hpp"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>

#include <cstring>
#include <fstream>

#include "netlink/netlink.hpp"

namespace ng::frontend {
namespace {

Status write_proc(const std::string& path, const std::string& value) {
  std::ofstream f(path);
  f << value;
  f.close();
  if (!f) return fail("cannot write {} to {}", value, path);
  return {};
}

Result<UniqueFd> open_tap(const std::string& name) {
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return fail_errno("opening /dev/net/tun (is the tun module loaded?)");
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) return fail_errno("creating TAP device {}", name);
  int hdr = 10;
  if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &hdr) != 0) return fail_errno("setting TAP header size");
  unsigned offload = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
  if (::ioctl(fd.get(), TUNSETOFFLOAD, offload) != 0) return fail_errno("enabling TAP offloads");
  return fd;
}

}  // namespace

Result<UniqueFd> create_tap(const TapConfig& c) {
  auto fd = open_tap(c.name);
  if (!fd) return fd;
  // Without this, IPv6 addresses stay tentative for a second or more.
  if (auto s = write_proc("/proc/sys/net/ipv6/conf/" + c.name + "/accept_dad", "0"); !s) {
    return tl::unexpected(s.error());
  }
  auto nl = netlink::Session::open();
  if (!nl) return tl::unexpected(nl.error());
  if (auto s = nl->set_mac(c.name, c.mac); !s) return tl::unexpected(s.error());
  if (auto s = nl->set_mtu(c.name, c.mtu); !s) return tl::unexpected(s.error());
  if (auto s = nl->set_up(c.name); !s) return tl::unexpected(s.error());
  for (const auto& a : c.addresses) {
    if (auto s = nl->add_address(c.name, a); !s) return tl::unexpected(s.error());
  }
  return fd;
}

}  // namespace ng::frontend

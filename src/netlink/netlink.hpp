#pragma once
// Links, addresses and network namespaces through rtnetlink (libnl-route),
// never by running `ip`. Namespaces are named the iproute2 way: a bind mount
// of the namespace under /run/netns/NAME, so `ip netns` sees them too.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/addr.hpp"
#include "common/error.hpp"
#include "common/fd.hpp"

namespace ng::netlink {

// Creates /run/netns/NAME holding a fresh network namespace (loopback up) and
// returns an fd to it. Fails if the name is taken.
Result<UniqueFd> create_netns(const std::string& name);
// NAME (looked up under /run/netns) or an absolute path to a namespace file.
Result<UniqueFd> open_netns(const std::string& name_or_path);
// Moves the calling thread (in a single-threaded process: the process) into
// the namespace for good, e.g. a domain entering its own at start.
Status enter_netns(const std::string& name_or_path);
// Unmounts and removes /run/netns/NAME; the namespace dies with its last user.
Status delete_netns(const std::string& name);
std::vector<std::string> list_netns();
std::string netns_path(const std::string& name);

// Runs fn on the calling thread inside the namespace, then returns to the
// namespace the thread was in.
Status in_netns(int ns_fd, const std::function<Status()>& fn);

// Writes a sysctl (path relative to /proc/sys, e.g.
// "net/ipv6/conf/eth0/disable_ipv6") as seen from inside the namespace.
Status write_sysctl(int ns_fd, const std::string& key, const std::string& value);

// One rtnetlink socket bound to one network namespace.
class Session {
 public:
  // ns_fd < 0: the caller's namespace.
  static Result<Session> open(int ns_fd = -1);
  ~Session();
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;

  Result<int> ifindex(const std::string& link);
  bool exists(const std::string& link);
  std::vector<std::string> links();

  // Creates a veth pair; with peer_ns_fd >= 0 the peer end is created in that namespace.
  Status create_veth(const std::string& name, const std::string& peer, int peer_ns_fd = -1);
  Status create_bridge(const std::string& name);
  Status set_master(const std::string& link, const std::string& bridge);
  Status release(const std::string& link);  // out of its bridge ("nomaster")
  Status move_to_netns(const std::string& link, int ns_fd);
  Status set_up(const std::string& link, bool up = true);
  Status set_mtu(const std::string& link, uint32_t mtu);
  Status set_mac(const std::string& link, const Mac& mac);
  Result<Mac> mac(const std::string& link);
  Result<uint32_t> mtu(const std::string& link);
  Status add_address(const std::string& link, const Cidr& address);
  Status delete_link(const std::string& link);
  // Carrier state (IFF_LOWER_UP).
  Result<bool> carrier(const std::string& link);
  // Administrative state (IFF_UP).
  Result<bool> is_up(const std::string& link);
  // Name of the bridge (or other master) the link is enslaved to; "" when none.
  Result<std::string> master(const std::string& link);
  // Every IPv4 and IPv6 address on the link, link-local ones included.
  Result<std::vector<Cidr>> addresses(const std::string& link);
  // The namespace this session talks to, as error messages name it
  // ("netns ng-1a2b-sw", "the host namespace").
  const std::string& where() const;

 private:
  struct Impl;
  explicit Session(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ng::netlink

#include "netlink/netlink.hpp"

#include <fcntl.h>
#include <linux/if.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/veth.h>
#include <netlink/socket.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <spdlog/spdlog.h>

namespace ng::netlink {

namespace {

constexpr const char* kNetnsDir = "/run/netns";

struct LinkDeleter {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
struct AddrDeleter {
  void operator()(rtnl_addr* a) const { rtnl_addr_put(a); }
};
struct NlAddrDeleter {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};
struct CacheDeleter {
  void operator()(nl_cache* c) const { nl_cache_free(c); }
};
struct SockDeleter {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
using LinkPtr = std::unique_ptr<rtnl_link, LinkDeleter>;
using AddrPtr = std::unique_ptr<rtnl_addr, AddrDeleter>;
using NlAddrPtr = std::unique_ptr<nl_addr, NlAddrDeleter>;
using CachePtr = std::unique_ptr<nl_cache, CacheDeleter>;
using SockPtr = std::unique_ptr<nl_sock, SockDeleter>;

// Makes /run/netns a shared mount point, as iproute2 does, so that a later
// unmount of a namespace file propagates to every mount namespace and the
// namespace can actually die.
Status prepare_netns_dir() {
  if (::mkdir(kNetnsDir, 0755) != 0 && errno != EEXIST) {
    return fail_errno("cannot create {}", kNetnsDir);
  }
  bool made_mount = false;
  while (::mount("", kNetnsDir, "none", MS_SHARED | MS_REC, nullptr) != 0) {
    if (errno != EINVAL || made_mount) {
      return fail_errno("cannot make {} a shared mount", kNetnsDir);
    }
    if (::mount(kNetnsDir, kNetnsDir, "none", MS_BIND | MS_REC, nullptr) != 0) {
      return fail_errno("cannot bind-mount {} onto itself", kNetnsDir);
    }
    made_mount = true;
  }
  return {};
}

bool same_file(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

// A human name for the namespace behind fd (or the calling thread's when
// fd < 0), for error messages only.
std::string describe_netns(int fd) {
  struct stat target {};
  int rc = fd >= 0 ? ::fstat(fd, &target) : ::stat("/proc/thread-self/ns/net", &target);
  if (rc != 0) return "an unknown network namespace";
  for (const auto& name : list_netns()) {
    struct stat st {};
    if (::stat(netns_path(name).c_str(), &st) == 0 && same_file(st, target)) {
      return "netns " + name;
    }
  }
  struct stat host {};
  if (::stat("/proc/1/ns/net", &host) == 0 && same_file(host, target)) return "the host namespace";
  return fmt::format("netns net:[{}]", target.st_ino);
}

// Runs in a short-lived thread so that unshare() never touches the caller's
// thread: the new namespace lives on through the bind mount alone.
Status populate_netns(const std::string& path) {
  Status result;
  std::thread worker([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      result = fail_errno("cannot create a network namespace (unshare)");
      return;
    }
    auto self = fmt::format("/proc/self/task/{}/ns/net", ::syscall(SYS_gettid));
    if (::mount(self.c_str(), path.c_str(), "none", MS_BIND, nullptr) != 0) {
      result = fail_errno("cannot bind-mount the new network namespace onto {}", path);
      return;
    }
    auto session = Session::open();
    if (!session) {
      result = tl::unexpected(session.error());
      return;
    }
    result = session->set_up("lo");
  });
  worker.join();
  return result;
}

std::string nl_reason(int err) { return nl_geterror(err); }

}  // namespace

std::string netns_path(const std::string& name) { return std::string(kNetnsDir) + "/" + name; }

Result<UniqueFd> create_netns(const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    return fail("'{}' is not a valid network namespace name", name);
  }
  if (auto st = prepare_netns_dir(); !st) return tl::unexpected(st.error());
  auto path = netns_path(name);
  UniqueFd file(::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0));
  if (!file) {
    if (errno == EEXIST) {
      return fail("network namespace '{}' already exists ({}); delete it first "
                  "(ip netns delete {})",
                  name, path, name);
    }
    return fail_errno("cannot create {}", path);
  }
  file.reset();
  if (auto st = populate_netns(path); !st) {
    ::umount2(path.c_str(), MNT_DETACH);
    ::unlink(path.c_str());
    return fail("cannot create network namespace '{}': {}", name, st.error().message);
  }
  return open_netns(name);
}

Result<UniqueFd> open_netns(const std::string& name_or_path) {
  auto path = name_or_path.starts_with('/') ? name_or_path : netns_path(name_or_path);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) {
      return fail("network namespace '{}' does not exist (no {})", name_or_path, path);
    }
    return fail_errno("cannot open network namespace '{}' ({})", name_or_path, path);
  }
  return fd;
}

Status delete_netns(const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos) {
    return fail("'{}' is not a valid network namespace name", name);
  }
  auto path = netns_path(name);
  if (::access(path.c_str(), F_OK) != 0) {
    return fail("network namespace '{}' does not exist (no {})", name, path);
  }
  if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL) {
    return fail_errno("cannot unmount network namespace '{}' ({})", name, path);
  }
  if (::unlink(path.c_str()) != 0) return fail_errno("cannot remove {}", path);
  return {};
}

std::vector<std::string> list_netns() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(kNetnsDir, ec)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

Status in_netns(int ns_fd, const std::function<Status()>& fn) {
  UniqueFd original(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!original) return fail_errno("cannot open this thread's network namespace");
  if (::setns(ns_fd, CLONE_NEWNET) != 0) {
    return fail_errno("cannot enter {}", describe_netns(ns_fd));
  }
  // A thread left in the wrong namespace would silently configure the wrong
  // network from then on; failing to go back is not survivable.
  struct Return {
    int fd;
    ~Return() {
      if (::setns(fd, CLONE_NEWNET) != 0) {
        spdlog::critical("cannot return to the original network namespace: {}",
                         std::strerror(errno));
        std::abort();
      }
    }
  } back{original.get()};
  return fn();
}

Status write_sysctl(int ns_fd, const std::string& key, const std::string& value) {
  auto path = "/proc/sys/" + key;
  return in_netns(ns_fd, [&]() -> Status {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return fail_errno("cannot open sysctl {} in {}", key, describe_netns(-1));
    if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
      return fail_errno("cannot set sysctl {} = {} in {}", key, value, describe_netns(-1));
    }
    return {};
  });
}

struct Session::Impl {
  SockPtr sock;
  std::string where;

  Result<LinkPtr> get(const std::string& name) {
    rtnl_link* raw = nullptr;
    int err = rtnl_link_get_kernel(sock.get(), 0, name.c_str(), &raw);
    if (err < 0) {
      if (err == -NLE_NODEV || err == -NLE_OBJ_NOTFOUND) {
        return fail("no link named '{}' in {}", name, where);
      }
      return fail("cannot read link '{}' in {}: {}", name, where, nl_reason(err));
    }
    return LinkPtr(raw);
  }

  template <typename Fill>
  Status change(const std::string& name, std::string_view what, Fill&& fill) {
    auto orig = get(name);
    if (!orig) return tl::unexpected(orig.error());
    LinkPtr changes(rtnl_link_alloc());
    if (!changes) return fail("out of memory changing link '{}'", name);
    fill(changes.get());
    int err = rtnl_link_change(sock.get(), orig->get(), changes.get(), 0);
    if (err < 0) return fail("cannot {} link '{}' in {}: {}", what, name, where, nl_reason(err));
    return {};
  }

  template <typename T, typename Get>
  Result<T> read(const std::string& name, Get&& getter) {
    auto link = get(name);
    if (!link) return tl::unexpected(link.error());
    return getter(link->get());
  }

  Status add(rtnl_link* link, const std::string& what) {
    int err = rtnl_link_add(sock.get(), link, NLM_F_CREATE | NLM_F_EXCL);
    if (err < 0) return fail("cannot create {} in {}: {}", what, where, nl_reason(err));
    return {};
  }
};

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

Result<Session> Session::open(int ns_fd) {
  auto impl = std::make_unique<Impl>();
  impl->where = describe_netns(ns_fd);
  auto connect = [&]() -> Status {
    impl->sock.reset(nl_socket_alloc());
    if (!impl->sock) return fail("out of memory allocating a netlink socket");
    int err = nl_connect(impl->sock.get(), NETLINK_ROUTE);
    if (err < 0) {
      return fail("cannot open an rtnetlink socket in {}: {}", impl->where, nl_reason(err));
    }
    return {};
  };
  // The socket stays bound to the namespace it was created in.
  auto st = ns_fd >= 0 ? in_netns(ns_fd, connect) : connect();
  if (!st) return tl::unexpected(st.error());
  return Session(std::move(impl));
}

const std::string& Session::where() const { return impl_->where; }

Result<int> Session::ifindex(const std::string& link) {
  return impl_->read<int>(link, [](rtnl_link* l) { return rtnl_link_get_ifindex(l); });
}

bool Session::exists(const std::string& link) { return ifindex(link).has_value(); }

std::vector<std::string> Session::links() {
  nl_cache* raw = nullptr;
  std::vector<std::string> names;
  if (rtnl_link_alloc_cache(impl_->sock.get(), AF_UNSPEC, &raw) < 0) return names;
  CachePtr cache(raw);
  for (auto* obj = nl_cache_get_first(raw); obj != nullptr; obj = nl_cache_get_next(obj)) {
    if (const char* name = rtnl_link_get_name(reinterpret_cast<rtnl_link*>(obj))) {
      names.emplace_back(name);
    }
  }
  return names;
}

Status Session::create_veth(const std::string& name, const std::string& peer, int peer_ns_fd) {
  LinkPtr link(rtnl_link_veth_alloc());
  if (!link) return fail("out of memory creating veth '{}'", name);
  rtnl_link_set_name(link.get(), name.c_str());
  LinkPtr peer_link(rtnl_link_veth_get_peer(link.get()));
  rtnl_link_set_name(peer_link.get(), peer.c_str());
  std::string peer_where = impl_->where;
  if (peer_ns_fd >= 0) {
    rtnl_link_set_ns_fd(peer_link.get(), peer_ns_fd);
    peer_where = describe_netns(peer_ns_fd);
  }
  return impl_->add(link.get(),
                    fmt::format("veth pair '{}' / '{}' (peer in {})", name, peer, peer_where));
}

Status Session::create_bridge(const std::string& name) {
  LinkPtr link(rtnl_link_bridge_alloc());
  if (!link) return fail("out of memory creating bridge '{}'", name);
  rtnl_link_set_name(link.get(), name.c_str());
  return impl_->add(link.get(), fmt::format("bridge '{}'", name));
}

Status Session::set_master(const std::string& link, const std::string& bridge) {
  auto index = ifindex(bridge);
  if (!index) return tl::unexpected(index.error());
  return impl_->change(link, fmt::format("enslave to '{}'", bridge),
                       [&](rtnl_link* c) { rtnl_link_set_master(c, *index); });
}

Status Session::release(const std::string& link) {
  return impl_->change(link, "release from its bridge", [](rtnl_link* c) { rtnl_link_set_master(c, 0); });
}

Status Session::move_to_netns(const std::string& link, int ns_fd) {
  return impl_->change(link, fmt::format("move to {}", describe_netns(ns_fd)),
                       [&](rtnl_link* c) { rtnl_link_set_ns_fd(c, ns_fd); });
}

Status Session::set_up(const std::string& link, bool up) {
  return impl_->change(link, up ? "bring up" : "bring down", [&](rtnl_link* c) {
    if (up) {
      rtnl_link_set_flags(c, IFF_UP);
    } else {
      rtnl_link_unset_flags(c, IFF_UP);
    }
  });
}

Status Session::set_mtu(const std::string& link, uint32_t mtu) {
  return impl_->change(link, fmt::format("set MTU {} on", mtu),
                       [&](rtnl_link* c) { rtnl_link_set_mtu(c, mtu); });
}

Status Session::set_mac(const std::string& link, const Mac& mac) {
  NlAddrPtr addr(nl_addr_build(AF_LLC, mac.data(), mac.size()));
  if (!addr) return fail("out of memory setting the MAC address of '{}'", link);
  return impl_->change(link, fmt::format("set MAC {} on", format_mac(mac)),
                       [&](rtnl_link* c) { rtnl_link_set_addr(c, addr.get()); });
}

Result<Mac> Session::mac(const std::string& link) {
  auto l = impl_->get(link);
  if (!l) return tl::unexpected(l.error());
  nl_addr* addr = rtnl_link_get_addr(l->get());
  if (addr == nullptr || nl_addr_get_len(addr) != 6) {
    return fail("link '{}' in {} has no Ethernet address", link, impl_->where);
  }
  Mac mac{};
  std::memcpy(mac.data(), nl_addr_get_binary_addr(addr), mac.size());
  return mac;
}

Result<uint32_t> Session::mtu(const std::string& link) {
  return impl_->read<uint32_t>(link, [](rtnl_link* l) { return rtnl_link_get_mtu(l); });
}

Status Session::add_address(const std::string& link, const Cidr& address) {
  auto index = ifindex(link);
  if (!index) return tl::unexpected(index.error());
  size_t len = address.family == AF_INET ? 4 : 16;
  NlAddrPtr local(nl_addr_build(address.family, address.addr.data(), len));
  AddrPtr addr(rtnl_addr_alloc());
  if (!local || !addr) return fail("out of memory adding address {}", address.text);
  nl_addr_set_prefixlen(local.get(), address.prefix);
  rtnl_addr_set_ifindex(addr.get(), *index);
  int err = rtnl_addr_set_local(addr.get(), local.get());
  if (err >= 0) err = rtnl_addr_add(impl_->sock.get(), addr.get(), NLM_F_EXCL);
  if (err < 0) {
    return fail("cannot add address {}/{} to link '{}' in {}: {}", address_text(address),
                address.prefix, link, impl_->where, nl_reason(err));
  }
  return {};
}

Status Session::delete_link(const std::string& link) {
  auto l = impl_->get(link);
  if (!l) return tl::unexpected(l.error());
  int err = rtnl_link_delete(impl_->sock.get(), l->get());
  if (err < 0) {
    return fail("cannot delete link '{}' in {}: {}", link, impl_->where, nl_reason(err));
  }
  return {};
}

Result<bool> Session::carrier(const std::string& link) {
  return impl_->read<bool>(
      link, [](rtnl_link* l) { return (rtnl_link_get_flags(l) & IFF_LOWER_UP) != 0; });
}

Result<bool> Session::is_up(const std::string& link) {
  return impl_->read<bool>(link,
                           [](rtnl_link* l) { return (rtnl_link_get_flags(l) & IFF_UP) != 0; });
}

Result<std::string> Session::master(const std::string& link) {
  auto l = impl_->get(link);
  if (!l) return tl::unexpected(l.error());
  int index = rtnl_link_get_master(l->get());
  if (index <= 0) return std::string();
  rtnl_link* raw = nullptr;
  int err = rtnl_link_get_kernel(impl_->sock.get(), index, nullptr, &raw);
  if (err < 0) {
    return fail("cannot read the master (ifindex {}) of link '{}' in {}: {}", index, link,
                impl_->where, nl_reason(err));
  }
  LinkPtr owner(raw);
  const char* name = rtnl_link_get_name(raw);
  return std::string(name != nullptr ? name : "");
}

Result<std::vector<Cidr>> Session::addresses(const std::string& link) {
  auto index = ifindex(link);
  if (!index) return tl::unexpected(index.error());
  nl_cache* raw = nullptr;
  int err = rtnl_addr_alloc_cache(impl_->sock.get(), &raw);
  if (err < 0) {
    return fail("cannot list addresses in {}: {}", impl_->where, nl_reason(err));
  }
  CachePtr cache(raw);
  std::vector<Cidr> result;
  for (auto* obj = nl_cache_get_first(raw); obj != nullptr; obj = nl_cache_get_next(obj)) {
    auto* a = reinterpret_cast<rtnl_addr*>(obj);
    nl_addr* local = rtnl_addr_get_local(a);
    if (rtnl_addr_get_ifindex(a) != *index || local == nullptr) continue;
    Cidr c;
    c.family = nl_addr_get_family(local);
    auto len = std::min<size_t>(nl_addr_get_len(local), c.addr.size());
    std::memcpy(c.addr.data(), nl_addr_get_binary_addr(local), len);
    c.prefix = rtnl_addr_get_prefixlen(a);
    c.text = fmt::format("{}/{}", address_text(c), c.prefix);
    result.push_back(std::move(c));
  }
  return result;
}

Status enter_netns(const std::string& name_or_path) {
  auto ns = open_netns(name_or_path);
  if (!ns) return tl::unexpected(ns.error());
  if (::setns(ns->get(), CLONE_NEWNET) != 0) {
    return fail_errno("entering network namespace {}", name_or_path);
  }
  return {};
}

}  // namespace ng::netlink

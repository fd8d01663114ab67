#include "netlink/link_watch.hpp"

#include <linux/if.h>
#include <linux/rtnetlink.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <sys/socket.h>

#include <cerrno>
#include <optional>
#include <string>

#include "netlink/netlink.hpp"

namespace ng::netlink {

struct LinkWatcher::Impl {
  nl_sock* sock = nullptr;
  std::optional<Session> session;  // to re-read the state after an overrun
  std::string link;
  int ifindex = 0;
  bool carrier = false;
  ~Impl() {
    if (sock != nullptr) nl_socket_free(sock);
  }
};

namespace {

bool has_carrier(unsigned flags) { return (flags & IFF_UP) && (flags & IFF_LOWER_UP); }

void on_message(LinkWatcher::Impl& impl, const nlmsghdr* h) {
  if (h->nlmsg_type != RTM_NEWLINK && h->nlmsg_type != RTM_DELLINK) return;
  if (h->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg))) return;
  const auto* ifi = static_cast<const ifinfomsg*>(NLMSG_DATA(h));
  if (ifi->ifi_index != impl.ifindex) return;
  impl.carrier = h->nlmsg_type == RTM_NEWLINK && has_carrier(ifi->ifi_flags);
}

Result<bool> read_state(Session& s, const std::string& link) {
  auto up = s.is_up(link);
  auto carrier = s.carrier(link);
  if (!up || !carrier) return tl::unexpected(up ? carrier.error() : up.error());
  return *up && *carrier;
}

}  // namespace

Result<LinkWatcher> LinkWatcher::open(int ns_fd, const std::string& link) {
  auto impl = std::make_unique<Impl>();
  auto session = Session::open(ns_fd);
  if (!session) return tl::unexpected(session.error());
  auto index = session->ifindex(link);
  if (!index) return tl::unexpected(index.error());
  impl->ifindex = *index;
  impl->link = link;
  // Subscribe before reading the state, so no change falls in between.
  impl->sock = nl_socket_alloc();
  if (impl->sock == nullptr) return fail("allocating a netlink socket");
  auto connect = [&]() -> Status {
    if (int err = nl_connect(impl->sock, NETLINK_ROUTE); err < 0) {
      return fail("connecting to rtnetlink in {}: {}", session->where(), nl_geterror(err));
    }
    return {};
  };
  if (auto s = ns_fd >= 0 ? in_netns(ns_fd, connect) : connect(); !s) return tl::unexpected(s.error());
  if (int err = nl_socket_add_membership(impl->sock, RTNLGRP_LINK); err < 0) {
    return fail("subscribing to link events: {}", nl_geterror(err));
  }
  auto state = read_state(*session, link);
  if (!state) return tl::unexpected(state.error());
  impl->carrier = *state;
  impl->session = std::move(*session);
  return LinkWatcher(std::move(impl));
}

LinkWatcher::LinkWatcher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LinkWatcher::~LinkWatcher() = default;
LinkWatcher::LinkWatcher(LinkWatcher&&) noexcept = default;
LinkWatcher& LinkWatcher::operator=(LinkWatcher&&) noexcept = default;

int LinkWatcher::fd() const { return nl_socket_get_fd(impl_->sock); }
bool LinkWatcher::carrier() const { return impl_->carrier; }

Result<bool> LinkWatcher::drain() {
  alignas(nlmsghdr) char buf[16384];
  bool overrun = false;
  for (;;) {
    ssize_t n = ::recv(fd(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0 && errno == ENOBUFS) {
      overrun = true;  // events were lost; the state is read afresh below
      continue;
    }
    if (n < 0) return fail_errno("reading link events for {}", impl_->link);
    int left = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      on_message(*impl_, h);
    }
  }
  if (overrun) {
    auto state = read_state(*impl_->session, impl_->link);
    if (!state) return tl::unexpected(state.error());
    impl_->carrier = *state;
  }
  return impl_->carrier;
}

}  // namespace ng::netlink

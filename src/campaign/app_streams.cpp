#include "campaign/app_streams.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <cstring>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <thread>

#include "common/clock.hpp"
#include "common/fd.hpp"
#include "netlink/netlink.hpp"
#include "probe/probe.hpp"

namespace ng::campaign {

using nlohmann::json;

namespace {

struct Wire {
  uint32_t magic;
  uint32_t app;  // index into the sender's list of apps
  uint32_t seq;
  uint32_t reserved;
};
constexpr uint32_t kWireMagic = 0x4e474150;  // "NGAP"
constexpr double kEchoSeconds = 3600;        // restarted by the session if it ends first
constexpr uint64_t kDrainNs = 200'000'000;   // echoes still on their way when sending stops
// Per wake-up, so a flood on one socket cannot keep a loop from its deadline.
constexpr int kMaxPerDrain = 4096;
// The echo waits this long after the first packet of a tick's burst before
// it answers: one wake-up for the burst instead of one per app, for at most
// this much delay on an echo (the streams measure silences of 5 ms and up).
constexpr auto kGatherNs = 300'000;

Status bind_any(int fd, uint16_t port) {
  int off = 0;
  ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_port = htons(port);
  addr.sin6_addr = in6addr_any;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return fail_errno("binding UDP port {}", port);
  }
  return {};
}

// A socket made inside `netns`, which it keeps whatever the thread does next.
Result<UniqueFd> echo_socket(const std::string& netns, uint16_t port) {
  auto ns = netlink::open_netns(netns);
  if (!ns) return tl::unexpected(ns.error());
  UniqueFd fd;
  auto made = netlink::in_netns(ns->get(), [&]() -> Status {
    fd.reset(::socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return fail_errno("creating a UDP socket");
    return bind_any(fd.get(), port);
  });
  if (!made) return fail("echo in {}: {}", netns, made.error().message);
  return fd;
}

void echo_pending(int fd) {
  char buf[256];
  for (int i = 0; i < kMaxPerDrain; ++i) {
    sockaddr_storage from{};
    socklen_t len = sizeof(from);
    ssize_t n = ::recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &len);
    if (n <= 0) return;
    ::sendto(fd, buf, static_cast<size_t>(n), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), len);
  }
}

void sleep_ns(long ns) {
  timespec ts{0, ns};
  ::clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr);
}

json echo_all(const std::vector<lab::App>& apps, uint16_t port) {
  (void)probe::use_realtime_priority();
  UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep) return json{{"error", "creating an epoll instance failed"}};
  std::vector<UniqueFd> fds;
  for (const auto& a : apps) {
    auto fd = echo_socket(a.netns, port);
    if (!fd) return json{{"error", fd.error().message}};
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd->get();
    if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd->get(), &ev) != 0) return json{{"error", "epoll_ctl failed"}};
    fds.push_back(std::move(*fd));
  }
  std::vector<epoll_event> ready(fds.size());
  const int most = static_cast<int>(ready.size());
  const uint64_t end = mono_ns() + static_cast<uint64_t>(kEchoSeconds * 1e9);
  while (mono_ns() < end) {
    if (::epoll_wait(ep.get(), ready.data(), most, 100) <= 0) continue;
    sleep_ns(kGatherNs);
    int n = ::epoll_wait(ep.get(), ready.data(), most, 0);
    for (int i = 0; i < n; ++i) echo_pending(ready[i].data.fd);
  }
  return json{{"ok", true}};
}

uint64_t ns_of(const timespec& ts) {
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

// When the datagram reached the socket, on the monotonic clock. The kernel
// stamps it on arrival (SO_TIMESTAMPNS, wall clock), so the sender need not
// wake for every echo: it reads them once per tick.
uint64_t arrival_ns(msghdr& m, int64_t wall_minus_mono) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_TIMESTAMPNS) continue;
    timespec ts{};
    std::memcpy(&ts, CMSG_DATA(c), sizeof(ts));
    return static_cast<uint64_t>(static_cast<int64_t>(ns_of(ts)) - wall_minus_mono);
  }
  return mono_ns();
}

void receive_pending(int fd, std::vector<std::vector<uint64_t>>& recv) {
  const int64_t wall_minus_mono = static_cast<int64_t>(wall_ns()) - static_cast<int64_t>(mono_ns());
  for (int i = 0; i < kMaxPerDrain; ++i) {
    Wire w{};
    iovec io{&w, sizeof(w)};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec))];
    msghdr m{};
    m.msg_iov = &io;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof(control);
    ssize_t n = ::recvmsg(fd, &m, MSG_DONTWAIT);
    if (n < 0) return;
    if (n != sizeof(w) || w.magic != kWireMagic || w.app >= recv.size()) continue;
    recv[w.app].push_back(arrival_ns(m, wall_minus_mono));
  }
}

void sleep_until(uint64_t t_ns) {
  timespec ts{static_cast<time_t>(t_ns / 1'000'000'000ULL), static_cast<long>(t_ns % 1'000'000'000ULL)};
  ::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
}

json stream_all(const std::vector<sockaddr_in>& to, uint32_t pps, double seconds) {
  (void)probe::use_realtime_priority();
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return json{{"error", "creating the apps' stream socket failed"}};
  // A tick's echoes come back together: room for several ticks of them.
  int room = 1 << 20, on = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &room, sizeof(room));
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) != 0) {
    return json{{"error", "enabling SO_TIMESTAMPNS on the apps' stream socket failed"}};
  }
  const uint64_t period = 1'000'000'000ULL / pps;
  const auto ticks = static_cast<uint64_t>(seconds * pps);
  std::vector<std::vector<uint64_t>> recv(to.size());
  for (auto& r : recv) r.reserve(ticks + 16);
  const uint64_t start = mono_ns();
  for (uint64_t tick = 0; tick < ticks; ++tick) {
    sleep_until(start + tick * period);
    receive_pending(fd.get(), recv);
    for (uint32_t i = 0; i < to.size(); ++i) {
      Wire w{kWireMagic, i, static_cast<uint32_t>(tick), 0};
      // A send fails while no domain carries traffic: that packet is lost, as on the wire.
      ::sendto(fd.get(), &w, sizeof(w), MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&to[i]), sizeof(to[i]));
    }
  }
  sleep_until(mono_ns() + kDrainNs);
  receive_pending(fd.get(), recv);
  return json{{"recv", recv}};
}

}  // namespace

uint32_t app_stream_pps(size_t others) {
  if (others == 0) return kAppPpsMax;
  return std::clamp(static_cast<uint32_t>(kAppPpsTotal / others), kAppPpsMin, kAppPpsMax);
}

Result<NetnsChild> start_app_echoes(const std::vector<lab::App>& apps, uint16_t port) {
  if (apps.empty()) return NetnsChild();
  auto echo = NetnsChild::start(apps.front().netns, [apps, port] { return echo_all(apps, port); });
  if (!echo) return tl::unexpected(echo.error());
  // The streams' first packets must find every socket bound.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  if (!echo->alive()) {
    auto why = echo->result();
    return fail("the apps' UDP echo ended at start: {}",
                why.is_object() ? why.value("error", std::string("no report")) : std::string("no report"));
  }
  return echo;
}

Result<NetnsChild> start_app_streams(const std::string& ext_netns, const std::vector<lab::App>& apps,
                                     uint16_t port, uint32_t pps, double seconds) {
  std::vector<sockaddr_in> to;
  for (const auto& a : apps) {
    sockaddr_in s{};
    s.sin_family = AF_INET;
    s.sin_port = htons(port);
    if (::inet_pton(AF_INET, a.ipv4_address().c_str(), &s.sin_addr) != 1) {
      return fail("{} has no usable IPv4 address ('{}')", a.name, a.ipv4);
    }
    to.push_back(s);
  }
  return NetnsChild::start(ext_netns, [to, pps, seconds] { return stream_all(to, pps, seconds); });
}

Result<std::vector<std::vector<uint64_t>>> app_receive_times(const json& result, size_t apps) {
  if (!result.is_object()) return fail("the apps' UDP stream ended without a report");
  if (result.contains("error")) return fail("the apps' UDP stream: {}", result["error"].get<std::string>());
  const auto& recv = result.value("recv", json::array());
  if (!recv.is_array() || recv.size() != apps) {
    return fail("the apps' UDP stream reported {} apps, not {}", recv.is_array() ? recv.size() : 0, apps);
  }
  return recv.get<std::vector<std::vector<uint64_t>>>();
}

}  // namespace ng::campaign

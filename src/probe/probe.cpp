#include "probe/probe.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "common/clock.hpp"
#include "common/fd.hpp"
#include "probe/csv.hpp"

namespace ng::probe {
namespace {

struct Wire {
  uint32_t magic;
  uint32_t seq;
  uint64_t sent_ns;
};
constexpr uint32_t kWireMagic = 0x4e475052;  // "NGPR"

void sleep_until(uint64_t t_ns) {
  timespec ts{static_cast<time_t>(t_ns / 1'000'000'000ULL), static_cast<long>(t_ns % 1'000'000'000ULL)};
  ::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
}

void receive_all(int fd, std::vector<Arrival>& out) {
  Wire w{};
  for (;;) {
    ssize_t n = ::recv(fd, &w, sizeof(w), MSG_DONTWAIT);
    if (n != sizeof(w)) return;
    if (w.magic == kWireMagic) out.push_back({w.seq, w.sent_ns, mono_ns()});
  }
}

}  // namespace

Result<Endpoint> resolve(const std::string& address, uint16_t port) {
  Endpoint e;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&e.addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&e.addr);
  if (::inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    e.len = sizeof(sockaddr_in);
  } else if (::inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    e.len = sizeof(sockaddr_in6);
  } else {
    return fail("'{}' is not an IPv4 or IPv6 address", address);
  }
  return e;
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t k = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

UdpReport analyse(std::span<const Arrival> arrivals, uint64_t sent, uint64_t start_ns,
                  uint64_t gap_report_ns) {
  UdpReport r;
  r.start_mono_ns = start_ns;
  r.sent = sent;
  std::unordered_set<uint64_t> seen;
  std::vector<double> rtts;
  uint64_t highest = 0;
  bool have_highest = false;
  uint64_t prev_recv = start_ns;
  uint64_t last_full = 0;  // unwrapped sequence of the previous arrival
  for (const auto& a : arrivals) {
    // Unwrap against the previous arrival: the nearest value congruent mod 2^32.
    uint64_t full = a.seq;
    if (have_highest) {
      int64_t delta = static_cast<int32_t>(a.seq - static_cast<uint32_t>(last_full));
      full = static_cast<uint64_t>(static_cast<int64_t>(last_full) + delta);
    }
    last_full = full;
    if (!seen.insert(full).second) {
      ++r.duplicated;
      continue;
    }
    if (have_highest && full < highest) ++r.reordered;
    if (!have_highest || full > highest) highest = full;
    have_highest = true;
    double gap = static_cast<double>(a.recv_ns - prev_recv) / 1e6;
    if (a.recv_ns - prev_recv > gap_report_ns && r.gaps.size() < kMaxGaps) {
      r.gaps.push_back({prev_recv, static_cast<double>(prev_recv - start_ns) / 1e6, gap});
    }
    if (gap > r.interruption_ms) {
      r.interruption_ms = gap;
      r.interruption_at_ms = static_cast<double>(prev_recv - start_ns) / 1e6;
    }
    prev_recv = a.recv_ns;
    rtts.push_back(static_cast<double>(a.recv_ns - a.sent_ns) / 1e3);
  }
  r.received = seen.size();
  r.lost = sent > r.received ? sent - r.received : 0;
  r.rtt_us_max = rtts.empty() ? 0 : *std::max_element(rtts.begin(), rtts.end());
  r.rtt_us_p99 = percentile(rtts, 99);
  r.rtt_us_p50 = percentile(rtts, 50);
  return r;
}

namespace {

nlohmann::json gaps_json(const std::vector<Gap>& gaps) {
  auto out = nlohmann::json::array();
  for (const auto& g : gaps) {
    out.push_back({{"begin_mono_ns", g.begin_mono_ns}, {"at_ms", g.at_ms}, {"ms", g.ms}});
  }
  return out;
}

}  // namespace

nlohmann::json to_json(const UdpReport& r) {
  return {{"start_mono_ns", r.start_mono_ns},
          {"sent", r.sent},
          {"received", r.received},
          {"lost", r.lost},
          {"duplicated", r.duplicated},
          {"reordered", r.reordered},
          {"interruption_ms", r.interruption_ms},
          {"interruption_at_ms", r.interruption_at_ms},
          {"rtt_us_p50", r.rtt_us_p50},
          {"rtt_us_p99", r.rtt_us_p99},
          {"rtt_us_max", r.rtt_us_max},
          {"gaps", gaps_json(r.gaps)}};
}

std::string arrivals_csv(std::span<const Arrival> arrivals, uint64_t start_ns) {
  Csv csv{"seq", "sent_us", "recv_us", "rtt_us"};
  auto us = [start_ns](uint64_t t) {
    return (static_cast<double>(t) - static_cast<double>(start_ns)) / 1e3;
  };
  for (const auto& a : arrivals) {
    csv.row(a.seq, us(a.sent_ns), us(a.recv_ns), static_cast<double>(a.recv_ns - a.sent_ns) / 1e3);
  }
  return csv.text();
}

Result<UdpReport> run_stream(const StreamOptions& o, std::vector<Arrival>* series) {
  if (o.pps == 0 || o.pps > 1'000'000) return fail("--pps {} is out of range 1..1000000", o.pps);
  if (o.duration_s <= 0 || o.duration_s > 3600) return fail("--duration must be in (0, 3600] s");
  auto to = resolve(o.address, o.port);
  if (!to) return tl::unexpected(to.error());
  UniqueFd fd(::socket(to->addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno("creating the probe socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&to->addr), to->len) != 0) {
    return fail_errno("connecting the probe socket to {}", o.address);
  }
  std::vector<Arrival> arrivals;
  const uint64_t total = static_cast<uint64_t>(o.duration_s * o.pps);
  arrivals.reserve(total + 16);
  const uint64_t interval = 1'000'000'000ULL / o.pps;
  const uint64_t start = mono_ns();
  uint64_t sent = 0;
  for (; sent < total; ++sent) {
    sleep_until(start + sent * interval);
    Wire w{kWireMagic, static_cast<uint32_t>(sent), mono_ns()};
    // A send can fail while no driver domain carries traffic; that packet is lost.
    [[maybe_unused]] auto n = ::send(fd.get(), &w, sizeof(w), MSG_DONTWAIT);
    receive_all(fd.get(), arrivals);
  }
  const uint64_t drain_until = mono_ns() + 200'000'000ULL;
  while (mono_ns() < drain_until) {
    receive_all(fd.get(), arrivals);
    ::usleep(1000);
  }
  if (series != nullptr) *series = arrivals;
  return analyse(arrivals, sent, start, o.gap_report_ns);
}

Status use_realtime_priority() {
  sched_param p{};
  p.sched_priority = 1;
  if (::sched_setscheduler(0, SCHED_FIFO, &p) != 0) return fail_errno("setting SCHED_FIFO 1");
  return {};
}

Status run_echo(uint16_t port, double duration_s) {
  UniqueFd fd(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno("creating the echo socket");
  int off = 0;
  ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_port = htons(port);
  addr.sin6_addr = in6addr_any;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return fail_errno("binding the echo socket to port {}", port);
  }
  timeval tv{0, 100'000};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const uint64_t end = mono_ns() + static_cast<uint64_t>(duration_s * 1e9);
  char buf[2048];
  while (mono_ns() < end) {
    sockaddr_storage from{};
    socklen_t len = sizeof(from);
    ssize_t n = ::recvfrom(fd.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n > 0) ::sendto(fd.get(), buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), len);
  }
  return {};
}

}  // namespace ng::probe

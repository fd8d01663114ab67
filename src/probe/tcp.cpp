#include "probe/tcp.hpp"

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/clock.hpp"
#include "common/fd.hpp"
#include "probe/csv.hpp"

namespace ng::probe {

// ============================================================ analysis

IntervalBins::IntervalBins(uint64_t origin_ns, uint64_t planned_ns, uint64_t interval_ns)
    : origin_ns_(origin_ns),
      interval_ns_(std::max<uint64_t>(interval_ns, 1)),
      bytes_(planned_ns / interval_ns_ + 1, 0) {}

void IntervalBins::add(uint64_t t_ns, uint64_t bytes) {
  uint64_t i = t_ns > origin_ns_ ? (t_ns - origin_ns_) / interval_ns_ : 0;
  bytes_[std::min<uint64_t>(i, bytes_.size() - 1)] += bytes;
}

std::vector<Interval> IntervalBins::series(uint64_t end_ns) const {
  uint64_t n = end_ns > origin_ns_ ? (end_ns - origin_ns_ + interval_ns_ - 1) / interval_ns_ : 1;
  n = std::clamp<uint64_t>(n, 1, bytes_.size());
  std::vector<Interval> out;
  out.reserve(n);
  for (uint64_t i = 0; i < n; ++i) out.push_back({i * interval_ns_, bytes_[i]});
  return out;
}

double mbit_s(uint64_t bytes, uint64_t interval_ns) {
  return interval_ns == 0 ? 0 : static_cast<double>(bytes) * 8e3 / static_cast<double>(interval_ns);
}

std::string intervals_csv(std::span<const Interval> series, uint64_t interval_ns) {
  Csv csv{"interval_start_ms", "bytes", "mbit_s"};
  for (const auto& i : series) {
    csv.row(static_cast<double>(i.start_ns) / 1e6, i.bytes, mbit_s(i.bytes, interval_ns));
  }
  return csv.text();
}

void StallTracker::gap_until(uint64_t t_ns) {
  if (t_ns > last_ns_ && t_ns - last_ns_ > longest_ns_) {
    longest_ns_ = t_ns - last_ns_;
    longest_begin_ns_ = last_ns_;
  }
}

void StallTracker::add(uint64_t t_ns) {
  if (!started_) {
    started_ = true;
    first_ns_ = last_ns_ = t_ns;
    return;
  }
  gap_until(t_ns);
  last_ns_ = std::max(last_ns_, t_ns);
}

void StallTracker::finish(uint64_t end_ns) {
  if (started_) gap_until(end_ns);
}

// ============================================================ shared

namespace {

constexpr size_t kMaxBatch = 256 * 1024;
constexpr int kPollMs = 100;  // how often a waiting loop looks at the clock and `interrupted`

double ms_between(uint64_t from_ns, uint64_t to_ns) {
  return (static_cast<double>(to_ns) - static_cast<double>(from_ns)) / 1e6;
}

bool stop_requested(const Interrupted& interrupted) { return interrupted && interrupted(); }

int poll_ms(uint64_t now_ns, uint64_t end_ns) {
  uint64_t left = end_ns > now_ns ? (end_ns - now_ns + 999'999) / 1'000'000 : 0;
  return static_cast<int>(std::min<uint64_t>(left, kPollMs));
}

nlohmann::json intervals_summary(const std::vector<Interval>& series, uint64_t interval_ns) {
  uint64_t zero = 0;
  for (const auto& i : series) zero += i.bytes == 0 ? 1 : 0;
  return {{"interval_ms", static_cast<double>(interval_ns) / 1e6},
          {"intervals", series.size()},
          {"empty_intervals", zero}};
}

std::string peer_name(const sockaddr_storage& a) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (a.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(a);
    ::inet_ntop(AF_INET6, &v6.sin6_addr, host, sizeof(host));
    port = ntohs(v6.sin6_port);
  } else if (a.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(a);
    ::inet_ntop(AF_INET, &v4.sin_addr, host, sizeof(host));
    port = ntohs(v4.sin_port);
  }
  std::string h = host;
  if (h.starts_with("::ffff:") && h.find('.') != std::string::npos)
    return fmt::format("{}:{}", h.substr(7), port);
  return a.ss_family == AF_INET6 ? fmt::format("[{}]:{}", h, port) : fmt::format("{}:{}", h, port);
}

// ============================================================ sink

struct OpenConnection {
  UniqueFd fd;
  SinkConnection info;
  StallTracker stall;
  uint64_t accepted_ns = 0;
};

class Sink {
 public:
  Sink(const SinkOptions& o, UniqueFd listener, uint64_t start_ns)
      : o_(o),
        listener_(std::move(listener)),
        start_ns_(start_ns),
        end_ns_(start_ns + static_cast<uint64_t>(o.duration_s * 1e9)),
        bins_(start_ns, end_ns_ - start_ns),
        buf_(kMaxBatch) {}

  SinkReport run(const Interrupted& interrupted) {
    std::vector<pollfd> fds;
    bool changed = true;
    uint64_t now = mono_ns();
    while (now < end_ns_ && !stop_requested(interrupted) && !(o_.once && !done_.empty())) {
      if (changed) rebuild(fds);
      ::poll(fds.data(), fds.size(), poll_ms(now, end_ns_));
      changed = false;
      if (fds[0].revents & POLLIN) changed |= accept_all();
      for (size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents != 0) changed |= drain(fds[i].fd);
      }
      now = mono_ns();
    }
    return report(std::min(now, end_ns_));
  }

 private:
  void rebuild(std::vector<pollfd>& fds) const {
    fds.assign(1, pollfd{listener_.get(), POLLIN, 0});
    for (const auto& c : open_) fds.push_back({c.fd.get(), POLLIN, 0});
  }

  bool accept_all() {
    bool any = false;
    for (;;) {
      sockaddr_storage peer{};
      socklen_t len = sizeof(peer);
      int fd = ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&peer), &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return any;
      OpenConnection c;
      c.fd.reset(fd);
      c.accepted_ns = mono_ns();
      c.info.peer = peer_name(peer);
      c.info.accepted_at_ms = ms_between(start_ns_, c.accepted_ns);
      open_.push_back(std::move(c));
      any = true;
    }
  }

  // Reads what fd has; true when the connection ended.
  bool drain(int fd) {
    auto it =
        std::find_if(open_.begin(), open_.end(), [fd](const auto& c) { return c.fd.get() == fd; });
    if (it == open_.end()) return false;
    // Bounded, so one fast connection cannot keep the others (and the clock) waiting.
    for (int reads = 0; reads < 64; ++reads) {
      ssize_t n = ::recv(fd, buf_.data(), buf_.size(), MSG_DONTWAIT);
      uint64_t t = mono_ns();
      if (n > 0) {
        it->info.bytes += static_cast<uint64_t>(n);
        it->stall.add(t);
        bins_.add(t, static_cast<uint64_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return false;
      close(it, t, n == 0 ? "eof" : "error", n == 0 ? "" : std::strerror(errno));
      return true;
    }
    return false;
  }

  void close(std::vector<OpenConnection>::iterator it, uint64_t t, const char* how,
             std::string error) {
    it->stall.finish(t);
    auto& i = it->info;
    i.ended = how;
    i.error = std::move(error);
    i.ended_at_ms = ms_between(start_ns_, t);
    i.duration_ms = ms_between(it->accepted_ns, t);
    i.first_byte_at_ms = it->stall.started() ? ms_between(start_ns_, it->stall.first_ns()) : -1;
    i.longest_stall_ms = static_cast<double>(it->stall.longest_ns()) / 1e6;
    i.longest_stall_at_ms =
        it->stall.longest_ns() > 0 ? ms_between(start_ns_, it->stall.longest_begin_ns()) : 0;
    i.closed_early =
        i.ended == "error" || (i.ended == "eof" && i.duration_ms < o_.min_seconds * 1e3);
    done_.push_back(std::move(i));
    open_.erase(it);
  }

  SinkReport report(uint64_t end) {
    while (!open_.empty()) close(open_.begin(), end, "open", "");
    SinkReport r;
    r.duration_ms = ms_between(start_ns_, end);
    r.connections = done_.size();
    for (const auto& c : done_) {
      r.errors += c.ended == "error" ? 1 : 0;
      r.closed_early += c.closed_early ? 1 : 0;
      r.bytes += c.bytes;
      r.longest_stall_ms = std::max(r.longest_stall_ms, c.longest_stall_ms);
    }
    std::sort(done_.begin(), done_.end(),
              [](const auto& a, const auto& b) { return a.accepted_at_ms < b.accepted_at_ms; });
    r.per_connection = std::move(done_);
    r.intervals = bins_.series(end);
    r.interval_ns = bins_.interval_ns();
    return r;
  }

  const SinkOptions& o_;
  UniqueFd listener_;
  uint64_t start_ns_;
  uint64_t end_ns_;
  IntervalBins bins_;
  std::vector<char> buf_;
  std::vector<OpenConnection> open_;
  std::vector<SinkConnection> done_;
};

Result<UniqueFd> listen_tcp(uint16_t port) {
  UniqueFd fd(::socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno("creating the sink's listening socket");
  int off = 0, on = 1;
  ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_port = htons(port);
  addr.sin6_addr = in6addr_any;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return fail_errno(
        "binding the TCP sink to port {} (another sink or service on it? pick --port)", port);
  }
  if (::listen(fd.get(), 16) != 0) return fail_errno("listening on TCP port {}", port);
  return fd;
}

nlohmann::json connection_json(const SinkConnection& c) {
  nlohmann::json j = {{"peer", c.peer},
                      {"accepted_at_ms", c.accepted_at_ms},
                      {"ended", c.ended},
                      {"ended_at_ms", c.ended_at_ms},
                      {"duration_ms", c.duration_ms},
                      {"bytes", c.bytes},
                      {"first_byte_at_ms", c.first_byte_at_ms},
                      {"longest_stall_ms", c.longest_stall_ms},
                      {"longest_stall_at_ms", c.longest_stall_at_ms},
                      {"closed_early", c.closed_early}};
  if (!c.error.empty()) j["error"] = c.error;
  return j;
}

}  // namespace

nlohmann::json to_json(const SinkReport& r) {
  auto conns = nlohmann::json::array();
  for (const auto& c : r.per_connection) conns.push_back(connection_json(c));
  auto j = nlohmann::json{{"duration_ms", r.duration_ms},
                          {"connections", r.connections},
                          {"errors", r.errors},
                          {"closed_early", r.closed_early},
                          {"bytes", r.bytes},
                          {"longest_stall_ms", r.longest_stall_ms},
                          {"per_connection", conns}};
  j.update(intervals_summary(r.intervals, r.interval_ns));
  return j;
}

Result<SinkReport> run_tcp_sink(const SinkOptions& o, const Interrupted& interrupted) {
  if (o.duration_s <= 0 || o.duration_s > 3600) return fail("--duration must be in (0, 3600] s");
  auto fd = listen_tcp(o.port);
  if (!fd) return tl::unexpected(fd.error());
  Sink sink(o, std::move(*fd), mono_ns());
  return sink.run(interrupted);
}

// ============================================================ sender

namespace {

Result<UniqueFd> connect_tcp(const Endpoint& to, const std::string& address, uint16_t port) {
  UniqueFd fd(::socket(to.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno("creating the TCP probe socket");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&to.addr), to.len) != 0 &&
      errno != EINPROGRESS) {
    return fail_errno("cannot connect to {} port {}", address, port);
  }
  pollfd p{fd.get(), POLLOUT, 0};
  if (::poll(&p, 1, 3000) != 1) {
    return fail("cannot connect to {} port {}: no answer within 3 s (is the address reachable?)",
                address, port);
  }
  int err = 0;
  socklen_t len = sizeof(err);
  ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    return fail(
        "cannot connect to {} port {}: {} (is `nicguard probe tcp-sink --port {}` running "
        "there?)",
        address, port, std::strerror(err), port);
  }
  return fd;
}

void sleep_ns(uint64_t ns) {
  timespec ts{static_cast<time_t>(ns / 1'000'000'000ULL), static_cast<long>(ns % 1'000'000'000ULL)};
  ::clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr);
}

// Paces sends with a token bucket one batch (about 1 ms of traffic) per send.
// The bucket holds at most 100 ms: after a stall the sender does not burst
// to make up what it missed, as a live stream would not.
class Pacer {
 public:
  Pacer(double bytes_per_s, uint64_t now_ns)
      : rate_(bytes_per_s),
        batch_(rate_ > 0 ? std::clamp<size_t>(static_cast<size_t>(rate_ / 1000), 1024, kMaxBatch)
                         : kMaxBatch),
        depth_(std::max(rate_ * 0.1, static_cast<double>(batch_))),
        tokens_(static_cast<double>(batch_)),
        refilled_ns_(now_ns) {}

  size_t batch() const { return batch_; }
  // Nanoseconds to wait before a batch may go; 0: now.
  uint64_t wait_ns(uint64_t now_ns) {
    if (rate_ <= 0) return 0;
    tokens_ = std::min(depth_, tokens_ + rate_ * static_cast<double>(now_ns - refilled_ns_) / 1e9);
    refilled_ns_ = now_ns;
    if (tokens_ >= static_cast<double>(batch_)) return 0;
    return static_cast<uint64_t>((static_cast<double>(batch_) - tokens_) / rate_ * 1e9) + 1;
  }
  void spent(size_t bytes) { tokens_ -= static_cast<double>(bytes); }

 private:
  double rate_;
  size_t batch_;
  double depth_;
  double tokens_;
  uint64_t refilled_ns_;
};

class Sender {
 public:
  Sender(const TcpSendOptions& o, UniqueFd fd, uint64_t start_ns)
      : o_(o),
        fd_(std::move(fd)),
        start_ns_(start_ns),
        end_ns_(start_ns + static_cast<uint64_t>(o.duration_s * 1e9)),
        bins_(start_ns, end_ns_ - start_ns),
        pacer_(o.rate_mbyte_s * 1e6, start_ns),
        buf_(pacer_.batch(), 'n') {}

  TcpSendReport run(const Interrupted& interrupted) {
    uint64_t now = mono_ns();
    while (now < end_ns_ && !stop_requested(interrupted) && r_.errors.empty()) {
      if (uint64_t wait = pacer_.wait_ns(now); wait > 0) {
        sleep_ns(std::min(wait, end_ns_ - now));
      } else {
        send_batch(now);
      }
      now = mono_ns();
    }
    uint64_t end = std::min(now, end_ns_);
    if (blocked_since_ != 0) end_block(end);
    r_.duration_ms = ms_between(start_ns_, end);
    if (r_.errors.empty()) finish_stream();
    r_.rate_mbyte_s = o_.rate_mbyte_s;
    r_.survived = r_.errors.empty();
    r_.mbit_s = r_.duration_ms > 0 ? static_cast<double>(r_.bytes_sent) * 8e-3 / r_.duration_ms : 0;
    r_.intervals = bins_.series(end);
    r_.interval_ns = bins_.interval_ns();
    return std::move(r_);
  }

 private:
  void send_batch(uint64_t now) {
    ssize_t n = ::send(fd_.get(), buf_.data(), buf_.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      uint64_t t = mono_ns();
      pacer_.spent(static_cast<size_t>(n));
      r_.bytes_sent += static_cast<uint64_t>(n);
      bins_.add(t, static_cast<uint64_t>(n));
      if (blocked_since_ != 0) end_block(t);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (blocked_since_ == 0) blocked_since_ = now;
      pollfd p{fd_.get(), POLLOUT, 0};
      ::poll(&p, 1, poll_ms(now, end_ns_));
    } else if (n < 0 && errno != EINTR) {
      error(std::strerror(errno));
    }
  }

  void end_block(uint64_t t) {
    uint64_t ns = t - blocked_since_;
    if (static_cast<double>(ns) / 1e6 > r_.longest_block_ms) {
      r_.longest_block_ms = static_cast<double>(ns) / 1e6;
      r_.longest_block_at_ms = ms_between(start_ns_, blocked_since_);
    }
    blocked_since_ = 0;
  }

  void error(std::string what) {
    r_.errors.push_back({ms_between(start_ns_, mono_ns()), std::move(what)});
  }

  // Closes our side and waits (bounded) for the sink's close: it reads to the
  // end before closing, so that proves every byte arrived. A sink that is not
  // ours may keep its side open; then acknowledged bytes are enough.
  void finish_stream() {
    ::shutdown(fd_.get(), SHUT_WR);
    const uint64_t until = mono_ns() + 3'000'000'000ULL;
    char c;
    for (uint64_t now = mono_ns(); now < until; now = mono_ns()) {
      pollfd p{fd_.get(), POLLIN, 0};
      ::poll(&p, 1, poll_ms(now, until));
      ssize_t n = ::recv(fd_.get(), &c, 1, MSG_DONTWAIT);
      if (n == 0) return;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        return error(fmt::format("{} while waiting for the sink to read the last bytes",
                                 std::strerror(errno)));
      }
    }
    int unacked = 0;
    if (::ioctl(fd_.get(), SIOCOUTQ, &unacked) == 0 && unacked > 0) {
      error(fmt::format("{} bytes still unacknowledged 3 s after the stream ended", unacked));
    }
  }

  const TcpSendOptions& o_;
  UniqueFd fd_;
  uint64_t start_ns_;
  uint64_t end_ns_;
  IntervalBins bins_;
  Pacer pacer_;
  std::vector<char> buf_;
  uint64_t blocked_since_ = 0;
  TcpSendReport r_;
};

}  // namespace

nlohmann::json to_json(const TcpSendReport& r) {
  auto errors = nlohmann::json::array();
  for (const auto& e : r.errors) errors.push_back({{"at_ms", e.at_ms}, {"error", e.error}});
  auto j = nlohmann::json{{"duration_ms", r.duration_ms},
                          {"rate_mbyte_s", r.rate_mbyte_s},
                          {"bytes_sent", r.bytes_sent},
                          {"mbit_s", r.mbit_s},
                          {"survived", r.survived},
                          {"errors", errors},
                          {"longest_block_ms", r.longest_block_ms},
                          {"longest_block_at_ms", r.longest_block_at_ms}};
  j.update(intervals_summary(r.intervals, r.interval_ns));
  return j;
}

Result<TcpSendReport> run_tcp_send(const TcpSendOptions& o, const Interrupted& interrupted) {
  if (o.duration_s <= 0 || o.duration_s > 3600) return fail("--duration must be in (0, 3600] s");
  if (o.rate_mbyte_s < 0 || o.rate_mbyte_s > 100000) {
    return fail("--rate {} MB/s is out of range 0..100000 (0: unpaced)", o.rate_mbyte_s);
  }
  auto to = resolve(o.address, o.port);
  if (!to) return tl::unexpected(to.error());
  auto fd = connect_tcp(*to, o.address, o.port);
  if (!fd) return tl::unexpected(fd.error());
  if (o.user_timeout_s > 0) {
    auto ms = static_cast<unsigned>(o.user_timeout_s * 1e3);
    if (::setsockopt(fd->get(), IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms)) != 0) {
      return fail_errno("setting TCP_USER_TIMEOUT to {} ms", ms);
    }
  }
  Sender sender(o, std::move(*fd), mono_ns());
  return sender.run(interrupted);
}

}  // namespace ng::probe

#include "manager/metrics.hpp"

#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "common/clock.hpp"

namespace ng::manager {

// ---- exposition --------------------------------------------------------------

namespace {

using nlohmann::json;
using Labels = std::vector<std::pair<std::string, std::string>>;

constexpr std::pair<std::string_view, std::string_view> kHelp[] = {
    {"nicguard_manager_info", "The manager's failover policy, as a label (always 1)"},
    {"nicguard_manager_pid", "Process id of the manager"},
    {"nicguard_manager_fences_total", "Driver domains the manager fenced (SIGKILL) after a failure it detected"},
    {"nicguard_manager_carrier_losses_total", "Carrier losses on driver domains' NICs"},
    {"nicguard_manager_injections_total", "Faults injected through the control socket"},
    {"nicguard_manager_reloads_total", "Config reloads applied (nicguard reload, SIGHUP)"},
    {"nicguard_manager_reloads_refused_total", "Config reloads refused, with nothing changed"},
    {"nicguard_manager_salvaged_frames_total",
     "Frames a failed driver domain's NIC received, handed to the apps' frontends"},
    {"nicguard_manager_uptime_seconds", "Seconds since the manager started"},
    {"nicguard_driver_up", "1 while the driver domain's process runs"},
    {"nicguard_driver_active", "1 while the driver domain is the active one, 0 as spare or down"},
    {"nicguard_driver_restarts_total", "Restarts of the driver domain by the manager"},
    {"nicguard_driver_uptime_seconds", "Seconds since the driver domain's process started"},
    {"nicguard_driver_nic_rx_frames_total", "Frames received from the NIC"},
    {"nicguard_driver_nic_rx_bytes_total", "Bytes received from the NIC"},
    {"nicguard_driver_nic_tx_frames_total", "Frames sent on the NIC"},
    {"nicguard_driver_nic_tx_bytes_total", "Bytes sent on the NIC"},
    {"nicguard_driver_nic_tx_errors_total", "Frames the NIC refused to send"},
    {"nicguard_driver_rx_unclaimed_total", "Unicast frames from the NIC for no connected app"},
    {"nicguard_driver_guest_reports_refused_total",
     "Carrier reports on a driver VM's link with the wrong token (forged, or from an earlier boot)"},
    {"nicguard_driver_nic_rx_overruns_total", "Frames the NIC dropped because the driver read them too late"},
    {"nicguard_driver_path_probes_sent_total", "Path probes sent to the pair's other driver domain"},
    {"nicguard_driver_path_probes_seen_total", "Path probes seen from the pair's other driver domain"},
    {"nicguard_driver_heartbeat_total",
     "Heartbeats of the driver domain's loop (stop when it hangs)"},
    {"nicguard_driver_connection_rx_frames_total", "Frames delivered to the app's frontend"},
    {"nicguard_driver_connection_rx_bytes_total", "Bytes delivered to the app's frontend"},
    {"nicguard_driver_connection_tx_frames_total", "Frames sent on the NIC for the app"},
    {"nicguard_driver_connection_tx_bytes_total", "Bytes sent on the NIC for the app"},
    {"nicguard_driver_connection_rx_drops_total", "Frames for the app dropped: its ring was full"},
    {"nicguard_driver_connection_malformed_total", "Bad descriptors from the app's frontend"},
    {"nicguard_app_up", "1 while the app's frontend process runs"},
    {"nicguard_app_restarts_total", "Restarts of the app's frontend by the manager"},
    {"nicguard_app_uptime_seconds", "Seconds since the app's frontend process started"},
    {"nicguard_app_tap_rx_frames_total", "Frames read from the TAP device (the apps sending)"},
    {"nicguard_app_tap_rx_bytes_total", "Bytes read from the TAP device (the apps sending)"},
    {"nicguard_app_tap_tx_frames_total", "Frames written to the TAP device (the apps receiving)"},
    {"nicguard_app_tap_tx_bytes_total", "Bytes written to the TAP device (the apps receiving)"},
    {"nicguard_app_tx_drops_total", "Frames from the apps that no driver domain could take"},
    {"nicguard_app_rx_drops_total", "Frames from a driver domain refused (too short, TAP error)"},
    {"nicguard_app_malformed_total", "Malformed descriptors or indices, over all driver domains"},
    {"nicguard_app_failovers_total", "Switches of the app to another driver domain"},
    {"nicguard_app_replayed_total", "Frames re-posted to a new active driver domain"},
    {"nicguard_app_detected_crash_total", "Failures detected as a hang-up of the driver domain"},
    {"nicguard_app_detected_hang_total", "Failures detected as a stopped heartbeat"},
    {"nicguard_app_detected_stall_total", "Failures detected as a TX ring not drained"},
    {"nicguard_app_detected_violation_total",
     "Failures detected as a malformed descriptor or index"},
    {"nicguard_app_detected_carrier_total",
     "Failures a driver VM reported as its NIC's carrier lost"},
    {"nicguard_app_fences_total", "SIGKILLs the frontend sent a suspected driver domain"},
    {"nicguard_app_last_detect_seconds", "How long the last failure went unnoticed"},
    {"nicguard_app_last_switch_seconds",
     "Detection of the last failure to the new active domain's first kick"},
    {"nicguard_app_held_frames_total", "Frames held while no driver domain was up"},
    {"nicguard_app_hold_drops_total", "Frames the bounded hold queue had no room for"},
    {"nicguard_app_salvaged_total", "Frames a failed driver domain's NIC received, written to the app"},
    {"nicguard_app_path_questions_total",
     "ARP questions the path check asked through the active domain after path probes went missing"},
    {"nicguard_app_spare_path_broken_total",
     "Path checks that found the spare's side of the path broken (the active answered)"},
    {"nicguard_app_kick_user_max_seconds",
     "Most CPU time in its own code a driver domain spent between a kick and its next heartbeat "
     "(a hang needs a sixth of hang_timeout_ms)"},
    {"nicguard_app_backend_state", "The state of the app's connection to a driver domain (1-hot)"},
    {"nicguard_app_backend_tx_frames_total", "Frames posted to the driver domain's TX ring"},
    {"nicguard_app_backend_tx_bytes_total", "Bytes posted to the driver domain's TX ring"},
    {"nicguard_app_backend_rx_frames_total", "Frames taken from the driver domain's RX ring"},
    {"nicguard_app_backend_rx_bytes_total", "Bytes taken from the driver domain's RX ring"},
    {"nicguard_app_backend_malformed_total",
     "Descriptors or indices from the driver domain that failed validation"},
    {"nicguard_app_backend_connects_total", "Connections to the driver domain"},
};

// Every state a backend can be in (stats::backend_state_name), so that the
// 1-hot family has a stable set of series.
constexpr std::array<std::string_view, 4> kBackendStates = {"down", "connecting", "spare",
                                                            "active"};

// How one JSON field is exposed. Times in ms or us become seconds, the base
// unit Prometheus expects; levels are gauges, everything else only grows.
struct Metric {
  std::string name;
  const char* type;
  double scale = 1;
  std::string key;  // the JSON field, for a family without a known help line
};

struct Family {
  std::string name;
  const char* type;
  std::string help;
  std::vector<std::string> samples;
};

// The exposition format wants every family's samples together, after one
// HELP and one TYPE line; samples are collected per family in first-seen
// order and written out family by family.
class Exposition {
 public:
  void add(const Metric& m, const Labels& labels, const std::string& value);
  std::string text() const;

 private:
  std::vector<Family> families_;
  std::map<std::string, size_t> index_;
};

// Backslash and newline are escaped in help text and label values, the
// double quote only in label values.
std::string escape(std::string_view v, bool label) {
  std::string out;
  for (char ch : v) {
    if (ch == '\n') {
      out += "\\n";
      continue;
    }
    if (ch == '\\' || (label && ch == '"')) out += '\\';
    out += ch;
  }
  return out;
}

// Keys come from JSON; anything outside [a-zA-Z0-9_] would make an invalid name.
std::string sanitize(std::string_view key) {
  std::string out(key);
  for (char& ch : out) {
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
    if (!ok) ch = '_';
  }
  return out;
}

std::string help_for(const Metric& m) {
  for (const auto& [name, help] : kHelp) {
    if (name == m.name) return std::string(help);
  }
  return fmt::format("nicguard {} {}", m.type, m.key.empty() ? m.name : m.key);
}

void Exposition::add(const Metric& m, const Labels& labels, const std::string& value) {
  auto [it, fresh] = index_.try_emplace(m.name, families_.size());
  if (fresh) families_.push_back({m.name, m.type, help_for(m), {}});
  std::string sample = m.name;
  if (!labels.empty()) {
    std::vector<std::string> parts;
    for (const auto& [k, v] : labels) parts.push_back(fmt::format("{}=\"{}\"", k, escape(v, true)));
    sample += "{" + fmt::format("{}", fmt::join(parts, ",")) + "}";
  }
  families_[it->second].samples.push_back(sample + " " + value);
}

std::string Exposition::text() const {
  std::string out;
  for (const auto& f : families_) {
    out +=
        fmt::format("# HELP {} {}\n# TYPE {} {}\n", f.name, escape(f.help, false), f.name, f.type);
    for (const auto& s : f.samples) out += s + "\n";
  }
  return out;
}

bool gauge_like(std::string_view key) { return key == "connections" || key.starts_with("last_"); }

Metric metric_for(const std::string& prefix, std::string_view key, bool counters) {
  std::string k = sanitize(key);
  for (auto [suffix, scale] : {std::pair{"_ms", 1e-3}, std::pair{"_us", 1e-6}}) {
    if (k.ends_with(suffix)) {
      return {prefix + k.substr(0, k.size() - 3) + "_seconds", "gauge", scale, k};
    }
  }
  if (!counters || gauge_like(k)) return {prefix + k, "gauge", 1, k};
  if (k.ends_with("_total")) return {prefix + k, "counter", 1, k};
  return {prefix + k + "_total", "counter", 1, k};
}

std::string number(const json& v, double scale) {
  if (scale == 1 && v.is_number_unsigned()) return std::to_string(v.get<uint64_t>());
  if (scale == 1 && v.is_number_integer()) return std::to_string(v.get<int64_t>());
  return fmt::format("{}", v.get<double>() * scale);
}

const json& member(const json& j, const char* key) {
  static const json kNull;  // immutable, stands in for whatever is missing
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it != j.end() ? *it : kNull;
}

// The array at key, or an empty one: never a copy.
const json& list(const json& j, const char* key) {
  static const json kEmpty = json::array();
  const json& v = member(j, key);
  return v.is_array() ? v : kEmpty;
}

std::string text_of(const json& j) { return j.is_string() ? j.get<std::string>() : j.dump(); }

const char* flag(bool b) { return b ? "1" : "0"; }

// Every numeric member of obj, as prefix<key>; strings (names, roles) are
// labels elsewhere and are skipped here.
void add_numbers(Exposition& e, const json& obj, const std::string& prefix, const Labels& labels,
                 bool counters) {
  if (!obj.is_object()) return;
  for (const auto& [key, v] : obj.items()) {
    if (!v.is_number()) continue;
    Metric m = metric_for(prefix, key, counters);
    e.add(m, labels, number(v, m.scale));
  }
}

// up, restarts and uptime: what the manager itself knows of every child.
void add_child(Exposition& e, const json& c, const std::string& prefix, const Labels& labels) {
  e.add({prefix + "up", "gauge"}, labels, flag(!member(c, "pid").is_null()));
  for (const char* key : {"restarts", "uptime_ms"}) {
    if (!member(c, key).is_number()) continue;
    Metric m = metric_for(prefix, key, true);
    e.add(m, labels, number(member(c, key), m.scale));
  }
}

void add_driver(Exposition& e, const json& d) {
  Labels labels{{"driver", text_of(member(d, "name"))}};
  add_child(e, d, "nicguard_driver_", labels);
  e.add({"nicguard_driver_active", "gauge"}, labels, flag(member(d, "role") == "active"));
  add_numbers(e, member(d, "counters"), "nicguard_driver_", labels, true);
  for (const auto& k : list(d, "connections")) {
    Labels l = labels;
    l.emplace_back("app", text_of(member(k, "app")));
    add_numbers(e, k, "nicguard_driver_connection_", l, true);
  }
}

void add_backend(Exposition& e, const json& b, Labels labels) {
  labels.emplace_back("backend", text_of(member(b, "name")));
  std::string state = text_of(member(b, "state"));
  bool known =
      std::find(kBackendStates.begin(), kBackendStates.end(), state) != kBackendStates.end();
  for (std::string_view s : kBackendStates) {
    Labels l = labels;
    l.emplace_back("state", std::string(s));
    e.add({"nicguard_app_backend_state", "gauge"}, l, flag(s == state));
  }
  if (!known) {
    Labels l = labels;
    l.emplace_back("state", state);
    e.add({"nicguard_app_backend_state", "gauge"}, l, "1");
  }
  add_numbers(e, b, "nicguard_app_backend_", labels, true);
}

void add_app(Exposition& e, const json& a) {
  Labels labels{{"app", text_of(member(a, "name"))}};
  add_child(e, a, "nicguard_app_", labels);
  add_numbers(e, member(a, "counters"), "nicguard_app_", labels, true);
  for (const auto& b : list(a, "backends")) add_backend(e, b, labels);
}

}  // namespace

std::string format_metrics(const json& status) {
  Exposition e;
  if (member(status, "policy").is_string()) {
    e.add({"nicguard_manager_info", "gauge"}, {{"policy", text_of(member(status, "policy"))}}, "1");
  }
  add_numbers(e, member(status, "manager"), "nicguard_manager_", {}, false);
  add_numbers(e, member(member(status, "manager"), "counters"), "nicguard_manager_", {}, true);
  for (const auto& d : list(status, "drivers")) add_driver(e, d);
  for (const auto& a : list(status, "apps")) add_app(e, a);
  return e.text();
}

// ---- listen address ------------------------------------------------------------

namespace {

constexpr const char* kAccepted =
    "expected unix:/ABSOLUTE/PATH or HOST:PORT with HOST 127.0.0.1 (or another 127.x.y.z), "
    "[::1] or localhost";

Result<uint16_t> parse_port(std::string_view text) {
  unsigned v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || v < 1 || v > 65535) {
    return fail("port '{}' is not a number from 1 to 65535", text);
  }
  return static_cast<uint16_t>(v);
}

Result<MetricsEndpoint> parse_unix(const std::string& path) {
  if (path.empty() || path.front() != '/' || path.back() == '/') {
    return fail(
        "the socket path must be an absolute file name, e.g. unix:/run/nicguard/metrics.sock");
  }
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return fail("the socket path is {} bytes; Unix socket paths hold at most {}", path.size(),
                sizeof(sockaddr_un::sun_path) - 1);
  }
  return MetricsEndpoint{AF_UNIX, path, 0};
}

tl::unexpected<Error> not_loopback(const std::string& host) {
  return fail(
      "{} is not a loopback address. The metrics endpoint has no authentication, so it "
      "listens only on 127.0.0.1, [::1], localhost or a Unix socket (unix:/PATH); to scrape "
      "from another host, run the scraper here or put an authenticating reverse proxy in "
      "front of it",
      host);
}

// Only numeric loopback addresses (and the name localhost, which is not
// looked up): a resolver answer could point anywhere.
Result<MetricsEndpoint> parse_tcp(const std::string& where) {
  size_t colon = where.rfind(':');
  if (colon == std::string::npos) return fail("no port; {}", kAccepted);
  auto port = parse_port(std::string_view(where).substr(colon + 1));
  if (!port) return tl::unexpected(port.error());
  std::string host = where.substr(0, colon);
  bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (bracketed) {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    return fail("write an IPv6 address in brackets, e.g. [::1]:9520");
  }
  if (!bracketed && host == "localhost") host = "127.0.0.1";
  in_addr a4{};
  in6_addr a6{};
  if (!bracketed && ::inet_pton(AF_INET, host.c_str(), &a4) == 1) {
    if ((ntohl(a4.s_addr) >> 24) != 127) return not_loopback(host);
    return MetricsEndpoint{AF_INET, host, *port};
  }
  if (bracketed && ::inet_pton(AF_INET6, host.c_str(), &a6) == 1) {
    if (!IN6_IS_ADDR_LOOPBACK(&a6)) return not_loopback(host);
    return MetricsEndpoint{AF_INET6, host, *port};
  }
  return fail("'{}' is not an IP address ({}; no other host name is looked up)", host, kAccepted);
}

}  // namespace

Result<MetricsEndpoint> parse_metrics_listen(const std::string& where) {
  // bind(), lstat() and inet_pton() take the address as a C string, which
  // would end at the NUL and name another socket than the one written.
  // Found by tests/fuzz/metrics_fuzz.cpp.
  if (where.find('\0') != std::string::npos) return fail("a NUL byte is not allowed; {}", kAccepted);
  if (where.starts_with("unix:")) return parse_unix(where.substr(5));
  return parse_tcp(where);
}

Status check_metrics_listen(const std::string& where) {
  auto ep = parse_metrics_listen(where);
  if (!ep) return tl::unexpected(ep.error());
  return {};
}

// ---- server ------------------------------------------------------------------------

namespace {

constexpr size_t kMaxRequest = 8 * 1024;  // a scraper's GET is a few hundred bytes
constexpr size_t kMaxConns = 16;
constexpr int kMaxAcceptsPerCall = 64;  // a connect flood must not hold the caller's loop
constexpr uint64_t kConnLifetimeNs = 2'000'000'000;
constexpr const char* kMetricsType = "text/plain; version=0.0.4; charset=utf-8";
constexpr const char* kPlainType = "text/plain; charset=utf-8";

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
  return addr;
}

// A socket file someone still accepts on belongs to a live process (another
// manager configured with the same path): it must not be taken over.
bool served(const std::string& path) {
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_un addr = unix_address(path);
  return probe &&
         ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
}

Status remove_stale_socket(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return {};
    return fail_errno("checking the metrics socket path {}", path);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return fail(
        "metrics socket path {} exists and is not a socket; remove it or choose another "
        "path in [metrics] listen",
        path);
  }
  if (served(path)) {
    return fail(
        "metrics socket {} is served by another running process (another manager?); "
        "choose another path in [metrics] listen",
        path);
  }
  if (::unlink(path.c_str()) != 0) return fail_errno("removing the stale metrics socket {}", path);
  return {};
}

Result<UniqueFd> bind_unix(const std::string& path) {
  if (auto s = remove_stale_socket(path); !s) return tl::unexpected(s.error());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno("creating the metrics socket");
  sockaddr_un addr = unix_address(path);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return fail_errno("binding the metrics socket {}", path);
  }
  // Any local user can reach a loopback port too; who may scrape the Unix
  // socket is decided by the permissions of its directory.
  if (::chmod(path.c_str(), 0666) != 0) {
    auto error = fail_errno("making the metrics socket {} accessible", path);
    ::unlink(path.c_str());
    return error;
  }
  return fd;
}

Result<UniqueFd> bind_tcp(const MetricsEndpoint& ep, const std::string& where) {
  UniqueFd fd(::socket(ep.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno("creating the metrics socket for {}", where);
  // A restarted manager must get its port back while old connections linger in TIME_WAIT.
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (ep.family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(ep.port);
    ::inet_pton(AF_INET, ep.address.c_str(), &a->sin_addr);
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(ep.port);
    ::inet_pton(AF_INET6, ep.address.c_str(), &a->sin6_addr);
    len = sizeof(*a);
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&ss), len) != 0) {
    if (errno == EADDRINUSE) {
      return fail(
          "metrics listen address {}: the port is in use by another program; choose "
          "another port in [metrics] listen",
          where);
    }
    return fail_errno("binding the metrics listen address {}", where);
  }
  return fd;
}

std::string response(std::string_view status, std::string_view type, std::string_view body,
                     bool head = false, std::string_view extra_headers = "") {
  return fmt::format(
      "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n"
      "Connection: close\r\n{}\r\n{}",
      status, type, body.size(), extra_headers, head ? "" : body);
}

bool complete(std::string_view request) {
  return request.find("\r\n\r\n") != std::string_view::npos ||
         request.find("\n\n") != std::string_view::npos;
}

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  for (size_t start = 0; start <= line.size();) {
    size_t end = std::min(line.find(' ', start), line.size());
    out.push_back(line.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace

MetricsServer::SocketFile& MetricsServer::SocketFile::operator=(SocketFile&& o) noexcept {
  if (this != &o) {
    remove();
    path_ = std::exchange(o.path_, {});
    dev_ = o.dev_;
    ino_ = o.ino_;
  }
  return *this;
}

void MetricsServer::SocketFile::remove() {
  struct stat st {};
  if (!path_.empty() && ::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ &&
      st.st_ino == ino_) {
    ::unlink(path_.c_str());
  }
  path_.clear();
}

Result<MetricsServer> MetricsServer::listen(const std::string& where, Body body) {
  auto ep = parse_metrics_listen(where);
  if (!ep) return fail("metrics listen address '{}': {}", where, ep.error().message);
  MetricsServer s;
  s.where_ = where;
  s.body_ = std::move(body);
  s.epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!s.epoll_) return fail_errno("epoll_create1 for the metrics endpoint");
  auto fd = ep->family == AF_UNIX ? bind_unix(ep->address) : bind_tcp(*ep, where);
  if (!fd) return tl::unexpected(fd.error());
  s.listen_ = std::move(*fd);
  if (ep->family == AF_UNIX) {
    struct stat st {};
    ::lstat(ep->address.c_str(), &st);
    s.socket_file_ = SocketFile(ep->address, st.st_dev, st.st_ino);
  }
  if (::listen(s.listen_.get(), 16) != 0) return fail_errno("listening on {}", where);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = s.listen_.get();
  if (::epoll_ctl(s.epoll_.get(), EPOLL_CTL_ADD, s.listen_.get(), &ev) != 0) {
    return fail_errno("epoll_ctl for the metrics endpoint");
  }
  return s;
}

bool MetricsServer::done(const Conn& c) { return c.broken || (c.answered && c.out.empty()); }

void MetricsServer::process() {
  expire(mono_ns());
  epoll_event events[16];
  int n = ::epoll_wait(epoll_.get(), events, 16, 0);
  for (int i = 0; i < n; ++i) {
    int fd = events[i].data.fd;
    if (fd == listen_.get()) {
      accept_all();
      continue;
    }
    auto it = conns_.find(fd);
    if (it == conns_.end()) continue;
    serve(it->second);
    if (done(it->second)) conns_.erase(it);
  }
}

// A client that connects and then says nothing gives up its slot here.
void MetricsServer::expire(uint64_t now) {
  std::erase_if(conns_, [now](const auto& kv) { return kv.second.deadline_ns < now; });
}

void MetricsServer::accept_all() {
  for (int i = 0; i < kMaxAcceptsPerCall; ++i) {
    UniqueFd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        spdlog::warn("metrics endpoint {}: accept: {}", where_, std::strerror(errno));
      }
      return;
    }
    if (conns_.size() >= kMaxConns) continue;  // closed: a scraper retries at its next interval
    int key = fd.get();
    Conn& c = conns_[key];
    c.fd = std::move(fd);
    c.deadline_ns = mono_ns() + kConnLifetimeNs;
    serve(c);  // the request usually arrived with the connection
    if (done(c)) conns_.erase(key);
  }
}

void MetricsServer::serve(Conn& c) {
  if (!c.answered) read_request(c);
  if (c.answered) flush(c);
  if (!done(c)) watch(c);
}

void MetricsServer::read_request(Conn& c) {
  char buf[2048];
  while (!complete(c.in) && c.in.size() <= kMaxRequest) {
    ssize_t n = ::read(c.fd.get(), buf, sizeof(buf));
    if (n > 0) {
      c.in.append(buf, static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      if (n == 0 || errno != EAGAIN) c.broken = true;  // gone before a whole request
      return;
    }
  }
  c.out = answer(c.in);
  c.in.clear();
  c.answered = true;
}

MetricsRequest parse_metrics_request(std::string_view request) {
  if (!complete(request)) return MetricsRequest::too_large;
  auto w = words(request.substr(0, request.find_first_of("\r\n")));
  if (w.size() != 3 || !w[2].starts_with("HTTP/")) return MetricsRequest::malformed;
  std::string_view path = w[1].substr(0, w[1].find('?'));
  if (path != "/metrics") return MetricsRequest::not_found;
  if (w[0] == "HEAD") return MetricsRequest::head;
  if (w[0] != "GET") return MetricsRequest::not_allowed;
  return MetricsRequest::get;
}

std::string MetricsServer::answer(std::string_view request) {
  MetricsRequest asked = parse_metrics_request(request);
  switch (asked) {
    case MetricsRequest::too_large:
      return response("431 Request Header Fields Too Large", kPlainType, "request too large\n");
    case MetricsRequest::malformed:
      return response("400 Bad Request", kPlainType, "bad request\n");
    case MetricsRequest::not_found:
      return response("404 Not Found", kPlainType, "not found: the metrics are at /metrics\n");
    case MetricsRequest::not_allowed:
      return response("405 Method Not Allowed", kPlainType, "only GET and HEAD\n", false,
                      "Allow: GET, HEAD\r\n");
    case MetricsRequest::get:
    case MetricsRequest::head:
      break;
  }
  bool head = asked == MetricsRequest::head;
  // The body is built from the caller's state; a library exception there
  // must cost one answer, not the caller's loop.
  try {
    return response("200 OK", kMetricsType, body_(), head);
  } catch (const std::exception& e) {
    spdlog::warn("metrics endpoint {}: {}", where_, e.what());
    return response("500 Internal Server Error", kPlainType, "internal error\n");
  }
}

void MetricsServer::flush(Conn& c) {
  while (!c.out.empty()) {
    ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c.out.erase(0, static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      if (n == 0 || errno != EAGAIN) c.broken = true;
      return;
    }
  }
}

void MetricsServer::watch(Conn& c) {
  epoll_event ev{};
  ev.events = c.answered ? EPOLLOUT : EPOLLIN;
  ev.data.fd = c.fd.get();
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev) != 0 && errno == ENOENT) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c.fd.get(), &ev);
  }
}

}  // namespace ng::manager

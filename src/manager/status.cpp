// The manager's {"cmd":"status"} answer, built from its own view of the
// children and from the children's stats files, and its table rendering for
// `nicguard status`.
#include <sys/stat.h>

#include <algorithm>

#include <fmt/ranges.h>

#include "common/clock.hpp"
#include "manager/child_stats.hpp"
#include "manager/control.hpp"
#include "manager/manager.hpp"
#include "protocol/protocol.hpp"

namespace ng::manager {

namespace {

using nlohmann::json;

uint64_t load(const stats::Counter& c) { return c.load(std::memory_order_relaxed); }

std::string field(const char* s) { return std::string(s, strnlen(s, stats::kNameLen)); }

const char* child_state(const Child& c) {
  if (c.pid != 0) return "running";
  return c.restart_at_ns != 0 ? "restarting" : "down";
}

json pid_or_null(const Child& c) { return c.pid != 0 ? json(c.pid) : json(nullptr); }

json connection_json(const stats::DriverConnection& k) {
  auto role = static_cast<protocol::Role>(k.role.load(std::memory_order_relaxed));
  return {{"app", field(k.app)},
          {"role", protocol::role_name(role)},
          {"rx_frames", load(k.rx_frames)},
          {"rx_bytes", load(k.rx_bytes)},
          {"tx_frames", load(k.tx_frames)},
          {"tx_bytes", load(k.tx_bytes)},
          {"rx_drops", load(k.rx_drops)},
          {"malformed", load(k.malformed)}};
}

void add_driver_stats(json& j, const stats::DriverStats& s) {
  j["counters"] = {{"nic_rx_frames", load(s.nic_rx_frames)}, {"nic_rx_bytes", load(s.nic_rx_bytes)},
                   {"nic_tx_frames", load(s.nic_tx_frames)}, {"nic_tx_bytes", load(s.nic_tx_bytes)},
                   {"nic_tx_errors", load(s.nic_tx_errors)}, {"rx_unclaimed", load(s.rx_unclaimed)},
                   {"nic_rx_overruns", load(s.nic_rx_overruns)},
                   {"path_probes_sent", load(s.path_probes_sent)},
                   {"path_probes_seen", load(s.path_probes_seen)},
                   {"guest_reports_refused", load(s.guest_reports_refused)},
                   {"heartbeat", load(s.heartbeat)}};
  for (const auto& k : s.conns) {
    if (k.in_use.load(std::memory_order_acquire) == 0) continue;
    j["frontends"].push_back(field(k.app));
    j["connections"].push_back(connection_json(k));
  }
}

void add_front_stats(json& j, const stats::FrontStats& s) {
  j["counters"] = {{"tap_rx_frames", load(s.tap_rx_frames)}, {"tap_rx_bytes", load(s.tap_rx_bytes)},
                   {"tap_tx_frames", load(s.tap_tx_frames)}, {"tap_tx_bytes", load(s.tap_tx_bytes)},
                   {"tx_drops", load(s.tx_drops)},           {"rx_drops", load(s.rx_drops)},
                   {"malformed", load(s.malformed)},         {"failovers", load(s.failovers)},
                   {"replayed", load(s.replayed)},
                   {"detected_crash", load(s.detected_crash)},
                   {"detected_hang", load(s.detected_hang)},
                   {"detected_stall", load(s.detected_stall)},
                   {"detected_violation", load(s.detected_violation)},
                   {"detected_carrier", load(s.detected_carrier)},
                   {"fences", load(s.fences)},
                   {"last_detect_us", load(s.last_detect_us)},
                   {"last_switch_us", load(s.last_switch_us)},
                   {"held_frames", load(s.held_frames)},
                   {"hold_drops", load(s.hold_drops)},
                   {"salvaged", load(s.salvaged)},
                   {"spare_path_broken", load(s.spare_path_broken)},
                   {"path_questions", load(s.path_questions)},
                   {"kick_user_max_us", load(s.kick_user_max_us)}};
  int active = s.active.load(std::memory_order_relaxed);
  for (int i = 0; i < stats::kMaxBackends; ++i) {
    const auto& b = s.backends[i];
    if (b.name[0] == '\0') continue;
    auto state = static_cast<stats::BackendState>(b.state.load(std::memory_order_relaxed));
    j["backends"].push_back({{"name", field(b.name)},
                             {"state", stats::backend_state_name(state)},
                             {"tx_frames", load(b.tx_frames)},
                             {"tx_bytes", load(b.tx_bytes)},
                             {"rx_frames", load(b.rx_frames)},
                             {"rx_bytes", load(b.rx_bytes)},
                             {"malformed", load(b.malformed)},
                             {"connects", load(b.connects)}});
    if (i == active) j["active_driver"] = field(b.name);
  }
}

// Which role a driver plays: the frontends' own view wins (they decide
// failover), then the driver's per-connection roles, then the config order
// that every frontend starts from.
std::string driver_role(const json& d, size_t index, const json& apps, bool restart_policy) {
  if (d["pid"].is_null()) return "down";
  bool any_view = false;
  for (const auto& a : apps) {
    if (!a["active_driver"].is_string()) continue;
    any_view = true;
    if (a["active_driver"] == d["name"]) return "active";
  }
  if (any_view) return "spare";
  if (!d["connections"].empty()) {
    for (const auto& k : d["connections"]) {
      if (k["role"] == "active") return "active";
    }
    return "spare";
  }
  return index == 0 || restart_policy ? "active" : "spare";
}

// Why the domain's last instance ended, or null before any ended.
json failure_json(const Child& c) {
  if (c.last_failure.empty()) return nullptr;
  return {{"reason", c.last_failure}, {"ts_wall", c.last_failure_wall}};
}

}  // namespace

json Manager::driver_status(size_t i) {
  Child& c = children_[i];
  const DriverConfig& d = config_.drivers[i];
  json j = {{"name", d.name},          {"pid", pid_or_null(c)},
            {"state", child_state(c)}, {"nic", d.nic},
            {"netns", d.netns},        {"restarts", c.restarts},
            {"adopted", c.adopted},    {"frontends", json::array()},
            {"counters", json::object()}, {"connections", json::array()}};
  if (c.pid != 0) j["uptime_ms"] = (mono_ns() - c.started_mono_ns) / 1'000'000;
  j["last_failure"] = failure_json(c);
  j["kind"] = driver_kind_name(d.kind);
  if (d.kind == DriverKind::vm) {
    auto accel = accel_.find(accel_key(d));
    j["vm"] = {{"accel", accel == accel_.end() ? "not chosen yet" : vm::accel_name(accel->second.accel)},
               {"nic_model", d.vm.nic_model},
               {"memory_mb", d.vm.memory_mb},
               {"image_dir", vm_image_dir(d)},
               {"qemu_pid", c.pid != 0 ? qemu_of(c.pid) : 0}};
  }
  if (d.kind != DriverKind::vm) {
    json box = {{"uid", c.uid},
                {"cgroup", c.cgroup ? json(c.cgroup->describe()) : json(nullptr)}};
    if (!c.cgroup_error.empty()) box["cgroup_error"] = c.cgroup_error;
    j["sandbox"] = std::move(box);
  }
  std::string error;
  auto& s = mapped(c.driver_stats, config_.path("driver-" + d.name + ".stats"), stats::kDriverMagic,
                   c, error);
  if (s) {
    add_driver_stats(j, *s->get());
  } else if (c.pid != 0) {
    j["stats_error"] = error;
  }
  return j;
}

json Manager::app_status(size_t i) {
  Child& c = children_[config_.drivers.size() + i];
  const AppConfig& a = config_.apps[i];
  json v4 = json::array(), v6 = json::array();
  for (const auto& x : a.ipv4) v4.push_back(x.text);
  for (const auto& x : a.ipv6) v6.push_back(x.text);
  json j = {{"name", a.name},          {"pid", pid_or_null(c)},     {"state", child_state(c)},
            {"netns", a.netns},        {"mac", format_mac(a.mac)},  {"mtu", a.mtu},
            {"ipv4", v4},              {"ipv6", v6},                {"restarts", c.restarts},
            {"adopted", c.adopted},    {"active_driver", nullptr},  {"counters", json::object()},
            {"backends", json::array()}};
  if (c.pid != 0) j["uptime_ms"] = (mono_ns() - c.started_mono_ns) / 1'000'000;
  j["last_failure"] = failure_json(c);
  std::string error;
  auto& s = mapped(c.front_stats, config_.path("front-" + a.name + ".stats"), stats::kFrontMagic, c,
                   error);
  if (s) {
    add_front_stats(j, *s->get());
  } else if (c.pid != 0) {
    j["stats_error"] = error;
  }
  return j;
}

json Manager::status_json() {
  json apps = json::array();
  for (size_t i = 0; i < config_.apps.size(); ++i) apps.push_back(app_status(i));
  json drivers = json::array();
  for (size_t i = 0; i < config_.drivers.size(); ++i) {
    json d = driver_status(i);
    d["role"] = driver_role(d, i, apps, config_.policy == Policy::restart);
    drivers.push_back(std::move(d));
  }
  return {{"ok", true},
          {"policy", policy_name(config_.policy)},
          {"manager",
           {{"pid", ::getpid()},
            {"config", config_.origin},
            {"state_dir", config_.state_dir},
            {"uptime_ms", (mono_ns() - started_mono_ns_) / 1'000'000},
            {"counters",
             {{"fences", fences_}, {"carrier_losses", carrier_losses_}, {"injections", injections_}, {"salvaged_frames", salvaged_},
              {"reloads", reloads_}, {"reloads_refused", reloads_refused_}}}}},
          {"drivers", std::move(drivers)},
          {"apps", std::move(apps)}};
}

// ---- table rendering -------------------------------------------------------

namespace {

std::string cell(const json& j) {
  if (j.is_null()) return "-";
  if (j.is_string()) return j.get<std::string>();
  if (j.is_array()) {
    std::vector<std::string> parts;
    for (const auto& x : j) parts.push_back(cell(x));
    return parts.empty() ? "-" : fmt::format("{}", fmt::join(parts, ","));
  }
  return j.dump();
}

std::string at(const json& j, const char* key) { return j.contains(key) ? cell(j[key]) : "-"; }

bool numeric(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
}

// Columns sized to their widest cell; numbers right-aligned.
std::string render(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    width.resize(std::max(width.size(), r.size()));
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (size_t row = 0; row < rows.size(); ++row) {
    std::string line;
    for (size_t i = 0; i < rows[row].size(); ++i) {
      const std::string& v = rows[row][i];
      if (i > 0) line += "  ";
      line += row > 0 && numeric(v) ? fmt::format("{:>{}}", v, width[i])
                                    : fmt::format("{:<{}}", v, width[i]);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::vector<std::string> counters(const json& j, std::initializer_list<const char*> keys) {
  std::vector<std::string> out;
  const json& c = j.contains("counters") ? j["counters"] : json::object();
  for (const char* k : keys) out.push_back(at(c, k));
  return out;
}

template <typename... V>
std::vector<std::string> row(V&&... parts) {
  std::vector<std::string> out;
  auto add = [&](auto&& p) {
    if constexpr (std::is_same_v<std::decay_t<decltype(p)>, std::vector<std::string>>) {
      out.insert(out.end(), p.begin(), p.end());
    } else {
      out.emplace_back(p);
    }
  };
  (add(std::forward<V>(parts)), ...);
  return out;
}

// "  driver b: last ended 2026-...Z: NIC 'x' is not in ... (exited with status 1)"
std::string failure_note(const std::string& who, const json& domain) {
  const json f = domain.value("last_failure", json());
  if (!f.is_object()) return "";
  return fmt::format("  {}: last ended {}: {}\n", who, f.value("ts_wall", "?"), f.value("reason", "?"));
}

std::string driver_tables(const json& drivers) {
  std::vector<std::vector<std::string>> domains{
      {"DRIVER", "KIND", "PID", "ROLE", "STATE", "NIC", "NETNS", "RESTARTS", "FRONTENDS"}};
  std::vector<std::vector<std::string>> nic{{"DRIVER", "NIC RX FRAMES", "RX BYTES", "TX FRAMES",
                                             "TX BYTES", "TX ERRORS", "RX UNCLAIMED"}};
  std::vector<std::vector<std::string>> conns{{"DRIVER/APP", "ROLE", "RX FRAMES", "RX BYTES",
                                               "TX FRAMES", "TX BYTES", "RX DROPS", "MALFORMED"}};
  std::string notes;
  for (const auto& d : drivers) {
    std::string name = at(d, "name");
    std::string kind = at(d, "kind");
    if (d.contains("vm") && d["vm"].is_object()) kind += " " + at(d["vm"], "accel");  // "vm tcg"
    domains.push_back(row(name, kind, at(d, "pid"), at(d, "role"), at(d, "state"), at(d, "nic"),
                          at(d, "netns"), at(d, "restarts"), at(d, "frontends")));
    nic.push_back(row(name, counters(d, {"nic_rx_frames", "nic_rx_bytes", "nic_tx_frames",
                                         "nic_tx_bytes", "nic_tx_errors", "rx_unclaimed"})));
    for (const auto& k : d.value("connections", json::array())) {
      conns.push_back(row(name + "/" + at(k, "app"), at(k, "role"), at(k, "rx_frames"),
                          at(k, "rx_bytes"), at(k, "tx_frames"), at(k, "tx_bytes"),
                          at(k, "rx_drops"), at(k, "malformed")));
    }
    if (d.contains("stats_error")) notes += fmt::format("  driver {}: {}\n", name, at(d, "stats_error"));
    notes += failure_note("driver " + name, d);
  }
  std::string out = render(domains) + "\n" + render(nic);
  if (conns.size() > 1) out += "\n" + render(conns);
  return out + notes;
}

std::string app_tables(const json& apps) {
  std::vector<std::vector<std::string>> domains{
      {"APP", "PID", "STATE", "NETNS", "MAC", "ACTIVE DRIVER", "RESTARTS"}};
  std::vector<std::vector<std::string>> tap{{"APP", "TAP RX FRAMES", "RX BYTES", "TAP TX FRAMES",
                                             "TX BYTES", "TX DROPS", "RX DROPS", "MALFORMED",
                                             "FAILOVERS", "REPLAYED"}};
  std::vector<std::vector<std::string>> backends{
      {"APP/BACKEND", "STATE", "TX FRAMES", "TX BYTES", "RX FRAMES", "RX BYTES", "MALFORMED"}};
  std::string notes;
  for (const auto& a : apps) {
    std::string name = at(a, "name");
    domains.push_back(row(name, at(a, "pid"), at(a, "state"), at(a, "netns"), at(a, "mac"),
                          at(a, "active_driver"), at(a, "restarts")));
    tap.push_back(row(name, counters(a, {"tap_rx_frames", "tap_rx_bytes", "tap_tx_frames",
                                         "tap_tx_bytes", "tx_drops", "rx_drops", "malformed",
                                         "failovers", "replayed"})));
    for (const auto& b : a.value("backends", json::array())) {
      backends.push_back(row(name + "/" + at(b, "name"), at(b, "state"), at(b, "tx_frames"),
                             at(b, "tx_bytes"), at(b, "rx_frames"), at(b, "rx_bytes"),
                             at(b, "malformed")));
    }
    if (a.contains("stats_error")) notes += fmt::format("  app {}: {}\n", name, at(a, "stats_error"));
    notes += failure_note("app " + name, a);
  }
  std::string out = render(domains) + "\n" + render(tap);
  if (backends.size() > 1) out += "\n" + render(backends);
  return out + notes;
}

}  // namespace

std::string health_line(const json& status, const json& last_failover) {
  const json apps = status.value("apps", json::array());
  std::vector<std::string> unserved;
  size_t unspared = 0;
  for (const auto& a : apps) {
    if (!a.value("active_driver", json()).is_string()) unserved.push_back(at(a, "name"));
    bool spare = false;
    for (const auto& b : a.value("backends", json::array())) spare = spare || b.value("state", "") == "spare";
    if (!spare) ++unspared;
  }
  bool restart = status.value("policy", "") == "restart";
  std::string line = unserved.empty() && (restart || unspared == 0) ? "health: OK" : "health: DEGRADED";
  line += fmt::format(", {} of {} apps served", apps.size() - unserved.size(), apps.size());
  if (!unserved.empty()) {
    std::string names;
    for (size_t i = 0; i < unserved.size() && i < 4; ++i) names += (i ? ", " : "") + unserved[i];
    line += fmt::format(" (not {}{})", names, unserved.size() > 4 ? ", ..." : "");
  }
  if (restart) {
    line += ", no spare (restart policy)";
  } else {
    line += unspared == 0 ? ", a spare ready for every app" : fmt::format(", no spare ready for {}", unspared);
  }
  if (!last_failover.is_object()) return line + ", no failover yet\n";
  std::string from = last_failover.value("domain", "?"), app = last_failover.value("source", "?");
  if (app.rfind("front-", 0) == 0) app = app.substr(6);
  return line + fmt::format("; last failover {} from {} ({}): {}: {}\n", last_failover.value("ts_wall", "?"),
                            from, app, last_failover.value("detector", "?"), last_failover.value("detail", ""));
}

std::string format_status_table(const json& status, const json& last_failover) {
  json m = status.value("manager", json::object());
  std::string out = health_line(status, last_failover);
  out += fmt::format("manager pid {}, policy {}, up {} s, config {}\n\n", at(m, "pid"),
                                at(status, "policy"), m.value("uptime_ms", 0ULL) / 1000,
                                at(m, "config"));
  out += driver_tables(status.value("drivers", json::array()));
  if (!status.value("apps", json::array()).empty()) {
    out += "\n" + app_tables(status.value("apps", json::array()));
  }
  return out;
}

}  // namespace ng::manager

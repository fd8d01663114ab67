// `nicguard reload` and SIGHUP: the config file as it reads now, applied to
// the running manager without touching what did not change. Everything that
// can refuse is checked before the first change (reload_blockers, the other
// managers' resources, the new app namespaces, a new metrics listener), so a
// refused reload leaves every domain, file and counter as it was.
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "common/clock.hpp"
#include "common/file.hpp"
#include "manager/control.hpp"
#include "manager/locate.hpp"
#include "manager/manager.hpp"
#include "manager/process.hpp"
#include "netlink/netlink.hpp"

namespace ng::manager {

namespace {

constexpr int kRetireGraceMs = 2000;
constexpr int kRetireKillWaitMs = 1000;

bool netns_there(const std::string& name) { return ::access(netlink::netns_path(name).c_str(), F_OK) == 0; }

}  // namespace

nlohmann::json Manager::reload(const std::string& trigger) {
  uint64_t start = mono_ns();
  spdlog::info("manager: reloading {} ({})", config_.origin, trigger);
  notifier_.reloading();
  auto next = load_config(config_.origin);
  auto applied = next ? apply_reload(std::move(*next)) : Result<nlohmann::json>(tl::unexpected(next.error()));
  uint64_t took_ms = (mono_ns() - start) / 1'000'000;
  std::string health = health_line(status_json(), nullptr);
  if (!health.empty() && health.back() == '\n') health.pop_back();
  notifier_.reloaded(health);
  if (!applied) {
    ++reloads_refused_;
    std::string why = applied.error().message;
    spdlog::error("manager: reload refused, nothing changed: {}", why);
    event("reload-refused", nullptr, {{"trigger", trigger}, {"error", why}});
    return {{"ok", false}, {"error", "nothing changed: " + why}};
  }
  ++reloads_;
  nlohmann::json what = std::move(*applied);
  what["took_ms"] = took_ms;
  what["trigger"] = trigger;
  event("reload", nullptr, what);
  spdlog::info("manager: reloaded in {} ms: {}", took_ms, what.dump());
  what["ok"] = true;
  return what;
}

Result<nlohmann::json> Manager::apply_reload(Config next) {
  if (auto blockers = reload_blockers(config_, next); !blockers.empty()) {
    return fail("{}: {}; a reload cannot change {}: restart the manager to apply {} (systemctl restart nicguard)",
                next.origin, fmt::join(blockers, "; "), blockers.size() == 1 ? "this" : "these",
                blockers.size() == 1 ? "it" : "them");
  }
  if (auto s = refuse_shared_resources(next); !s) return tl::unexpected(s.error());

  // Which app domains stay as they run: same name, same command line.
  std::map<std::string, size_t> running;  // app name -> index in children_
  for (size_t i = 0; i < children_.size(); ++i) {
    if (children_[i].kind == ChildKind::front) running[children_[i].name] = i;
  }
  std::vector<std::string> added, removed, changed;
  std::vector<Child> fronts;
  std::vector<bool> keep(children_.size(), false);
  for (const auto& a : next.apps) {
    Child c = front_child(next, a);
    auto it = running.find(a.name);
    if (it == running.end()) {
      added.push_back(a.name);
    } else if (children_[it->second].args == c.args) {
      keep[it->second] = true;
    } else {
      changed.push_back(a.name);
    }
    fronts.push_back(std::move(c));
  }
  for (const auto& entry : running) {
    const std::string& name = entry.first;  // clang 14 cannot capture a structured binding
    if (std::find_if(next.apps.begin(), next.apps.end(), [&](const AppConfig& a) { return a.name == name; }) ==
        next.apps.end()) {
      removed.push_back(name);
    }
  }

  std::vector<std::string> created;
  if (auto s = prepare_new_apps(next, created); !s) return tl::unexpected(s.error());
  std::optional<MetricsServer> metrics;
  bool metrics_changed = next.metrics.listen != config_.metrics.listen;
  if (metrics_changed && !next.metrics.listen.empty()) {
    auto m = MetricsServer::listen(next.metrics.listen, [this] { return format_metrics(status_json()); });
    if (!m) {
      for (const auto& n : created) netlink::delete_netns(n);
      return fail("metrics.listen = \"{}\": {}", next.metrics.listen, m.error().message);
    }
    metrics = std::move(*m);
  }

  // From here on nothing refuses.
  for (size_t i = 0; i < children_.size(); ++i) {
    if (children_[i].kind == ChildKind::front && !keep[i]) retire(children_[i]);
  }
  bool settings_changed = live_settings(config_) != live_settings(next);
  bool carrier_changed = config_.detect.carrier != next.detect.carrier;
  config_ = std::move(next);

  std::vector<Child> kids;
  for (auto& c : children_) {
    if (c.kind != ChildKind::driver) continue;
    const auto& d = config_.drivers[c.config_index];
    c.args = driver_child(config_, d).args;
    kids.push_back(std::move(c));
  }
  for (size_t k = 0; k < fronts.size(); ++k) {
    auto it = running.find(fronts[k].name);
    if (it == running.end() || !keep[it->second]) {
      kids.push_back(std::move(fronts[k]));
      continue;
    }
    Child& c = children_[it->second];
    c.config_index = fronts[k].config_index;
    kids.push_back(std::move(c));
  }
  children_ = std::move(kids);
  rekey_children();
  salvage_targets_ = salvage_targets(config_);

  for (auto& c : children_) {
    if (c.kind == ChildKind::driver) {
      apply_memory_limit(c);
      if (carrier_changed && config_.detect.carrier) watch_carrier(c);
      if (carrier_changed && !config_.detect.carrier) c.link.reset();
    } else if (c.pidfd) {
      write_front_settings(c, true);  // only where the file changes
    }
  }
  if (metrics_changed) {
    metrics_ = std::move(metrics);
    if (metrics_) watch_fd(metrics_->fd(), kMetricsKey);
  }
  for (auto& c : children_) {
    if (c.kind != ChildKind::front || c.pidfd || c.restart_at_ns != 0) continue;
    if (auto s = spawn(c); !s) {
      spdlog::error("{}: {}; next try in {} ms", c.domain(), s.error().message, 1000);
      c.restart_at_ns = mono_ns() + 1'000'000'000;
    }
  }
  return nlohmann::json{{"added", added},
                        {"removed", removed},
                        {"restarted", changed},
                        {"settings_changed", settings_changed},
                        {"apps", config_.apps.size()}};
}

// The namespaces of apps that are new (or moved to another namespace),
// created now; on failure the ones created here are deleted again.
Status Manager::prepare_new_apps(const Config& next, std::vector<std::string>& created) {
  for (const auto& a : next.apps) {
    if (netns_there(a.netns)) continue;
    auto ns = netlink::create_netns(a.netns);
    if (!ns) {
      for (const auto& n : created) netlink::delete_netns(n);
      created.clear();
      return fail("app {}: {}", a.name, ns.error().message);
    }
    created.push_back(a.netns);
    spdlog::info("app {}: created network namespace {}", a.name, a.netns);
  }
  return {};
}

// An app domain the new config drops or changes: its frontend is stopped
// for good (not restarted), and its files go with it.
void Manager::retire(Child& c) {
  c.restart_at_ns = 0;
  if (c.pidfd) {
    terminate(c.pidfd.get(), kRetireGraceMs, kRetireKillWaitMs);
    if (!c.adopted) {
      siginfo_t si{};
      ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(c.pidfd.get()), &si, WEXITED | WNOHANG);
    }
    spdlog::info("{}: pid {} stopped: the config no longer has it as it runs", c.domain(), c.pid);
    event("retire", &c, {{"pid", c.pid}});
    c.pidfd.reset();
    c.pid = 0;
  }
  c.front_stats.reset();
  remove_child_files(c);
}

// Children's epoll keys are their indices, which a reload moves.
void Manager::rekey_children() {
  for (size_t i = 0; i < children_.size(); ++i) {
    if (!children_[i].pidfd) continue;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, children_[i].pidfd.get(), &ev) != 0) {
      spdlog::error("{}: epoll_ctl: {}", children_[i].domain(), strerror(errno));
    }
  }
}

}  // namespace ng::manager

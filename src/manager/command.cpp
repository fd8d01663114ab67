#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cli/commands.hpp"
#include "common/events.hpp"
#include "manager/config.hpp"
#include "manager/control.hpp"
#include "manager/locate.hpp"
#include "manager/manager.hpp"
#include "manager/metrics.hpp"

namespace {

struct ManagerOptions {
  std::string config;
  bool check = false;
};

struct StatusOptions {
  std::string config;
  std::string socket;
  bool json = false;
  bool metrics = false;
  int timeout_ms = 3000;
};

void add_manager(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<ManagerOptions>();
  auto* sub = app.add_subcommand("manager", "Run the manager in the foreground (namespaces, domains, restarts)");
  sub->footer(
      "Sets up the driver and app namespaces, starts and restarts the driver domains and\n"
      "frontends and serves the control socket. SIGTERM, SIGINT or {\"cmd\":\"shutdown\"} stop\n"
      "it and undo its changes; SIGUSR2 ends it and leaves every domain serving, for the next\n"
      "manager on the same config to adopt. Under systemd (NOTIFY_SOCKET or INVOCATION_ID set)\n"
      "a SIGTERM first asks systemd over the system bus (DBUS_SYSTEM_BUS_ADDRESS, or\n"
      "/run/systemd/private, then the system bus; 500 ms at most) for the unit's job: a\n"
      "restart job (`systemctl restart nicguard`) leaves every domain serving as SIGUSR2 does,\n"
      "for the manager systemd starts next; any other job, or no answer, is a stop. Exit\n"
      "status: 0 after a clean stop or a restart's SIGTERM, 1 when it could not start, 2 for a\n"
      "bad configuration (nothing is touched then), 3 after SIGUSR2.");
  sub->add_option("-c,--config", opts->config, "configuration file (TOML, see docs/config.md)")
      ->required();
  sub->add_flag("--check", opts->check, "only validate the configuration and exit");
  sub->callback([opts, &exit_code] {
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    exit_code = ng::manager::run_manager(opts->config, opts->check);
  });
}

// -c FILE or -s SOCKET: which manager a command talks to.
void add_which_manager(CLI::App* sub, std::string& config, std::string& socket) {
  auto* c = sub->add_option("-c,--config", config, "the manager's configuration file");
  auto* s = sub->add_option("-s,--socket", socket, "the manager's control socket");
  c->excludes(s);
}

// Sends {"cmd": cmd} to the manager -s or -c names (or the only one
// running). On failure it says why as `nicguard CMD: ...` and sets the exit
// status: 2 when there is no such manager, 1 when it failed or refused.
std::optional<nlohmann::json> ask_manager(const std::string& cmd, const std::string& socket_opt,
                                          const std::string& config, int timeout_ms, int& exit_code) {
  auto socket = ng::manager::control_socket_for(socket_opt, config);
  if (!socket) {
    fmt::print(stderr, "nicguard {}: {}\n", cmd, socket.error().message);
    exit_code = 2;
    return std::nullopt;
  }
  auto answer = ng::manager::control_request(*socket, {{"cmd", cmd}}, timeout_ms);
  if (!answer) {
    fmt::print(stderr, "nicguard {}: {}\n", cmd, answer.error().message);
    exit_code = 1;
    return std::nullopt;
  }
  return std::move(*answer);
}

void print_status(const StatusOptions& o, int& exit_code) {
  auto answer = ask_manager("status", o.socket, o.config, o.timeout_ms, exit_code);
  if (!answer) return;
  if (o.json) {
    fmt::print("{}\n", answer->dump(2));
    exit_code = 0;
    return;
  }
  if (o.metrics) {
    fmt::print("{}", ng::manager::format_metrics(*answer));
    exit_code = 0;
    return;
  }
  try {
    // The manager keeps no history; its event log says what failed last.
    std::string events = answer->value("/manager/state_dir"_json_pointer, std::string()) + "/events.jsonl";
    auto last = ng::last_event(events, [](const nlohmann::json& e) {
      return e.value("event", "") == "detect" && e.value("role", "") == "active";
    });
    fmt::print("{}", ng::manager::format_status_table(*answer, last));
    exit_code = 0;
  } catch (const nlohmann::json::exception& e) {
    fmt::print(stderr, "nicguard status: the manager's answer has an unexpected shape ({}); "
                       "try --json\n", e.what());
    exit_code = 1;
  }
}

void add_status(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<StatusOptions>();
  auto* sub = app.add_subcommand("status", "Show every domain, its role, NIC, frontends and counters.");
  add_which_manager(sub, opts->config, opts->socket);
  auto* j = sub->add_flag("--json", opts->json, "print the manager's JSON answer");
  sub->add_flag("--metrics", opts->metrics,
                "print Prometheus metrics (text format 0.0.4) instead of tables")
      ->excludes(j);
  sub->add_option("--timeout-ms", opts->timeout_ms, "how long to wait for the manager")
      ->capture_default_str()
      ->check(CLI::Range(1, 600000));
  sub->footer("With neither -c nor -s: the only manager running (see docs/config.md).");
  sub->callback([opts, &exit_code] { print_status(*opts, exit_code); });
}

struct ReloadOptions {
  std::string config;
  std::string socket;
  bool json = false;
  int timeout_ms = 30000;
};

std::string names(const nlohmann::json& list) {
  std::string out;
  for (const auto& n : list) out += (out.empty() ? "" : ", ") + n.get<std::string>();
  return out;
}

// One line a user reads: what the reload did, or that it did nothing.
std::string reload_summary(const nlohmann::json& a) {
  std::string out;
  auto part = [&](const char* key, const char* what) {
    const auto& list = a.value(key, nlohmann::json::array());
    if (!list.empty()) out += fmt::format("{}{} {}", out.empty() ? "" : "; ", what, names(list));
  };
  part("added", "added");
  part("removed", "removed");
  part("restarted", "restarted (changed)");
  if (a.value("settings_changed", false)) out += std::string(out.empty() ? "" : "; ") + "new detector settings";
  if (out.empty()) out = "nothing changed";
  return fmt::format("reloaded in {} ms: {} ({} app domains)", a.value("took_ms", 0), out, a.value("apps", 0));
}

// A refused reload comes back as control_request's error ("the manager
// refused: nothing changed: ...").
void reload(const ReloadOptions& o, int& exit_code) {
  auto answer = ask_manager("reload", o.socket, o.config, o.timeout_ms, exit_code);
  if (!answer) return;
  fmt::print("{}\n", o.json ? answer->dump(2) : reload_summary(*answer));
  exit_code = 0;
}

void add_reload(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<ReloadOptions>();
  auto* sub = app.add_subcommand("reload", "Make the manager apply its config file as it reads now.");
  add_which_manager(sub, opts->config, opts->socket);
  sub->add_flag("--json", opts->json, "print the manager's JSON answer");
  sub->add_option("--timeout-ms", opts->timeout_ms, "how long to wait for the manager")
      ->capture_default_str()
      ->check(CLI::Range(1, 600000));
  sub->footer(
      "The manager rereads the file it was started with and changes only what changed: app\n"
      "domains added, removed or changed (only those frontends start or stop), detector\n"
      "timeouts (sent to the running frontends), the carrier detector, the spare's restart\n"
      "delay, the metrics listener, the driver domains' memory limits. A bad config, or one\n"
      "that changes what needs a restart (drivers, rings, policy, state_dir), is refused whole\n"
      "and nothing changes; exit status 1 then. SIGHUP to the manager does the same.\n"
      "With neither -c nor -s: the only manager running.");
  sub->callback([opts, &exit_code] { reload(*opts, exit_code); });
}

}  // namespace

void ng::cli::add_manager_commands(CLI::App& app, int& exit_code) {
  add_manager(app, exit_code);
  add_status(app, exit_code);
  add_reload(app, exit_code);
  ng::cli::add_events_command(app, exit_code);
}

#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "frontend/frontend.hpp"

namespace {

int run(const ng::frontend::FrontendOptions& base, const std::string& mac,
        const std::vector<std::string>& addrs, const std::vector<std::string>& drivers) {
  auto o = base;
  auto m = ng::parse_mac(mac);
  if (!m) {
    fmt::print(stderr, "error: --mac: {}\n", m.error().message);
    return 2;
  }
  o.mac = *m;
  for (const auto& a : addrs) {
    auto c = ng::parse_cidr(a);
    if (!c) {
      fmt::print(stderr, "error: address: {}\n", c.error().message);
      return 2;
    }
    o.addresses.push_back(*c);
  }
  for (const auto& d : drivers) {
    auto eq = d.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == d.size()) {
      fmt::print(stderr, "error: --driver '{}': expected NAME=SOCKET_PATH\n", d);
      return 2;
    }
    o.backends.push_back({d.substr(0, eq), d.substr(eq + 1)});
  }
  return ng::frontend::run_frontend(o);
}

}  // namespace

void ng::cli::add_front_command(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<ng::frontend::FrontendOptions>();
  auto mac = std::make_shared<std::string>();
  auto addrs = std::make_shared<std::vector<std::string>>();
  auto drivers = std::make_shared<std::vector<std::string>>();
  auto* cmd = app.add_subcommand("front", "Run one app domain's frontend (started by the manager)");
  cmd->add_option("--name", opt->name, "App domain name")->required();
  cmd->add_option("--netns", opt->netns, "App domain's network namespace (path)");
  cmd->add_option("--tap", opt->tap, "TAP device name")->capture_default_str();
  cmd->add_option("--mac", *mac, "App MAC address")->required();
  cmd->add_option("--mtu", opt->mtu, "MTU")->capture_default_str();
  cmd->add_option("--ipv4,--ipv6", *addrs, "Address with prefix, repeatable");
  cmd->add_option("--driver", *drivers, "NAME=SOCKET of a driver domain, in preference order")
      ->required();
  cmd->add_option("--stats", opt->stats, "Counters file")->required();
  cmd->add_option("--tx-slots", opt->tx_slots)->capture_default_str();
  cmd->add_option("--rx-slots", opt->rx_slots)->capture_default_str();
  cmd->add_option("--slot-size", opt->slot_size)->capture_default_str();
  cmd->add_option("--spin-us", opt->spin_us, "Busy-poll time before sleeping")
      ->capture_default_str();
  cmd->add_option("--hang-timeout-ms", opt->hang_timeout_ms,
                  "Heartbeat silence (after a kick) that counts as a hang")
      ->capture_default_str();
  cmd->add_option("--stall-timeout-ms", opt->stall_timeout_ms,
                  "TX frames untaken this long, heartbeat alive, count as a stall")
      ->capture_default_str();
  cmd->add_option("--handshake-timeout-ms", opt->handshake_timeout_ms,
                  "Each handshake step unanswered this long (by a domain that had the CPU) is a hang")
      ->capture_default_str();
  cmd->add_flag("!--no-fence", opt->fence, "Do not SIGKILL a domain found hung, stalled or corrupt");
  cmd->add_option("--events", opt->events, "Event log to append to (JSON lines)");
  cmd->add_option("--serve-nice", opt->serve.nice,
                  "Nice value to take once serving (the manager starts frontends lower)");
  cmd->add_option("--serve-realtime", opt->serve.realtime,
                  "SCHED_FIFO priority to take once serving; 0: normal scheduling")
      ->check(CLI::Range(0, 99));
  cmd->add_option("--hold-frames", opt->hold_frames,
                  "Frames kept while no driver domain is up")
      ->capture_default_str();
  cmd->add_option("--salvage", opt->salvage,
                  "Datagram socket on which the manager hands over frames a failed driver domain's NIC received");
  cmd->add_option("--rx-probe-target", opt->rx_probe_target,
                  "IPv4 neighbour asked (ARP) through the active domain to check its receive path");
  cmd->add_option("--rx-probe-interval-ms", opt->rx_probe_interval_ms)->capture_default_str();
  cmd->add_option("--path-answer-timeout-ms", opt->path_answer_timeout_ms,
                  "The path check's ARP question through the active, unanswered this long: its path is broken")
      ->capture_default_str();
  cmd->add_option("--rx-probe-timeout-ms", opt->rx_probe_timeout_ms,
                  "Unanswered this long (and at least twice): the receive path is broken, a stall")
      ->capture_default_str();
  cmd->add_option("--settings", opt->settings,
                  "JSON file of the detector timeouts, overriding the four options above; reread on SIGHUP "
                  "(the manager's reload)");
  cmd->callback(
      [=, &exit_code] { exit_code = run(*opt, *mac, *addrs, *drivers); });
}

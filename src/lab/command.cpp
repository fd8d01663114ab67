// `nicguard lab up | down | cleanup`.
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli/commands.hpp"
#include "common/fd.hpp"
#include "common/signal_latch.hpp"
#include "lab/lab.hpp"

namespace ng::lab {
namespace {

struct UpArgs {
  LabOptions options;
  bool json = false;
  bool no_manager = false;
};

void print_summary(const LabInfo& i, bool manager) {
  fmt::print("lab {} is up (policy {}, {} domains, MTU {})\n", i.suffix, i.policy, i.domain, i.mtu);
  fmt::print("  switch    netns {}, bridge {}\n", i.switch_netns, i.bridge);
  fmt::print("  external  netns {}, {} {} {}\n", i.ext.netns, i.ext.link, i.ext.ipv4, i.ext.ipv6);
  if (i.direct) {
    fmt::print("  direct    netns {}, {} {} {}\n", i.direct->netns, i.direct->link,
               i.direct->ipv4, i.direct->ipv6);
  }
  for (const auto& d : i.drivers) {
    fmt::print("  driver {}  NIC {} (switch port {}), driver domain netns {}\n", d.name, d.nic,
               d.switch_port, d.netns);
  }
  for (const auto& a : i.apps) {
    fmt::print("  {:<9} netns {}, {} {} {} {}\n", a.name, a.netns, a.link, a.mac, a.ipv4, a.ipv6);
  }
  fmt::print("  config    {}\n", i.config);
  if (manager) {
    fmt::print("  manager   pid {}, log {}, control socket {}\n", i.manager_pid, i.manager_log,
               i.control_socket);
  } else {
    fmt::print("  manager   not started: run `nicguard manager -c {}`\n", i.config);
  }
  fmt::print("\nOn the external host:  ip netns exec {} ping {}\n", i.ext.netns,
             i.apps.front().ipv4_address());
  fmt::print("In an app domain:      ip netns exec {} <command>\n", i.apps.front().netns);
  fmt::print("Remove the lab:        nicguard lab down --name {}\n", i.suffix);
}

int run_up(UpArgs& args) {
  SignalLatch signals;
  args.options.start_manager = !args.no_manager;
  args.options.interrupted = [&signals] { return signals.fired(); };
  auto lab = Lab::up(args.options);
  if (!lab) {
    fmt::print(stderr, "nicguard lab up: {}\nEverything the lab made was removed.\n",
               lab.error().message);
    return 1;
  }
  lab->detach();
  if (args.json) {
    fmt::print("{}\n", lab->info().to_json().dump(2));
  } else {
    print_summary(lab->info(), !args.no_manager);
  }
  std::fflush(stdout);
  return 0;
}

int run_down(const std::string& name, const std::string& keep_logs) {
  std::string sfx = name;
  if (sfx.empty()) {
    auto labs = running_labs();
    if (labs.empty()) {
      fmt::print(stderr, "nicguard lab down: no lab is running\n");
      return 1;
    }
    if (labs.size() > 1) {
      fmt::print(stderr,
                 "nicguard lab down: several labs are running ({}); choose one with --name\n",
                 fmt::join(labs, ", "));
      return 1;
    }
    sfx = labs.front();
  }
  if (auto st = down(sfx, keep_logs); !st) {
    fmt::print(stderr, "nicguard lab down: {}\n", st.error().message);
    return 1;
  }
  fmt::print("lab {} removed\n", sfx);
  return 0;
}

int run_cleanup(const std::string& name) {
  std::vector<std::string> errors;
  auto removed = cleanup(name, errors);
  for (const auto& r : removed) fmt::print("removed {}\n", r);
  if (removed.empty() && errors.empty()) fmt::print("nothing to clean up\n");
  for (const auto& e : errors) fmt::print(stderr, "nicguard lab cleanup: {}\n", e);
  return errors.empty() ? 0 : 1;
}

void add_up(CLI::App& lab, int& exit_code) {
  auto args = std::make_shared<UpArgs>();
  auto* up = lab.add_subcommand("up", "Build a lab, start the manager on it and wait until "
                                      "the external host reaches every app domain");
  up->add_option("--apps", args->options.apps, "Number of app domains")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  up->add_option("--domain", args->options.domain,
                 "Driver domains: process (AF_PACKET in a sandboxed process) or vm (driver VMs running the NIC's own kernel driver)")
      ->check(CLI::IsMember({"process", "vm"}))
      ->capture_default_str();
  up->add_option("--nic-model", args->options.nic_model,
                 "The NIC the driver VMs' guests drive: e1000e (the config's default), e1000 or virtio-net-pci")
      ->check(CLI::IsMember({"e1000e", "e1000", "virtio-net-pci"}));
  up->add_option("--policy", args->options.policy, "Driver domain policy")
      ->check(CLI::IsMember({"warm-spare", "restart"}))
      ->capture_default_str();
  up->add_option("--mtu", args->options.mtu, "MTU of every lab link and app domain")
      ->check(CLI::Range(68, 9000))
      ->capture_default_str();
  up->add_flag("--direct", args->options.direct,
               "Add a host wired straight to the switch (the kernel's path, for comparison)");
  up->add_option("--name", args->options.name,
                 "Lab suffix (1-11 of [a-z0-9]); random 4 hex digits by default");
  ng::cli::add_realtime_priority_option(*up, args->options.realtime_priority);
  up->add_option("--path-probe-us", args->options.path_probe_us,
                 "Path probes between the driver domains this often; 0: none, to compare (default: the config's)")
      ->check(CLI::Range(0, 100000));
  up->add_flag("--json", args->json, "Print the lab description (lab.json) on stdout");
  up->add_flag("--no-manager", args->no_manager,
               "Build the topology and write the config only; start no manager");
  up->callback([args, &exit_code] { exit_code = run_up(*args); });
}

}  // namespace
}  // namespace ng::lab

void ng::cli::add_realtime_priority_option(CLI::App& cmd, int& priority) {
  cmd.add_option("--realtime-priority", priority,
                 "SCHED_FIFO priority of the lab's driver domains (frontends one above); 0: normal "
                 "scheduling, to compare (default: the config's, see docs/config.md)")
      ->check(CLI::Range(0, 98));
}

void ng::cli::add_lab_command(CLI::App& app, int& exit_code) {
  auto* lab = app.add_subcommand(
      "lab", "Test lab in network namespaces: switch, external host, NICs and app domains");
  lab->require_subcommand(1);
  ng::lab::add_up(*lab, exit_code);

  auto down_name = std::make_shared<std::string>();
  auto keep_logs = std::make_shared<std::string>();
  auto* down = lab->add_subcommand("down", "Stop a lab's manager and remove everything it made");
  down->add_option("--name", *down_name, "Lab suffix (default: the only running lab)");
  down->add_option("--keep-logs", *keep_logs,
                   "Copy the lab's logs into this directory once its processes have ended");
  down->callback([down_name, keep_logs, &exit_code] { exit_code = ng::lab::run_down(*down_name, *keep_logs); });

  auto clean_name = std::make_shared<std::string>();
  auto* clean = lab->add_subcommand(
      "cleanup", "Remove every lab, killed runs included: processes, ng-* namespaces, links, files");
  clean->add_option("--name", *clean_name, "Only this lab");
  clean->callback([clean_name, &exit_code] { exit_code = ng::lab::run_cleanup(*clean_name); });
}

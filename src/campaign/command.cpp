// `nicguard campaign`: many injections, each classified, and the report.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "campaign/campaign.hpp"
#include "campaign/switch_fault.hpp"
#include "campaign/print.hpp"
#include "campaign/resources.hpp"
#include "cli/commands.hpp"
#include "common/signal_latch.hpp"
#include "inject/inject.hpp"

namespace ng::campaign {

namespace {

std::string ms_or_dash(const nlohmann::json& stats, const char* key) {
  if (!stats.is_object() || !stats.contains(key) || !stats[key].is_number()) return "-";
  return fmt::format("{:.2f}", stats[key].get<double>());
}

std::string share(const nlohmann::json& g) {
  const auto& s = g["recovered_within_10ms_share"];
  if (!s.is_number()) return "-";
  return fmt::format("{:.0f}%", s.get<double>() * 100);
}

// The figures beyond app1's: every app's worst, HTTP, false alarms.
std::string progress_extras(const RunRecord& r) {
  std::string out;
  if (r.worst_app != "app1" && !r.worst_app.empty()) {
    out += fmt::format(", every app {:.2f} ms ({})", r.interruption_all_apps_ms, r.worst_app);
  }
  if (r.http) {
    out += fmt::format(", HTTP {} failed, max {:.2f} ms (baseline {:.2f})", r.http->failed, r.http->latency_ms_max,
                       r.http->baseline_latency_ms_max);
  }
  return out;
}

void print_lab_resources(const nlohmann::json& lab) {
  const auto flat = lab.value("flat", nlohmann::json());
  fmt::print("  lab under {}: {} of {} runs sampled, {}\n", lab.value("policy", ""), lab.value("sampled", 0),
             lab.value("runs", 0),
             flat.is_boolean() ? (flat.get<bool>() ? "flat" : "NOT flat") : "not comparable (a process was replaced)");
  if (!lab.contains("first_run")) return;
  const int n = lab.value("window_runs", 0);
  fmt::print("    {:<17} {:>10} {:>10} {:>14} {:>14} {:>13}\n", "", "first run", "last run",
             fmt::format("first {} mean", n), fmt::format("last {} mean", n), "change");
  const auto changes = lab.value("change_percent", nlohmann::json::object());
  for (const char* f : {"manager_fds", "manager_rss_kib", "frontend_fds", "frontend_rss_kib"}) {
    fmt::print("    {:<17} {:>10} {:>10} {:>14} {:>14} {:>13}\n", f, figure_text(lab["first_run"], f),
               figure_text(lab["last_run"], f), figure_text(lab["first_mean"], f), figure_text(lab["last_mean"], f),
               change_text(changes, f));
  }
  for (const auto& c : lab.value("pid_changes", nlohmann::json::array())) {
    fmt::print("    {}\n", c.get<std::string>());
  }
}

// The soak's figures: the lab's processes over the runs, and what outlived the labs.
void print_resources(const nlohmann::json& summary) {
  const auto res = summary.value("resources", nlohmann::json::object());
  fmt::print("\nThe lab's processes after each run's recovery (open fds, RSS KiB; flat: within {}%):\n",
             res.value("flat_percent", 0.0));
  for (const auto& lab : res.value("labs", nlohmann::json::array())) print_lab_resources(lab);
  for (const auto& e : res.value("errors", nlohmann::json::array())) fmt::print("  not sampled: {}\n", e.get<std::string>());
  const auto left = summary.value("leftovers", nlohmann::json());
  if (!left.is_array()) return;
  fmt::print("Leftovers after teardown: {}\n", left.empty() ? "none" : fmt::format("{}", left.size()));
  for (const auto& l : left) fmt::print("  {}\n", l.get<std::string>());
}

void print_http(const nlohmann::json& summary) {
  auto http = summary.value("http", nlohmann::json());
  if (!http.is_object()) return;
  fmt::print("\nHTTP: {} of {} requests failed; latency max {} ms across the runs' windows, {} ms with no fault "
             "(baseline windows)\n",
             http.value("failed_requests", 0), http.value("requests", 0), ms_or_dash(http["latency_ms"], "max"),
             ms_or_dash(http["no_fault"], "latency_ms_max"));
}

}  // namespace

void print_progress(const RunRecord& r) {
  std::string what = r.detector.empty() ? "no detector" : "detector " + r.detector;
  std::string detection = r.detection_ms < 0 ? "" : fmt::format(" in {:.2f} ms", r.detection_ms);
  std::string lost = r.lost == 0 ? "" : fmt::format(", {} lost", r.lost);
  fmt::print("  run {:>4} {:<10} {:<9} {:<8} {:<14} {}{}, interruption {:.2f} ms{}{}{}{}\n", r.run,
             r.policy, r.kind, r.domain, outcome_name(r.outcome), what, detection, r.interruption_ms, lost,
             r.tcp_survived ? "" : ", TCP connection lost", progress_extras(r),
             r.detail.empty() ? "" : " (" + r.detail + ")");
  for (const auto& d : r.false_detections) fmt::print("         false alarm: {}\n", d);
  if (!r.drops.empty()) fmt::print("         dropped by nicguard: {}\n", r.drops);
  if (r.resources) {
    fmt::print("         manager {} fds {} KiB, frontends {} fds {} KiB\n", r.resources->manager_fds,
               r.resources->manager_rss_kib, r.resources->frontend_fds, r.resources->frontend_rss_kib);
  }
  std::fflush(stdout);
}

void print_summary(const nlohmann::json& summary) {
  fmt::print("\n{:<10} {:<9} {:>4} {:>5} {:>5} {:>5} {:>6} {:>6} {:>5} {:>5} {:>22} {:>22} {:>12} {:>13} {:>6}\n",
             "policy", "kind", "runs", "manif", "detec", "recov", "<=10ms", "silent", "notrc", "false",
             "interruption ms", "every app ms", "detection ms", "silence p99", "TCP");
  fmt::print("{:<10} {:<9} {:>4} {:>5} {:>5} {:>5} {:>6} {:>6} {:>5} {:>5} {:>22} {:>22} {:>12} {:>13} {:>6}\n", "",
             "", "", "", "", "", "", "", "", "alarm", "p50/p99/max", "p50/p99/max", "p50/p99", "window/base",
             "lost");
  for (const auto& g : summary.value("groups", nlohmann::json::array())) {
    const auto& in = g["interruption_ms"];
    const auto& all = g["interruption_all_apps_ms"];
    const auto& det = g["detection_ms"];
    const auto& window = g["window_silence_ms"];
    const auto& base = g["baseline_ms"];
    fmt::print("{:<10} {:<9} {:>4} {:>5} {:>5} {:>5} {:>6} {:>6} {:>5} {:>5} {:>22} {:>22} {:>12} {:>13} {:>6}\n",
               g.value("policy", ""), g.value("kind", ""), g.value("runs", 0), g.value("manifested", 0),
               g.value("detected", 0), g.value("recovered", 0), share(g), g.value("silent_failures", 0),
               g.value("not_recovered", 0), g.value("false_detections", 0),
               fmt::format("{}/{}/{}", ms_or_dash(in, "p50"), ms_or_dash(in, "p99"), ms_or_dash(in, "max")),
               fmt::format("{}/{}/{}", ms_or_dash(all, "p50"), ms_or_dash(all, "p99"), ms_or_dash(all, "max")),
               fmt::format("{}/{}", ms_or_dash(det, "p50"), ms_or_dash(det, "p99")),
               fmt::format("{}/{}", ms_or_dash(window, "p99"), ms_or_dash(base, "p99")),
               g.value("tcp_connections_lost", 0));
  }
  print_http(summary);
  print_resources(summary);
}

}  // namespace ng::campaign

namespace {

struct CampaignArgs {
  ng::campaign::CampaignOptions options;
  std::string out;
  bool json = false;
};

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

// What the report names as its origin: every option, defaults included, so
// that the line repeats the campaign.
std::string command_line(const CampaignArgs& a) {
  const auto& o = a.options;
  std::string line = fmt::format(
      "nicguard campaign --domain {} --policy {} --kind {} --runs {} --seed {} --pps {} --tcp-rate {} --apps {}",
      o.domain, join(o.policies), join(o.kinds), o.runs, o.seed, o.pps, o.tcp_mbytes_per_s, o.apps);
  // Options whose default cannot be written out: present only when given.
  if (!o.nic_model.empty()) line += " --nic-model " + o.nic_model;
  if (o.window_ms != 0) line += fmt::format(" --window-ms {}", o.window_ms);
  if (!o.load.empty()) line += " --load " + join(o.load);
  if (o.http) line += " --http";
  if (o.realtime_priority >= 0) line += fmt::format(" --realtime-priority {}", o.realtime_priority);
  return line + " --out " + a.out;
}

int run(CampaignArgs& a, const std::string& command) {
  ng::SignalLatch signals;
  a.options.command = command;
  a.options.keep_events_in = a.out;
  a.options.interrupted = [&signals] { return signals.fired(); };
  if (!a.json) a.options.progress = ng::campaign::print_progress;
  auto result = ng::campaign::run_campaign(a.options);
  if (!result) {
    fmt::print(stderr, "nicguard campaign: {}\n", result.error().message);
    return 1;
  }
  auto summary = ng::campaign::summary_json(result->runs, result->info);
  if (auto s = ng::campaign::write_report(a.out, result->runs, result->timelines, result->info); !s) {
    fmt::print(stderr, "nicguard campaign: writing the report: {}\n", s.error().message);
    return 1;
  }
  if (a.json) {
    fmt::print("{}\n", summary.dump(2));
  } else {
    ng::campaign::print_summary(summary);
    fmt::print("\n{} runs; report: {}/report.html, {}/summary.json, {}/runs.csv\n", result->runs.size(), a.out,
               a.out, a.out);
  }
  for (const auto& u : result->info.unprovoked) fmt::print(stderr, "failure nobody injected, run taken again: {}\n", u);
  for (const auto& u : result->info.not_injected) fmt::print(stderr, "injection refused, run taken again: {}\n", u);
  if (result->interrupted) {
    fmt::print(stderr, "nicguard campaign: interrupted; the report holds the runs finished so far\n");
    return 130;
  }
  return 0;
}

}  // namespace

void ng::cli::add_campaign_command(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<CampaignArgs>();
  auto* cmd = app.add_subcommand(
      "campaign",
      "Fault-injection campaign: inject faults into the driver domain that carries live traffic, "
      "run after run, classify each outcome (no effect, recovered, not recovered, silent failure, "
      "false alarm) "
      "and write runs.csv, summary.json and report.html");
  cmd->add_option("--policy", a->options.policies, "warm-spare, restart, or both (comma-separated)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--kind", a->options.kinds,
                  fmt::format("Fault kinds, comma-separated: {} (inject nothing: every detection is a false "
                              "alarm), {}; of the lab's switch: {}",
                              ng::campaign::kNoInjection, ng::inject::fault_list(),
                              ng::campaign::switch_fault_list()))
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--runs", a->options.runs, "Runs per policy and kind")->capture_default_str();
  cmd->add_option("--seed", a->options.seed,
                  "Base seed: regflip's choices in every run derive from it, so a campaign repeats")
      ->capture_default_str();
  cmd->add_option("--out", a->out, "Directory for runs.csv, summary.json and report.html")->required();
  cmd->add_option("--pps", a->options.pps, "UDP probe packets per second")->capture_default_str();
  cmd->add_option("--tcp-rate", a->options.tcp_mbytes_per_s,
                  "MB/s of the TCP stream beside the probe (0: none)")
      ->capture_default_str();
  cmd->add_option("--window-ms", a->options.window_ms,
                  "How long after each injection its effects are looked for (default: 400 ms for process "
                  "domains; for driver VMs 1000 ms under warm-spare, 20000 ms under restart, which reboots the VM)");
  cmd->add_option("--domain", a->options.domain,
                  "Driver domains of the labs: process (AF_PACKET in a sandboxed process) or vm (driver VMs "
                  "running the NIC's own kernel driver)")
      ->capture_default_str();
  cmd->add_option("--nic-model", a->options.nic_model,
                  "With --domain vm: the NIC the guests drive, e1000e (the default), e1000 or virtio-net-pci")
      ->check(CLI::IsMember({"e1000e", "e1000", "virtio-net-pci"}));
  cmd->add_option("--apps", a->options.apps,
                  "App domains in each lab, 1 to 64; the probe and TCP streams run on app1, a low-rate UDP "
                  "stream on every other, and every app's interruption is reported")
      ->capture_default_str();
  cmd->add_option("--load", a->options.load,
                  "Background load during every run, comma-separated: cpu (a busy loop per core), tcp "
                  "(iperf3 at full speed both ways, between the external host and the last app)")
      ->delimiter(',');
  cmd->add_flag("--http", a->options.http,
                "nginx in app1 and HTTP clients in the external host: failed requests and latency per run");
  add_realtime_priority_option(*cmd, a->options.realtime_priority);
  cmd->add_flag("--json", a->json, "Print summary.json instead of the progress and the table");
  cmd->callback([a, &exit_code] {
    auto checked = ng::campaign::check_options(a->options).and_then(
        [&] { return ng::campaign::check_tools(a->options); });
    if (auto s = checked; !s) {
      fmt::print(stderr, "nicguard campaign: {}\n", s.error().message);
      exit_code = 2;
      return;
    }
    exit_code = run(*a, command_line(*a));
  });
}

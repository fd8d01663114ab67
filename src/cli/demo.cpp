// `nicguard demo`: the whole story in one command. A short fault-injection
// campaign: a lab with live traffic, driver failures injected under it, and
// for each which detector found it, how fast, and what the app's clients
// saw; once with a warm spare and once with the restart policy.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>

#include "campaign/campaign.hpp"
#include "campaign/print.hpp"
#include "cli/commands.hpp"
#include "common/signal_latch.hpp"
#include "inject/inject.hpp"
#include "probe/probe.hpp"

namespace {

using nlohmann::json;

struct DemoOptions {
  ng::campaign::CampaignOptions campaign;
  std::string out = "nicguard-demo";
  bool json = false;
};

std::string figures(const json& stats) {
  if (!stats.is_object()) return "-";
  return fmt::format("{:.2f}/{:.2f}", stats.value("p50", 0.0), stats.value("max", 0.0));
}

// One row per policy and fault, in the words of the README's table.
json demo_rows(const std::vector<ng::campaign::RunRecord>& runs, const json& summary) {
  json rows = json::array();
  for (const auto& g : summary.value("groups", json::array())) {
    std::string policy = g.value("policy", ""), kind = g.value("kind", "");
    std::vector<double> detection;
    int survived = 0, total = 0;
    for (const auto& r : runs) {
      if (r.policy != policy || r.kind != kind) continue;
      ++total;
      survived += r.tcp_survived;
      if (r.detection_ms >= 0) detection.push_back(r.detection_ms);
    }
    std::string detectors;
    const json counts = g.value("detectors", json::object());
    for (const auto& [name, n] : counts.items()) {
      detectors += fmt::format("{}{}x{}", detectors.empty() ? "" : ",", n.get<int>(), name);
    }
    double dmax = detection.empty() ? 0 : *std::max_element(detection.begin(), detection.end());
    json det = detection.empty() ? json(nullptr)
                                 : json{{"p50", ng::probe::percentile(detection, 50)}, {"max", dmax}};
    rows.push_back({{"policy", policy},
                    {"fault", kind},
                    {"runs", total},
                    {"detector", detectors.empty() ? "none" : detectors},
                    {"detection_ms", det},
                    {"interruption_ms", g["interruption_ms"]},
                    {"baseline_ms", g["baseline_ms"]},
                    {"packets_lost", g.value("packets_lost", 0)},
                    {"tcp_survived", fmt::format("{}/{}", survived, total)},
                    {"recovered_within_10ms", g["recovered_within_10ms"]}});
  }
  return rows;
}

void print_rows(const json& rows) {
  fmt::print("\n{:<10} {:<6} {:>4} {:<12} {:>14} {:>16} {:>14} {:>6} {:>5}\n", "policy", "fault", "runs",
             "detector", "detection ms", "interruption ms", "baseline ms", "lost", "TCP");
  fmt::print("{:<10} {:<6} {:>4} {:<12} {:>14} {:>16} {:>14} {:>6} {:>5}\n", "", "", "", "", "p50/max",
             "p50/max", "p50/max", "pkts", "alive");
  for (const auto& r : rows) {
    fmt::print("{:<10} {:<6} {:>4} {:<12} {:>14} {:>16} {:>14} {:>6} {:>5}\n", r.value("policy", ""),
               r.value("fault", ""), r.value("runs", 0), r.value("detector", ""), figures(r["detection_ms"]),
               figures(r["interruption_ms"]), figures(r["baseline_ms"]), r.value("packets_lost", 0),
               r.value("tcp_survived", ""));
  }
}

int run_demo(DemoOptions& o) {
  ng::SignalLatch signals;
  auto& c = o.campaign;
  c.interrupted = [&signals] { return signals.fired(); };
  c.progress = ng::campaign::print_progress;
  c.command = fmt::format("nicguard demo --domain {} --runs {}", c.domain, c.runs);
  c.keep_events_in = o.out;
  fmt::print("nicguard demo: {} injections per policy and fault, {} UDP packets/s from the external host "
             "to the app and back, a TCP stream beside it\n",
             c.runs, c.pps);
  auto result = ng::campaign::run_campaign(c);
  if (!result) {
    fmt::print(stderr, "demo: {}\n", result.error().message);
    return 1;
  }
  auto summary = ng::campaign::summary_json(result->runs, result->info);
  json rows = demo_rows(result->runs, summary);
  print_rows(rows);
  fmt::print(
      "\ninterruption: the echoed stream's longest silence in the window after each injection ({}; the "
      "failed domain's restart included);\nbaseline: its longest silence in a window as long (up to {} ms) "
      "without a failure, just before each injection\n",
      result->info.window_detail, ng::campaign::kMaxBaselineMs);
  auto written = ng::campaign::write_report(o.out, result->runs, result->timelines, result->info);
  if (!written) {
    fmt::print(stderr, "demo: writing the report: {}\n", written.error().message);
    return 1;
  }
  for (const auto& u : result->info.unprovoked) fmt::print("failure nobody injected, run taken again: {}\n", u);
  fmt::print("report: {}/report.html\n", o.out);
  if (o.json) fmt::print("{}\n", json{{"table", rows}, {"summary", summary}}.dump(2));
  return result->interrupted ? 130 : 0;
}

}  // namespace

void ng::cli::add_demo_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<DemoOptions>();
  o->campaign.policies = {"warm-spare", "restart"};
  o->campaign.kinds = {"crash", "hang"};
  o->campaign.runs = 3;
  auto* cmd = app.add_subcommand(
      "demo", "Build a lab, run live traffic, inject driver failures, and show the detection "
              "time and the interruption the app's clients saw, under the warm-spare and the "
              "restart policy; writes an HTML report");
  cmd->add_flag("--json", o->json, "Also print the table and the campaign's summary as JSON");
  cmd->add_option("--runs", o->campaign.runs, "Failures per policy and fault")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--faults", o->campaign.kinds, "Faults to inject (see `nicguard inject --help`)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--policies", o->campaign.policies, "warm-spare, restart or both")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--out", o->out, "Directory for report.html, summary.json and runs.csv")
      ->capture_default_str();
  cmd->add_option("--domain", o->campaign.domain,
                  "Driver domains: process, or vm (driver VMs running the NIC's own kernel driver; each "
                  "restart reboots a VM, seconds under TCG)")
      ->capture_default_str();
  add_realtime_priority_option(*cmd, o->campaign.realtime_priority);
  cmd->callback([o, &exit_code] {
    if (auto s = ng::campaign::check_options(o->campaign); !s) {
      fmt::print(stderr, "demo: {}\n", s.error().message);
      exit_code = 2;
      return;
    }
    exit_code = run_demo(*o);
  });
}

// `nicguard campaign`: many injections, each classified, and the report.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "campaign/campaign.hpp"
#include "campaign/print.hpp"
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

}  // namespace

void print_progress(const RunRecord& r) {
  std::string what = r.detector.empty() ? "no detector" : "detector " + r.detector;
  std::string detection = r.detection_ms < 0 ? "" : fmt::format(" in {:.2f} ms", r.detection_ms);
  std::string lost = r.lost == 0 ? "" : fmt::format(", {} lost", r.lost);
  fmt::print("  run {:>4} {:<10} {:<9} {:<8} {:<14} {}{}, interruption {:.2f} ms{}{}{}\n", r.run,
             r.policy, r.kind, r.domain, outcome_name(r.outcome), what, detection, r.interruption_ms, lost,
             r.tcp_survived ? "" : ", TCP connection lost",
             r.detail.empty() ? "" : " (" + r.detail + ")");
  std::fflush(stdout);
}

void print_summary(const nlohmann::json& summary) {
  fmt::print("\n{:<10} {:<9} {:>4} {:>5} {:>5} {:>5} {:>6} {:>6} {:>5} {:>22} {:>12} {:>6}\n", "policy",
             "kind", "runs", "manif", "detec", "recov", "<=10ms", "silent", "notrc",
             "interruption ms", "detection ms", "TCP");
  fmt::print("{:<10} {:<9} {:>4} {:>5} {:>5} {:>5} {:>6} {:>6} {:>5} {:>22} {:>12} {:>6}\n", "", "",
             "", "", "", "", "", "", "", "p50/p99/max", "p50/p99", "lost");
  for (const auto& g : summary.value("groups", nlohmann::json::array())) {
    const auto& in = g["interruption_ms"];
    const auto& det = g["detection_ms"];
    fmt::print("{:<10} {:<9} {:>4} {:>5} {:>5} {:>5} {:>6} {:>6} {:>5} {:>22} {:>12} {:>6}\n",
               g.value("policy", ""), g.value("kind", ""), g.value("runs", 0), g.value("manifested", 0),
               g.value("detected", 0), g.value("recovered", 0), share(g), g.value("silent_failures", 0),
               g.value("not_recovered", 0),
               fmt::format("{}/{}/{}", ms_or_dash(in, "p50"), ms_or_dash(in, "p99"), ms_or_dash(in, "max")),
               fmt::format("{}/{}", ms_or_dash(det, "p50"), ms_or_dash(det, "p99")),
               g.value("tcp_connections_lost", 0));
  }
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
  return fmt::format("nicguard campaign --policy {} --kind {} --runs {} --seed {} --pps {} --tcp-rate {} "
                     "--window-ms {} --out {}",
                     join(o.policies), join(o.kinds), o.runs, o.seed, o.pps, o.tcp_mbytes_per_s, o.window_ms,
                     a.out);
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
      "run after run, classify each outcome (no effect, recovered, not recovered, silent failure) "
      "and write runs.csv, summary.json and report.html");
  cmd->add_option("--policy", a->options.policies, "warm-spare, restart, or both (comma-separated)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--kind", a->options.kinds,
                  "Fault kinds, comma-separated: " + ng::inject::fault_list())
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
                  "How long after each injection its effects are looked for")
      ->capture_default_str();
  add_realtime_priority_option(*cmd, a->options.realtime_priority);
  cmd->add_flag("--json", a->json, "Print summary.json instead of the progress and the table");
  cmd->callback([a, &exit_code] {
    if (auto s = ng::campaign::check_options(a->options); !s) {
      fmt::print(stderr, "nicguard campaign: {}\n", s.error().message);
      exit_code = 2;
      return;
    }
    exit_code = run(*a, command_line(*a));
  });
}

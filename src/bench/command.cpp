// `nicguard bench [--json] [--duration S] [--keep]`.
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "bench/bench.hpp"
#include "cli/commands.hpp"
#include "common/fd.hpp"
#include "common/signal_latch.hpp"

namespace ng::bench {
namespace {

struct Args {
  bool json = false;
  int duration_s = 5;
  bool keep = false;
  bool quiet = false;
  int realtime_priority = -1;
  int path_probe_us = -1;
};

int run_bench(const Args& args) {
  SignalLatch signals;
  BenchOptions o;
  o.duration_s = args.duration_s;
  o.keep = args.keep;
  o.realtime_priority = args.realtime_priority;
  o.path_probe_us = args.path_probe_us;
  o.interrupted = [&signals] { return signals.fired(); };
  if (!args.quiet) {
    o.progress = [](const std::string& line) {
      fmt::print(stderr, "bench: {}\n", line);
      std::fflush(stderr);
    };
  }
  Result<BenchResult> result = fail("not run");
  try {
    result = run(o);  // unwinding removes the lab, also on an unexpected exception
  } catch (const std::exception& e) {
    result = fail("unexpected error: {}", e.what());
  }
  if (!result) {
    fmt::print(stderr, "nicguard bench: {}\n", result.error().message);
    return signals.fired() ? 130 : 1;
  }
  if (args.json) {
    fmt::print("{}\n", to_json(*result).dump());
  } else {
    fmt::print("{}", format_table(*result));
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace
}  // namespace ng::bench

void ng::cli::add_bench_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<ng::bench::Args>();
  auto* sub = app.add_subcommand(
      "bench",
      "Measure nicguard against the kernel's own path: builds a lab with a direct host and one "
      "app domain (warm spare), runs iperf3 and sockperf on both paths interleaved, prints "
      "both figures and their ratio, and removes the lab.");
  sub->add_flag("--json", args->json, "Print one JSON object instead of the table");
  sub->add_option("--duration", args->duration_s, "Seconds per test and path (default 5)")
      ->check(CLI::Range(1, 3600));
  sub->add_flag("--keep", args->keep,
                "Leave the lab running afterwards, also after a failure, for inspection (remove "
                "it with `nicguard lab down`); a signal still removes it");
  sub->add_flag("-q,--quiet", args->quiet, "No progress lines on stderr");
  ng::cli::add_realtime_priority_option(*sub, args->realtime_priority);
  sub->add_option("--path-probe-us", args->path_probe_us,
                  "Path probes between the driver domains this often; 0: none, to compare (default: the config's)")
      ->check(CLI::Range(0, 100000));
  sub->callback([args, &exit_code] { exit_code = ng::bench::run_bench(*args); });
}

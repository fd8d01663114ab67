#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands.hpp"
#include "netlink/netlink.hpp"
#include "probe/probe.hpp"

namespace {

struct ProbeArgs {
  std::string netns;
  ng::probe::StreamOptions stream;
  bool json = false;
  bool realtime = false;
};

// Realtime priority is a measuring aid: without it the probe still works.
void maybe_realtime(const ProbeArgs& a) {
  if (!a.realtime) return;
  if (auto s = ng::probe::use_realtime_priority(); !s) {
    fmt::print(stderr, "warning: {}; measuring at normal priority\n", s.error().message);
  }
}

int run_udp(const ProbeArgs& a) {
  if (!a.netns.empty()) {
    if (auto s = ng::netlink::enter_netns(a.netns); !s) {
      fmt::print(stderr, "error: {}\n", s.error().message);
      return 1;
    }
  }
  maybe_realtime(a);
  auto r = ng::probe::run_stream(a.stream);
  if (!r) {
    fmt::print(stderr, "error: {}\n", r.error().message);
    return 1;
  }
  if (a.json) {
    fmt::print("{}\n", ng::probe::to_json(*r).dump());
    return 0;
  }
  fmt::print(
      "sent {} received {} lost {} duplicated {} reordered {}\n"
      "interruption {:.3f} ms at {:.1f} ms\nrtt p50 {:.1f} us p99 {:.1f} us max {:.1f} us\n",
      r->sent, r->received, r->lost, r->duplicated, r->reordered, r->interruption_ms,
      r->interruption_at_ms, r->rtt_us_p50, r->rtt_us_p99, r->rtt_us_max);
  return 0;
}

int run_echo(const ProbeArgs& a) {
  if (!a.netns.empty()) {
    if (auto s = ng::netlink::enter_netns(a.netns); !s) {
      fmt::print(stderr, "error: {}\n", s.error().message);
      return 1;
    }
  }
  maybe_realtime(a);
  if (auto s = ng::probe::run_echo(a.stream.port, a.stream.duration_s); !s) {
    fmt::print(stderr, "error: {}\n", s.error().message);
    return 1;
  }
  return 0;
}

}  // namespace

void ng::cli::add_probe_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<ProbeArgs>();
  auto* probe = app.add_subcommand("probe", "Measure what network clients see (QoS probe)");
  probe->require_subcommand(1);
  auto* udp = probe->add_subcommand(
      "udp", "Constant-rate UDP stream, echoed back; reports loss and the longest gap");
  udp->add_option("--netns", args->netns, "Run inside this network namespace");
  udp->add_option("--to", args->stream.address, "Echo end's IPv4 or IPv6 address")->required();
  udp->add_option("--port", args->stream.port)->capture_default_str();
  udp->add_option("--pps", args->stream.pps, "Packets per second")->capture_default_str();
  udp->add_option("--duration", args->stream.duration_s, "Seconds")->capture_default_str();
  udp->add_flag("--json", args->json, "Print one JSON object");
  udp->add_flag("--realtime", args->realtime,
                "Run at SCHED_FIFO 1 so scheduling noise stays out of the figures");
  udp->callback([args, &exit_code] { exit_code = run_udp(*args); });
  auto* echo = probe->add_subcommand("echo", "Echo the UDP stream back to its sender");
  echo->add_option("--netns", args->netns, "Run inside this network namespace");
  echo->add_option("--port", args->stream.port)->capture_default_str();
  echo->add_option("--duration", args->stream.duration_s, "Seconds")->capture_default_str();
  echo->add_flag("--realtime", args->realtime,
                 "Run at SCHED_FIFO 1 so scheduling noise stays out of the figures");
  echo->callback([args, &exit_code] { exit_code = run_echo(*args); });
}

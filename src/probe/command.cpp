#include <chrono>
#include <memory>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands.hpp"
#include "common/signal_latch.hpp"
#include "netlink/netlink.hpp"
#include "probe/csv.hpp"
#include "probe/http.hpp"
#include "probe/probe.hpp"
#include "probe/tcp.hpp"

namespace {

struct ProbeArgs {
  std::string netns;
  ng::probe::StreamOptions stream;
  bool json = false;
  bool realtime = false;
  std::string csv;
};

struct TcpArgs {
  std::string netns;
  ng::probe::SinkOptions sink;
  ng::probe::TcpSendOptions send;
  bool json = false;
  std::string csv;
};

struct HttpArgs {
  std::string netns;
  std::string listen;
  uint16_t port = 8080;
  std::string dir;
  double duration_s = 10;
  ng::probe::HttpClientOptions client;
  bool json = false;
  std::string csv;
};

int report_error(const ng::Error& e) {
  fmt::print(stderr, "error: {}\n", e.message);
  return 1;
}

bool enter(const std::string& netns) {
  if (netns.empty()) return true;
  auto s = ng::netlink::enter_netns(netns);
  if (!s) report_error(s.error());
  return s.has_value();
}

// The report is already measured when the CSV cannot be written: say so,
// print the report anyway, and fail the command.
bool write_csv(const std::string& path, const std::string& text) {
  if (path.empty()) return true;
  auto s = ng::probe::write_text_file(path, text);
  if (!s) report_error(s.error());
  return s.has_value();
}

// Realtime priority is a measuring aid: without it the probe still works.
void maybe_realtime(const ProbeArgs& a) {
  if (!a.realtime) return;
  if (auto s = ng::probe::use_realtime_priority(); !s) {
    fmt::print(stderr, "warning: {}; measuring at normal priority\n", s.error().message);
  }
}

// ------------------------------------------------------------------ udp

int run_udp(const ProbeArgs& a) {
  if (!enter(a.netns)) return 1;
  maybe_realtime(a);
  std::vector<ng::probe::Arrival> series;
  auto r = ng::probe::run_stream(a.stream, a.csv.empty() ? nullptr : &series);
  if (!r) return report_error(r.error());
  bool csv_ok = write_csv(a.csv, ng::probe::arrivals_csv(series, r->start_mono_ns));
  if (a.json) {
    fmt::print("{}\n", ng::probe::to_json(*r).dump());
    return csv_ok ? 0 : 1;
  }
  fmt::print(
      "sent {} received {} lost {} duplicated {} reordered {}\n"
      "interruption {:.3f} ms at {:.1f} ms\nrtt p50 {:.1f} us p99 {:.1f} us max {:.1f} us\n",
      r->sent, r->received, r->lost, r->duplicated, r->reordered, r->interruption_ms,
      r->interruption_at_ms, r->rtt_us_p50, r->rtt_us_p99, r->rtt_us_max);
  return csv_ok ? 0 : 1;
}

int run_echo(const ProbeArgs& a) {
  if (!enter(a.netns)) return 1;
  maybe_realtime(a);
  if (auto s = ng::probe::run_echo(a.stream.port, a.stream.duration_s); !s) {
    return report_error(s.error());
  }
  return 0;
}

// ------------------------------------------------------------------ tcp

int run_tcp_sink(const TcpArgs& a) {
  if (!enter(a.netns)) return 1;
  ng::SignalLatch signals;  // SIGINT/SIGTERM end the run early, with a report
  auto r = ng::probe::run_tcp_sink(a.sink, [&signals] { return signals.fired(); });
  if (!r) return report_error(r.error());
  bool csv_ok = write_csv(a.csv, ng::probe::intervals_csv(r->intervals, r->interval_ns));
  if (a.json) {
    fmt::print("{}\n", ng::probe::to_json(*r).dump());
  } else {
    fmt::print(
        "connections {} errors {} closed early {}\nreceived {} bytes, longest stall {:.1f} ms\n",
        r->connections, r->errors, r->closed_early, r->bytes, r->longest_stall_ms);
    for (const auto& c : r->per_connection) {
      fmt::print("  {}: {} bytes over {:.0f} ms, ended: {}{}{}\n", c.peer, c.bytes, c.duration_ms,
                 c.ended, c.error.empty() ? "" : " ", c.error);
    }
  }
  return csv_ok ? 0 : 1;
}

int run_tcp_send(const TcpArgs& a) {
  if (!enter(a.netns)) return 1;
  ng::SignalLatch signals;
  auto r = ng::probe::run_tcp_send(a.send, [&signals] { return signals.fired(); });
  if (!r) return report_error(r.error());
  bool csv_ok = write_csv(a.csv, ng::probe::intervals_csv(r->intervals, r->interval_ns));
  if (a.json) {
    fmt::print("{}\n", ng::probe::to_json(*r).dump());
  } else {
    fmt::print(
        "sent {} bytes in {:.0f} ms ({:.1f} Mbit/s), connection {}\nlongest block {:.1f} ms "
        "at {:.1f} ms\n",
        r->bytes_sent, r->duration_ms, r->mbit_s, r->survived ? "survived" : "FAILED",
        r->longest_block_ms, r->longest_block_at_ms);
    for (const auto& e : r->errors) fmt::print("  at {:.1f} ms: {}\n", e.at_ms, e.error);
  }
  return csv_ok ? 0 : 1;
}

// ------------------------------------------------------------------ http

int run_http_serve(const HttpArgs& a) {
  ng::SignalLatch signals;  // so that Ctrl-C or SIGTERM still stops nginx
  auto nginx = ng::probe::start_nginx(a.netns, a.listen, a.port, a.dir);
  if (!nginx) return report_error(nginx.error());
  fmt::print(stderr, "nginx (pid {}) serves {}{} for {} s\n", nginx->pid(), nginx->url(),
             a.netns.empty() ? "" : " in netns " + a.netns, a.duration_s);
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(a.duration_s);
  while (std::chrono::steady_clock::now() < end && !signals.fired()) {
    if (!nginx->running()) {
      return report_error(
          ng::Error{fmt::format("nginx exited early; it logged:\n{}", nginx->log_tail())});
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  nginx->stop();
  return 0;
}

int run_http_client(const HttpArgs& a) {
  if (!enter(a.netns)) return 1;
  ng::SignalLatch signals;
  std::vector<ng::probe::RequestRecord> records;
  auto r = ng::probe::run_http_client(a.client, &records, [&signals] { return signals.fired(); });
  if (!r) return report_error(r.error());
  bool csv_ok = write_csv(a.csv, ng::probe::requests_csv(records));
  if (a.json) {
    fmt::print("{}\n", ng::probe::to_json(*r).dump());
  } else {
    fmt::print(
        "requests {} ok {} failed {}\nlatency p50 {:.2f} ms p90 {:.2f} ms p99 {:.2f} ms max "
        "{:.2f} ms\nlongest without success {:.1f} ms at {:.1f} ms\n",
        r->requests, r->ok, r->failed, r->latency_ms_p50, r->latency_ms_p90, r->latency_ms_p99,
        r->latency_ms_max, r->longest_no_success_ms, r->longest_no_success_at_ms);
    for (const auto& e : r->errors) fmt::print("  at {:.1f} ms: {}\n", e.at_ms, e.error);
  }
  return csv_ok ? 0 : 1;
}

// ------------------------------------------------------------------ wiring

void add_udp(CLI::App& probe, std::shared_ptr<ProbeArgs> args, int& exit_code) {
  auto* udp = probe.add_subcommand(
      "udp", "Constant-rate UDP stream, echoed back; reports loss and the longest gap");
  udp->add_option("--netns", args->netns, "Run inside this network namespace");
  udp->add_option("--to", args->stream.address, "Echo end's IPv4 or IPv6 address")->required();
  udp->add_option("--port", args->stream.port)->capture_default_str();
  udp->add_option("--pps", args->stream.pps, "Packets per second")->capture_default_str();
  udp->add_option("--duration", args->stream.duration_s, "Seconds")->capture_default_str();
  udp->add_flag("--json", args->json, "Print one JSON object");
  udp->add_option("--csv", args->csv,
                  "Also write one row per echo received to this file: "
                  "seq,sent_us,recv_us,rtt_us (times from the stream's start)");
  udp->add_flag("--realtime", args->realtime,
                "Run at SCHED_FIFO 1 so scheduling noise stays out of the figures");
  udp->callback([args, &exit_code] { exit_code = run_udp(*args); });
  auto* echo = probe.add_subcommand("echo", "Echo the UDP stream back to its sender");
  echo->add_option("--netns", args->netns, "Run inside this network namespace");
  echo->add_option("--port", args->stream.port)->capture_default_str();
  echo->add_option("--duration", args->stream.duration_s, "Seconds")->capture_default_str();
  echo->add_flag("--realtime", args->realtime,
                 "Run at SCHED_FIFO 1 so scheduling noise stays out of the figures");
  echo->callback([args, &exit_code] { exit_code = run_echo(*args); });
}

constexpr const char* kSentCsvHelp =
    "Also write the bytes sent per 10 ms (from the stream's start) to this file: "
    "interval_start_ms,bytes,mbit_s";

void add_tcp(CLI::App& probe, std::shared_ptr<TcpArgs> args, int& exit_code) {
  auto* sink = probe.add_subcommand(
      "tcp-sink",
      "Accept TCP connections and discard their data; reports per connection how it ended, "
      "its bytes and its longest stall");
  sink->add_option("--netns", args->netns, "Run inside this network namespace");
  sink->add_option("--port", args->sink.port, "TCP port to listen on (IPv4 and IPv6)")
      ->capture_default_str();
  sink->add_option("--duration", args->sink.duration_s, "Seconds to run, at most")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 3600.0));
  sink->add_flag("--once", args->sink.once, "Stop as soon as the first connection ends");
  sink->add_option("--min-seconds", args->sink.min_seconds,
                   "A connection the peer closes cleanly sooner than this after it was accepted "
                   "counts as closed early (connections ended by an error always do)")
      ->capture_default_str();
  sink->add_flag("--json", args->json, "Print one JSON object when done");
  sink->add_option("--csv", args->csv,
                   "Also write the bytes received per 10 ms (all connections, from the sink's "
                   "start) to this file: interval_start_ms,bytes,mbit_s");
  sink->callback([args, &exit_code] { exit_code = run_tcp_sink(*args); });

  auto* tcp = probe.add_subcommand(
      "tcp",
      "Send a paced TCP stream to a tcp-sink; reports whether the connection survived "
      "and the longest time a send blocked");
  tcp->add_option("--netns", args->netns, "Run inside this network namespace");
  tcp->add_option("--to", args->send.address, "The sink's IPv4 or IPv6 address")->required();
  tcp->add_option("--port", args->send.port, "The sink's TCP port")->capture_default_str();
  tcp->add_option("--duration", args->send.duration_s, "Seconds to send")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 3600.0));
  tcp->add_option("--rate", args->send.rate_mbyte_s,
                  "MB/s (10^6 bytes) to send, in batches of about 1 ms; 0: as fast as possible")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 100000.0));
  tcp->add_option("--user-timeout", args->send.user_timeout_s,
                  "Seconds data may stay unacknowledged before the connection fails "
                  "(TCP_USER_TIMEOUT); 0: the kernel's default")
      ->capture_default_str();
  tcp->add_flag("--json", args->json, "Print one JSON object when done");
  tcp->add_option("--csv", args->csv, kSentCsvHelp);
  tcp->callback([args, &exit_code] { exit_code = run_tcp_send(*args); });
}

void add_http(CLI::App& probe, std::shared_ptr<HttpArgs> args, int& exit_code) {
  auto* serve = probe.add_subcommand(
      "http-serve", "Run nginx serving a 1 KiB file at /probe for a while (for `probe http`)");
  serve->add_option("--netns", args->netns, "Run nginx inside this network namespace");
  serve->add_option("--listen", args->listen, "IPv4 or IPv6 address to listen on")->required();
  serve->add_option("--port", args->port, "TCP port to listen on")->capture_default_str();
  serve
      ->add_option("--dir", args->dir,
                   "Directory for nginx.conf, the served file, logs and temp files "
                   "(created if missing)")
      ->required();
  serve->add_option("--duration", args->duration_s, "Seconds to serve")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 86400.0));
  serve->callback([args, &exit_code] { exit_code = run_http_serve(*args); });

  auto* http = probe.add_subcommand(
      "http",
      "Request a URL at a fixed rate over one reused connection (libcurl); reports "
      "failures, latency percentiles and the longest time without a success");
  http->add_option("--netns", args->netns, "Run inside this network namespace");
  http->add_option("--url", args->client.url, "e.g. http://10.99.0.11:8080/probe")->required();
  http->add_option("--rate", args->client.rate, "Requests per second")->capture_default_str();
  http->add_option("--duration", args->client.duration_s, "Seconds")->capture_default_str();
  http->add_option("--timeout", args->client.timeout_s,
                   "Seconds one request (connecting included) may take before it counts as failed")
      ->capture_default_str();
  http->add_flag("--json", args->json, "Print one JSON object when done");
  http->add_option("--csv", args->csv,
                   "Also write one row per request to this file: start_ms,ok,status,latency_ms");
  http->callback([args, &exit_code] { exit_code = run_http_client(*args); });
}

}  // namespace

void ng::cli::add_probe_command(CLI::App& app, int& exit_code) {
  auto* probe = app.add_subcommand("probe", "Measure what network clients see (QoS probe)");
  probe->require_subcommand(1);
  add_udp(*probe, std::make_shared<ProbeArgs>(), exit_code);
  add_tcp(*probe, std::make_shared<TcpArgs>(), exit_code);
  add_http(*probe, std::make_shared<HttpArgs>(), exit_code);
}

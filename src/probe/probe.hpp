#pragma once
// QoS probe: a constant-rate UDP stream with sequence numbers and send
// timestamps, echoed back by the far end. What an application would feel
// across a driver failure is the longest gap between consecutive echoes.
#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.hpp"

namespace ng::probe {

// Polled about every 100 ms by the long-running probes: true ends the run
// early (e.g. a SignalLatch fired), and the report covers what ran so far.
using Interrupted = std::function<bool()>;

// A numeric IPv4 or IPv6 address and port, ready for connect().
struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
};
Result<Endpoint> resolve(const std::string& address, uint16_t port);

struct Arrival {
  uint32_t seq;      // as carried on the wire (wraps)
  uint64_t sent_ns;  // sender's monotonic clock at send
  uint64_t recv_ns;  // sender's monotonic clock when the echo came back
};

// A silence in the echo stream longer than kGapReportNs: one per failover.
struct Gap {
  uint64_t begin_mono_ns;  // last echo before the silence (CLOCK_MONOTONIC)
  double at_ms;            // from the stream's start
  double ms;
};
inline constexpr uint64_t kGapReportNs = 2'000'000;
inline constexpr size_t kMaxGaps = 100000;

struct UdpReport {
  uint64_t start_mono_ns = 0;  // the stream's start (CLOCK_MONOTONIC), origin of the *_ms figures
  uint64_t sent = 0;
  uint64_t received = 0;  // distinct sequence numbers echoed
  uint64_t lost = 0;
  uint64_t duplicated = 0;
  uint64_t reordered = 0;
  double interruption_ms = 0;      // longest gap between consecutive echoes
  double interruption_at_ms = 0;   // when that gap began, from the stream's start
  double rtt_us_p50 = 0;
  double rtt_us_p99 = 0;
  double rtt_us_max = 0;
  std::vector<Gap> gaps;  // every silence over kGapReportNs, in order (at most kMaxGaps)
};

// The p-th percentile (0..100) of v, by nearest rank; reorders v. 0 when empty.
double percentile(std::vector<double>& v, double p);

// Pure: turns the arrival series (in arrival order) into the report.
// Sequence numbers are unwrapped, so a stream longer than 2^32 packets works.
UdpReport analyse(std::span<const Arrival> arrivals, uint64_t sent, uint64_t start_ns,
                  uint64_t gap_report_ns = kGapReportNs);
nlohmann::json to_json(const UdpReport& r);

// CSV, one row per echo in arrival order (duplicates included):
// seq,sent_us,recv_us,rtt_us with times from start_ns.
std::string arrivals_csv(std::span<const Arrival> arrivals, uint64_t start_ns);

struct StreamOptions {
  std::string address;  // IPv4 or IPv6 of the echo end
  uint16_t port = 7777;
  uint32_t pps = 10000;
  double duration_s = 5;
  uint64_t gap_report_ns = kGapReportNs;  // silences listed in UdpReport::gaps
};

// Sends the stream and collects echoes until duration + a short drain.
Result<UdpReport> run_stream(const StreamOptions& o, std::vector<Arrival>* series = nullptr);

// Echoes every datagram back to its sender until duration_s passes.
Status run_echo(uint16_t port, double duration_s);

// Moves the calling process to the lowest real-time priority (SCHED_FIFO 1).
// The probe sleeps between packets, so this costs nothing, but it keeps the
// scheduler's noise on a small machine (2-5 ms waits for a CPU) out of what
// it measures: the data path's interruption, not the probe's own.
Status use_realtime_priority();

}  // namespace ng::probe

#pragma once
// TCP stream probe: a paced sender and a discarding sink. What a failover
// costs a TCP application is whether its connection survives and how long
// its bytes stop flowing; both ends measure that, per 10 ms interval.
//
// The analysis (IntervalBins, StallTracker) is pure and allocation-free per
// sample: the socket loops only feed it timestamps and byte counts.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "probe/probe.hpp"

namespace ng::probe {

inline constexpr uint64_t kIntervalNs = 10'000'000;

struct Interval {
  uint64_t start_ns;  // from the bins' origin
  uint64_t bytes;
};

// Bytes per fixed interval from an origin. The bins are allocated up front
// for the planned duration; a sample past the last bin (or before the
// origin) counts in the nearest bin, so nothing is lost and nothing grows.
class IntervalBins {
 public:
  IntervalBins(uint64_t origin_ns, uint64_t planned_ns, uint64_t interval_ns = kIntervalNs);
  void add(uint64_t t_ns, uint64_t bytes);
  // The bins that began before end_ns (at least one).
  std::vector<Interval> series(uint64_t end_ns) const;
  uint64_t interval_ns() const { return interval_ns_; }

 private:
  uint64_t origin_ns_;
  uint64_t interval_ns_;
  std::vector<uint64_t> bytes_;
};

// Mbit/s of one interval's bytes over the interval's nominal length.
double mbit_s(uint64_t bytes, uint64_t interval_ns);

// CSV: interval_start_ms,bytes,mbit_s.
std::string intervals_csv(std::span<const Interval> series, uint64_t interval_ns);

// The longest silence of a byte stream: from its first byte on (the wait
// for the first byte is not a stall), up to the stream's end.
class StallTracker {
 public:
  void add(uint64_t t_ns);       // bytes arrived (or left) at t_ns; t_ns never decreases
  void finish(uint64_t end_ns);  // the stream ended, or measuring stopped
  bool started() const { return started_; }
  uint64_t first_ns() const { return first_ns_; }
  uint64_t last_ns() const { return last_ns_; }
  uint64_t longest_ns() const { return longest_ns_; }
  uint64_t longest_begin_ns() const { return longest_begin_ns_; }  // last byte before it

 private:
  void gap_until(uint64_t t_ns);

  bool started_ = false;
  uint64_t first_ns_ = 0;
  uint64_t last_ns_ = 0;
  uint64_t longest_ns_ = 0;
  uint64_t longest_begin_ns_ = 0;
};

// ------------------------------------------------------------------ sink

struct SinkOptions {
  uint16_t port = 7778;
  double duration_s = 10;  // the sink stops after this, whatever its connections do
  bool once = false;       // stop as soon as the first connection ends
  double min_seconds = 0;  // a connection closed cleanly sooner than this counts as closed early
};

struct SinkConnection {
  std::string peer;           // "ADDR:PORT"
  double accepted_at_ms = 0;  // all *_at_ms are from the sink's start
  double ended_at_ms = 0;
  double duration_ms = 0;
  std::string ended = "open";  // "eof" (peer closed), "error", "open" (still up at the sink's end)
  std::string error;           // for "error": what the socket reported
  uint64_t bytes = 0;
  double first_byte_at_ms = -1;  // -1: no byte arrived
  double longest_stall_ms = 0;   // see StallTracker
  double longest_stall_at_ms = 0;
  bool closed_early = false;  // ended by an error, or cleanly before min_seconds
};

struct SinkReport {
  double duration_ms = 0;
  uint64_t connections = 0;
  uint64_t errors = 0;        // connections that ended with a socket error
  uint64_t closed_early = 0;  // connections with closed_early set
  uint64_t bytes = 0;
  double longest_stall_ms = 0;  // over all connections
  std::vector<SinkConnection> per_connection;
  std::vector<Interval> intervals;  // bytes received, all connections together
  uint64_t interval_ns = kIntervalNs;
};
nlohmann::json to_json(const SinkReport& r);

// Listens on [::]:port (IPv4 too) and discards what arrives until the run ends.
Result<SinkReport> run_tcp_sink(const SinkOptions& o, const Interrupted& interrupted = {});

// ---------------------------------------------------------------- sender

struct TcpSendOptions {
  std::string address;  // IPv4 or IPv6 of the sink
  uint16_t port = 7778;
  double duration_s = 10;
  // Pace in MB/s (10^6 bytes); 0: as fast as the connection takes it. The
  // default keeps a 2-core lab machine from being saturated by the probe.
  double rate_mbyte_s = 20;
  double user_timeout_s = 0;  // TCP_USER_TIMEOUT; 0: the kernel's default (minutes)
};

struct TcpError {
  double at_ms;  // from the stream's start
  std::string error;
};

struct TcpSendReport {
  double duration_ms = 0;
  double rate_mbyte_s = 0;
  uint64_t bytes_sent = 0;  // accepted by the kernel
  double mbit_s = 0;        // average over duration_ms
  bool survived = true;     // no socket error, and every byte was acknowledged by the end
  std::vector<TcpError> errors;
  double longest_block_ms = 0;  // longest wait for room in the socket buffer
  double longest_block_at_ms = 0;
  std::vector<Interval> intervals;  // bytes handed to the kernel
  uint64_t interval_ns = kIntervalNs;
};
nlohmann::json to_json(const TcpSendReport& r);

// Connects, sends for the duration, then closes its side and waits
// (bounded) for the sink to confirm it read everything.
Result<TcpSendReport> run_tcp_send(const TcpSendOptions& o, const Interrupted& interrupted = {});

}  // namespace ng::probe

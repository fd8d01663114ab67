#pragma once
// `nicguard bench`: what nicguard costs, measured against the kernel's own
// path in the same lab and the same run. The lab is built with the direct
// host (ng-SFX-direct, a veth straight on the switch) next to app domain app1
// (behind the frontend and the active driver domain, with a warm spare).
// Servers run in the direct / app namespace, clients in the external host's
// namespace; every test is run on both paths back to back (interleaved, the
// order alternating), so load from other tenants of the host hits both.
//
// Traffic tools run unmodified inside the lab namespaces: bench forks,
// setns(2)s the child into /run/netns/NAME and execs iperf3 or sockperf.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace ng::bench {

// Polled while waiting; true aborts the run (a signal arrived).
using Interrupted = std::function<bool()>;

struct BenchOptions {
  int duration_s = 5;                     // per test and per path
  bool keep = false;                      // leave the lab running afterwards
  int realtime_priority = -1;             // the lab's data path; -1: the config's default
  int path_probe_us = -1;                 // the lab's path probes; -1: the config's default
  std::string binary = "/proc/self/exe";  // nicguard, run as the lab's manager
  Interrupted interrupted;
  // Progress lines ("tcp 1 stream, direct: 12.3 Gbit/s"); may be empty.
  std::function<void(const std::string&)> progress;
};

// The figures of one path. Throughputs are what the receiver got.
struct PathResult {
  double tcp_gbps_1 = 0;      // external -> app, 1 stream
  double tcp_gbps_4 = 0;      // external -> app, 4 streams
  double tcp_gbps_1_rev = 0;  // app -> external, 1 stream
  double tcp_gbps_4_rev = 0;  // app -> external, 4 streams
  double udp64_pps = 0;       // 64-byte Ethernet frames received per second
  double udp64_sent_pps = 0;  // what the sender offered (not a ratio figure)
  double rtt_us_p50 = 0;      // full round trip, 64-byte frames
  double rtt_us_p99 = 0;
  // CPU seconds (utime+stime) per GB received over the four TCP tests: the
  // iperf3 client and server, plus for nicguard both driver domains and the
  // frontend (with their descendants).
  double cpu_s_per_gb = 0;
  double tcp_gb_received = 0;  // the denominator above
  double tcp_cpu_s = 0;        // the numerator above
};

struct BenchResult {
  PathResult direct;
  PathResult nicguard;
  // CPU use of the warm-spare driver domain while the nicguard path was
  // measured: (utime+stime delta) / wall time * 100.
  double spare_cpu_percent = 0;
  int duration_s = 0;
  int cpus = 0;
  std::string kernel;
  std::string lab;  // the run's suffix
  std::vector<std::string> warnings;
};

// Runs the whole benchmark on a lab it builds and removes (unless keep).
Result<BenchResult> run(const BenchOptions& options);

// nicguard/direct for every figure.
nlohmann::json path_json(const PathResult& p);
nlohmann::json ratio_json(const PathResult& nicguard, const PathResult& direct);
// {"direct":{},"nicguard":{},"ratio":{},"spare_cpu_percent":..,"duration_s":..,
//  "host":{"cpus":..,"kernel":..},"lab":..,"warnings":[..]}
nlohmann::json to_json(const BenchResult& r);
std::string format_table(const BenchResult& r);

// ---- parsers of the tools' output (exposed for tests) ----------------------

struct IperfFigures {
  double bits_per_second = 0;  // end.sum_received.bits_per_second
  double bytes = 0;            // end.sum_received.bytes
  double seconds = 0;          // end.sum_received.seconds
  double sent_bytes = 0;       // end.sum_sent.bytes (0 when absent)
  double sent_seconds = 0;
};
// `iperf3 -J` output of a client. An "error" member becomes the error.
Result<IperfFigures> parse_iperf3(std::string_view json_text);

struct RttFigures {
  double p50_us = 0;
  double p99_us = 0;
  uint64_t observations = 0;
};
// `sockperf ping-pong --full-rtt` output (percentile lines, ANSI colours allowed).
Result<RttFigures> parse_sockperf(std::string_view text);

// utime+stime of one process from /proc/PID/stat, in seconds.
Result<double> process_cpu_s(pid_t pid);
// /proc/PID/stat text -> utime+stime in clock ticks.
Result<uint64_t> parse_stat_cpu_ticks(std::string_view stat);

// ---- a tool run inside a network namespace ---------------------------------

// A child process forked, moved into /run/netns/NAME with setns(2) and exec'd.
// Its stdout and stderr go to an anonymous memory file read back by output().
// The destructor kills (SIGKILL) and reaps it if it still runs; it also dies
// with the bench (PR_SET_PDEATHSIG).
class NetnsProcess {
 public:
  // argv[0] is looked up in PATH; a missing tool fails with `install_hint`.
  static Result<NetnsProcess> start(const std::string& netns, std::vector<std::string> argv,
                                    const std::string& install_hint = {});
  ~NetnsProcess();
  NetnsProcess(NetnsProcess&& other) noexcept;
  NetnsProcess& operator=(NetnsProcess&& other) noexcept;
  NetnsProcess(const NetnsProcess&) = delete;
  NetnsProcess& operator=(const NetnsProcess&) = delete;

  struct Exit {
    int status = 0;     // waitpid status
    double cpu_s = 0;   // utime+stime of the child (rusage)
    std::string describe() const;  // "exited with status 1", "was killed by signal 9"
    bool ok() const;
  };

  pid_t pid() const { return pid_; }
  const std::string& command() const { return command_; }
  bool running();
  // Waits for the exit; past the timeout the child is killed and that is the
  // error. An interruption kills it too.
  Result<Exit> wait(std::chrono::milliseconds timeout, const Interrupted& interrupted);
  // SIGTERM, then SIGKILL after `grace`; reaps.
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(1000));
  // Everything the child wrote so far (stdout and stderr interleaved).
  std::string output() const;

 private:
  NetnsProcess() = default;
  void kill_and_reap();
  bool reap(int options);

  pid_t pid_ = 0;
  UniqueFd pidfd_;
  UniqueFd out_;
  std::string command_;
  std::optional<Exit> exit_;
};

// Full path of `tool` in PATH, or nothing.
std::optional<std::string> find_in_path(const std::string& tool);

}  // namespace ng::bench

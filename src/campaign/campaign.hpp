#pragma once
// Fault-injection campaigns: the evaluation of the paper as a tool. Each run
// injects one fault into the driver domain that carries a live UDP probe
// stream (and a TCP stream beside it) to app1 and every other app's own
// low-rate stream, then classifies what followed from the detectors' events
// and from what the probes saw. Kind "none" injects nothing and counts the
// detectors' false alarms. `nicguard demo` is a short campaign.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "campaign/report.hpp"
#include "common/error.hpp"

namespace ng::campaign {

struct CampaignOptions {
  std::vector<std::string> policies{"warm-spare"};
  std::vector<std::string> kinds{"crash"};
  int runs = 20;          // per policy and kind
  uint64_t seed = 1;      // every run's seed derives from it (run_seed)
  uint32_t pps = 10000;   // the UDP probe stream
  double tcp_mbytes_per_s = 8;  // the TCP stream alongside; 0: none
  std::string domain = "process";  // the labs' driver domains: "process" or "vm" (driver VMs)
  std::string nic_model;           // the driver VMs' NIC; empty: the config's default (e1000e)
  uint32_t window_ms = 0;       // effects of an injection are looked for this long; 0: window_ms_for()
  int realtime_priority = -1;   // the labs' data path; -1: the config's default
  int apps = 1;                 // app domains per lab, 1..64
  std::vector<std::string> load;  // background load for every run: "cpu", "tcp"
  bool http = false;            // nginx in app1, HTTP clients in the external host
  std::string binary = "/proc/self/exe";  // the nicguard binary the labs run as their manager
  std::string command;          // the command line, for the report
  std::string keep_events_in;   // each lab's events.jsonl is copied here; "" keeps none
  // Called after every run (progress output); may be empty.
  std::function<void(const RunRecord&)> progress;
  // Polled between runs; true stops the campaign with what it has.
  std::function<bool()> interrupted;
};

// The window of a policy's runs: --window-ms if given, else long enough for
// the recovery to finish: 400 ms for process domains; for driver VMs 1 s
// under warm-spare (TCG detects and switches more slowly) and 20 s under
// restart, which reboots the VM (10 to 14 s under TCG).
uint32_t window_ms_for(const CampaignOptions& o, const std::string& policy);
// The baseline window before each injection: as long as the run's, up to
// kMaxBaselineMs (a 20 s restart window needs no 20 s baseline).
inline constexpr uint32_t kMaxBaselineMs = 2000;

// Refuses what cannot run before anything is built: unknown kinds, policies
// or loads, counts and rates out of range. Pure: no file is looked at.
Status check_options(const CampaignOptions& o);
// The programs the options need (iperf3 for --load tcp, nginx for --http)
// are installed.
Status check_tools(const CampaignOptions& o);

// What the campaign saw of one run; classify() turns it into the outcome.
struct Observation {
  bool injected = true;        // false for kind "none"
  bool detected = false;       // for "none": any detection at all
  bool flowing_at_end = true;  // echoes arrived in the window's last kFlowingMs
  double interruption_ms = 0;
  uint64_t sent = 0;           // probe packets sent in the window
  uint64_t lost = 0;           // ... and never echoed
  uint64_t baseline_lost = 0;  // lost in as long a window before the injection
};
inline constexpr double kBrokenMs = 50;   // a silence this long means the traffic broke
inline constexpr double kFlowingMs = 100;

Outcome classify(const Observation& o);

// The longest silence between consecutive echoes (receive times, in ns, any
// order) that overlaps [from, until), in ns. A silence that outlasts the
// window counts up to its end; so does one before the first echo.
double longest_silence(std::vector<uint64_t> recv_ns, uint64_t from, uint64_t until);

// The fault's own interruption: the longest silence from `from` (the
// injection) through the one that spans `recovered_at` (the switch, or the
// restarted domain serving), in ns. Silences after the traffic came back are
// the host's, not the fault's: on a loaded 2-core host one 400 ms window in
// four without any fault holds a silence over 10 ms. When no echo came after
// `recovered_at` before `until`, the silence runs to `until`.
double silence_until_recovered(const std::vector<uint64_t>& recv_ns, uint64_t from, uint64_t recovered_at,
                               uint64_t until);

// Of the packets a stream that began at start_ns sent at pps (packet k at
// start_ns + k / pps) within [from, until): how many, and how many of them
// never came back (`received_seqs`: the distinct sequence numbers echoed).
struct Loss {
  uint64_t sent = 0;
  uint64_t lost = 0;
};
Loss loss_in(const std::vector<uint32_t>& received_seqs, uint64_t start_ns, uint32_t pps, uint64_t from,
             uint64_t until);

// Run n's seed: distinct per run, the same for the same base.
uint64_t run_seed(uint64_t base, int run);

// The one driver domain ("a") every app of a manager's status sends through,
// each with a connected spare when need_spare; otherwise why not, naming the
// apps that are not there yet.
Result<std::string> common_active_domain(const nlohmann::json& status, bool need_spare);

// One HTTP request of a run's clients, its start on the campaign's monotonic clock.
struct HttpRequest {
  uint64_t start_ns = 0;
  uint64_t latency_ns = 0;
  bool ok = false;
};
// The requests that overlap [from, until): how many, how many failed, and
// the latency percentiles of the successful ones.
HttpFigures http_in(const std::vector<HttpRequest>& requests, uint64_t from, uint64_t until);

// The 1-minute load average from /proc/loadavg's text; < 0 if unreadable.
double loadavg_1min(const std::string& proc_loadavg);

struct CampaignResult {
  std::vector<RunRecord> runs;
  std::vector<Timeline> timelines;
  CampaignInfo info;
  bool interrupted = false;
};

// Builds one lab per policy, runs every kind `runs` times in it, and tears
// the lab down on every path.
Result<CampaignResult> run_campaign(const CampaignOptions& o);

}  // namespace ng::campaign

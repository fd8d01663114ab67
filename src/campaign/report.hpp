#pragma once
// The output side of a fault-injection campaign, kept pure (records in, text
// out) so the numbers a reader sees can be checked without a lab: runs.csv for
// one's own analysis, summary.json for scripts, report.html for people.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.hpp"

namespace ng::campaign {

// What one injection led to, as the campaign classifies it.
enum class Outcome {
  no_effect,       // no detector fired and the traffic never broke
  recovered,       // a detector fired and traffic flowed again within the run's window
  not_recovered,   // a detector fired but traffic had not resumed by the end of the window
  silent_failure,  // traffic broke (found by the probe) but no detector fired
  false_alarm,     // nothing was injected (kind "none") and a detector fired anyway
};
// The fault kind that injects nothing: its runs measure false alarms.
inline constexpr const char* kNoInjection = "none";

// "no-effect", "recovered", "not-recovered", "silent-failure", "false-alarm"
const char* outcome_name(Outcome o);

// What the HTTP client (--http) saw of one run: the requests that overlapped
// the run's window, and the worst latency of those that overlapped the
// baseline window before the injection, where no fault could have acted.
struct HttpFigures {
  uint64_t requests = 0;
  uint64_t failed = 0;
  double latency_ms_p50 = 0;  // of the successful requests
  double latency_ms_p99 = 0;
  double latency_ms_max = 0;
  double baseline_latency_ms_max = 0;
  uint64_t baseline_failed = 0;
};

// The lab's own processes once a run's recovery is over: open fds (entries
// of /proc/PID/fd) and resident memory (VmRSS, KiB), of the manager and
// summed over the frontends. The pids say whether a later sample is of the
// same processes: a restarted frontend or a rebuilt lab is another process.
struct ResourceSample {
  int manager_pid = 0;
  uint64_t manager_fds = 0;
  uint64_t manager_rss_kib = 0;
  std::vector<int> frontend_pids;  // in the apps' order; 0 for a frontend that was down
  uint64_t frontend_fds = 0;
  uint64_t frontend_rss_kib = 0;
};

struct RunRecord {
  int run = 0;                 // 1-based, in campaign order
  std::string policy;          // "warm-spare" | "restart"
  std::string kind;            // injected fault kind, e.g. "regflip", "crash"
  uint64_t seed = 0;           // the run's seed (regflip's choice; 0 for other kinds)
  std::string domain;          // "driver-a"
  std::string detail;          // what the injection did, e.g. "tid 812 rip bit 17 after 3210 us"
  std::string detector;        // first detector that fired for this domain, "" if none
  Outcome outcome = Outcome::no_effect;
  double detection_ms = -1;    // injection to first detection; < 0 when none
  double recovery_ms = -1;     // injection to traffic moved (switch) or domain serving again; < 0 when none
  // The probe's longest silence from the injection through the one that
  // spans the recovery (the whole window when there was none).
  double interruption_ms = 0;
  double window_silence_ms = 0;  // probe's longest silence anywhere in the run's window
  double baseline_ms = 0;      // probe's longest silence in an equally long window without a failure, just before
  uint64_t lost = 0;           // probe packets lost in the window
  bool tcp_survived = true;    // the TCP stream's connection lived through the run
  // The longest silence any app saw in the window (app1's probe stream or the
  // low-rate stream of every other app), and whose it was ("app1").
  double interruption_all_apps_ms = 0;
  std::string worst_app;
  std::optional<HttpFigures> http;  // with --http
  // Frames nicguard's own counters dropped during the run, as
  // "app1 rx_drops 3; driver-b nic_rx_overruns 312" ("" when none).
  std::string drops;
  // After the run's recovery; none when the lab's processes could not be read.
  std::optional<ResourceSample> resources;
  // Kind "none": every detect event of the run, as "driver-a hang by front-app1: ...".
  std::vector<std::string> false_detections;
  // A false alarm is no effect of an injected fault: nothing was injected.
  bool manifested() const { return outcome != Outcome::no_effect && outcome != Outcome::false_alarm; }
};

// One probe packet around a failure, for the timeline plot.
struct TimelinePoint {
  double t_ms;      // receive time relative to the injection (negative before it)
  uint32_t seq;
  double rtt_us;
};
struct Timeline {
  std::string title;           // e.g. "warm-spare, crash (run 3)"
  double detect_ms = -1;       // relative to the injection; < 0 when none
  double recovery_ms = -1;
  std::vector<TimelinePoint> points;
};

struct CampaignInfo {
  std::string started;         // ISO 8601 wall time
  std::string host;            // uname: kernel, nodename, cpus
  std::string command;         // the command line that produced it
  double window_ms = 0;        // how long after each injection effects are looked for (the longest policy's)
  double gap_threshold_ms = 0; // silences shorter than this are not counted
  // Detections nobody injected (seen before an injection, in the baseline
  // window): false alarms or latent effects of an earlier run. Each such
  // run is taken again; these are what was seen.
  std::vector<std::string> unprovoked;
  // Injections the manager refused because the target went away meanwhile
  // (a thread that exited before ptrace stopped it): nothing was injected,
  // so the run is taken again.
  std::vector<std::string> not_injected;
  int apps = 1;  // app domains in each lab
  uint32_t app_stream_pps = 0;  // each other app's UDP stream; 0 with one app
  // The background load (--load) and the 1-minute load average of the host
  // (/proc/loadavg) when the campaign started and when its last run ended;
  // < 0 when it could not be read.
  std::vector<std::string> load;
  std::string load_detail;  // what ran, e.g. "2 busy loops; iperf3 --bidir between ext and app4"
  double loadavg_start = -1;
  double loadavg_end = -1;
  std::vector<std::string> load_restarts;  // load processes that died and were started again
  std::string domain = "process";          // the labs' driver domains: process or vm
  std::string window_detail;  // each policy's window, "1000 ms under warm-spare, ..."; "" if not known
  // Runs whose lab processes could not be sampled, and why.
  std::vector<std::string> resource_errors;
  // What was left of the labs once the last was torn down (processes,
  // namespaces, links, files); only meaningful when leftovers_checked.
  bool leftovers_checked = false;
  std::vector<std::string> leftovers;
};

std::string runs_csv(const std::vector<RunRecord>& runs);
nlohmann::json summary_json(const std::vector<RunRecord>& runs, const CampaignInfo& info);
std::string report_html(const std::vector<RunRecord>& runs, const nlohmann::json& summary,
                        const std::vector<Timeline>& timelines, const CampaignInfo& info);
// Writes DIR/runs.csv, DIR/summary.json, DIR/report.html (creating DIR, mode 0755); atomically per file (write to .tmp, rename).
Status write_report(const std::string& dir, const std::vector<RunRecord>& runs,
                    const std::vector<Timeline>& timelines, const CampaignInfo& info);

}  // namespace ng::campaign

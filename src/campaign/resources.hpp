#pragma once
// What a soak must show besides its outcomes: that the lab's long-lived
// processes (the manager, the frontends) neither leak fds nor grow in memory
// over many failovers, and that nothing of the labs is left once they are
// torn down. The sampling reads /proc; the statistics and the parsing are
// pure, for the unit tests.
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "campaign/report.hpp"
#include "common/error.hpp"

namespace ng::campaign {

// Growth (or shrinkage) of a mean over the last runs against the first that
// still counts as flat.
inline constexpr double kFlatPercent = 5;
// The first and the last this many runs of a lab are compared (fewer when
// the lab ran under 4 times as many: a quarter of its runs, at least one).
inline constexpr size_t kResourceWindow = 100;

// VmRSS of a /proc/PID/status text, in KiB.
Result<uint64_t> vm_rss_kib(std::string_view proc_status);
// What a /proc/PID/stat text says of its process. The start time (field
// 22, clock ticks since boot) with the pid names one process, whatever
// reuses the pid later.
struct ProcStat {
  char state = '?';
  pid_t ppid = 0;
  uint64_t start = 0;
};
Result<ProcStat> parse_proc_stat(std::string_view proc_stat);

// The runs compared at each end of n sampled runs: min(100, n / 4), at least 1.
size_t resource_window(size_t sampled);

// Of a manager's status answer: the manager's and the frontends' fds and
// RSS now.
Result<ResourceSample> sample_resources(const nlohmann::json& status);

// summary.json's `resources`: per lab (one per policy, in campaign order),
// the first and last run's figures, the means over the first and last
// resource_window() runs, their change in percent, pid changes, `flat`.
nlohmann::json resources_json(const std::vector<RunRecord>& runs);

// One figure of a resources_json() sample or mean as text ("-" when
// missing), and one change_percent entry ("+1.2%", or "not compared"): for
// the terminal and the report alike.
std::string figure_text(const nlohmann::json& j, const char* key);
std::string change_text(const nlohmann::json& changes, const char* key);

// A process the campaign saw, named by pid and start time.
struct SeenProcess {
  pid_t pid = 0;
  uint64_t start = 0;
  std::string what;  // "manager", "front-app1", "driver-a", "driver-a qemu"
};

// Every pid of a status answer (the manager, frontends, driver domains and
// their QEMUs) not yet in `seen`, added with its start time.
void note_processes(const nlohmann::json& status, std::vector<SeenProcess>& seen);
// Those of `seen` that still run, one line each.
std::vector<std::string> still_running(const std::vector<SeenProcess>& seen);
// Children of this process that still run (a traffic or load process the
// campaign started and did not collect), one line each.
std::vector<std::string> running_children();

}  // namespace ng::campaign

#include "campaign/resources.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "common/text.hpp"

namespace ng::campaign {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

template <typename T>
bool parse_number(std::string_view s, T& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

Result<uint64_t> vm_rss_kib(std::string_view proc_status) {
  constexpr std::string_view kKey = "VmRSS:";
  size_t at = proc_status.starts_with(kKey) ? 0 : proc_status.find("\nVmRSS:");
  // Kernel threads and zombies have no VmRSS line.
  if (at == std::string_view::npos) return fail("no VmRSS line in the process's status");
  at = proc_status.find(':', at) + 1;
  auto line = trimmed(proc_status.substr(at, proc_status.find('\n', at) - at));
  auto space = line.find_first_of(" \t");
  uint64_t kib = 0;
  if (space == std::string_view::npos || trimmed(line.substr(space)) != "kB" ||
      !parse_number(line.substr(0, space), kib)) {
    return fail("unreadable VmRSS line '{}' in the process's status", line);
  }
  return kib;
}

Result<ProcStat> parse_proc_stat(std::string_view proc_stat) {
  // The name in parentheses may hold spaces and parentheses itself.
  auto close = proc_stat.rfind(')');
  if (close == std::string_view::npos) return fail("no process name in the process's stat");
  std::vector<std::string_view> fields;  // fields[0] is field 3 (state)
  for (size_t pos = close + 1; pos < proc_stat.size() && fields.size() < 20;) {
    while (pos < proc_stat.size() && proc_stat[pos] == ' ') ++pos;
    auto end = std::min(proc_stat.find(' ', pos), proc_stat.size());
    if (end > pos) fields.push_back(proc_stat.substr(pos, end - pos));
    pos = end;
  }
  ProcStat st;
  if (fields.size() < 20 || fields[0].size() != 1 || !parse_number(fields[1], st.ppid) ||
      !parse_number(trimmed(fields[19]), st.start)) {
    return fail("the process's stat has too few or unreadable fields");
  }
  st.state = fields[0][0];
  return st;
}

size_t resource_window(size_t sampled) { return std::max<size_t>(1, std::min(kResourceWindow, sampled / 4)); }

namespace {

struct ProcessFigures {
  uint64_t fds = 0;
  uint64_t rss_kib = 0;
};

Result<uint64_t> open_fds(pid_t pid) {
  const auto dir = fmt::format("/proc/{}/fd", pid);
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  uint64_t n = 0;
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) ++n;
  if (ec) return fail("reading {}: {}", dir, ec.message());
  return n;
}

Result<ProcessFigures> sample_process(pid_t pid) {
  auto fds = open_fds(pid);
  if (!fds) return tl::unexpected(fds.error());
  auto rss = vm_rss_kib(read_text(fmt::format("/proc/{}/status", pid)));
  if (!rss) return fail("pid {}: {}", pid, rss.error().message);
  return ProcessFigures{*fds, *rss};
}

// The manager closes a control connection only once it has seen the
// client hang up, on its next pass: the status request the pids came from
// may still hold an fd there. The least of a few reads drops such a passing
// fd; a leaked one is in every read.
Result<uint64_t> settled_fds(pid_t pid) {
  constexpr int kReads = 3;
  constexpr auto kGap = std::chrono::milliseconds(10);
  auto least = open_fds(pid);
  for (int i = 1; least && i < kReads; ++i) {
    std::this_thread::sleep_for(kGap);
    auto now = open_fds(pid);
    if (!now) return now;
    least = std::min(*least, *now);
  }
  return least;
}

int pid_in(const json& j) {
  auto it = j.find("pid");
  return it != j.end() && it->is_number_integer() ? it->get<int>() : 0;
}

}  // namespace

Result<ResourceSample> sample_resources(const json& status) {
  ResourceSample s;
  s.manager_pid = pid_in(status.value("manager", json::object()));
  if (s.manager_pid <= 0) return fail("the manager's status names no manager pid");
  auto m = sample_process(s.manager_pid);
  if (!m) return fail("the manager: {}", m.error().message);
  auto fds = settled_fds(s.manager_pid);
  if (!fds) return fail("the manager: {}", fds.error().message);
  s.manager_fds = *fds;
  s.manager_rss_kib = m->rss_kib;
  for (const auto& app : status.value("apps", json::array())) {
    const int pid = pid_in(app);
    s.frontend_pids.push_back(pid);
    if (pid <= 0) continue;  // down: the pid list says so
    auto f = sample_process(pid);
    if (!f) return fail("front-{}: {}", app.value("name", std::string("?")), f.error().message);
    s.frontend_fds += f->fds;
    s.frontend_rss_kib += f->rss_kib;
  }
  return s;
}

// ---- the first and the last runs of each lab ----------------------------------

namespace {

struct Figure {
  const char* name;
  uint64_t ResourceSample::*field;
  bool frontend;  // false: the manager's
};
constexpr Figure kFigures[] = {
    {"manager_fds", &ResourceSample::manager_fds, false},
    {"manager_rss_kib", &ResourceSample::manager_rss_kib, false},
    {"frontend_fds", &ResourceSample::frontend_fds, true},
    {"frontend_rss_kib", &ResourceSample::frontend_rss_kib, true},
};
constexpr size_t kShownPidChanges = 20;

// One lab's sampled runs in campaign order: the campaign builds one lab per
// policy, so a policy names its lab.
struct LabRuns {
  std::string policy;
  size_t runs = 0;  // sampled or not
  std::vector<const RunRecord*> sampled;
};

std::vector<LabRuns> runs_by_lab(const std::vector<RunRecord>& runs) {
  std::vector<LabRuns> labs;
  for (const auto& r : runs) {
    auto it = std::find_if(labs.begin(), labs.end(), [&](const LabRuns& l) { return l.policy == r.policy; });
    if (it == labs.end()) it = labs.insert(labs.end(), LabRuns{r.policy, 0, {}});
    ++it->runs;
    if (r.resources) it->sampled.push_back(&r);
  }
  return labs;
}

json sample_json(const RunRecord& r) {
  const auto& s = *r.resources;
  json j = {{"run", r.run}, {"manager_pid", s.manager_pid}, {"frontend_pids", s.frontend_pids}};
  for (const auto& f : kFigures) j[f.name] = s.*f.field;
  return j;
}

double mean_of(const std::vector<const RunRecord*>& runs, size_t from, size_t count, uint64_t ResourceSample::*field) {
  double sum = 0;
  for (size_t i = from; i < from + count; ++i) sum += static_cast<double>((*runs[i]->resources).*field);
  return sum / static_cast<double>(count);
}

json mean_json(const std::vector<const RunRecord*>& runs, size_t from, size_t count) {
  json j = {{"from_run", runs[from]->run}, {"to_run", runs[from + count - 1]->run}, {"runs", count}};
  for (const auto& f : kFigures) j[f.name] = mean_of(runs, from, count, f.field);
  return j;
}

// Where a run's processes are no longer the run's before it: figures of
// other processes are not compared with each other.
struct PidChanges {
  bool manager = false;
  bool frontends = false;
  std::vector<std::string> lines;
};

std::string pids_text(const std::vector<int>& pids) { return fmt::format("{}", fmt::join(pids, ",")); }

PidChanges pid_changes(const std::vector<const RunRecord*>& runs) {
  PidChanges c;
  for (size_t i = 1; i < runs.size(); ++i) {
    const auto& was = *runs[i - 1]->resources;
    const auto& now = *runs[i]->resources;
    if (was.manager_pid != now.manager_pid) {
      c.manager = true;
      c.lines.push_back(fmt::format("run {}: manager pid {} -> {} (the lab was rebuilt)", runs[i]->run,
                                    was.manager_pid, now.manager_pid));
    }
    if (was.frontend_pids != now.frontend_pids) {
      c.frontends = true;
      c.lines.push_back(fmt::format("run {}: frontend pids {} -> {}", runs[i]->run, pids_text(was.frontend_pids),
                                    pids_text(now.frontend_pids)));
    }
  }
  return c;
}

// In percent of the first; null when there is nothing to be a percentage of.
json change_percent(double first, double last) {
  if (first == 0) return last == 0 ? json(0.0) : json(nullptr);
  return 100 * (last - first) / first;
}

// false when a compared figure moved past the bar; else null when a figure
// could not be compared; else true.
json flatness(const json& changes) {
  bool unknown = false;
  for (const auto& [name, c] : changes.items()) {
    if (c.is_null()) {
      unknown = true;
    } else if (std::fabs(c.get<double>()) > kFlatPercent) {
      return false;
    }
  }
  return unknown ? json(nullptr) : json(true);
}

json lab_json(const LabRuns& lab) {
  json j = {{"policy", lab.policy}, {"runs", lab.runs}, {"sampled", lab.sampled.size()}};
  if (lab.sampled.empty()) {
    j["flat"] = nullptr;
    return j;
  }
  const auto& runs = lab.sampled;
  const size_t n = resource_window(runs.size());
  j["window_runs"] = n;
  j["first_run"] = sample_json(*runs.front());
  j["last_run"] = sample_json(*runs.back());
  j["first_mean"] = mean_json(runs, 0, n);
  j["last_mean"] = mean_json(runs, runs.size() - n, n);
  const PidChanges pids = pid_changes(runs);
  json changes = json::object();
  for (const auto& f : kFigures) {
    bool other_processes = f.frontend ? pids.frontends : pids.manager;
    changes[f.name] = other_processes ? json(nullptr)
                                      : change_percent(mean_of(runs, 0, n, f.field),
                                                       mean_of(runs, runs.size() - n, n, f.field));
  }
  j["change_percent"] = changes;
  j["flat"] = flatness(changes);
  j["pid_change_count"] = pids.lines.size();
  json shown = json::array();
  for (size_t i = 0; i < pids.lines.size() && i < kShownPidChanges; ++i) shown.push_back(pids.lines[i]);
  j["pid_changes"] = shown;
  return j;
}

}  // namespace

json resources_json(const std::vector<RunRecord>& runs) {
  json labs = json::array();
  bool grew = false, unknown = false;
  for (const auto& lab : runs_by_lab(runs)) {
    labs.push_back(lab_json(lab));
    const json& f = labs.back()["flat"];
    grew |= f == false;
    unknown |= f.is_null();
  }
  // false in any lab is false; not comparable in any other makes it unknown.
  json flat = labs.empty() || (unknown && !grew) ? json(nullptr) : json(!grew);
  return {{"per", "lab"},
          {"flat_percent", kFlatPercent},
          {"window_runs_max", kResourceWindow},
          {"flat", flat},
          {"labs", std::move(labs)}};
}

std::string figure_text(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return "-";
  return it->is_number_integer() ? fmt::format("{}", it->get<int64_t>()) : fmt::format("{:.1f}", it->get<double>());
}

std::string change_text(const json& changes, const char* key) {
  auto it = changes.find(key);
  if (it == changes.end() || !it->is_number()) return "not compared";
  return fmt::format("{:+.1f}%", it->get<double>());
}

// ---- what outlived the labs ---------------------------------------------------

namespace {

std::optional<ProcStat> stat_of(pid_t pid) {
  auto st = parse_proc_stat(read_text(fmt::format("/proc/{}/stat", pid)));
  return st ? std::optional<ProcStat>(*st) : std::nullopt;
}

// A zombie has let go of everything; only its parent's wait is missing.
bool running(const ProcStat& st) { return st.state != 'Z' && st.state != 'X'; }

// "nicguard frontend" rather than comm, which is "exe" for a process started
// through /proc/self/exe.
std::string command_of(pid_t pid) {
  auto cmdline = read_text(fmt::format("/proc/{}/cmdline", pid));
  std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
  cmdline = std::string(trimmed(cmdline));
  constexpr size_t kShown = 80;
  if (cmdline.size() > kShown) cmdline = cmdline.substr(0, kShown) + "...";
  return cmdline.empty() ? "?" : cmdline;
}

void note(int pid, std::string what, std::vector<SeenProcess>& seen) {
  if (pid <= 0) return;
  auto st = stat_of(pid);
  if (!st) return;  // gone already: nothing to be left over
  bool known = std::any_of(seen.begin(), seen.end(),
                           [&](const SeenProcess& s) { return s.pid == pid && s.start == st->start; });
  if (!known) seen.push_back({pid, st->start, std::move(what)});
}

}  // namespace

void note_processes(const json& status, std::vector<SeenProcess>& seen) {
  note(pid_in(status.value("manager", json::object())), "manager", seen);
  for (const auto& a : status.value("apps", json::array())) {
    note(pid_in(a), "front-" + a.value("name", std::string("?")), seen);
  }
  for (const auto& d : status.value("drivers", json::array())) {
    const std::string name = "driver-" + d.value("name", std::string("?"));
    note(pid_in(d), name, seen);
    auto vm = d.find("vm");
    if (vm != d.end() && vm->is_object()) note(vm->value("qemu_pid", 0), name + " qemu", seen);
  }
}

std::vector<std::string> still_running(const std::vector<SeenProcess>& seen) {
  std::vector<std::string> out;
  for (const auto& s : seen) {
    auto st = stat_of(s.pid);
    if (!st || st->start != s.start || !running(*st)) continue;
    out.push_back(fmt::format("process {} ({}: {}) still runs", s.pid, s.what, command_of(s.pid)));
  }
  return out;
}

std::vector<std::string> running_children() {
  std::vector<std::string> out;
  const pid_t self = ::getpid();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    pid_t pid = 0;
    if (!parse_number(e.path().filename().string(), pid)) continue;
    auto st = stat_of(pid);
    if (!st || st->ppid != self || !running(*st)) continue;
    out.push_back(fmt::format("process {} ({}), a child of the campaign, still runs", pid, command_of(pid)));
  }
  return out;
}

}  // namespace ng::campaign

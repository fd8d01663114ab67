#include "campaign/campaign.hpp"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "campaign/app_streams.hpp"
#include "campaign/drops.hpp"
#include "campaign/load.hpp"
#include "campaign/netns_child.hpp"
#include "campaign/resources.hpp"
#include "campaign/traffic.hpp"
#include "common/clock.hpp"
#include "common/events.hpp"
#include "common/text.hpp"
#include "inject/inject.hpp"
#include "campaign/switch_fault.hpp"
#include "lab/lab.hpp"
#include "manager/control.hpp"
#include "probe/http.hpp"

namespace ng::campaign {

Outcome classify(const Observation& o) {
  if (!o.injected) return o.detected ? Outcome::false_alarm : Outcome::no_effect;
  // Over 5% lost (20 ms worth), and clearly more than this machine loses
  // without a failure.
  bool lossy = o.sent > 0 && o.lost * 20 > o.sent && o.lost > 2 * o.baseline_lost;
  bool broken = !o.flowing_at_end || o.interruption_ms >= kBrokenMs || lossy;
  if (o.detected) return o.flowing_at_end ? Outcome::recovered : Outcome::not_recovered;
  return broken ? Outcome::silent_failure : Outcome::no_effect;
}

uint32_t window_ms_for(const CampaignOptions& o, const std::string& policy) {
  if (o.window_ms != 0) return o.window_ms;
  if (o.domain != "vm") return 400;
  return policy == "restart" ? 20000 : 1000;
}

uint64_t run_seed(uint64_t base, int run) {
  return base ^ (static_cast<uint64_t>(run) * 0x9E3779B97F4A7C15ULL);
}

Status check_options(const CampaignOptions& o) {
  if (o.policies.empty()) return fail("no policy given: say --policy warm-spare, restart or both");
  for (const auto& p : o.policies) {
    if (p != "warm-spare" && p != "restart") {
      return fail("unknown policy '{}': expected warm-spare or restart", p);
    }
  }
  if (o.kinds.empty()) {
    return fail("no fault kind given: say --kind, one or more of {}, {}, {}", kNoInjection, inject::fault_list(),
                switch_fault_list());
  }
  for (const auto& k : o.kinds) {
    if (k != kNoInjection && !inject::parse_fault(k) && !is_switch_fault(k)) {
      return fail("unknown fault kind '{}': expected {} (no injection: counts false alarms) or one of {}, {}", k,
                  kNoInjection, inject::fault_list(), switch_fault_list());
    }
  }
  if (o.apps < 1 || o.apps > 64) {
    return fail("--apps {} is out of range: give 1 to 64 app domains (the probe runs on app1)", o.apps);
  }
  if (auto s = check_load_kinds(o.load); !s) return s;
  if (o.runs < 1 || o.runs > 100000) return fail("--runs {} is out of range: give 1 to 100000", o.runs);
  if (o.pps < 100 || o.pps > 100000) return fail("--pps {} is out of range: give 100 to 100000", o.pps);
  if (o.domain != "process" && o.domain != "vm") {
    return fail("unknown driver domain kind '{}': expected process or vm", o.domain);
  }
  if (!o.nic_model.empty() && o.domain != "vm") {
    return fail("--nic-model {} needs --domain vm: only driver VMs emulate a NIC", o.nic_model);
  }
  if (o.window_ms != 0 && (o.window_ms < 100 || o.window_ms > 60000)) {
    return fail("--window-ms {} is out of range: give 100 to 60000 (or leave it out: it then suits the "
                "domain and policy)",
                o.window_ms);
  }
  if (o.tcp_mbytes_per_s < 0 || o.tcp_mbytes_per_s > 10000) {
    return fail("--tcp-rate {} MB/s is out of range: give 0 (no TCP stream) to 10000", o.tcp_mbytes_per_s);
  }
  return {};
}

Status check_tools(const CampaignOptions& o) {
  if (std::find(o.load.begin(), o.load.end(), "tcp") != o.load.end() && ::access(kIperf3, X_OK) != 0) {
    return fail("--load tcp runs {}, which is missing: install Debian's iperf3 package", kIperf3);
  }
  if (o.http && ::access(probe::kNginxBinary, X_OK) != 0) {
    return fail("--http runs {}, which is missing: install Debian's nginx-light package", probe::kNginxBinary);
  }
  return {};
}

namespace {

using nlohmann::json;

// Names for a message, the first few of them: 64 apps make a long line.
std::string some_names(const std::vector<std::string>& names) {
  constexpr size_t kShown = 6;
  std::string out;
  for (size_t i = 0; i < names.size() && i < kShown; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > kShown) out += fmt::format(" and {} more", names.size() - kShown);
  return out;
}

int ready_backends(const json& app) {
  int ready = 0;
  for (const auto& b : app.value("backends", json::array())) {
    std::string st = b.value("state", "");
    ready += st == "active" || st == "spare";
  }
  return ready;
}

}  // namespace

Result<std::string> common_active_domain(const json& status, bool need_spare) {
  auto apps = status.value("apps", json::array());
  if (!apps.is_array() || apps.empty()) return fail("the manager reports no app");
  std::string domain, first;
  std::vector<std::string> unattached, elsewhere, no_spare;
  for (const auto& app : apps) {
    std::string name = app.value("name", std::string("?"));
    auto active = app.find("active_driver");
    if (active == app.end() || !active->is_string()) {
      unattached.push_back(name);
      continue;
    }
    if (domain.empty()) {
      domain = active->get<std::string>();
      first = name;
    }
    if (*active != domain) elsewhere.push_back(fmt::format("{} on {}", name, active->get<std::string>()));
    if (need_spare && ready_backends(app) < 2) no_spare.push_back(name);
  }
  if (!unattached.empty()) return fail("no active driver domain yet for {}", some_names(unattached));
  if (!elsewhere.empty()) {
    return fail("the apps are not on one driver domain: {} on {}, but {}", first, domain, some_names(elsewhere));
  }
  if (!no_spare.empty()) return fail("no connected spare yet for {}", some_names(no_spare));
  return domain;
}

HttpFigures http_in(const std::vector<HttpRequest>& requests, uint64_t from, uint64_t until) {
  HttpFigures h;
  std::vector<double> latencies;
  for (const auto& q : requests) {
    if (q.start_ns >= until || q.start_ns + q.latency_ns < from) continue;
    ++h.requests;
    if (q.ok) {
      latencies.push_back(static_cast<double>(q.latency_ns) / 1e6);
    } else {
      ++h.failed;
    }
  }
  if (latencies.empty()) return h;
  h.latency_ms_max = *std::max_element(latencies.begin(), latencies.end());
  h.latency_ms_p50 = probe::percentile(latencies, 50);
  h.latency_ms_p99 = probe::percentile(latencies, 99);
  return h;
}

double loadavg_1min(const std::string& proc_loadavg) {
  char* end = nullptr;
  double v = std::strtod(proc_loadavg.c_str(), &end);
  return end == proc_loadavg.c_str() || v < 0 ? -1 : v;
}

namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kGapNs = 2 * kMs;     // shorter silences are the stream's own rhythm
constexpr uint64_t kLeadNs = 100 * kMs;  // between the baseline window and the injection
constexpr uint64_t kTailNs = 100 * kMs;  // the stream runs this long past the window
constexpr size_t kMaxTimelines = 8;
constexpr uint64_t kStableMs = 2100;  // the manager's restart back-off resets after 2 s up
constexpr double kTimelineBeforeMs = 30;

// The event log, read on from where the last run left it.
class EventTail {
 public:
  explicit EventTail(std::string path) : path_(std::move(path)) {}
  const std::vector<json>& read_new() {
    std::ifstream in(path_);
    in.seekg(offset_);
    for (std::string line; std::getline(in, line);) {
      if (in.eof()) break;  // a line still being written
      offset_ += static_cast<std::streamoff>(line.size() + 1);
      auto j = json::parse(line, nullptr, false);
      if (j.is_object()) events_.push_back(std::move(j));
    }
    return events_;
  }
  void restart(std::string path) {
    path_ = std::move(path);
    offset_ = 0;
    events_.clear();
  }

 private:
  std::string path_;
  std::streamoff offset_ = 0;
  std::vector<json> events_;
};

std::string host_description() {
  utsname u{};
  ::uname(&u);
  return fmt::format("{} {} {}, {} cpus", u.nodename, u.sysname, u.release, ::sysconf(_SC_NPROCESSORS_ONLN));
}

Result<json> manager_status(const lab::Lab& lab) {
  return manager::control_request(lab.control_socket(), {{"cmd", "status"}}, 2000);
}

// Time for every app to be back on one domain: reconnecting 64 frontends to
// a restarted spare takes longer than one, and a driver VM reboots (10 to
// 15 s under TCG; more on a loaded host).
std::chrono::milliseconds ready_wait(size_t apps, const std::string& domain) {
  return std::chrono::milliseconds((domain == "vm" ? 60'000 : 10'000) + 100 * static_cast<int64_t>(apps));
}

// The domain every app sends through once the last failure is recovered
// from: one active domain for all and, under warm-spare, a connected spare
// for each; otherwise, once the deadline passed, why not.
Result<std::string> recovered_active(const lab::Lab& lab, const std::string& policy) {
  const auto deadline = std::chrono::steady_clock::now() + ready_wait(lab.apps().size(), lab.info().domain);
  for (;;) {
    auto s = manager_status(lab);
    auto domain = s ? common_active_domain(*s, policy != "restart") : tl::unexpected(s.error());
    if (domain || std::chrono::steady_clock::now() >= deadline) return domain;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

pid_t driver_pid(const json& status, const std::string& domain) {
  for (const auto& d : status.value("drivers", json::array())) {
    if ("driver-" + d.value("name", std::string()) != domain) continue;
    return d["pid"].is_number() ? d["pid"].get<pid_t>() : 0;
  }
  return 0;
}

uint64_t event_time(const json& e) { return e.value("ts_mono_ns", uint64_t{0}); }
std::string iso8601_of(const json& e) { return e.value("ts_wall", std::string()); }

bool is_detection(const json& e, uint64_t from, uint64_t until) {
  uint64_t t = event_time(e);
  return t >= from && t < until && e.value("event", "") == "detect";
}

// "driver-a hang by front-app1: no beat for 6 ms (2026-...)"
std::string describe_detection(const json& e) {
  return fmt::format("{} {} by {}: {} ({})", e.value("domain", ""), e.value("detector", ""), e.value("source", ""),
                     e.value("detail", ""), iso8601_of(e));
}

// The first detection of the run's domain in its window.
void find_detection(const std::vector<json>& events, uint64_t inj, uint64_t until, RunRecord& r) {
  for (const auto& e : events) {
    if (!is_detection(e, inj, until) || e.value("domain", "") != r.domain) continue;
    r.detector = e.value("detector", "");
    r.detection_ms = static_cast<double>(event_time(e) - inj) / 1e6;
    return;
  }
}

// Nothing was injected at any point of the run, so every detection in it,
// of any domain and in the baseline window too, is a false alarm.
void find_false_detections(const std::vector<json>& events, uint64_t from, uint64_t until, RunRecord& r) {
  for (const auto& e : events) {
    if (!is_detection(e, from, until)) continue;
    if (r.detector.empty()) r.detector = e.value("detector", "");
    r.false_detections.push_back(describe_detection(e));
  }
}

// Traffic moved: a frontend switched away from the domain (warm-spare) or
// resumed on a domain that came back (restart, both down).
void find_recovery(const std::vector<json>& events, uint64_t inj, uint64_t until, RunRecord& r) {
  for (const auto& e : events) {
    uint64_t t = event_time(e);
    if (t < inj || t >= until) continue;
    std::string name = e.value("event", "");
    bool moved = (name == "switch" && e.value("from", "") == r.domain) || name == "resume";
    if (!moved) continue;
    r.recovery_ms = static_cast<double>(t - inj) / 1e6;
    return;
  }
}

Timeline make_timeline(const RunRecord& r, const std::vector<probe::Arrival>& series, uint64_t inj) {
  Timeline t;
  t.title = fmt::format("{}, {} (run {}): {}", r.policy, r.kind, r.run, r.detail);
  t.detect_ms = r.detection_ms;
  t.recovery_ms = r.recovery_ms;
  double after = std::max(100.0, r.interruption_ms * 1.5 + 30);
  for (const auto& a : series) {
    double at = (static_cast<double>(a.recv_ns) - static_cast<double>(inj)) / 1e6;
    if (at < -kTimelineBeforeMs || at > after) continue;
    t.points.push_back({at, a.seq, static_cast<double>(a.recv_ns - a.sent_ns) / 1e3});
  }
  return t;
}

// What a run put into its domain: when, what, and which process (0: none).
struct Injected {
  uint64_t at_ns = 0;
  std::string detail;
  pid_t pid = 0;
};

// Every lab the campaign built and every process it saw in them, for the
// check that nothing of them outlived the campaign.
struct LabTrace {
  std::vector<std::string> suffixes;
  std::vector<SeenProcess> processes;
};

// One lab under one policy, with its echo ends, its nginx and its
// background load, reused run after run. Members go in reverse order: every
// process the session started is gone before its lab is torn down.
class Session {
 public:
  Session(std::string policy, const CampaignOptions& o, LabTrace& trace)
      : policy_(std::move(policy)), o_(o), trace_(trace), events_("") {}

  Status open() {
    lab::LabOptions lo;
    lo.policy = policy_;
    lo.domain = o_.domain;
    lo.nic_model = o_.nic_model;
    lo.apps = o_.apps;
    lo.binary = o_.binary;
    lo.realtime_priority = o_.realtime_priority;
    lo.interrupted = o_.interrupted;
    auto l = lab::Lab::up(lo);
    if (!l) return tl::unexpected(l.error());
    lab_ = std::make_unique<lab::Lab>(std::move(*l));
    trace_.suffixes.push_back(lab_->suffix());
    if (auto st = manager_status(*lab_); st) note_processes(*st, trace_.processes);
    events_.restart(lab_->state_dir() + "/events.jsonl");
    if (auto s = start_echoes(); !s) return s;
    if (auto s = profile_guest(); !s) return s;
    if (auto s = start_nginx(); !s) return s;
    // Last, so the lab is built and its traffic checked on an idle host.
    auto load = BackgroundLoad::start(*lab_, o_.load);
    if (!load) return fail("starting the background load: {}", load.error().message);
    load_ = std::move(*load);
    return {};
  }

  Status close() {
    load_.stop();
    nginx_.stop();
    app_echoes_.stop();
    echo_.stop();
    if (!lab_) return {};
    keep_event_log();
    auto s = lab_->down();
    lab_.reset();
    return s;
  }

  const lab::Lab& lab() const { return *lab_; }
  uint64_t window_ns() const { return uint64_t{window_ms_for(o_, policy_)} * kMs; }
  uint64_t baseline_ns() const { return std::min(window_ns(), uint64_t{kMaxBaselineMs} * kMs); }

  Result<RunRecord> run(const std::string& kind, uint64_t seed, int number, CampaignResult& out);

 private:
  Status start_echoes() {
    auto e = start_udp_echo(lab_->apps().front(), kUdpPort);
    if (!e) return tl::unexpected(e.error());
    echo_ = std::move(*e);
    std::vector<lab::App> others(lab_->apps().begin() + 1, lab_->apps().end());
    auto a = start_app_echoes(others, kAppPort);
    if (!a) return tl::unexpected(a.error());
    app_echoes_ = std::move(*a);
    return {};
  }
  // regflip into a driver VM chooses among the functions a profile saw run
  // (on the spare, which moves the path probes); taken now, outside every
  // run's window.
  Status profile_guest() {
    bool regflip = std::find(o_.kinds.begin(), o_.kinds.end(), "regflip") != o_.kinds.end();
    if (o_.domain != "vm" || !regflip) return {};
    auto answer = manager::control_request(lab_->control_socket(), {{"cmd", "profile-guest"}}, 10000);
    if (!answer) return fail("profiling the driver VMs' NIC driver: {}", answer.error().message);
    if (!answer->value("ok", false)) {
      return fail("profiling the driver VMs' NIC driver: {}", answer->value("error", std::string("refused")));
    }
    return {};
  }
  Status start_nginx() {
    if (!o_.http) return {};
    const auto& app = lab_->apps().front();
    auto n = probe::start_nginx(app.netns, app.ipv4_address(), kHttpPort, lab_->state_dir() + "/nginx");
    if (!n) return fail("starting nginx in {}: {}", app.name, n.error().message);
    nginx_ = std::move(*n);
    return {};
  }
  // The lab's event log outlives it in the report directory.
  void keep_event_log() const {
    if (o_.keep_events_in.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(o_.keep_events_in, ec);
    std::filesystem::copy_file(lab_->state_dir() + "/events.jsonl",
                               fmt::format("{}/events-{}-{}.jsonl", o_.keep_events_in, policy_, ++kept_),
                               std::filesystem::copy_options::overwrite_existing, ec);
  }
  Status keep_running(CampaignResult& out);
  Result<std::string> ready_domain(CampaignResult& out);
  Result<std::string> wait_until_stable(const std::string& domain);
  Result<std::optional<RunRecord>> attempt_run(const std::string& kind, uint64_t seed, int number,
                                               CampaignResult& out);
  std::string unprovoked_detection(uint64_t since);
  Result<json> inject(const std::string& domain, const std::string& kind, uint64_t seed);
  void assess(RunRecord& r, const RunTraffic& t, uint64_t inj, uint64_t started);
  void assess_apps(RunRecord& r, const RunTraffic& t, uint64_t inj) const;
  // The silence the fault caused in one stream: through the recovery when
  // there was one, else over the whole window.
  double fault_silence(const std::vector<uint64_t>& recv, const RunRecord& r, uint64_t inj) const {
    const uint64_t end = inj + window_ns();
    if (r.recovery_ms < 0) return longest_silence(recv, inj, end);
    return silence_until_recovered(recv, inj, inj + static_cast<uint64_t>(r.recovery_ms * 1e6), end);
  }
  void assess_http(RunRecord& r, const RunTraffic& t, uint64_t inj) const;
  void repair(const RunRecord& r, pid_t injected_pid);
  void sample(RunRecord& r, CampaignResult& out);
  // Puts why a run is taken again on record, in the report's list for it.
  void retake(std::vector<std::string>& list, std::string why) {
    last_retake_ = why;
    list.push_back(std::move(why));
  }

  std::string policy_;
  const CampaignOptions& o_;
  LabTrace& trace_;
  std::unique_ptr<lab::Lab> lab_;
  NetnsChild echo_;
  NetnsChild app_echoes_;  // every app but app1
  probe::Nginx nginx_;     // with --http
  BackgroundLoad load_;    // with --load
  EventTail events_;
  mutable int kept_ = 0;
  std::string last_retake_;  // for the message when retakes never end
};

// The echo ends, nginx and the load run for the lab's whole life; whatever
// of them ended (a timed-out echo, a TCP load a broken lab dropped) is
// started again before the next run, the load's restarts on record.
Status Session::keep_running(CampaignResult& out) {
  if (!echo_.alive() || (lab_->apps().size() > 1 && !app_echoes_.alive())) {
    echo_.stop();
    app_echoes_.stop();
    if (auto s = start_echoes(); !s) return s;
  }
  if (o_.http && !nginx_.running()) {
    if (auto s = start_nginx(); !s) return s;
  }
  auto restarted = load_.keep_running(*lab_);
  if (!restarted) return tl::unexpected(restarted.error());
  for (auto& why : *restarted) out.info.load_restarts.push_back(fmt::format("{} under {}: {}", lab_->suffix(), policy_, why));
  return {};
}

// A domain ready for the next failure; a lab that does not recover in time
// is rebuilt once (a run that left it broken is on record already).
Result<std::string> Session::ready_domain(CampaignResult& out) {
  if (auto s = keep_running(out); !s) return tl::unexpected(s.error());
  auto d = recovered_active(*lab_, policy_);
  if (d) return wait_until_stable(*d);
  const std::string before = d.error().message;
  if (auto s = close(); !s) return tl::unexpected(s.error());
  if (auto s = open(); !s) return tl::unexpected(s.error());
  d = recovered_active(*lab_, policy_);
  if (!d) {
    return fail("a lab under {} was not ready within {} s ({}); nor was the one built in its place: {}", policy_,
                ready_wait(lab_->apps().size(), o_.domain).count() / 1000, before, d.error().message);
  }
  return wait_until_stable(*d);
}

// A domain that fails within kStableMs of its start is restarted only after a
// back-off. Under the restart policy that restart is the interruption, so
// every failure is injected into a domain past that: each run measures the
// recovery from one failure, not from a crash loop. Under warm-spare the
// spare carries the traffic whatever the back-off.
Result<std::string> Session::wait_until_stable(const std::string& domain) {
  if (policy_ != "restart") return domain;
  auto st = manager_status(*lab_);
  if (!st) return tl::unexpected(st.error());
  for (const auto& d : st->value("drivers", json::array())) {
    if (d.value("name", std::string()) != domain || !d.contains("uptime_ms")) continue;
    uint64_t up = d["uptime_ms"].get<uint64_t>();
    if (up >= kStableMs) return domain;
    std::this_thread::sleep_for(std::chrono::milliseconds(kStableMs - up));
    auto again = recovered_active(*lab_, policy_);
    if (!again) {
      return fail("lab {} lost its ready driver domain while waiting: {}", lab_->suffix(), again.error().message);
    }
    return again;
  }
  return domain;
}

Result<json> Session::inject(const std::string& domain, const std::string& kind, uint64_t seed) {
  if (is_switch_fault(kind)) {
    auto at = inject_switch_fault(*lab_, domain, kind);
    if (!at) return tl::unexpected(at.error());
    return json{{"ok", true}, {"ts_mono_ns", *at}, {"detail", "on the switch's port of driver-" + domain}};
  }
  json request{{"cmd", "inject"}, {"domain", domain}, {"fault", kind}};
  if (kind == "regflip") request["seed"] = seed;
  // A regflip into a driver VM waits up to 5 s for its breakpoint.
  const int timeout_ms = kind == "regflip" ? 10000 : 2000;
  auto answer = manager::control_request(lab_->control_socket(), request, timeout_ms);
  if (!answer) return tl::unexpected(answer.error());
  if (!answer->value("ok", false)) {
    return fail("injecting {} into driver-{}: {}", kind, domain, answer->value("error", std::string("refused")));
  }
  // The breakpoint was never hit: nothing was flipped.
  if (!answer->value("reached", true)) return fail("{}", answer->value("detail", std::string("not reached")));
  return answer;
}

Result<RunRecord> Session::run(const std::string& kind, uint64_t seed, int number, CampaignResult& out) {
  constexpr int kAttempts = 5;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    auto r = attempt_run(kind, seed, number, out);
    if (!r) return tl::unexpected(r.error());
    if (*r) return std::move(**r);
  }
  return fail("{} attempts in a row at run {} were taken again (the last: {}): the lab is not stable "
              "enough to measure",
              kAttempts, number, last_retake_);
}

// A run, unless something failed before its injection: then the failure is
// put on record and the run is to be taken again (nullopt). Kind "none" is
// never taken again: a detection anywhere in it is what it measures.
Result<std::optional<RunRecord>> Session::attempt_run(const std::string& kind, uint64_t seed, int number,
                                                      CampaignResult& out) {
  auto domain = ready_domain(out);
  if (!domain) return tl::unexpected(domain.error());
  const bool injecting = kind != kNoInjection;
  RunRecord r;
  r.run = number;
  r.policy = policy_;
  r.kind = kind;
  r.seed = kind == "regflip" ? seed : 0;
  r.domain = "driver-" + *domain;
  const uint64_t window = window_ns();
  // Long enough before the injection for the baseline window.
  const uint64_t before = baseline_ns() + kLeadNs + 50 * kMs;
  const uint64_t started = mono_ns();
  auto counted = manager_status(*lab_);
  auto traffic = RunTraffic::start(*lab_, o_, before + window + kTailNs, o_.http ? nginx_.url() : "");
  if (!traffic) return tl::unexpected(traffic.error());
  std::this_thread::sleep_for(std::chrono::nanoseconds(before));
  if (auto seen = unprovoked_detection(started); injecting && !seen.empty()) {
    retake(out.info.unprovoked, fmt::format("before run {} ({} under {}): {}", number, kind, policy_, seen));
    return std::optional<RunRecord>();
  }
  Injected injected{mono_ns(), "nothing injected", 0};
  if (injecting) {
    auto answer = inject(*domain, kind, seed);
    if (!answer) {
      // The target went away between the plan and the act (a regflip's thread
      // exited, a domain died): nothing was injected, so the run is retaken.
      retake(out.info.not_injected,
             fmt::format("run {} ({} under {}): {}", number, kind, policy_, answer.error().message));
      (void)traffic->finish();
      return std::optional<RunRecord>();
    }
    injected = {answer->value("ts_mono_ns", uint64_t{0}), answer->value("detail", std::string()),
                answer->value("pid", 0)};
  }
  const uint64_t inj = injected.at_ns;
  r.detail = injected.detail;
  auto finished = traffic->finish();
  if (is_switch_fault(kind)) {
    if (auto s = repair_switch_fault(*lab_, *domain, kind); !s) return tl::unexpected(s.error());
  }
  if (!finished) return tl::unexpected(finished.error());
  assess(r, *traffic, inj, started);
  if (auto now = manager_status(*lab_); counted && now) r.drops = drops_between(*counted, *now);
  bool wanted = std::none_of(out.timelines.begin(), out.timelines.end(), [&](const Timeline& t) {
    return t.title.rfind(fmt::format("{}, {} ", r.policy, r.kind), 0) == 0;
  });
  if (wanted && r.outcome == Outcome::recovered && out.timelines.size() < kMaxTimelines) {
    out.timelines.push_back(make_timeline(r, traffic->series(), inj));
  }
  repair(r, injected.pid);
  sample(r, out);
  return std::optional<RunRecord>(std::move(r));
}

// The first detection since `since`, described; "" if none.
std::string Session::unprovoked_detection(uint64_t since) {
  for (const auto& e : events_.read_new()) {
    if (is_detection(e, since, UINT64_MAX)) return describe_detection(e);
  }
  return "";
}

void Session::assess(RunRecord& r, const RunTraffic& t, uint64_t inj, uint64_t started) {
  const uint64_t window = window_ns(), baseline = baseline_ns();
  const auto& events = events_.read_new();
  Observation o;
  o.injected = r.kind != kNoInjection;
  if (o.injected) {
    find_detection(events, inj, inj + window, r);
    o.detected = !r.detector.empty();
  } else {
    find_false_detections(events, started, inj + window, r);
    o.detected = !r.false_detections.empty();
  }
  find_recovery(events, inj, inj + window, r);
  const auto recv = t.receive_times();
  r.window_silence_ms = longest_silence(recv, inj, inj + window) / 1e6;
  r.interruption_ms = fault_silence(recv, r, inj) / 1e6;
  r.baseline_ms = longest_silence(recv, inj - kLeadNs - baseline, inj - kLeadNs) / 1e6;
  const auto seqs = t.received_seqs();
  Loss in_window = loss_in(seqs, t.start_ns(), o_.pps, inj, inj + window);
  Loss before = loss_in(seqs, t.start_ns(), o_.pps, inj - kLeadNs - baseline, inj - kLeadNs);
  r.lost = in_window.lost;
  r.tcp_survived = t.tcp_survived();
  if (!r.tcp_survived) r.detail += fmt::format("{}TCP stream: {}", r.detail.empty() ? "" : "; ", t.tcp_error());
  const uint64_t end = inj + window;
  o.flowing_at_end = std::any_of(recv.begin(), recv.end(), [&](uint64_t at) {
    return at + static_cast<uint64_t>(kFlowingMs * 1e6) >= end && at < end;
  });
  o.interruption_ms = r.window_silence_ms;
  o.sent = in_window.sent;
  o.lost = in_window.lost;
  o.baseline_lost = (before.lost * window + baseline / 2) / baseline;  // as if as long as the window
  r.outcome = classify(o);
  assess_apps(r, t, inj);
  assess_http(r, t, inj);
}

// The worst silence over app1's probe and every other app's low-rate stream.
void Session::assess_apps(RunRecord& r, const RunTraffic& t, uint64_t inj) const {
  r.interruption_all_apps_ms = r.interruption_ms;
  r.worst_app = lab_->apps().front().name;
  const auto& per_app = t.app_receive_times();
  for (size_t i = 0; i < per_app.size() && i + 1 < lab_->apps().size(); ++i) {
    double ms = fault_silence(per_app[i], r, inj) / 1e6;
    if (ms <= r.interruption_all_apps_ms) continue;
    r.interruption_all_apps_ms = ms;
    r.worst_app = lab_->apps()[i + 1].name;
  }
}

// The requests that overlapped the window, and the slowest of those that
// overlapped the baseline window: the same clients with no fault acting.
void Session::assess_http(RunRecord& r, const RunTraffic& t, uint64_t inj) const {
  if (!t.measured_http()) return;
  const uint64_t window = window_ns();
  HttpFigures h = http_in(t.http_requests(), inj, inj + window);
  HttpFigures baseline = http_in(t.http_requests(), inj - kLeadNs - baseline_ns(), inj - kLeadNs);
  h.baseline_latency_ms_max = baseline.latency_ms_max;
  h.baseline_failed = baseline.failed;
  r.http = h;
}

// A domain still running the process that was injected may carry a latent
// fault (a flipped register that has not mattered yet, an armed slow or drop
// hook): it is replaced, outside any run's window, so that no run inherits
// the one before it.
void Session::repair(const RunRecord& r, pid_t injected_pid) {
  auto st = manager_status(*lab_);
  if (!st || injected_pid == 0 || driver_pid(*st, r.domain) != injected_pid) return;
  (void)manager::control_request(lab_->control_socket(),
                                 {{"cmd", "inject"}, {"domain", r.domain}, {"fault", "kill"}}, 2000);
  // Until its successor runs, the frontends' view still names the old domain.
  for (int i = 0; i < 200; ++i) {
    st = manager_status(*lab_);
    pid_t now = st ? driver_pid(*st, r.domain) : 0;
    if (now != 0 && now != injected_pid) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// Every run is sampled in the same state, once its recovery is over: the
// failed domain replaced and, under warm-spare, every app's spare connected
// again. A lab that does not get there is sampled as it is (the next run's
// wait rebuilds it).
void Session::sample(RunRecord& r, CampaignResult& out) {
  (void)recovered_active(*lab_, policy_);
  auto st = manager_status(*lab_);
  if (!st) {
    out.info.resource_errors.push_back(fmt::format("run {}: the manager's status: {}", r.run, st.error().message));
    return;
  }
  note_processes(*st, trace_.processes);
  auto s = sample_resources(*st);
  if (!s) {
    out.info.resource_errors.push_back(fmt::format("run {}: {}", r.run, s.error().message));
    return;
  }
  r.resources = std::move(*s);
}

// Once every lab is down: what of them is still there.
std::vector<std::string> leftovers_of(const LabTrace& trace) {
  std::vector<std::string> out;
  for (const auto& sfx : trace.suffixes) {
    for (auto& l : lab::leftovers(sfx)) out.push_back(fmt::format("lab {}: {}", sfx, l));
  }
  for (auto& p : still_running(trace.processes)) out.push_back(std::move(p));
  for (auto& p : running_children()) out.push_back(std::move(p));
  return out;
}

double loadavg_now() { return loadavg_1min(read_text("/proc/loadavg")); }

CampaignInfo make_info(const CampaignOptions& o) {
  CampaignInfo info;
  info.started = iso8601(wall_ns());
  info.host = host_description();
  info.command = o.command;
  info.domain = o.domain;
  for (const auto& p : o.policies) {
    info.window_ms = std::max<double>(info.window_ms, window_ms_for(o, p));
    info.window_detail += fmt::format("{}{} ms under {}", info.window_detail.empty() ? "" : ", ", window_ms_for(o, p), p);
  }
  info.gap_threshold_ms = static_cast<double>(kGapNs) / 1e6;
  info.apps = o.apps;
  info.app_stream_pps = o.apps > 1 ? app_stream_pps(static_cast<size_t>(o.apps - 1)) : 0;
  info.load = o.load;
  info.load_detail = describe_load(o.load, o.apps, ::sysconf(_SC_NPROCESSORS_ONLN));
  info.loadavg_start = loadavg_now();
  return info;
}

}  // namespace

double longest_silence(std::vector<uint64_t> recv_ns, uint64_t from, uint64_t until) {
  std::sort(recv_ns.begin(), recv_ns.end());
  uint64_t longest = 0;
  uint64_t last = from;  // no echo before the window: silent from its start
  for (uint64_t t : recv_ns) {
    if (t > from) longest = std::max(longest, t - last);
    if (t >= until) return static_cast<double>(longest);
    last = t;
  }
  // The stream fell silent for good: the silence runs to the window's end.
  return static_cast<double>(std::max(longest, until > last ? until - last : 0));
}

double silence_until_recovered(const std::vector<uint64_t>& recv_ns, uint64_t from, uint64_t recovered_at,
                               uint64_t until) {
  bool came_back = std::any_of(recv_ns.begin(), recv_ns.end(),
                               [&](uint64_t t) { return t >= recovered_at && t < until; });
  return longest_silence(recv_ns, from, came_back ? recovered_at : until);
}

Loss loss_in(const std::vector<uint32_t>& received_seqs, uint64_t start_ns, uint32_t pps, uint64_t from,
             uint64_t until) {
  if (pps == 0 || until <= from) return {};
  const uint64_t period = 1'000'000'000ULL / pps;
  auto first_at_or_after = [&](uint64_t t) { return t <= start_ns ? 0 : (t - start_ns + period - 1) / period; };
  uint64_t first = first_at_or_after(from), end = first_at_or_after(until);
  Loss l;
  l.sent = end - first;
  std::vector<bool> seen(l.sent, false);
  for (uint32_t seq : received_seqs) {
    if (seq >= first && seq < end) seen[seq - first] = true;
  }
  l.lost = static_cast<uint64_t>(std::count(seen.begin(), seen.end(), false));
  return l;
}

Result<CampaignResult> run_campaign(const CampaignOptions& o) {
  if (auto s = check_options(o); !s) return tl::unexpected(s.error());
  if (auto s = check_tools(o); !s) return tl::unexpected(s.error());
  CampaignResult out;
  out.info = make_info(o);
  int number = 0;
  LabTrace trace;
  for (const auto& policy : o.policies) {
    Session session(policy, o, trace);
    if (auto s = session.open(); !s) {
      (void)session.close();
      return fail("building the {} lab: {}", policy, s.error().message);
    }
    for (const auto& kind : o.kinds) {
      for (int i = 0; i < o.runs; ++i) {
        if (o.interrupted && o.interrupted()) {
          out.interrupted = true;
          break;
        }
        ++number;
        auto r = session.run(kind, run_seed(o.seed, number), number, out);
        if (!r) {
          (void)session.close();
          return fail("run {} ({} under {}): {}", number, kind, policy, r.error().message);
        }
        out.runs.push_back(*r);
        if (o.progress) o.progress(*r);
      }
    }
    // While the load still runs: what the host carried during the runs.
    out.info.loadavg_end = loadavg_now();
    if (auto s = session.close(); !s) return tl::unexpected(s.error());
    if (out.interrupted) break;
  }
  out.info.leftovers = leftovers_of(trace);
  out.info.leftovers_checked = true;
  return out;
}

}  // namespace ng::campaign

// `nicguard demo`: the whole story in one command. A lab with live traffic,
// driver failures injected under it, and for each: which detector found it,
// how fast, and the interruption the app's clients saw; once with a warm
// spare and once with the restart policy.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <map>
#include <thread>

#include "cli/commands.hpp"
#include "inject/inject.hpp"
#include "lab/lab.hpp"
#include "manager/control.hpp"
#include "netlink/netlink.hpp"
#include "probe/probe.hpp"

namespace {

using nlohmann::json;

// A forked child that runs fn inside a namespace and writes its JSON answer
// to a pipe; reaped (and killed if still running) by the destructor.
class NetnsChild {
 public:
  template <typename Fn>
  static ng::Result<NetnsChild> start(const std::string& netns, Fn fn) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return ng::fail_errno("creating a pipe");
    pid_t pid = ::fork();
    if (pid < 0) return ng::fail_errno("forking a traffic process");
    if (pid == 0) {
      ::close(p[0]);
      std::string out;
      if (auto s = ng::netlink::enter_netns(netns); !s) {
        out = json{{"error", s.error().message}}.dump();
      } else {
        out = fn().dump();
      }
      [[maybe_unused]] auto n = ::write(p[1], out.data(), out.size());
      ::_exit(0);
    }
    ::close(p[1]);
    NetnsChild c;
    c.pid_ = pid;
    c.out_ = ng::UniqueFd(p[0]);
    return c;
  }
  NetnsChild() = default;
  NetnsChild(NetnsChild&& o) noexcept : pid_(std::exchange(o.pid_, 0)), out_(std::move(o.out_)) {}
  ~NetnsChild() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  // Waits for the child and parses what it wrote.
  json result() {
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(out_.get(), buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
    ::waitpid(pid_, nullptr, 0);
    pid_ = 0;
    return json::parse(text, nullptr, false);
  }

 private:
  pid_t pid_ = 0;
  ng::UniqueFd out_;
};

constexpr uint16_t kProbePort = 7777;
constexpr uint64_t kGapNs = 2'000'000;  // silences shorter than this are not a failover's
// A failover's effects are looked for this long after its injection; the
// same stream, as long before it, is the baseline with no failure in it.
constexpr uint64_t kWindowNs = 400'000'000;
constexpr uint64_t kBaselineGapNs = 100'000'000;  // between the baseline window and the injection

struct DemoOptions {
  std::vector<std::string> policies{"warm-spare", "restart"};
  std::vector<std::string> faults{"crash", "hang"};
  int runs = 3;
  bool json = false;
};

// One injected failure and what followed it.
struct Run {
  std::string policy;
  std::string fault;
  std::string domain;
  uint64_t injected_ns = 0;
  std::string detector;     // "" when no detector fired
  double detection_ms = -1;  // injection to the first detection
  double interruption_ms = 0;  // the stream's longest silence in the window after it
  double ambient_ms = 0;       // the same, in as long a window before it: the baseline
};

// Between two failures the failed domain is back as the spare; under the
// restart policy the next failure waits past the manager's back-off window.
// (2 s up resets the back-off; each of two domains fails every other time).
double spacing_s(const std::string& policy) { return policy == "restart" ? 2.5 : 1.5; }

std::vector<json> read_events(const std::string& path) {
  std::vector<json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto j = json::parse(line, nullptr, false);
    if (j.is_object()) out.push_back(std::move(j));
  }
  return out;
}

// The domain app1 sends through, once the last failure is recovered from:
// an active domain and, under warm-spare, a connected spare. "" if that does
// not happen within 10 s.
std::string recovered_active(const ng::lab::Lab& lab, const std::string& policy) {
  for (int i = 0; i < 200; ++i) {
    auto s = ng::manager::control_request(lab.control_socket(), {{"cmd", "status"}}, 2000);
    if (s && (*s)["apps"].is_array() && !(*s)["apps"].empty()) {
      const auto& app = (*s)["apps"][0];
      int ready = 0;
      for (const auto& b : app.value("backends", json::array())) {
        std::string st = b.value("state", "");
        ready += st == "active" || st == "spare";
      }
      bool spare_ok = policy == "restart" || ready == 2;
      if (app["active_driver"].is_string() && spare_ok) return app["active_driver"].get<std::string>();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return "";
}

// Fills in what the event log and the stream's silences say about each run.
void assess(std::vector<Run>& runs, const std::vector<json>& events, const json& gaps) {
  for (size_t i = 0; i < runs.size(); ++i) {
    Run& r = runs[i];
    uint64_t until = r.injected_ns + kWindowNs;
    uint64_t base_from = r.injected_ns - kBaselineGapNs - kWindowNs;
    uint64_t base_until = r.injected_ns - kBaselineGapNs;
    for (const auto& e : events) {
      uint64_t t = e.value("ts_mono_ns", uint64_t{0});
      if (e.value("event", "") != "detect" || t < r.injected_ns || t >= until) continue;
      if (e.value("domain", "") != "driver-" + r.domain) continue;
      r.detector = e.value("detector", "");
      r.detection_ms = static_cast<double>(t - r.injected_ns) / 1e6;
      break;
    }
    for (const auto& g : gaps) {
      uint64_t begin = g.value("begin_mono_ns", uint64_t{0});
      double ms = g.value("ms", 0.0);
      if (begin >= base_from && begin < base_until) r.ambient_ms = std::max(r.ambient_ms, ms);
      // A silence that began up to one gap before the injection is its own.
      if (begin + kGapNs < r.injected_ns || begin >= until) continue;
      r.interruption_ms = std::max(r.interruption_ms, ms);
    }
  }
}

ng::Result<std::vector<Run>> run_policy(const std::string& policy, const DemoOptions& o) {
  ng::lab::LabOptions lo;
  lo.policy = policy;
  fmt::print("\n== {}: building a lab ({} driver domain{}) ==\n", policy,
             policy == "restart" ? 1 : 2, policy == "restart" ? "" : "s");
  auto lab = ng::lab::Lab::up(lo);
  if (!lab) return tl::unexpected(lab.error());
  const auto& app = lab->apps().front();
  double seconds = 1.5 + spacing_s(policy) * static_cast<double>(o.runs * o.faults.size());
  auto echo = NetnsChild::start(app.netns, [seconds] {
    (void)ng::probe::use_realtime_priority();
    auto s = ng::probe::run_echo(kProbePort, seconds + 3);
    return s ? json{{"ok", true}} : json{{"error", s.error().message}};
  });
  if (!echo) return tl::unexpected(echo.error());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ng::probe::StreamOptions so;
  so.address = app.ipv4_address();
  so.port = kProbePort;
  so.duration_s = seconds;
  so.gap_report_ns = kGapNs;
  auto stream = NetnsChild::start(lab->ext().netns, [so] {
    (void)ng::probe::use_realtime_priority();
    auto r = ng::probe::run_stream(so);
    return r ? ng::probe::to_json(*r) : json{{"error", r.error().message}};
  });
  if (!stream) return tl::unexpected(stream.error());
  fmt::print("lab {}: {} UDP packets/s from the external host to the app, echoed back\n",
             lab->suffix(), so.pps);
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  std::vector<Run> runs;
  for (const auto& fault : o.faults) {
    for (int i = 0; i < o.runs; ++i) {
      Run r{policy, fault, recovered_active(*lab, policy)};
      if (r.domain.empty()) return ng::fail("lab {} did not recover from the last failure in 10 s", lab->suffix());
      auto answer = ng::manager::control_request(
          lab->control_socket(), {{"cmd", "inject"}, {"domain", r.domain}, {"fault", fault}}, 2000);
      if (!answer || !answer->value("ok", false)) {
        return ng::fail("injecting {} into driver-{}: {}", fault, r.domain,
                        answer ? answer->value("error", std::string("refused")) : answer.error().message);
      }
      r.injected_ns = answer->value("ts_mono_ns", uint64_t{0});
      fmt::print("  {} into driver-{}\n", fault, r.domain);
      runs.push_back(r);
      std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(spacing_s(policy) * 1000)));
    }
  }
  json probe = stream->result();
  if (!probe.is_object() || probe.contains("error")) {
    return ng::fail("probe: {}", probe.is_object() ? probe["error"].dump() : "no report");
  }
  assess(runs, read_events(lab->state_dir() + "/events.jsonl"), probe["gaps"]);
  fmt::print("stream: {} sent, {} lost, {} duplicated\n", probe.value("sent", 0),
             probe.value("lost", 0), probe.value("duplicated", 0));
  if (auto s = lab->down(); !s) fmt::print(stderr, "warning: {}\n", s.error().message);
  return runs;
}

json stats_json(std::vector<double> v) {
  if (v.empty()) return nullptr;
  double max = *std::max_element(v.begin(), v.end());
  return {{"p50", ng::probe::percentile(v, 50)}, {"p99", ng::probe::percentile(v, 99)},
          {"max", max}};
}

std::string cell(const json& s) {
  if (s.is_null()) return "-";
  return fmt::format("{:.2f}/{:.2f}/{:.2f}", s["p50"].get<double>(), s["p99"].get<double>(),
                     s["max"].get<double>());
}

// One row per policy and fault: the figures over every run.
json summarize(const std::vector<Run>& runs, const std::string& policy, const std::string& fault) {
  std::vector<double> detect, interrupt, ambient;
  std::map<std::string, int> detectors;
  int total = 0;
  for (const auto& r : runs) {
    if (r.policy != policy || r.fault != fault) continue;
    ++total;
    ++detectors[r.detector.empty() ? "none" : r.detector];
    if (r.detection_ms >= 0) detect.push_back(r.detection_ms);
    interrupt.push_back(r.interruption_ms);
    ambient.push_back(r.ambient_ms);
  }
  return {{"policy", policy},          {"fault", fault},
          {"runs", total},             {"detected", detect.size()},
          {"detectors", detectors},    {"detection_ms", stats_json(detect)},
          {"interruption_ms", stats_json(interrupt)}, {"baseline_ms", stats_json(ambient)}};
}

int run_demo(const DemoOptions& o) {
  std::vector<Run> runs;
  for (const auto& policy : o.policies) {
    auto r = run_policy(policy, o);
    if (!r) {
      fmt::print(stderr, "demo: {}\n", r.error().message);
      return 1;
    }
    runs.insert(runs.end(), r->begin(), r->end());
  }
  json rows = json::array();
  fmt::print("\n{:<11} {:<7} {:>4} {:<10} {:>18} {:>18} {:>18}\n", "policy", "fault", "runs",
             "detector", "detection ms", "interruption ms", "baseline ms");
  fmt::print("{:<11} {:<7} {:>4} {:<10} {:>18} {:>18} {:>18}\n", "", "", "", "", "p50/p99/max",
             "p50/p99/max", "p50/p99/max");
  for (const auto& policy : o.policies) {
    for (const auto& fault : o.faults) {
      json row = summarize(runs, policy, fault);
      std::string det;
      for (const auto& [k, v] : row["detectors"].items()) det += fmt::format("{}{}x{}", det.empty() ? "" : ",", v.get<int>(), k);
      fmt::print("{:<11} {:<7} {:>4} {:<10} {:>18} {:>18} {:>18}\n", policy, fault,
                 row["runs"].get<int>(), det, cell(row["detection_ms"]),
                 cell(row["interruption_ms"]), cell(row["baseline_ms"]));
      rows.push_back(row);
    }
  }
  fmt::print("\ninterruption: the echoed stream's longest silence in the {} ms after each "
             "injection, the failed domain's restart included (0: none over {} ms);\nbaseline: "
             "its longest silence in {} ms without a failure, just before each injection\n",
             kWindowNs / 1'000'000, kGapNs / 1'000'000, kWindowNs / 1'000'000);
  if (o.json) {
    json all = json::array();
    for (const auto& r : runs) {
      all.push_back({{"policy", r.policy}, {"fault", r.fault}, {"domain", "driver-" + r.domain},
                     {"detector", r.detector}, {"detection_ms", r.detection_ms},
                     {"interruption_ms", r.interruption_ms}, {"baseline_ms", r.ambient_ms}});
    }
    fmt::print("{}\n", json{{"summary", rows}, {"runs", all}}.dump(2));
  }
  return 0;
}

}  // namespace

void ng::cli::add_demo_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<DemoOptions>();
  auto* cmd = app.add_subcommand(
      "demo", "Build a lab, run live traffic, inject driver failures, and show the detection "
              "time and the interruption the app's clients saw, under the warm-spare and the "
              "restart policy");
  cmd->add_flag("--json", o->json, "Also print every run and the table as JSON");
  cmd->add_option("--runs", o->runs, "Failures per policy and fault")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--faults", o->faults, "Faults to inject (see `nicguard inject --help`)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--policies", o->policies, "warm-spare, restart or both")
      ->delimiter(',')
      ->capture_default_str();
  cmd->callback([o, &exit_code] {
    for (const auto& f : o->faults) {
      if (!ng::inject::parse_fault(f)) {
        fmt::print(stderr, "demo: unknown fault '{}': expected one of {}\n", f, ng::inject::fault_list());
        exit_code = 2;
        return;
      }
    }
    for (const auto& p : o->policies) {
      if (p != "warm-spare" && p != "restart") {
        fmt::print(stderr, "demo: unknown policy '{}': expected warm-spare or restart\n", p);
        exit_code = 2;
        return;
      }
    }
    exit_code = run_demo(*o);
  });
}

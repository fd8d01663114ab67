// Fault injection as the evaluation uses it: each inject kind produces the
// failure it claims, regflip repeats its choice for a seed, a small campaign
// writes a well-formed report, and the demo runs end to end. Real labs, real
// driver domains, real traffic.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <sys/types.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "campaign/campaign.hpp"
#include "support.hpp"

namespace ng::it {
namespace {

nlohmann::json parse_json_tail(const std::string& out) {
  auto at = out.find("{\n");
  if (at == std::string::npos) return nullptr;
  return nlohmann::json::parse(out.substr(at), nullptr, false);
}

int count_lines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

// The regflip's choice: which register, which bit, after how long.
std::string choice(const nlohmann::json& answer) {
  return fmt::format("{} bit {} after {} us", answer.value("register", ""), answer.value("bit", -1),
                     answer.value("delay_us", -1));
}

TEST(InjectTest, RegflipRepeatsItsChoiceForASeed) {
  LabGuard lab;
  ASSERT_TRUE(lab.ok()) << lab.error();
  std::vector<nlohmann::json> answers;
  for (int i = 0; i < 2; ++i) {
    // The spare: a flip there hurts no traffic, and both answers name the same process.
    auto r = run(fmt::format("{} inject b regflip --seed 4242 --json -s {}", quote(kNicguard),
                             quote(lab.control_socket())),
                 10s);
    ASSERT_TRUE(r.ok()) << r.describe();
    answers.push_back(nlohmann::json::parse(r.out, nullptr, false));
    ASSERT_TRUE(answers.back().is_object()) << r.out;
    EXPECT_EQ(answers.back().value("seed", uint64_t{0}), 4242u) << r.out;
  }
  EXPECT_EQ(choice(answers[0]), choice(answers[1]));
  auto other = run(fmt::format("{} inject b regflip --seed 4243 --json -s {}", quote(kNicguard),
                               quote(lab.control_socket())),
                   10s);
  ASSERT_TRUE(other.ok()) << other.describe();
  EXPECT_NE(choice(answers[0]), choice(nlohmann::json::parse(other.out)));
  EXPECT_TRUE(has_event(lab, 0, {{"event", "inject"}, {"fault", "regflip"}, {"domain", "driver-b"}}))
      << event_lines(lab);
}

TEST(InjectTest, UnknownKindIsRefusedWithTheList) {
  auto r = run(fmt::format("{} inject a bitflip -s /nonexistent.sock", quote(kNicguard)), 10s);
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("regflip"), std::string::npos) << r.err;
}

// One campaign run each: what every kind that the failover tests do not
// cover leads to, as the campaign classifies it.
TEST(CampaignTest, EveryOtherKindProducesTheFailureItClaims) {
  TempDir out("ng-campaign");
  auto r = run(fmt::format("timeout -k 10 240 {} campaign --policy warm-spare --kind "
                           "stall-rx,drop,leak,slow --runs 1 --window-ms 1000 --out {} --json",
                           quote(kNicguard), quote(out.path())),
               260s);
  ASSERT_TRUE(r.ok()) << r.describe();
  auto summary = parse_json_tail(r.out);
  ASSERT_TRUE(summary.is_object()) << r.out;
  std::map<std::string, nlohmann::json> by_kind;
  for (const auto& g : summary["groups"]) by_kind[g.value("kind", "")] = g;
  // Receive stops, or every frame is dropped, while the domain beats on: the
  // receive-path check (the lab's external host answers its ARP questions)
  // finds it, a stall.
  for (const char* kind : {"stall-rx", "drop"}) {
    EXPECT_EQ(by_kind[kind].value("recovered", 0), 1) << by_kind[kind].dump();
    EXPECT_EQ(by_kind[kind]["detectors"].value("stall", 0), 1) << by_kind[kind].dump();
  }
  // A leak ends in the domain dying at its memory limit.
  EXPECT_EQ(by_kind["leak"].value("recovered", 0), 1) << by_kind["leak"].dump();
  // A slow driver (5 ms per batch) beats and answers: no detector takes it
  // for failed. At 10,000 packets/s its queues may overflow, which the
  // probe names a silent failure; otherwise it had no effect.
  const auto& slow = by_kind["slow"];
  EXPECT_EQ(slow.value("detected", -1), 0) << slow.dump();
  EXPECT_EQ(slow.value("no_effect", 0) + slow.value("silent_failures", 0), 1) << slow.dump();
}

TEST(CampaignTest, SmallCampaignWritesAWellFormedReport) {
  TempDir out("ng-campaign");
  auto r = run(fmt::format("timeout -k 10 300 {} campaign --policy warm-spare,restart --kind crash,regflip "
                           "--runs 2 --seed 7 --out {} --json",
                           quote(kNicguard), quote(out.path())),
               320s);
  ASSERT_TRUE(r.ok()) << r.describe();
  auto printed = parse_json_tail(r.out);
  auto summary = nlohmann::json::parse(read_file(out.file("summary.json")), nullptr, false);
  ASSERT_TRUE(summary.is_object()) << read_file(out.file("summary.json"));
  EXPECT_EQ(printed, summary);
  ASSERT_EQ(summary["groups"].size(), 4u) << summary.dump(2);
  for (const auto& g : summary["groups"]) {
    EXPECT_EQ(g.value("runs", 0), 2) << g.dump();
    for (const char* key : {"manifested", "detected", "recovered", "recovered_within_10ms",
                            "tcp_connections_lost", "silent_failures", "interruption_ms", "detection_ms"}) {
      EXPECT_TRUE(g.contains(key)) << key << " missing in " << g.dump();
    }
    EXPECT_EQ(g.value("tcp_connections_lost", -1), 0) << g.dump();
    if (g.value("kind", "") == "crash") {
      EXPECT_EQ(g.value("recovered", 0), 2) << g.dump();
      EXPECT_EQ(g["detectors"].value("crash", 0), 2) << g.dump();
    }
  }
  EXPECT_EQ(count_lines(read_file(out.file("runs.csv"))), 1 + 8);
  std::string html = read_file(out.file("report.html"));
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("</html>"), std::string::npos);
}

TEST(CampaignTest, BadKindIsRefusedBeforeAnythingIsBuilt) {
  TempDir out("ng-campaign");
  auto r = run(fmt::format("{} campaign --kind crash,meltdown --runs 1 --out {}", quote(kNicguard),
                           quote(out.path())),
               20s);
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("meltdown"), std::string::npos) << r.err;
}

TEST(CampaignTest, BadAppsOrLoadIsRefusedBeforeAnythingIsBuilt) {
  TempDir out("ng-campaign");
  for (const char* bad : {"--apps 0", "--apps 65", "--load gpu", "--load cpu,disk"}) {
    auto r = run(fmt::format("{} campaign --kind none {} --runs 1 --out {}", quote(kNicguard), bad,
                             quote(out.path())),
                 20s);
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_NE(r.err.find(bad[2] == 'a' ? "--apps" : "--load"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(out.file("summary.json")));
}

// The campaign through its C++ API, bounded: past `limit` it stops after the
// current run (and the test then fails on `interrupted`).
ng::campaign::CampaignOptions api_options(std::chrono::seconds limit) {
  ng::campaign::CampaignOptions o;
  o.binary = kNicguard;  // the labs' manager: not this test binary
  o.command = "campaign integration test";
  auto deadline = std::chrono::steady_clock::now() + limit;
  o.interrupted = [deadline] { return std::chrono::steady_clock::now() > deadline; };
  return o;
}

// Processes this test started that are still running: a campaign leaves none.
std::vector<std::string> live_children() {
  std::vector<std::string> out;
  const std::string parent = fmt::format(" {} ", ::getpid());
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    auto stat = read_file(e.path().string() + "/stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos || close + 2 >= stat.size()) continue;
    char state = stat[close + 2];
    // "S PPID ..." after the command name.
    if (state == 'Z' || stat.compare(close + 3, parent.size(), parent) != 0) continue;
    out.push_back(e.path().filename().string() + " " + process_cmdline(std::stoi(e.path().filename().string())));
  }
  return out;
}

// Nothing injected, under both loads, across four apps: the runs count the
// detectors' false alarms (how many is the detectors' business, not this
// test's), no run takes a fault's outcome, every app's stream is measured,
// and no process of the campaign (load, echoes, nginx, lab) outlives it.
TEST(CampaignTest, NoneRunsCountFalseAlarmsUnderLoadOnEveryApp) {
  auto o = api_options(100s);
  o.kinds = {"none"};
  o.apps = 4;
  o.load = {"cpu", "tcp"};
  o.runs = 2;
  auto result = ng::campaign::run_campaign(o);
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_FALSE(result->interrupted);
  EXPECT_TRUE(live_children().empty()) << fmt::format("{}", fmt::join(live_children(), "\n"));
  TempDir out("ng-campaign");
  ASSERT_TRUE(ng::campaign::write_report(out.path(), result->runs, result->timelines, result->info));
  auto summary = nlohmann::json::parse(read_file(out.file("summary.json")), nullptr, false);
  ASSERT_TRUE(summary.is_object()) << read_file(out.file("summary.json"));
  ASSERT_TRUE(summary.contains("false_detections")) << summary.dump(2);
  EXPECT_TRUE(summary["false_detections"].is_number()) << summary.dump(2);
  ASSERT_EQ(summary["groups"].size(), 1u) << summary.dump(2);
  EXPECT_TRUE(summary["groups"][0]["false_detections"].is_number()) << summary.dump(2);
  EXPECT_EQ(summary["load"]["kinds"], (nlohmann::json{"cpu", "tcp"})) << summary.dump(2);
  EXPECT_TRUE(summary["load"]["loadavg_1min_start"].is_number()) << summary.dump(2);
  EXPECT_TRUE(summary["load"]["loadavg_1min_end"].is_number()) << summary.dump(2);
  ASSERT_EQ(result->runs.size(), 2u);
  for (const auto& r : result->runs) {
    EXPECT_TRUE(r.outcome == ng::campaign::Outcome::no_effect || r.outcome == ng::campaign::Outcome::false_alarm)
        << "run " << r.run << ": " << ng::campaign::outcome_name(r.outcome);
    EXPECT_EQ(r.false_detections.empty(), r.outcome == ng::campaign::Outcome::no_effect) << r.run;
    // Where no detector fired nothing failed over, so every app's stream
    // was echoed: none was silent for the whole window.
    if (r.outcome == ng::campaign::Outcome::no_effect) {
      EXPECT_LT(r.interruption_all_apps_ms, ng::campaign::window_ms_for(o, r.policy)) << r.run << " " << r.worst_app;
    }
    EXPECT_FALSE(r.worst_app.empty()) << r.run;
  }
  EXPECT_NE(read_file(out.file("runs.csv")).find("interruption_all_apps_ms,worst_app"), std::string::npos);
}

// One crash with nginx in app1 and HTTP clients in the external host: the
// run carries HTTP figures and the summary compares them with no fault.
TEST(CampaignTest, HttpFiguresForEveryRunAndTheNoFaultComparison) {
  auto o = api_options(60s);
  o.kinds = {"crash"};
  o.runs = 1;
  o.http = true;
  auto result = ng::campaign::run_campaign(o);
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_FALSE(result->interrupted);
  EXPECT_TRUE(live_children().empty()) << fmt::format("{}", fmt::join(live_children(), "\n"));
  ASSERT_EQ(result->runs.size(), 1u);
  const auto& r = result->runs[0];
  ASSERT_TRUE(r.http.has_value());
  EXPECT_GT(r.http->requests, 0u);  // the clients reached nginx through the data path
  TempDir out("ng-campaign");
  ASSERT_TRUE(ng::campaign::write_report(out.path(), result->runs, result->timelines, result->info));
  auto summary = nlohmann::json::parse(read_file(out.file("summary.json")), nullptr, false);
  ASSERT_TRUE(summary.is_object());
  const auto& http = summary["groups"][0]["http"];
  ASSERT_TRUE(http.is_object()) << summary.dump(2);
  EXPECT_TRUE(http["failed_requests"].is_number()) << http.dump();
  for (const char* q : {"p50", "p99", "max"}) EXPECT_TRUE(http["latency_ms"][q].is_number()) << http.dump();
  EXPECT_TRUE(http["no_fault"]["latency_ms_max"].is_number()) << http.dump();
  EXPECT_TRUE(summary["http"]["failed_requests"].is_number()) << summary.dump(2);
  auto csv = read_file(out.file("runs.csv"));
  EXPECT_NE(csv.find("http_failed"), std::string::npos);
  EXPECT_EQ(csv.find(",,,,,,\n"), std::string::npos) << csv;  // the HTTP columns are filled
  EXPECT_NE(read_file(out.file("report.html")).find("<h2>HTTP"), std::string::npos);
}

TEST(DemoTest, OneCrashPerPolicyIsDetectedAndReported) {
  TempDir out("ng-demo");
  auto r = run(fmt::format("timeout -k 10 240 {} demo --runs 1 --faults crash --json --out {}",
                           quote(kNicguard), quote(out.path())),
               260s);
  ASSERT_TRUE(r.ok()) << r.describe();
  auto j = parse_json_tail(r.out);
  ASSERT_TRUE(j.is_object()) << r.out;
  ASSERT_EQ(j["table"].size(), 2u) << j.dump(2);
  for (const auto& row : j["table"]) {
    EXPECT_EQ(row.value("runs", 0), 1) << row.dump();
    EXPECT_EQ(row.value("detector", ""), "1xcrash") << row.dump();
    EXPECT_EQ(row.value("tcp_survived", ""), "1/1") << row.dump();
  }
  EXPECT_NE(read_file(out.file("report.html")).find("<svg"), std::string::npos);
}

}  // namespace
}  // namespace ng::it


#include "campaign/report.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

using ng::campaign::CampaignInfo;
using ng::campaign::Outcome;
using ng::campaign::RunRecord;
using ng::campaign::Timeline;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

RunRecord run(int n, std::string policy, std::string kind, Outcome o, std::string detector,
              double detection, double recovery, double interruption, double baseline,
              uint64_t lost, bool tcp = true) {
  RunRecord r;
  r.run = n;
  r.policy = std::move(policy);
  r.kind = std::move(kind);
  r.seed = r.kind == "regflip" ? 1000 + static_cast<uint64_t>(n) : 0;
  r.domain = "driver-a";
  r.detail = fmt::format("injection {}", n);
  r.detector = std::move(detector);
  r.outcome = o;
  r.detection_ms = detection;
  r.recovery_ms = recovery;
  r.interruption_ms = interruption;
  r.baseline_ms = baseline;
  r.lost = lost;
  r.tcp_survived = tcp;
  return r;
}

// Two policies, two kinds, interleaved as a campaign runs them; every outcome.
std::vector<RunRecord> sample_runs() {
  using enum Outcome;
  return {
      run(1, "warm-spare", "crash", recovered, "hangup", 0.4, 0.9, 3.0, 0.2, 30),
      run(2, "warm-spare", "regflip", no_effect, "", -1, -1, 0.3, 0.3, 0),
      run(3, "restart", "crash", recovered, "hangup", 0.5, 80, 95, 0.25, 900),
      run(4, "warm-spare", "crash", recovered, "heartbeat", 5, 5.5, 12, 0.1, 120),
      run(5, "warm-spare", "regflip", silent_failure, "", -1, -1, 50, 0.2, 500, false),
      run(6, "warm-spare", "regflip", not_recovered, "heartbeat", 20, -1, 1000, 0.4, 10000, false),
      run(7, "warm-spare", "crash", recovered, "hangup", 0.6, 1.1, 6.0, 0.3, 60),
      run(8, "restart", "crash", recovered, "hangup", 0.7, 90, 105, 0.2, 1000),
      run(9, "restart", "regflip", no_effect, "", -1, -1, 0.2, 0.2, 0),
  };
}

// The sample runs with what --apps, --http and --kind none add: every app's
// worst silence, HTTP figures, and two none runs, one of them a false alarm.
std::vector<RunRecord> with_new_fields() {
  auto runs = sample_runs();
  for (auto& r : runs) {
    r.interruption_all_apps_ms = r.interruption_ms;
    r.worst_app = "app1";
  }
  runs[0].interruption_all_apps_ms = 7.5;  // warm-spare crash: app3 was worse than app1's 3 ms
  runs[0].worst_app = "app3";
  runs[3].interruption_all_apps_ms = 14;  // app1's 12 ms beaten by app2
  runs[3].worst_app = "app2";
  runs[0].http = ng::campaign::HttpFigures{400, 2, 1.5, 9, 12, 3, 0};
  runs[3].http = ng::campaign::HttpFigures{380, 0, 1.2, 4, 6, 2.5, 1};
  auto none = [](int n, Outcome o, std::vector<std::string> detections) {
    RunRecord r = run(n, "warm-spare", "none", o, detections.empty() ? "" : "hang", -1, -1, 0.3, 0.2, 0);
    r.detail = "nothing injected";
    r.interruption_all_apps_ms = 5.2;
    r.worst_app = "app1";
    r.false_detections = std::move(detections);
    return r;
  };
  runs.push_back(none(10, Outcome::false_alarm, {"driver-a hang by front-app1: x", "driver-a crash by front-app2: y"}));
  runs.push_back(none(11, Outcome::no_effect, {}));
  return runs;
}

CampaignInfo sample_info() {
  return {"2024-05-01T10:00:00Z", "Linux 6.8 lab 2 cpus", "nicguard campaign --runs 9", 1000, 2};
}

std::vector<Timeline> sample_timelines() {
  Timeline t{"warm-spare, crash (run 1) & more", 0.4, 0.9, {}};
  uint32_t seq = 0;
  for (double ms = -5; ms < 0.2; ms += 0.1) t.points.push_back({ms, seq++, 50});
  for (double ms = 3.2; ms < 8; ms += 0.1) t.points.push_back({ms, seq++, 80});
  return {t};
}

// Not a parser: enough to catch an unclosed or misnested tag, an unquoted
// attribute or a bare '&', which is what a browser would silently repair.
std::string well_formed_error(const std::string& page) {
  std::vector<std::string> open;
  static const std::string kEntities[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&#39;"};
  for (size_t i = 0; (i = page.find_first_of("<&", i)) != std::string::npos;) {
    if (page[i] == '&') {
      bool ok = false;
      for (const auto& e : kEntities) ok = ok || page.compare(i, e.size(), e) == 0;
      if (!ok) return "bare & at " + std::to_string(i) + ": " + page.substr(i, 20);
      ++i;
      continue;
    }
    size_t end = page.find('>', i);
    if (end == std::string::npos) return "unterminated tag at " + std::to_string(i);
    std::string tag = page.substr(i + 1, end - i - 1);
    i = end + 1;
    if (tag.starts_with('!')) continue;  // <!DOCTYPE html>
    for (size_t eq = tag.find('='); eq != std::string::npos; eq = tag.find('=', eq + 1)) {
      if (eq + 1 >= tag.size() || tag[eq + 1] != '"') return "unquoted attribute in <" + tag + ">";
    }
    if (tag.starts_with('/')) {
      auto name = tag.substr(1);
      if (open.empty()) return "</" + name + "> closes nothing";
      if (open.back() != name) return "</" + name + "> closes <" + open.back() + ">";
      open.pop_back();
      continue;
    }
    if (tag.ends_with('/')) continue;
    auto name = tag.substr(0, tag.find_first_of(" \t\n"));
    if (name.empty() || !std::isalpha(static_cast<unsigned char>(name[0])))
      return "bad tag <" + tag + ">";
    open.push_back(name);
  }
  return open.empty() ? "" : "unclosed <" + open.back() + ">";
}

size_t occurrences(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t i = 0; (i = s.find(what, i)) != std::string::npos; i += what.size()) ++n;
  return n;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST(ReportOutcome, Names) {
  EXPECT_STREQ(outcome_name(Outcome::no_effect), "no-effect");
  EXPECT_STREQ(outcome_name(Outcome::recovered), "recovered");
  EXPECT_STREQ(outcome_name(Outcome::not_recovered), "not-recovered");
  EXPECT_STREQ(outcome_name(Outcome::silent_failure), "silent-failure");
  EXPECT_STREQ(outcome_name(Outcome::false_alarm), "false-alarm");
}

TEST(ReportSummary, GroupsInFirstSeenOrderWithCounts) {
  auto s = ng::campaign::summary_json(sample_runs(), sample_info());
  EXPECT_EQ(s["campaign"]["command"], "nicguard campaign --runs 9");
  EXPECT_EQ(s["campaign"]["window_ms"], 1000.0);
  EXPECT_EQ(s["campaign"]["gap_threshold_ms"], 2.0);
  const auto& g = s["groups"];
  ASSERT_EQ(g.size(), 4u);
  EXPECT_EQ(g[0]["policy"], "warm-spare");
  EXPECT_EQ(g[0]["kind"], "crash");
  EXPECT_EQ(g[1]["kind"], "regflip");
  EXPECT_EQ(g[2]["policy"], "restart");
  EXPECT_EQ(g[2]["kind"], "crash");
  EXPECT_EQ(g[3]["kind"], "regflip");

  const auto& ws_crash = g[0];
  EXPECT_EQ(ws_crash["runs"], 3);
  EXPECT_EQ(ws_crash["manifested"], 3);
  EXPECT_EQ(ws_crash["detected"], 3);
  EXPECT_EQ(ws_crash["recovered"], 3);
  EXPECT_EQ(ws_crash["recovered_within_10ms"], 2);  // 3 and 6 ms; 12 ms is over
  EXPECT_NEAR(ws_crash["recovered_within_10ms_share"].get<double>(), 2.0 / 3.0, 1e-12);
  EXPECT_EQ(ws_crash["detectors"], (nlohmann::json{{"hangup", 2}, {"heartbeat", 1}}));
  EXPECT_EQ(ws_crash["tcp_connections_lost"], 0);
  EXPECT_EQ(ws_crash["packets_lost"], 210);

  const auto& ws_regflip = g[1];
  EXPECT_EQ(ws_regflip["runs"], 3);
  EXPECT_EQ(ws_regflip["manifested"], 2);
  EXPECT_EQ(ws_regflip["detected"], 1);
  EXPECT_EQ(ws_regflip["recovered"], 0);
  EXPECT_EQ(ws_regflip["not_recovered"], 1);
  EXPECT_EQ(ws_regflip["silent_failures"], 1);
  EXPECT_EQ(ws_regflip["no_effect"], 1);
  EXPECT_EQ(ws_regflip["recovered_within_10ms_share"], 0.0);
  EXPECT_EQ(ws_regflip["outcomes"],
            (nlohmann::json{
                {"no-effect", 1}, {"recovered", 0}, {"not-recovered", 1}, {"silent-failure", 1}, {"false-alarm", 0}}));
  EXPECT_EQ(ws_regflip["detectors"], (nlohmann::json{{"heartbeat", 1}}));
  EXPECT_EQ(ws_regflip["tcp_connections_lost"], 2);
  EXPECT_EQ(ws_regflip["packets_lost"], 10500);

  const auto& rs_regflip = g[3];
  EXPECT_EQ(rs_regflip["manifested"], 0);
  EXPECT_TRUE(rs_regflip["recovered_within_10ms_share"].is_null());
  EXPECT_TRUE(rs_regflip["detectors"].empty());
}

TEST(ReportSummary, PercentilesByNearestRankAndNullWhenNone) {
  auto g = ng::campaign::summary_json(sample_runs(), sample_info())["groups"];
  // warm-spare/crash: interruptions 3, 12, 6; ranks floor(p/100*n) of the sorted 3, 6, 12.
  const auto& ws = g[0];
  EXPECT_EQ(ws["interruption_ms"],
            (nlohmann::json{{"p50", 6.0}, {"p90", 12.0}, {"p99", 12.0}, {"max", 12.0}}));
  EXPECT_EQ(ws["detection_ms"], (nlohmann::json{{"p50", 0.6}, {"p99", 5.0}}));
  EXPECT_EQ(ws["recovery_ms"], (nlohmann::json{{"p50", 1.1}, {"p99", 5.5}}));
  EXPECT_EQ(ws["baseline_ms"], (nlohmann::json{{"p50", 0.2}, {"p99", 0.3}, {"max", 0.3}}));

  // warm-spare/regflip: nothing recovered, one detection, no recovery.
  EXPECT_TRUE(g[1]["interruption_ms"].is_null());
  EXPECT_EQ(g[1]["detection_ms"], (nlohmann::json{{"p50", 20.0}, {"p99", 20.0}}));
  EXPECT_TRUE(g[1]["recovery_ms"].is_null());
  EXPECT_EQ(g[1]["baseline_ms"]["max"], 0.4);

  EXPECT_EQ(g[2]["interruption_ms"]["max"], 105.0);
  EXPECT_EQ(g[2]["recovered_within_10ms"], 0);
  EXPECT_TRUE(g[3]["detection_ms"].is_null());
  EXPECT_EQ(g[3]["baseline_ms"]["p50"], 0.2);
}

TEST(ReportSummary, FalseDetectionsPerGroupAndOverallWithDetails) {
  auto s = ng::campaign::summary_json(with_new_fields(), sample_info());
  EXPECT_EQ(s["false_detections"], 2);
  EXPECT_EQ(s["false_detection_details"],
            (nlohmann::json{"run 10: driver-a hang by front-app1: x", "run 10: driver-a crash by front-app2: y"}));
  const auto& g = s["groups"];
  ASSERT_EQ(g.size(), 5u);
  const auto& none = g[4];
  EXPECT_EQ(none["kind"], "none");
  EXPECT_EQ(none["runs"], 2);
  EXPECT_EQ(none["false_detections"], 2);
  EXPECT_EQ(none["false_detection_details"].size(), 2u);
  EXPECT_EQ(none["false_alarms"], 1);
  EXPECT_EQ(none["no_effect"], 1);
  EXPECT_EQ(none["outcomes"]["false-alarm"], 1);
  EXPECT_EQ(none["manifested"], 0);  // a false alarm is no effect of an injected fault
  EXPECT_EQ(g[0]["false_detections"], 0);
  EXPECT_TRUE(g[0]["false_detection_details"].empty());
}

TEST(ReportSummary, EveryAppInterruptionOverTheRecoveredRunsWithTheWorstApp) {
  auto g = ng::campaign::summary_json(with_new_fields(), sample_info())["groups"];
  // warm-spare/crash: 7.5, 14 and 6 ms.
  EXPECT_EQ(g[0]["interruption_all_apps_ms"], (nlohmann::json{{"p50", 7.5}, {"p99", 14.0}, {"max", 14.0}}));
  EXPECT_EQ(g[0]["worst_app"], "app2");
  EXPECT_TRUE(g[1]["interruption_all_apps_ms"].is_null());  // nothing recovered
  EXPECT_EQ(g[1]["worst_app"], "");
}

TEST(ReportSummary, HttpPerGroupAndOverallBesideTheNoFaultMaximum) {
  auto s = ng::campaign::summary_json(with_new_fields(), sample_info());
  const auto& ws = s["groups"][0]["http"];
  ASSERT_TRUE(ws.is_object()) << s.dump(2);
  EXPECT_EQ(ws["runs"], 2);
  EXPECT_EQ(ws["requests"], 780);
  EXPECT_EQ(ws["failed_requests"], 2);
  EXPECT_EQ(ws["latency_ms"], (nlohmann::json{{"p50", 1.5}, {"p99", 9.0}, {"max", 12.0}}));
  EXPECT_EQ(ws["no_fault"], (nlohmann::json{{"latency_ms_max", 3.0}, {"failed_requests", 1}}));
  EXPECT_TRUE(s["groups"][1]["http"].is_null());  // those runs measured no HTTP
  EXPECT_EQ(s["http"]["failed_requests"], 2);
  EXPECT_EQ(s["http"]["no_fault"]["latency_ms_max"], 3.0);
  EXPECT_TRUE(ng::campaign::summary_json(sample_runs(), sample_info())["http"].is_null());
}

TEST(ReportSummary, LoadAndAppsOnRecord) {
  auto info = sample_info();
  info.apps = 4;
  info.load = {"cpu", "tcp"};
  info.load_detail = "2 busy loops; iperf3";
  info.loadavg_start = 0.4;
  info.loadavg_end = 3.9;
  auto s = ng::campaign::summary_json({}, info);
  EXPECT_EQ(s["campaign"]["apps"], 4);
  EXPECT_EQ(s["load"]["kinds"], (nlohmann::json{"cpu", "tcp"}));
  EXPECT_EQ(s["load"]["loadavg_1min_start"], 0.4);
  EXPECT_EQ(s["load"]["loadavg_1min_end"], 3.9);
  EXPECT_EQ(s["false_detections"], 0);
  // Unreadable load averages are null, not a made-up 0.
  auto plain = ng::campaign::summary_json({}, sample_info());
  EXPECT_TRUE(plain["load"]["loadavg_1min_start"].is_null());
  EXPECT_TRUE(plain["load"]["kinds"].empty());
}

TEST(ReportSummary, EmptyRunsHaveNoGroups) {
  auto s = ng::campaign::summary_json({}, sample_info());
  EXPECT_TRUE(s["groups"].is_array());
  EXPECT_TRUE(s["groups"].empty());
  EXPECT_EQ(s["campaign"]["host"], "Linux 6.8 lab 2 cpus");
}

TEST(ReportCsv, HeaderAndEveryFieldWithQuoting) {
  auto runs = sample_runs();
  runs[4].detail = "tid 812 rip bit 17, \"after\" 3210 us";
  runs[5].detail = "two\nlines";
  auto csv = ng::campaign::runs_csv(runs);
  EXPECT_TRUE(csv.starts_with(
      "run,policy,kind,seed,domain,detail,detector,outcome,detection_ms,recovery_ms,"
      "interruption_ms,baseline_ms,window_silence_ms,lost,tcp_survived,interruption_all_apps_ms,worst_app,false_detections,"
      "http_requests,http_failed,http_latency_p50_ms,http_latency_p99_ms,http_latency_max_ms,"
      "http_baseline_latency_max_ms,drops,manager_fds,manager_rss_kib,frontend_fds,frontend_rss_kib,"
      "manager_pid,frontend_pids\n"));
  // Without --http its columns are empty.
  EXPECT_THAT(csv, HasSubstr("\n5,warm-spare,regflip,1005,driver-a,"
                             "\"tid 812 rip bit 17, \"\"after\"\" 3210 us\",,silent-failure,"
                             "-1,-1,50,0.2,0,500,false,0,,0,,,,,,,,,,,,,\n"));
  EXPECT_THAT(csv, HasSubstr("\n6,warm-spare,regflip,1006,driver-a,\"two\nlines\",heartbeat,"
                             "not-recovered,20,-1,1000,0.4,0,10000,false,0,,0,,,,,,,,,,,,,\n"));
  EXPECT_THAT(csv, HasSubstr("\n1,warm-spare,crash,0,driver-a,injection 1,hangup,recovered,"
                             "0.4,0.9,3,0.2,0,30,true,0,,0,,,,,,,,,,,,,\n"));
  EXPECT_EQ(occurrences(csv, "\n"), 1 + runs.size() + 1);  // one embedded newline
}

TEST(ReportCsv, EveryAppHttpAndFalseAlarmColumns) {
  auto runs = with_new_fields();
  auto csv = ng::campaign::runs_csv(runs);
  EXPECT_THAT(csv, HasSubstr(",true,7.5,app3,0,400,2,1.5,9,12,3,,,,,,,\n"));  // run 1: every app, HTTP
  EXPECT_THAT(csv, HasSubstr("\n10,warm-spare,none,0,driver-a,nothing injected,hang,false-alarm,"));
  EXPECT_THAT(csv, HasSubstr(",app1,2,,,,,,,,,,,,,\n"));  // run 10: two false detections, no HTTP
}

TEST(ReportCsv, ResourceColumnsLastAndEmptyWhenNotSampled) {
  auto runs = sample_runs();
  runs[0].resources = ng::campaign::ResourceSample{100, 12, 3400, {200, 201}, 20, 8000};
  auto csv = ng::campaign::runs_csv(runs);
  EXPECT_THAT(csv, HasSubstr("\n1,warm-spare,crash,0,driver-a,injection 1,hangup,recovered,"
                             "0.4,0.9,3,0.2,0,30,true,0,,0,,,,,,,,12,3400,20,8000,100,200 201\n"));
  EXPECT_THAT(csv, HasSubstr("\n2,warm-spare,regflip,"));
  EXPECT_THAT(csv, HasSubstr(",0,,0,,,,,,,,,,,,,\n"));  // run 2: not sampled
}

TEST(ReportSummary, ResourcesAndLeftoversOnlyWhenChecked) {
  auto runs = sample_runs();
  runs[0].resources = ng::campaign::ResourceSample{100, 12, 3400, {200}, 20, 8000};
  auto info = sample_info();
  auto s = ng::campaign::summary_json(runs, info);
  EXPECT_EQ(s["resources"]["labs"].size(), 2u) << s["resources"].dump(2);  // warm-spare sampled, restart not
  EXPECT_EQ(s["resources"]["labs"][0]["first_run"]["manager_fds"], 12);
  EXPECT_EQ(s["resources"]["labs"][1]["sampled"], 0);
  EXPECT_TRUE(s["leftovers"].is_null());
  info.leftovers_checked = true;
  EXPECT_EQ(ng::campaign::summary_json(runs, info)["leftovers"], nlohmann::json::array());
  info.leftovers = {"lab ab12: netns ng-ab12-sw"};
  info.resource_errors = {"run 3: the manager: reading /proc/7/fd: No such file or directory"};
  s = ng::campaign::summary_json(runs, info);
  EXPECT_EQ(s["leftovers"][0], "lab ab12: netns ng-ab12-sw");
  EXPECT_EQ(s["resources"]["errors"].size(), 1u);
  auto html = ng::campaign::report_html(runs, s, {}, info);
  EXPECT_THAT(html, HasSubstr("lab ab12: netns ng-ab12-sw"));
  EXPECT_THAT(html, HasSubstr("<td class=\"l\">manager_fds</td><td>12</td><td>12</td>"));
}

TEST(ReportCsv, EmptyIsHeaderOnly) {
  auto csv = ng::campaign::runs_csv({});
  EXPECT_EQ(occurrences(csv, "\n"), 1u);
}

TEST(ReportHtml, WellFormedWithPlotsTablesAndEscapedText) {
  auto runs = sample_runs();
  runs[4].detail = "flip <&> \"x\"";
  auto info = sample_info();
  info.command = "nicguard campaign --out 'a&b'";
  auto html = ng::campaign::report_html(runs, ng::campaign::summary_json(runs, info),
                                        sample_timelines(), info);
  EXPECT_EQ(well_formed_error(html), "");
  EXPECT_TRUE(html.starts_with("<!DOCTYPE html>"));
  EXPECT_THAT(html, HasSubstr("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"cdf\""));
  EXPECT_THAT(html, HasSubstr("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\""));
  EXPECT_EQ(occurrences(html, "<svg"), 2u);
  EXPECT_THAT(html, HasSubstr("stroke-dasharray=\"6,4\" class=\"limit-10ms\""));
  EXPECT_THAT(html, HasSubstr(">10 ms</text>"));
  EXPECT_THAT(html, HasSubstr("flip &lt;&amp;&gt; &quot;x&quot;"));
  EXPECT_THAT(html, Not(HasSubstr("<&>")));
  EXPECT_THAT(html, HasSubstr("--out &#39;a&amp;b&#39;"));
  EXPECT_THAT(html, HasSubstr("warm-spare, crash (run 1) &amp; more"));
  // Offline: nothing fetched from anywhere.
  EXPECT_THAT(html, Not(HasSubstr("<script")));
  EXPECT_THAT(html, Not(HasSubstr("<link")));
  EXPECT_THAT(html, Not(HasSubstr("src=")));
  EXPECT_THAT(html, Not(HasSubstr("href=")));
  EXPECT_THAT(html, Not(HasSubstr("url(")));
}

TEST(ReportHtml, OutcomeTableHasPolicyTotalsAndPercentages) {
  auto runs = sample_runs();
  auto html = ng::campaign::report_html(runs, ng::campaign::summary_json(runs, sample_info()), {},
                                        sample_info());
  EXPECT_EQ(occurrences(html, "<tr class=\"total\">"), 2u);
  // warm-spare total: 6 runs, 1 no effect, 3 recovered, 1 not recovered, 1 silent; 5 manifested,
  // 2 of them within 10 ms; 2 TCP connections lost.
  EXPECT_THAT(
      html, HasSubstr("<tr class=\"total\"><td class=\"l\">warm-spare</td><td class=\"l\">all</td>"
                      "<td>6</td><td>1 <span class=\"pct\">(16.7%)</span></td>"
                      "<td>3 <span class=\"pct\">(50.0%)</span></td>"));
  EXPECT_THAT(html, HasSubstr("<td>2 <span class=\"pct\">(40.0%)</span></td>"
                              "<td class=\"l\">hangup 2, heartbeat 2</td><td>2</td></tr>"));
  EXPECT_THAT(html, HasSubstr("TCP connections lost"));
  EXPECT_THAT(html, HasSubstr("Recovered within 10 ms"));
}

TEST(ReportHtml, ShowsEveryAppHttpAgainstNoFaultAndFalseAlarms) {
  auto runs = with_new_fields();
  auto info = sample_info();
  info.load = {"cpu"};
  info.load_detail = "2 busy loops at nice 0";
  info.loadavg_start = 0.25;
  info.loadavg_end = 2.5;
  auto html = ng::campaign::report_html(runs, ng::campaign::summary_json(runs, info), {}, info);
  EXPECT_EQ(well_formed_error(html), "");
  EXPECT_THAT(html, HasSubstr("Interruption, worst of every app (recovered)"));
  EXPECT_THAT(html, HasSubstr("<td class=\"l\">app2</td>"));
  EXPECT_THAT(html, HasSubstr("<h2>HTTP"));
  EXPECT_THAT(html, HasSubstr("slowest successful request took 12.0 ms"));
  EXPECT_THAT(html, HasSubstr("(no fault acting) it took 3.00 ms"));
  EXPECT_THAT(html, HasSubstr("False alarm"));
  EXPECT_THAT(html, HasSubstr("2 detections in runs that injected nothing"));
  EXPECT_THAT(html, HasSubstr("run 10: driver-a hang by front-app1: x"));
  EXPECT_THAT(html, HasSubstr("o-false-alarm"));
  EXPECT_THAT(html, HasSubstr("2 busy loops at nice 0; 1-minute load average 0.25 at the start, 2.50 at the end"));
}

TEST(ReportHtml, NoHttpOrFalseAlarmSectionsWhenNotMeasured) {
  auto runs = sample_runs();
  auto html = ng::campaign::report_html(runs, ng::campaign::summary_json(runs, sample_info()), {},
                                        sample_info());
  EXPECT_THAT(html, Not(HasSubstr("<h2>HTTP")));
  EXPECT_THAT(html, Not(HasSubstr("runs that injected nothing")));
}

TEST(ReportHtml, TimelineShowsMarkersAndSilence) {
  auto html = ng::campaign::report_html({}, ng::campaign::summary_json({}, sample_info()),
                                        sample_timelines(), sample_info());
  EXPECT_EQ(well_formed_error(html), "");
  EXPECT_THAT(html, HasSubstr(">injection</text>"));
  EXPECT_THAT(html, HasSubstr(">detected +0.40 ms</text>"));
  EXPECT_THAT(html, HasSubstr(">recovered +0.90 ms</text>"));
  EXPECT_THAT(html, HasSubstr("class=\"silence\""));
  EXPECT_THAT(html, HasSubstr("; longest silence 3."));  // +0.1 .. +3.2 ms
  EXPECT_THAT(html, HasSubstr(" to +3.20 ms.</p>"));
  EXPECT_EQ(occurrences(html, "<circle"), sample_timelines()[0].points.size());
}

TEST(ReportHtml, EmptyInputIsAWellFormedPage) {
  auto html = ng::campaign::report_html({}, ng::campaign::summary_json({}, {}), {}, {});
  EXPECT_EQ(well_formed_error(html), "");
  EXPECT_THAT(html, Not(HasSubstr("<svg")));
  EXPECT_THAT(html, Not(HasSubstr("<table")));
  EXPECT_THAT(html, HasSubstr("No runs."));
  EXPECT_THAT(html, HasSubstr("No recovered runs"));
  EXPECT_THAT(html, HasSubstr("No timelines"));
}

TEST(ReportHtml, NothingManifestedAndEmptyTimelineStillWellFormed) {
  std::vector<RunRecord> runs = {
      run(1, "warm-spare", "regflip", Outcome::no_effect, "", -1, -1, 0.2, 0.2, 0),
      run(2, "warm-spare", "regflip", Outcome::no_effect, "", -1, -1, 0.3, 0.2, 0)};
  Timeline empty{"warm-spare, regflip (run 1)", -1, -1, {}};
  auto html = ng::campaign::report_html(runs, ng::campaign::summary_json(runs, sample_info()),
                                        {empty}, sample_info());
  EXPECT_EQ(well_formed_error(html), "");
  EXPECT_THAT(html, Not(HasSubstr("<svg")));
  EXPECT_THAT(html, HasSubstr("No recovered runs"));
  EXPECT_THAT(html, HasSubstr("No probe packets"));
  EXPECT_THAT(html,
              HasSubstr("<td>0 <span class=\"pct\">(-)</span></td>"));  // within 10 ms of none
}

TEST(ReportHtml, ZeroInterruptionsPlotAtTheAxisStart) {
  auto runs = sample_runs();
  runs[0].interruption_ms = 0;
  auto html = ng::campaign::report_html(runs, ng::campaign::summary_json(runs, sample_info()), {},
                                        sample_info());
  EXPECT_EQ(well_formed_error(html), "");
  // The step for the 0 ms run starts at the x axis' left end (x = 60).
  EXPECT_THAT(html, HasSubstr("<path d=\"M60.0,320.0 H60.0 V220.0 "));
  for (const char* bad : {"\"nan\"", "\"inf\"", "\"-inf\"", "nan,", "inf,"}) {
    EXPECT_THAT(html, Not(HasSubstr(bad)));
  }
}

class ReportWrite : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ng-report-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(ReportWrite, CreatesDirectoryAndThreeFiles) {
  auto out = dir_ + "/campaign/1";
  auto st = ng::campaign::write_report(out, sample_runs(), sample_timelines(), sample_info());
  ASSERT_TRUE(st.has_value()) << st.error().message;
  struct stat sb {};
  ASSERT_EQ(::stat(out.c_str(), &sb), 0);
  EXPECT_TRUE(S_ISDIR(sb.st_mode));
  EXPECT_EQ(sb.st_mode & 0700, 0700u);
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(out))
    names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"report.html", "runs.csv", "summary.json"}));

  auto summary = nlohmann::json::parse(read_file(out + "/summary.json"));
  EXPECT_EQ(summary["groups"].size(), 4u);
  EXPECT_EQ(summary["campaign"]["started"], "2024-05-01T10:00:00Z");
  EXPECT_EQ(occurrences(read_file(out + "/runs.csv"), "\n"), 10u);
  EXPECT_EQ(well_formed_error(read_file(out + "/report.html")), "");

  // A second campaign into the same directory replaces the files.
  st = ng::campaign::write_report(out, {}, {}, sample_info());
  ASSERT_TRUE(st.has_value()) << st.error().message;
  EXPECT_TRUE(nlohmann::json::parse(read_file(out + "/summary.json"))["groups"].empty());
}

TEST_F(ReportWrite, FailsNamingThePathWhenItCannotCreateTheDirectory) {
  auto file = dir_ + "/plain-file";
  std::ofstream(file) << "x";
  auto st = ng::campaign::write_report(file + "/sub", {}, {}, sample_info());
  ASSERT_FALSE(st.has_value());
  EXPECT_THAT(st.error().message, HasSubstr(file));

  st = ng::campaign::write_report(file, {}, {}, sample_info());
  ASSERT_FALSE(st.has_value());
  EXPECT_THAT(st.error().message, HasSubstr("not a directory"));

  st = ng::campaign::write_report("", {}, {}, sample_info());
  ASSERT_FALSE(st.has_value());
  EXPECT_THAT(st.error().message, HasSubstr("no report directory"));
}

TEST_F(ReportWrite, OddBytesInTextStillGiveParsableFiles) {
  auto runs = sample_runs();
  runs[0].detail = "bell\x07 then a stray \xff byte";
  auto info = sample_info();
  info.host = "lab\xfe";
  auto st = ng::campaign::write_report(dir_, runs, {}, info);
  ASSERT_TRUE(st.has_value()) << st.error().message;
  auto summary = nlohmann::json::parse(read_file(dir_ + "/summary.json"));
  EXPECT_EQ(summary["campaign"]["host"], "lab\xef\xbf\xbd");  // U+FFFD for the bad byte
  auto html = read_file(dir_ + "/report.html");
  EXPECT_EQ(well_formed_error(html), "");
  EXPECT_THAT(html, Not(HasSubstr("\x07")));
  EXPECT_THAT(html, HasSubstr("bell? then"));
}

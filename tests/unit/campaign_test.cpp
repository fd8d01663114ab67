// The campaign's pure parts: how a run is classified, how its silence is
// measured, which options it refuses, when its apps are ready, what its HTTP
// clients saw. The campaign itself runs in tests/integration/campaign_test.cpp.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>

#include <fmt/format.h>

#include "campaign/campaign.hpp"
#include "campaign/drops.hpp"
#include "campaign/load.hpp"
#include "campaign/resources.hpp"
#include "common/text.hpp"

namespace ng::campaign {
namespace {

constexpr uint64_t kMs = 1'000'000;

Observation seen(bool detected, bool flowing, double interruption_ms, uint64_t lost = 0) {
  Observation o;
  o.detected = detected;
  o.flowing_at_end = flowing;
  o.interruption_ms = interruption_ms;
  o.sent = 10000;
  o.lost = lost;
  return o;
}

TEST(CampaignClassify, DetectedAndFlowingIsRecovered) {
  EXPECT_EQ(classify(seen(true, true, 8)), Outcome::recovered);
  EXPECT_EQ(classify(seen(true, true, 300)), Outcome::recovered);  // slow, but traffic came back
}

TEST(CampaignClassify, DetectedButStillSilentIsNotRecovered) {
  EXPECT_EQ(classify(seen(true, false, 400)), Outcome::not_recovered);
}

TEST(CampaignClassify, BrokenTrafficWithoutDetectorIsSilentFailure) {
  EXPECT_EQ(classify(seen(false, false, 400)), Outcome::silent_failure);
  EXPECT_EQ(classify(seen(false, true, kBrokenMs)), Outcome::silent_failure);
  EXPECT_EQ(classify(seen(false, true, 1, 600)), Outcome::silent_failure);  // 6% lost
}

TEST(CampaignClassify, NothingVisibleIsNoEffect) {
  EXPECT_EQ(classify(seen(false, true, 3)), Outcome::no_effect);
  EXPECT_EQ(classify(seen(false, true, 3, 20)), Outcome::no_effect);   // 0.2% lost: within noise
  EXPECT_EQ(classify(seen(false, true, 8, 300)), Outcome::no_effect);  // 3%: a scheduling hiccup
}

std::vector<uint64_t> every(uint64_t from, uint64_t until, uint64_t step) {
  std::vector<uint64_t> v;
  for (uint64_t t = from; t < until; t += step) v.push_back(t);
  return v;
}

TEST(CampaignSilence, SteadyStreamIsItsPeriod) {
  auto recv = every(0, 1000 * kMs, kMs / 10);
  EXPECT_DOUBLE_EQ(longest_silence(recv, 100 * kMs, 500 * kMs), kMs / 10.0);
}

TEST(CampaignSilence, GapStraddlingTheWindowStartCountsWhole) {
  auto recv = every(0, 100 * kMs, kMs);
  auto after = every(130 * kMs, 300 * kMs, kMs);
  recv.insert(recv.end(), after.begin(), after.end());
  EXPECT_DOUBLE_EQ(longest_silence(recv, 110 * kMs, 200 * kMs), 31.0 * kMs);
}

TEST(CampaignSilence, StreamThatNeverComesBackIsSilentToTheWindowEnd) {
  auto recv = every(0, 100 * kMs, kMs);
  EXPECT_DOUBLE_EQ(longest_silence(recv, 100 * kMs, 500 * kMs), 401.0 * kMs);
}

TEST(CampaignSilence, GapAfterTheWindowIsNotItsOwn) {
  auto recv = every(0, 200 * kMs, kMs);
  auto after = every(400 * kMs, 500 * kMs, kMs);
  recv.insert(recv.end(), after.begin(), after.end());
  EXPECT_DOUBLE_EQ(longest_silence(recv, 0, 150 * kMs), 1.0 * kMs);
}

TEST(CampaignSilence, OrderOfArrivalDoesNotMatter) {
  std::vector<uint64_t> recv{5 * kMs, 1 * kMs, 2 * kMs, 3 * kMs, 4 * kMs, 20 * kMs};
  EXPECT_DOUBLE_EQ(longest_silence(recv, 0, 30 * kMs), 15.0 * kMs);
}

TEST(CampaignSilence, NoArrivalsAtAllIsTheWholeWindow) {
  EXPECT_DOUBLE_EQ(longest_silence({}, 10 * kMs, 30 * kMs), 20.0 * kMs);
}

TEST(CampaignFaultSilence, EndsWithTheSilenceThatSpansTheRecovery) {
  // Silent from 100 to 106 ms (the fault), switch at 103 ms, then a 15 ms
  // silence of the host's own at 200 ms: not the fault's.
  auto recv = every(0, 100 * kMs, kMs / 10);
  auto after = every(106 * kMs, 200 * kMs, kMs / 10);
  auto late = every(215 * kMs, 500 * kMs, kMs / 10);
  recv.insert(recv.end(), after.begin(), after.end());
  recv.insert(recv.end(), late.begin(), late.end());
  const uint64_t last_before = recv[999];
  EXPECT_DOUBLE_EQ(silence_until_recovered(recv, 100 * kMs, 103 * kMs, 500 * kMs),
                   static_cast<double>(106 * kMs - last_before));
  EXPECT_GT(longest_silence(recv, 100 * kMs, 500 * kMs), 14.0 * kMs);
}

TEST(CampaignFaultSilence, ASilenceBeforeTheRecoveryCounts) {
  // The fault silenced the stream for 30 ms, the stream came back by itself,
  // and the domain was switched away from later.
  auto recv = every(0, 100 * kMs, kMs);
  auto after = every(130 * kMs, 500 * kMs, kMs);
  recv.insert(recv.end(), after.begin(), after.end());
  EXPECT_DOUBLE_EQ(silence_until_recovered(recv, 100 * kMs, 250 * kMs, 500 * kMs), 31.0 * kMs);
}

TEST(CampaignFaultSilence, NoEchoAfterTheRecoveryRunsToTheWindowEnd) {
  auto recv = every(0, 100 * kMs, kMs);
  EXPECT_DOUBLE_EQ(silence_until_recovered(recv, 100 * kMs, 105 * kMs, 400 * kMs), 301.0 * kMs);
}

TEST(CampaignLoss, CountsOnlyThePacketsSentInTheWindow) {
  // 1000 pps from t = 0: packet k leaves at k ms; 100..199 never came back.
  std::vector<uint32_t> seqs;
  for (uint32_t k = 0; k < 1000; ++k) {
    if (k < 100 || k >= 200) seqs.push_back(k);
  }
  Loss all = loss_in(seqs, 0, 1000, 0, 1000 * kMs);
  EXPECT_EQ(all.sent, 1000u);
  EXPECT_EQ(all.lost, 100u);
  Loss part = loss_in(seqs, 0, 1000, 150 * kMs, 250 * kMs);
  EXPECT_EQ(part.sent, 100u);
  EXPECT_EQ(part.lost, 50u);
  EXPECT_EQ(loss_in(seqs, 0, 1000, 500 * kMs, 600 * kMs).lost, 0u);
  EXPECT_EQ(loss_in(seqs, 0, 1000, 600 * kMs, 500 * kMs).sent, 0u);  // empty window
}

TEST(CampaignLoss, DuplicatesDoNotHideALoss) {
  std::vector<uint32_t> seqs{0, 1, 1, 1, 3};
  Loss l = loss_in(seqs, 0, 1000, 0, 4 * kMs);
  EXPECT_EQ(l.sent, 4u);
  EXPECT_EQ(l.lost, 1u);
}

TEST(CampaignClassify, LossNoWorseThanTheBaselineIsNoEffect) {
  Observation o = seen(false, true, 3, 200);
  o.baseline_lost = 150;
  EXPECT_EQ(classify(o), Outcome::no_effect);
}

TEST(CampaignSeeds, DistinctPerRunAndRepeatable) {
  std::set<uint64_t> seeds;
  for (int run = 1; run <= 1000; ++run) seeds.insert(run_seed(42, run));
  EXPECT_EQ(seeds.size(), 1000u);
  EXPECT_EQ(run_seed(42, 7), run_seed(42, 7));
  EXPECT_NE(run_seed(42, 7), run_seed(43, 7));
}

TEST(CampaignOptionsCheck, BadInputIsNamed) {
  CampaignOptions o;
  o.kinds = {"crash", "bitflip"};
  auto s = check_options(o);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("bitflip"), std::string::npos);
  EXPECT_NE(s.error().message.find("regflip"), std::string::npos);  // the list of known kinds
  o.kinds = {"regflip"};
  o.policies = {"cold-spare"};
  ASSERT_FALSE(check_options(o));
  o.policies = {"restart", "warm-spare"};
  EXPECT_TRUE(check_options(o));
  o.runs = 0;
  EXPECT_FALSE(check_options(o));
}

TEST(CampaignOptionsCheck, DomainKindAndWindowAreChecked) {
  CampaignOptions o;
  o.domain = "container";
  auto s = check_options(o);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("'container'"), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find("process or vm"), std::string::npos) << s.error().message;
  o.domain = "vm";
  EXPECT_TRUE(check_options(o));
  o.window_ms = 99;
  EXPECT_FALSE(check_options(o));
  o.window_ms = 60001;
  EXPECT_FALSE(check_options(o));
}

TEST(CampaignOptionsCheck, ANicModelNeedsDriverVms) {
  CampaignOptions o;
  o.nic_model = "virtio-net-pci";
  auto s = check_options(o);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("needs --domain vm"), std::string::npos) << s.error().message;
  o.domain = "vm";
  EXPECT_TRUE(check_options(o));
}

// A restart of a driver VM is a reboot: its window must hold it.
TEST(CampaignWindow, SuitsTheDomainAndPolicyUnlessGiven) {
  CampaignOptions o;
  EXPECT_EQ(window_ms_for(o, "warm-spare"), 400u);
  EXPECT_EQ(window_ms_for(o, "restart"), 400u);
  o.domain = "vm";
  EXPECT_EQ(window_ms_for(o, "warm-spare"), 1000u);
  EXPECT_EQ(window_ms_for(o, "restart"), 20000u);
  o.window_ms = 700;
  EXPECT_EQ(window_ms_for(o, "restart"), 700u);
}

TEST(CampaignOptionsCheck, AppsOutOfRangeIsRefusedWithTheRange) {
  CampaignOptions o;
  for (int apps : {0, -1, 65}) {
    o.apps = apps;
    auto s = check_options(o);
    ASSERT_FALSE(s) << apps;
    EXPECT_NE(s.error().message.find(fmt::format("--apps {}", apps)), std::string::npos) << s.error().message;
    EXPECT_NE(s.error().message.find("1 to 64"), std::string::npos) << s.error().message;
  }
  for (int apps : {1, 2, 64}) {
    o.apps = apps;
    EXPECT_TRUE(check_options(o)) << apps;
  }
}

TEST(CampaignOptionsCheck, UnknownLoadIsNamedWithTheChoices) {
  CampaignOptions o;
  o.load = {"cpu", "gpu"};
  auto s = check_options(o);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("'gpu'"), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find("cpu"), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find("tcp"), std::string::npos) << s.error().message;
  o.load = {"cpu", "tcp"};
  EXPECT_TRUE(check_options(o));
  o.load = {"tcp"};
  EXPECT_TRUE(check_options(o));
}

TEST(CampaignOptionsCheck, NoneIsAKindThoughNoFault) {
  CampaignOptions o;
  o.kinds = {"none"};
  EXPECT_TRUE(check_options(o));
  o.kinds = {"none", "crash"};
  EXPECT_TRUE(check_options(o));
  o.kinds = {"nothing"};
  auto s = check_options(o);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("none"), std::string::npos) << s.error().message;  // offered as a choice
}

TEST(CampaignClassify, NoInjectionWithADetectionIsAFalseAlarm) {
  Observation o = seen(true, true, 3);
  o.injected = false;
  EXPECT_EQ(classify(o), Outcome::false_alarm);
  o.flowing_at_end = false;  // whatever the traffic did
  EXPECT_EQ(classify(o), Outcome::false_alarm);
}

TEST(CampaignClassify, NoInjectionWithoutADetectionIsNoEffect) {
  Observation o = seen(false, true, 3);
  o.injected = false;
  EXPECT_EQ(classify(o), Outcome::no_effect);
  // Nothing was injected, so a broken stream is no silent failure of a fault.
  o.interruption_ms = 400;
  o.flowing_at_end = false;
  EXPECT_EQ(classify(o), Outcome::no_effect);
}

nlohmann::json app(const std::string& name, const nlohmann::json& active, std::vector<std::string> states) {
  nlohmann::json backends = nlohmann::json::array();
  for (const auto& st : states) backends.push_back({{"name", "x"}, {"state", st}});
  return {{"name", name}, {"active_driver", active}, {"backends", backends}};
}

TEST(CampaignReady, EveryAppOnOneDomainWithASpare) {
  nlohmann::json status = {{"apps", {app("app1", "b", {"spare", "active"}), app("app2", "b", {"spare", "active"})}}};
  auto d = common_active_domain(status, true);
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(*d, "b");
}

TEST(CampaignReady, AnAppOnAnotherDomainIsNamed) {
  nlohmann::json status = {{"apps",
                            {app("app1", "a", {"active", "spare"}), app("app2", "a", {"active", "spare"}),
                             app("app3", "b", {"down", "active"})}}};
  auto d = common_active_domain(status, true);
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message.find("app3 on b"), std::string::npos) << d.error().message;
  EXPECT_NE(d.error().message.find("app1 on a"), std::string::npos) << d.error().message;
}

TEST(CampaignReady, MissingSpareOrActiveIsNamedUnlessNoSpareIsNeeded) {
  nlohmann::json status = {{"apps", {app("app1", "a", {"active", "spare"}), app("app2", "a", {"active", "down"})}}};
  auto d = common_active_domain(status, true);
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message.find("spare"), std::string::npos) << d.error().message;
  EXPECT_NE(d.error().message.find("app2"), std::string::npos) << d.error().message;
  EXPECT_TRUE(common_active_domain(status, false));  // the restart policy has no spare

  status["apps"][1]["active_driver"] = nullptr;
  d = common_active_domain(status, false);
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message.find("app2"), std::string::npos) << d.error().message;
  EXPECT_FALSE(common_active_domain(nlohmann::json{{"apps", nlohmann::json::array()}}, false));
}

TEST(CampaignReady, ManyAppsAreNamedBriefly) {
  nlohmann::json apps = nlohmann::json::array();
  apps.push_back(app("app1", "a", {"active", "spare"}));
  for (int i = 2; i <= 64; ++i) apps.push_back(app(fmt::format("app{}", i), "b", {"spare", "active"}));
  auto d = common_active_domain({{"apps", apps}}, true);
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message.find("and 57 more"), std::string::npos) << d.error().message;
}

TEST(CampaignHttp, CountsTheRequestsThatOverlapTheWindow) {
  std::vector<HttpRequest> q = {
      {0 * kMs, 5 * kMs, true},      // ends before the window
      {95 * kMs, 10 * kMs, true},    // begins before, ends inside: counted
      {120 * kMs, 2 * kMs, true},    // inside
      {150 * kMs, 1000 * kMs, false},  // timed out: a failure
      {180 * kMs, 4 * kMs, true},    // inside
      {200 * kMs, 1 * kMs, true},    // begins at the window's end: not counted
  };
  HttpFigures h = http_in(q, 100 * kMs, 200 * kMs);
  EXPECT_EQ(h.requests, 4u);
  EXPECT_EQ(h.failed, 1u);
  EXPECT_DOUBLE_EQ(h.latency_ms_max, 10);  // of the successful ones
  EXPECT_DOUBLE_EQ(h.latency_ms_p50, 4);
  EXPECT_DOUBLE_EQ(h.latency_ms_p99, 10);
  HttpFigures none = http_in(q, 1300 * kMs, 1400 * kMs);  // after the timed-out one ended
  EXPECT_EQ(none.requests, 0u);
  EXPECT_DOUBLE_EQ(none.latency_ms_max, 0);
}

TEST(CampaignLoad, LoadAverageFromProcText) {
  EXPECT_DOUBLE_EQ(loadavg_1min("4.41 2.10 0.93 3/245 12345\n"), 4.41);
  EXPECT_LT(loadavg_1min(""), 0);
  EXPECT_LT(loadavg_1min("garbage"), 0);
}

TEST(CampaignLoad, DescriptionNamesTheHostsOfTheTcpLoad) {
  auto many = describe_load({"cpu", "tcp"}, 4, 2);
  EXPECT_NE(many.find("2 busy loops"), std::string::npos) << many;
  EXPECT_NE(many.find("app4"), std::string::npos) << many;
  auto one = describe_load({"tcp"}, 1, 2);
  EXPECT_NE(one.find("app1"), std::string::npos) << one;
  EXPECT_EQ(one.find("busy"), std::string::npos) << one;
  EXPECT_EQ(describe_load({}, 4, 2), "");
}

}  // namespace
}  // namespace ng::campaign

TEST(CampaignDrops, OnlyCountersThatRoseAndAReplacedProcessCountsFromZero) {
  using nlohmann::json;
  json before = {
      {"apps", {{{"name", "app1"}, {"pid", 10}, {"counters", {{"rx_drops", 5}, {"tx_drops", 1}}}},
                {{"name", "app2"}, {"pid", 11}, {"counters", {{"rx_drops", 7}}}}}},
      {"drivers", {{{"name", "a"}, {"pid", 20}, {"counters", {{"nic_rx_overruns", 3}}},
                    {"connections", {{{"app", "app1"}, {"rx_drops", 2}}}}},
                   {{"name", "b"}, {"pid", 21}, {"counters", {{"nic_rx_overruns", 9}}}}}}};
  json after = before;
  after["apps"][0]["counters"]["rx_drops"] = 8;    // +3
  after["apps"][1]["pid"] = 12;                      // restarted: its 7 count
  after["drivers"][0]["connections"][0]["rx_drops"] = 4;  // +2
  after["drivers"][1]["pid"] = 22;                   // replaced: 4 since its start
  after["drivers"][1]["counters"]["nic_rx_overruns"] = 4;
  EXPECT_EQ(ng::campaign::drops_between(before, after),
            "app1 rx_drops 3; app2 rx_drops 7; driver-a ring_rx_drops app1 2; driver-b nic_rx_overruns 4");
  EXPECT_EQ(ng::campaign::drops_between(before, before), "");
  EXPECT_EQ(ng::campaign::drops_between(json::object(), json::object()), "");
}

namespace {

using ng::campaign::ResourceSample;
using ng::campaign::RunRecord;

RunRecord sampled(int run, std::string policy, uint64_t manager_fds, uint64_t manager_rss, uint64_t front_fds,
                  uint64_t front_rss, std::vector<int> front_pids = {200}, int manager_pid = 100) {
  RunRecord r;
  r.run = run;
  r.policy = std::move(policy);
  r.kind = "crash";
  r.resources = ResourceSample{manager_pid, manager_fds, manager_rss, std::move(front_pids), front_fds, front_rss};
  return r;
}

}  // namespace

TEST(CampaignResources, VmRssFromProcStatus) {
  const std::string status =
      "Name:\tnicguard\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t  123456 kB\nVmRSS:\t    9876 kB\n"
      "RssAnon:\t    1000 kB\n";
  EXPECT_EQ(ng::campaign::vm_rss_kib(status), 9876u);
  EXPECT_EQ(ng::campaign::vm_rss_kib("VmRSS: 12 kB"), 12u);  // first line, no newline after
  // A kernel thread or a zombie has no VmRSS; a line in other units is not read as KiB.
  EXPECT_FALSE(ng::campaign::vm_rss_kib("Name:\tkthreadd\nState:\tS (sleeping)\n"));
  EXPECT_FALSE(ng::campaign::vm_rss_kib("VmRSS:\t 12 MB\n"));
  EXPECT_FALSE(ng::campaign::vm_rss_kib("VmRSS:\t twelve kB\n"));
  EXPECT_FALSE(ng::campaign::vm_rss_kib("VmRSSx:\t 12 kB\n"));
}

TEST(CampaignResources, ProcStatFieldsPastANameWithSpacesAndParentheses) {
  // Fields 3 (state), 4 (ppid) and 22 (start time); the name may hold ") ".
  std::string stat = "4321 (nic (guard) x) S 77";
  for (int field = 5; field <= 21; ++field) stat += fmt::format(" {}", field);
  stat += " 987654 18 19 20\n";
  auto st = ng::campaign::parse_proc_stat(stat);
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_EQ(st->state, 'S');
  EXPECT_EQ(st->ppid, 77);
  EXPECT_EQ(st->start, 987654u);
  EXPECT_FALSE(ng::campaign::parse_proc_stat("4321 (short) S 1 2 3\n"));
  EXPECT_FALSE(ng::campaign::parse_proc_stat(""));
  auto self = ng::campaign::parse_proc_stat(ng::read_text("/proc/self/stat"));
  ASSERT_TRUE(self) << self.error().message;
  EXPECT_EQ(self->ppid, ::getppid());
}

TEST(CampaignResources, WindowIsAQuarterOfTheRunsUpToAHundred) {
  EXPECT_EQ(ng::campaign::resource_window(0), 1u);
  EXPECT_EQ(ng::campaign::resource_window(3), 1u);
  EXPECT_EQ(ng::campaign::resource_window(8), 2u);
  EXPECT_EQ(ng::campaign::resource_window(399), 99u);
  EXPECT_EQ(ng::campaign::resource_window(1000), 100u);
}

TEST(CampaignResources, FirstAndLastWindowsTheirMeansAndChange) {
  // 8 runs: windows of 2. The manager's fds go from 10 to 11 (+10 %, past
  // the bar); everything else stays within it.
  std::vector<RunRecord> runs;
  for (int i = 1; i <= 8; ++i) {
    runs.push_back(sampled(i, "warm-spare", i <= 6 ? 10 : 11, 5000 + static_cast<uint64_t>(i), 20, 8000));
  }
  auto j = ng::campaign::resources_json(runs);
  ASSERT_EQ(j["labs"].size(), 1u) << j.dump(2);
  const auto& lab = j["labs"][0];
  EXPECT_EQ(lab["window_runs"], 2);
  EXPECT_EQ(lab["first_run"]["run"], 1);
  EXPECT_EQ(lab["first_run"]["manager_rss_kib"], 5001);
  EXPECT_EQ(lab["last_run"]["run"], 8);
  EXPECT_EQ(lab["last_run"]["manager_fds"], 11);
  EXPECT_EQ(lab["first_mean"]["from_run"], 1);
  EXPECT_EQ(lab["first_mean"]["to_run"], 2);
  EXPECT_EQ(lab["last_mean"]["from_run"], 7);
  EXPECT_DOUBLE_EQ(lab["first_mean"]["manager_rss_kib"].get<double>(), 5001.5);
  EXPECT_DOUBLE_EQ(lab["last_mean"]["manager_rss_kib"].get<double>(), 5007.5);
  EXPECT_DOUBLE_EQ(lab["change_percent"]["manager_fds"].get<double>(), 10.0);
  EXPECT_NEAR(lab["change_percent"]["manager_rss_kib"].get<double>(), 0.12, 0.01);
  EXPECT_DOUBLE_EQ(lab["change_percent"]["frontend_fds"].get<double>(), 0.0);
  EXPECT_EQ(lab["flat"], false);
  EXPECT_EQ(j["flat"], false);
  EXPECT_TRUE(lab["pid_changes"].empty());

  runs[6].resources->manager_fds = runs[7].resources->manager_fds = 10;  // back to flat
  EXPECT_EQ(ng::campaign::resources_json(runs)["flat"], true);
}

TEST(CampaignResources, AReplacedProcessIsNotComparedAndSaidSo) {
  std::vector<RunRecord> runs;
  for (int i = 1; i <= 4; ++i) runs.push_back(sampled(i, "warm-spare", 10, 5000, 20, 8000));
  runs[2].resources->frontend_pids = {201};  // front-app1 restarted before run 3
  runs[3].resources->frontend_pids = {201};
  runs[3].resources->frontend_fds = 40;
  auto lab = ng::campaign::resources_json(runs)["labs"][0];
  EXPECT_TRUE(lab["change_percent"]["frontend_fds"].is_null()) << lab.dump(2);
  EXPECT_TRUE(lab["change_percent"]["frontend_rss_kib"].is_null());
  EXPECT_DOUBLE_EQ(lab["change_percent"]["manager_fds"].get<double>(), 0.0);
  EXPECT_TRUE(lab["flat"].is_null());  // the manager is flat, the frontends unknown
  EXPECT_EQ(lab["pid_change_count"], 1);
  EXPECT_EQ(lab["pid_changes"][0], "run 3: frontend pids 200 -> 201");

  runs[3].resources->manager_fds = 20;  // a compared figure that grew decides
  EXPECT_EQ(ng::campaign::resources_json(runs)["labs"][0]["flat"], false);
  runs[3].resources->manager_pid = 101;
  lab = ng::campaign::resources_json(runs)["labs"][0];
  EXPECT_EQ(lab["pid_changes"][1], "run 4: manager pid 100 -> 101 (the lab was rebuilt)");
  EXPECT_TRUE(lab["flat"].is_null());
}

TEST(CampaignResources, OneLabPerPolicyAndUnsampledRunsAreCounted) {
  std::vector<RunRecord> runs = {sampled(1, "warm-spare", 10, 100, 5, 50), sampled(2, "warm-spare", 10, 100, 5, 50),
                                 sampled(3, "restart", 8, 90, 5, 50), sampled(4, "restart", 20, 90, 5, 50)};
  runs.push_back(runs[3]);
  runs.back().run = 5;
  runs.back().resources.reset();  // could not be read
  auto j = ng::campaign::resources_json(runs);
  ASSERT_EQ(j["labs"].size(), 2u);
  EXPECT_EQ(j["labs"][0]["policy"], "warm-spare");
  EXPECT_EQ(j["labs"][0]["flat"], true);
  EXPECT_EQ(j["labs"][1]["runs"], 3);
  EXPECT_EQ(j["labs"][1]["sampled"], 2);
  EXPECT_DOUBLE_EQ(j["labs"][1]["change_percent"]["manager_fds"].get<double>(), 150.0);
  EXPECT_EQ(j["flat"], false);
  EXPECT_TRUE(ng::campaign::resources_json({})["flat"].is_null());
}

TEST(CampaignResources, SamplesTheProcessesTheStatusNames) {
  const int self = ::getpid();
  nlohmann::json status = {{"manager", {{"pid", self}}},
                           {"apps", {{{"name", "app1"}, {"pid", self}}, {{"name", "app2"}, {"pid", nullptr}}}}};
  auto s = ng::campaign::sample_resources(status);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->manager_pid, self);
  EXPECT_GT(s->manager_fds, 2u);
  EXPECT_GT(s->manager_rss_kib, 0u);
  EXPECT_EQ(s->frontend_pids, (std::vector<int>{self, 0}));  // app2's frontend was down
  EXPECT_FALSE(ng::campaign::sample_resources(nlohmann::json::object()));
}

TEST(CampaignResources, AProcessSeenIsLeftOverUntilItIsGone) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  std::vector<ng::campaign::SeenProcess> seen;
  ng::campaign::note_processes({{"manager", {{"pid", child}}}, {"drivers", {{{"name", "a"}, {"pid", child}}}}}, seen);
  ASSERT_EQ(seen.size(), 1u);  // one process, seen twice
  EXPECT_EQ(seen[0].what, "manager");
  EXPECT_EQ(ng::campaign::still_running(seen).size(), 1u);
  auto children = ng::campaign::running_children();
  EXPECT_TRUE(std::any_of(children.begin(), children.end(), [&](const std::string& c) {
    return c.starts_with(fmt::format("process {} ", child));
  }));
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_TRUE(ng::campaign::still_running(seen).empty());
}

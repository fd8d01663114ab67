// Failure detection and recovery with real driver domains, real faults and
// real traffic: a paced 256 MiB TCP transfer from the external host to the
// app and a UDP stream alongside, while faults are injected through the
// manager. What must hold: the TCP connection survives with a matching
// checksum, the failure is found by the detector that should find it (read
// from the event log), the failed domain comes back as the spare, and a
// second failure, now of the new active domain, is survived the same way.
// Bounds are generous: the figures belong to `nicguard demo` and campaigns.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <functional>
#include <iostream>
#include <future>
#include <memory>
#include <sstream>
#include <utility>

#include "support.hpp"

namespace ng::it {
namespace {

constexpr uint64_t kTransferBytes = uint64_t{256} << 20;
constexpr uint64_t kPaceBytesPerS = uint64_t{40} << 20;  // about 6.4 s for the transfer
constexpr int kTcpPort = 5301;
constexpr int kUdpPort = 7301;
constexpr auto kDetectLimit = 5s;
constexpr auto kRejoinLimit = 15s;

using Json = nlohmann::json;

// app1 is active on one domain and holds `spare` as a connected spare.
bool spare_is_back(const LabGuard& lab, const std::string& spare) {
  auto s = lab.status();
  if (!s || s->at("apps").empty()) return false;
  const auto& app = s->at("apps")[0];
  bool spare_ok = false;
  for (const auto& b : app.value("backends", Json::array())) {
    if (b.value("name", "") == spare && b.value("state", "") == "spare") spare_ok = true;
  }
  return spare_ok && app.at("active_driver").is_string();
}

CmdResult inject(const LabGuard& lab, const std::string& domain, const std::string& fault) {
  return run(fmt::format("{} inject {} {} -s {}", quote(kNicguard), domain, fault,
                         quote(lab.control_socket())),
             10s);
}

// The traffic of one test: the paced TCP transfer and the UDP stream.
class Traffic {
 public:
  Traffic(const LabGuard& lab, const RandomFile& file, int seconds) {
    const auto& app = lab.apps().at(0);
    echo_ = std::make_unique<Background>(in_ns(
        app.netns, fmt::format("{} probe echo --port {} --duration {}", quote(kNicguard),
                               kUdpPort, seconds + 5)));
    wait_listening(app.netns, kUdpPort, true, 10s);
    stream_ = std::make_unique<Background>(in_ns(
        lab.ext_ns(), fmt::format("{} probe udp --to {} --port {} --pps 2000 --duration {} --json",
                                  quote(kNicguard), app.ipv4, kUdpPort, seconds)));
    transfer_ = std::async(std::launch::async, [&lab, &file, app] {
      return tcp_transfer(lab.ext_ns(), app.netns, app.ipv4, kTcpPort, file, 120s,
                          kPaceBytesPerS);
    });
    std::this_thread::sleep_for(1s);  // well into the transfer
  }

  TransferResult tcp() { return transfer_.get(); }

  // The probe's report, after it ends by itself.
  Json udp(std::string* why) {
    auto r = stream_->finish(60s);
    echo_->stop();
    auto j = Json::parse(r.out, nullptr, false);
    if (!r.ok() || !j.is_object()) *why = r.describe();
    return j;
  }

 private:
  std::unique_ptr<Background> echo_;
  std::unique_ptr<Background> stream_;
  std::future<TransferResult> transfer_;
};

class FailoverTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    files_ = std::make_unique<TempDir>("ng-it-failover");
    std::string why;
    auto f = make_random_file(files_->path(), kTransferBytes, &why);
    if (f) file_ = *f;
    file_error_ = why;
  }
  static void TearDownTestSuite() { files_.reset(); }

  void SetUp() override { ASSERT_FALSE(file_.path.empty()) << file_error_; }

  // One failure of the active domain: injected, detected by `detector`
  // (reported by `source`), and the failed domain back as the spare.
  void fail_active(LabGuard& lab, const std::string& fault, const std::string& detector,
                   const std::string& source) {
    std::string victim = active_driver(lab);
    ASSERT_FALSE(victim.empty()) << lab.status_table();
    size_t before = read_events(lab).size();
    auto r = inject(lab, victim, fault);
    ASSERT_TRUE(r.ok()) << r.describe();
    Json want = {{"event", "detect"}, {"detector", detector}, {"domain", "driver-" + victim}};
    if (!source.empty()) want["source"] = source;
    EXPECT_TRUE(wait_until([&] { return has_event(lab, before, want); }, kDetectLimit, 5ms))
        << fault << " in driver-" << victim << " was not found by " << detector << "\n"
        << event_lines(lab) << lab.logs();
    if (expect_fence_) {
      EXPECT_TRUE(wait_until([&] { return has_event(lab, before, {{"event", "fence"}, {"domain", "driver-" + victim}}); },
                             kDetectLimit, 5ms))
          << fault << ": driver-" << victim << " was not fenced\n" << event_lines(lab);
    }
    EXPECT_TRUE(wait_until([&] { return spare_is_back(lab, victim); }, kRejoinLimit))
        << "driver-" << victim << " did not come back as the spare\n"
        << lab.status_table() << event_lines(lab) << lab.logs();
    EXPECT_NE(active_driver(lab), victim);
  }

  void expect_traffic_survived(LabGuard& lab, Traffic& traffic) {
    auto t = traffic.tcp();
    EXPECT_TRUE(t.ok) << t.detail << event_lines(lab) << lab.logs();
    std::string why;
    auto udp = traffic.udp(&why);
    ASSERT_TRUE(udp.is_object()) << why;
    EXPECT_GT(udp.value("received", 0), udp.value("sent", 0) / 2) << udp.dump();
    EXPECT_LT(udp.value("interruption_ms", 1e9), 1000.0) << udp.dump();
  }

  // Two failures of the same kind in a row, under traffic.
  void survive_two(const std::string& fault, const std::string& detector,
                   const std::string& source = "front-app1", const LabOptions& options = {},
                   const std::function<void(const LabGuard&)>& check_lab = {}) {
    LabGuard lab(options);
    ASSERT_TRUE(lab.ok()) << lab.error();
    if (check_lab) check_lab(lab);
    Traffic traffic(lab, file_, 9);
    fail_active(lab, fault, detector, source);
    fail_active(lab, fault, detector, source);
    expect_traffic_survived(lab, traffic);
  }

  bool expect_fence_ = false;  // the detecting frontend must also fence the domain
  static inline std::unique_ptr<TempDir> files_;
  static inline RandomFile file_;
  static inline std::string file_error_;
};

TEST_F(FailoverTest, DriverKilledWithSigkill) { survive_two("kill", "crash"); }

// /proc/PID/stat fields 40 and 41: rt_priority and policy (1 = SCHED_FIFO).
std::pair<int, int> rt_priority_and_policy(pid_t pid) {
  std::string stat = read_file(fmt::format("/proc/{}/stat", pid));
  auto close = stat.rfind(')');
  if (close == std::string::npos) return {-1, -1};
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  int rt = -1;
  int policy = -1;
  for (int n = 3; rest >> field; ++n) {  // the state is field 3
    if (n == 40) rt = std::stoi(field);
    if (n == 41) policy = std::stoi(field);
  }
  return {rt, policy};
}

// At realtime the data path is scheduled as configured (drivers at N,
// frontends above them), and a driver spinning at realtime, the case that
// could lock a core, is still found and fenced, twice.
TEST_F(FailoverTest, RealtimeDataPathFindsASpinningDriverTwice) {
  LabOptions o;
  o.realtime_priority = 20;
  survive_two("hang", "hang", "front-app1", o, [](const LabGuard& lab) {
    auto s = lab.status();
    ASSERT_TRUE(s) << lab.status_table();
    for (const auto& d : s->at("drivers")) {
      ASSERT_TRUE(d.at("pid").is_number()) << s->dump();
      EXPECT_EQ(rt_priority_and_policy(d.at("pid").get<pid_t>()), std::make_pair(20, 1)) << s->dump();
    }
    for (const auto& a : s->at("apps")) {
      ASSERT_TRUE(a.at("pid").is_number()) << s->dump();
      EXPECT_EQ(rt_priority_and_policy(a.at("pid").get<pid_t>()), std::make_pair(21, 1)) << s->dump();
    }
  });
}

TEST_F(FailoverTest, DriverCrashesInItsPacketLoop) { survive_two("crash", "crash"); }

TEST_F(FailoverTest, DriverStoppedWithSigstopIsAHang) { survive_two("freeze", "hang"); }

TEST_F(FailoverTest, DriverSpinningWithoutHeartbeatIsAHang) { survive_two("hang", "hang"); }

TEST_F(FailoverTest, TransmitStallWithHeartbeatAlive) { survive_two("stall-tx", "stall"); }

TEST_F(FailoverTest, CorruptDescriptorsAreAProtocolViolation) {
  survive_two("corrupt", "protocol-violation");
}

// A domain turned against its frontends: it makes every descriptor it
// shares with them blocking, floods them and blocks. The frontend must not
// block with it: it finds the hang and fences the domain.
TEST_F(FailoverTest, DomainThatWedgesItsDoorbellIsAHangAndFenced) {
  expect_fence_ = true;
  survive_two("wedge", "hang");
}

// A hang-up from a domain that stays alive is fenced, not just counted.
TEST_F(FailoverTest, DomainThatHangsUpAgainAndAgainIsFenced) {
  expect_fence_ = true;
  survive_two("hangup", "crash");
}

// A preferred domain that accepts a frontend but never answers its hello
// would keep the spare from ever becoming active: the handshake deadline
// finds it, fences it, and the frontend starts on the spare.
TEST_F(FailoverTest, DomainThatNeverAnswersHelloIsPassedOver) {
  LabGuard lab;
  ASSERT_TRUE(lab.ok()) << lab.error();
  std::string victim = active_driver(lab);
  ASSERT_FALSE(victim.empty()) << lab.status_table();
  auto r = inject(lab, victim, "deaf");
  ASSERT_TRUE(r.ok()) << r.describe();
  auto s = lab.status();
  ASSERT_TRUE(s && s->at("apps")[0].at("pid").is_number()) << lab.status_table();
  size_t before = read_events(lab).size();
  // The manager restarts the frontend, which connects to the deaf domain first.
  ASSERT_EQ(::kill(s->at("apps")[0].at("pid").get<pid_t>(), SIGKILL), 0);
  Json want = {{"event", "detect"}, {"detector", "hang"}, {"domain", "driver-" + victim}};
  EXPECT_TRUE(wait_until([&] { return has_event(lab, before, want); }, 10s, 5ms))
      << event_lines(lab) << lab.logs();
  EXPECT_TRUE(wait_until([&] { return has_event(lab, before, {{"event", "fence"}, {"domain", "driver-" + victim}}); },
                         kDetectLimit, 5ms))
      << event_lines(lab);
  EXPECT_TRUE(wait_until([&] { auto a = active_driver(lab); return !a.empty() && a != victim; }, kRejoinLimit))
      << lab.status_table() << event_lines(lab);
  const auto& app = lab.apps().at(0);
  auto ping = run_in(lab.ext_ns(), "ping -c 3 -i 0.2 -W 2 " + app.ipv4, 20s);
  EXPECT_TRUE(ping.ok()) << ping.describe() << event_lines(lab);
}

// A domain that stops reading its NIC leaves the frames for the app in its
// packet socket, and the switch keeps sending there until the failover.
// The manager salvages them from the socket the dead domain leaves behind:
// the app gets every datagram of a stream that ran through the whole stall.
// Without path probes the stall is found by the slow receive-path check,
// so that hundreds of datagrams wait in the stalled domain's socket.
TEST_F(FailoverTest, FramesAFailedDomainNeverReadReachTheApp) {
  LabOptions o;
  o.path_probe_us = 0;
  LabGuard lab(o);
  ASSERT_TRUE(lab.ok()) << lab.error();
  const auto& app = lab.apps().at(0);
  Background echo(in_ns(app.netns, fmt::format("{} probe echo --port {} --duration 20", quote(kNicguard), kUdpPort)));
  wait_listening(app.netns, kUdpPort, true, 10s);
  std::string victim = active_driver(lab);
  ASSERT_FALSE(victim.empty()) << lab.status_table();
  size_t before = read_events(lab).size();
  auto r = inject(lab, victim, "stall-rx");
  ASSERT_TRUE(r.ok()) << r.describe();
  // 1000 datagrams in 2 s: the detector needs a few hundred ms, so hundreds
  // of them queue in the stalled domain's socket.
  auto stream = run_in(lab.ext_ns(), fmt::format("{} probe udp --to {} --port {} --pps 500 --duration 2 --json",
                                                 quote(kNicguard), app.ipv4, kUdpPort), 30s);
  ASSERT_TRUE(stream.ok()) << stream.describe();
  auto udp = Json::parse(stream.out, nullptr, false);
  ASSERT_TRUE(udp.is_object()) << stream.out;
  EXPECT_TRUE(wait_until([&] { return has_event(lab, before, {{"event", "salvage"}, {"domain", "driver-" + victim}}); },
                         kRejoinLimit))
      << event_lines(lab) << lab.logs();
  auto events = read_events(lab);
  uint64_t delivered = 0;
  for (size_t i = before; i < events.size(); ++i) {
    if (events[i].value("event", "") == "salvage") delivered += events[i].value("delivered", uint64_t{0});
  }
  EXPECT_GE(delivered, 50u) << event_lines(lab);
  // A few may fall at the edges (the echo's reply in flight at the switch):
  // without the salvage, every datagram of the stall is lost.
  EXPECT_GE(udp.value("received", 0), udp.value("sent", 0) - 10) << udp.dump() << event_lines(lab);
}

// The path probes find a receive path that stopped, and a switch port that
// stopped forwarding while its link stays up (no carrier change), in
// milliseconds rather than at the receive-path check's timeout.
bool found_by_path_probes(const LabGuard& lab, size_t skip) {
  auto events = read_events(lab);
  for (size_t i = skip; i < events.size(); ++i) {
    if (events[i].value("event", "") == "detect" &&
        events[i].value("detail", "").find("path probes") != std::string::npos) {
      return true;
    }
  }
  return false;
}

TEST_F(FailoverTest, ReceiveStallIsFoundByThePathProbes) {
  LabGuard lab;
  ASSERT_TRUE(lab.ok()) << lab.error();
  Traffic traffic(lab, file_, 6);
  size_t before = read_events(lab).size();
  fail_active(lab, "stall-rx", "stall", "front-app1");
  EXPECT_TRUE(found_by_path_probes(lab, before)) << event_lines(lab);
  expect_traffic_survived(lab, traffic);
}

TEST_F(FailoverTest, BlockedSwitchPortIsFoundByThePathProbes) {
  LabGuard lab;
  ASSERT_TRUE(lab.ok()) << lab.error();
  Traffic traffic(lab, file_, 6);
  std::string victim = active_driver(lab);
  ASSERT_FALSE(victim.empty()) << lab.status_table();
  std::string port = lab.info().at("drivers").at(victim == "a" ? 0 : 1).at("switch_port").get<std::string>();
  size_t before = read_events(lab).size();
  auto r = run(fmt::format("ip -n {} link set {} nomaster", lab.switch_ns(), port), 10s);
  ASSERT_TRUE(r.ok()) << r.describe();
  Json want = {{"event", "detect"}, {"detector", "stall"}, {"domain", "driver-" + victim}};
  EXPECT_TRUE(wait_until([&] { return has_event(lab, before, want); }, kDetectLimit, 5ms)) << event_lines(lab);
  EXPECT_TRUE(found_by_path_probes(lab, before)) << event_lines(lab);
  r = run(fmt::format("ip -n {} link set {} master br0", lab.switch_ns(), port), 10s);
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_TRUE(wait_until([&] { return spare_is_back(lab, victim); }, kRejoinLimit))
      << lab.status_table() << event_lines(lab);
  expect_traffic_survived(lab, traffic);
}

TEST_F(FailoverTest, CarrierLossOnTheDomainsNic) { survive_two("link-down", "carrier", "manager"); }

TEST_F(FailoverTest, BothDomainsKilledTrafficResumesOnTheFirstBack) {
  LabGuard lab;
  ASSERT_TRUE(lab.ok()) << lab.error();
  Traffic traffic(lab, file_, 6);
  size_t before = read_events(lab).size();
  auto r = run(fmt::format("{0} inject a kill -s {1} & {0} inject b kill -s {1}; wait",
                           quote(kNicguard), quote(lab.control_socket())),
               10s);
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_TRUE(wait_until([&] { return has_event(lab, before, {{"event", "resume"}}) ||
                                      has_event(lab, before, {{"event", "switch"}}); },
                         kRejoinLimit))
      << event_lines(lab);
  EXPECT_TRUE(wait_until([&] { return spare_is_back(lab, "a") || spare_is_back(lab, "b"); },
                         kRejoinLimit))
      << lab.status_table() << event_lines(lab);
  expect_traffic_survived(lab, traffic);
}

TEST_F(FailoverTest, ManagerKilledAndRestartedMidTransfer) {
  LabGuard lab;
  ASSERT_TRUE(lab.ok()) << lab.error();
  Traffic traffic(lab, file_, 9);
  ASSERT_EQ(::kill(lab.manager_pid(), SIGKILL), 0);
  std::this_thread::sleep_for(500ms);  // traffic flows without a manager
  size_t before = read_events(lab).size();
  Background manager(fmt::format("{} manager -c {}", quote(kNicguard), quote(lab.config())));
  EXPECT_TRUE(wait_until([&] { return has_event(lab, before, {{"event", "adopt"}, {"domain", "driver-a"}}) &&
                                      has_event(lab, before, {{"event", "adopt"}, {"domain", "driver-b"}}) &&
                                      has_event(lab, before, {{"event", "adopt"}, {"domain", "front-app1"}}); },
                         20s))
      << "the restarted manager did not adopt every domain\n"
      << event_lines(lab) << manager.err();
  // It carries on detecting and restarting, once the adopted pair is whole
  // (a domain lost in between is restarted by the new manager first: seen
  // once in CI, cause not yet found; the events say which detector fired).
  EXPECT_TRUE(wait_until([&] {
    std::string a = active_driver(lab);
    return !a.empty() && spare_is_back(lab, a == "a" ? "b" : "a");
  }, kRejoinLimit)) << lab.status_table() << event_lines(lab);
  if (has_event(lab, before, {{"event", "detect"}})) {
    std::cerr << "note: a detector fired after the manager restart\n" << event_lines(lab);
  }
  fail_active(lab, "kill", "crash", "front-app1");
  expect_traffic_survived(lab, traffic);
  manager.stop();
}

TEST_F(FailoverTest, RestartPolicyConnectionSurvivesACrash) {
  LabOptions o;
  o.policy = "restart";
  LabGuard lab(o);
  ASSERT_TRUE(lab.ok()) << lab.error();
  Traffic traffic(lab, file_, 6);
  size_t before = read_events(lab).size();
  auto r = inject(lab, "a", "kill");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_TRUE(wait_until([&] { return has_event(lab, before, {{"event", "resume"}, {"to", "driver-a"}}); },
                         kRejoinLimit))
      << event_lines(lab) << lab.logs();
  expect_traffic_survived(lab, traffic);
}

}  // namespace
}  // namespace ng::it

namespace ng::it {
namespace {

// `nicguard demo` end to end, small: one crash per policy, the JSON summary.
}  // namespace
}  // namespace ng::it

namespace ng::it {
namespace {

// One app's frontend finds the hang and fences the domain; the fence is the
// verdict the other app's frontend hears (a hang-up), so both move.
TEST(FailoverVerdictTest, EveryFrontendLeavesAFencedDomain) {
  LabOptions o;
  o.apps = 2;
  LabGuard lab(o);
  ASSERT_TRUE(lab.ok()) << lab.error();
  auto r = run(fmt::format("{} inject a freeze -s {}", quote(kNicguard), quote(lab.control_socket())), 10s);
  ASSERT_TRUE(r.ok()) << r.describe();
  auto switched = [&](const std::string& app) {
    return has_event(lab, 0, {{"event", "switch"}, {"source", "front-" + app}, {"from", "driver-a"},
                              {"to", "driver-b"}});
  };
  EXPECT_TRUE(wait_until([&] { return switched("app1") && switched("app2"); }, kRejoinLimit))
      << event_lines(lab) << lab.logs();
  EXPECT_TRUE(has_event(lab, 0, {{"event", "fence"}, {"domain", "driver-a"}})) << event_lines(lab);
  for (const auto& app : lab.apps()) {
    auto ping = run_in(lab.ext_ns(), "ping -c 3 -i 0.2 -W 2 " + app.ipv4, 20s);
    EXPECT_TRUE(ping.ok()) << app.name << "\n" << ping.describe();
  }
}

}  // namespace
}  // namespace ng::it

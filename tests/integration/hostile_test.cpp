// A hostile driver domain: one that lies in the indices, descriptors,
// control messages and kicks it shares with its frontend, each lie injected
// into the real driver (`nicguard inject DOMAIN KIND`), inside its real
// sandbox, against the real handshake and rings. The promise under test: a
// broken or malicious domain breaks only its own traffic. The frontend
// survives (same pid), finds the lie with the right detector, fences the
// liar, moves the traffic to the honest warm spare (a ping from the
// external host gets through), and its counters say what happened. A liar
// that is the spare is fenced while the active serves on untouched.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <functional>
#include <sstream>
#include <string>

#include "support.hpp"

namespace ng::it {
namespace {

using Json = nlohmann::json;

constexpr auto kDetectLimit = 5s;
constexpr auto kReadyLimit = 10s;

CmdResult inject(const LabGuard& lab, const std::string& domain, const std::string& fault) {
  return run(fmt::format("{} inject {} {} -s {}", quote(kNicguard), domain, fault,
                         quote(lab.control_socket())),
             10s);
}

Json app_status(const LabGuard& lab) {
  auto s = lab.status();
  if (!s || !s->contains("apps") || s->at("apps").empty()) return Json::object();
  return s->at("apps")[0];
}

pid_t front_pid(const Json& app) {
  return app.contains("pid") && app.at("pid").is_number() ? app.at("pid").get<pid_t>() : 0;
}

uint64_t counter(const Json& app, const std::string& name) {
  return app.value("counters", Json::object()).value(name, uint64_t{0});
}

Json backend(const Json& app, const std::string& name) {
  for (const auto& b : app.value("backends", Json::array())) {
    if (b.value("name", "") == name) return b;
  }
  return Json::object();
}

// app1 is active on `active` and holds `spare` as a connected spare.
bool settled(const LabGuard& lab, const std::string& active, const std::string& spare) {
  Json app = app_status(lab);
  return app.value("active_driver", Json()) == active && backend(app, spare).value("state", "") == "spare";
}

std::string other_than(const std::string& d) { return d == "a" ? "b" : "a"; }

const char* counter_of(const std::string& detector) {
  if (detector == "crash") return "detected_crash";
  if (detector == "hang") return "detected_hang";
  return "detected_violation";
}

// The first event after `skip` with all of `match`'s fields, or null.
Json find_event(const LabGuard& lab, size_t skip, const Json& match) {
  auto events = read_events(lab);
  for (size_t i = skip; i < events.size(); ++i) {
    bool all = true;
    for (const auto& [k, v] : match.items()) all = all && events[i].value(k, Json()) == v;
    if (all) return events[i];
  }
  return nullptr;
}

// CPU time (user + system) of a process: /proc/PID/stat fields 14 and 15.
double cpu_seconds(pid_t pid) {
  std::string stat = read_file(fmt::format("/proc/{}/stat", pid));
  auto close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  uint64_t ticks = 0;
  for (int n = 3; rest >> field && n <= 15; ++n) {  // the state is field 3
    if (n == 14 || n == 15) ticks += std::stoull(field);
  }
  return static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// What a test expects of one lie.
struct Lie {
  std::string fault;
  std::string detector = "protocol-violation";
  std::string detail;  // a part of the detect event's detail
};

class HostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    lab_ = std::make_unique<LabGuard>();
    ASSERT_TRUE(lab_->ok()) << lab_->error();
    active_ = active_driver(*lab_);
    ASSERT_FALSE(active_.empty()) << lab_->status_table();
    spare_ = other_than(active_);
    ASSERT_TRUE(wait_until([&] { return settled(*lab_, active_, spare_); }, kReadyLimit))
        << lab_->status_table();
    app_ = app_status(*lab_);
    pid_ = front_pid(app_);
    ASSERT_GT(pid_, 0) << app_.dump();
  }

  // Injects the lie into `victim` and waits for its verdict: the detect
  // event of the expected detector (its detail checked) and the fence.
  void expect_found_and_fenced(const Lie& lie, const std::string& victim, const std::string& role) {
    before_ = read_events(*lab_).size();
    auto r = inject(*lab_, victim, lie.fault);
    ASSERT_TRUE(r.ok()) << r.describe();
    if (after_inject_) after_inject_();
    Json want = {{"event", "detect"}, {"source", "front-app1"}, {"domain", "driver-" + victim}};
    Json detect;
    EXPECT_TRUE(wait_until([&] { return !(detect = find_event(*lab_, before_, want)).is_null(); },
                           kDetectLimit, 5ms))
        << lie.fault << " in driver-" << victim << " was never detected\n"
        << event_lines(*lab_) << lab_->logs();
    if (detect.is_null()) return;
    EXPECT_EQ(detect.value("detector", ""), lie.detector) << detect.dump();
    EXPECT_EQ(detect.value("role", ""), role) << detect.dump();
    EXPECT_NE(detect.value("detail", "").find(lie.detail), std::string::npos)
        << "expected \"" << lie.detail << "\" in " << detect.dump();
    Json fence = {{"event", "fence"}, {"source", "front-app1"}, {"domain", "driver-" + victim},
                  {"reason", lie.detector}};
    EXPECT_TRUE(wait_until([&] { return has_event(*lab_, before_, fence); }, kDetectLimit, 5ms))
        << "driver-" << victim << " was not fenced\n" << event_lines(*lab_);
  }

  // The lie told by the active domain: found, fenced, and the traffic on
  // the honest spare.
  void expect_active_lie_survived(const Lie& lie) {
    expect_found_and_fenced(lie, active_, "active");
    // The frontend logs the switch after the fence, so it may still be on its way.
    Json moved = {{"event", "switch"}, {"from", "driver-" + active_}, {"to", "driver-" + spare_}};
    EXPECT_TRUE(wait_until([&] { return has_event(*lab_, before_, moved); }, kDetectLimit, 5ms))
        << event_lines(*lab_);
    EXPECT_TRUE(wait_until([&] { return active_driver(*lab_) == spare_; }, kDetectLimit))
        << lab_->status_table();
    expect_ping();
    Json now = expect_same_frontend(lie, active_);
    EXPECT_GT(counter(now, "failovers"), counter(app_, "failovers")) << now.dump();
  }

  // The lie told by the spare: found and fenced, and the active serves on
  // without a gap (a ping stream across the whole verdict loses nothing).
  void expect_spare_lie_survived(const Lie& lie) {
    const auto& app = lab_->apps().at(0);
    Background ping(in_ns(lab_->ext_ns(), "ping -c 40 -i 0.05 -W 1 " + app.ipv4));
    std::this_thread::sleep_for(300ms);  // well into the stream
    expect_found_and_fenced(lie, spare_, "spare");
    auto p = ping.finish(20s);
    EXPECT_TRUE(p.ok()) << p.describe();
    EXPECT_NE(p.out.find(" 0% packet loss"), std::string::npos) << p.out << event_lines(*lab_);
    EXPECT_FALSE(has_event(*lab_, before_, {{"event", "switch"}})) << event_lines(*lab_);
    EXPECT_EQ(active_driver(*lab_), active_) << lab_->status_table();
    Json now = expect_same_frontend(lie, spare_);
    EXPECT_EQ(counter(now, "failovers"), counter(app_, "failovers")) << now.dump();
  }

  void expect_ping() {
    const auto& app = lab_->apps().at(0);
    auto ping = run_in(lab_->ext_ns(), "ping -c 3 -i 0.2 -W 2 " + app.ipv4, 20s);
    EXPECT_TRUE(ping.ok()) << ping.describe() << event_lines(*lab_);
  }

  // The frontend lived through it, and its counters tell the verdict.
  Json expect_same_frontend(const Lie& lie, const std::string& victim) {
    EXPECT_TRUE(process_alive(pid_));
    Json now = app_status(*lab_);
    EXPECT_EQ(front_pid(now), pid_) << "the frontend was restarted\n" << event_lines(*lab_) << lab_->logs();
    EXPECT_GT(counter(now, counter_of(lie.detector)), counter(app_, counter_of(lie.detector))) << now.dump();
    EXPECT_GT(counter(now, "fences"), counter(app_, "fences")) << now.dump();
    if (lie.detector == "protocol-violation") {
      EXPECT_GT(counter(now, "malformed"), counter(app_, "malformed")) << now.dump();
      EXPECT_GT(backend(now, victim).value("malformed", 0), backend(app_, victim).value("malformed", 0))
          << now.dump();
    }
    return now;
  }

  std::unique_ptr<LabGuard> lab_;
  std::string active_, spare_;
  Json app_;      // app1's status before the lie
  pid_t pid_ = 0;  // its frontend
  size_t before_ = 0;
  std::function<void()> after_inject_;  // runs as soon as the lie is told
};

// ---- indices ----------------------------------------------------------------

TEST_F(HostileTest, RxProducerIndexJumpingAheadIsAViolation) {
  expect_active_lie_survived({"rx-index-jump", "protocol-violation", "producer index"});
}

TEST_F(HostileTest, RxProducerIndexMovedBackIsAViolation) {
  expect_active_lie_survived({"rx-index-back", "protocol-violation", "producer index"});
}

TEST_F(HostileTest, TxDoneIndexJumpingAheadIsAViolation) {
  expect_active_lie_survived({"tx-index-jump", "protocol-violation", "done index"});
}

TEST_F(HostileTest, TxDoneIndexMovedBackIsAViolation) {
  expect_active_lie_survived({"tx-index-back", "protocol-violation", "done index"});
}

// The frontend reads a spare's TX done index too: a lying spare is fenced
// before it is ever needed.
TEST_F(HostileTest, SpareMovingItsTxDoneIndexIsFencedWhileTheActiveServes) {
  expect_spare_lie_survived({"tx-index-jump", "protocol-violation", "done index"});
}

// ---- descriptors --------------------------------------------------------------

TEST_F(HostileTest, DescriptorRunningPastItsSlotIsAViolation) {
  expect_active_lie_survived({"desc-outside", "protocol-violation", "malformed descriptor"});
}

TEST_F(HostileTest, DescriptorOfLengthZeroIsAViolation) {
  expect_active_lie_survived({"len-zero", "protocol-violation", "length 0 "});
}

TEST_F(HostileTest, DescriptorOfLengthTwoToThe32MinusOneIsAViolation) {
  expect_active_lie_survived({"len-max", "protocol-violation", "length 4294967295"});
}

// The length flips between valid and 2^32-1 while the frontend reads it:
// the frontend checks and uses one copy, so it either delivers a good frame
// or refuses a bad one, and sooner or later it sees a bad one.
TEST_F(HostileTest, DescriptorFlippingWhileReadIsAViolationNotACrash) {
  expect_active_lie_survived({"desc-flip", "protocol-violation", "length 4294967295"});
}

// ---- control messages -------------------------------------------------------

TEST_F(HostileTest, GarbageOnTheControlSocketIsAViolation) {
  expect_active_lie_survived({"ctl-garbage", "protocol-violation", "bad magic"});
}

// A fault report cut short would be believed as a hang if it were parsed
// leniently: it must be refused as malformed instead.
TEST_F(HostileTest, TruncatedControlMessageIsAViolationNotAReport) {
  expect_active_lie_survived({"ctl-truncated", "protocol-violation", "truncated or malformed fault"});
}

TEST_F(HostileTest, GarbageFromTheSpareIsFencedWhileTheActiveServes) {
  expect_spare_lie_survived({"ctl-garbage", "protocol-violation", "bad magic"});
}

// During the handshake: the preferred domain answers the hello of a
// frontend that (re)starts with a HelloAck cut short. The frontend refuses
// it, fences the domain and starts on the other one.
TEST_F(HostileTest, TruncatedHelloAckDuringTheHandshakeIsAViolation) {
  auto r = inject(*lab_, active_, "hello-truncated");
  ASSERT_TRUE(r.ok()) << r.describe();
  size_t before = read_events(*lab_).size();
  // The manager restarts the frontend, which connects to the liar first.
  ASSERT_EQ(::kill(pid_, SIGKILL), 0);
  Json want = {{"event", "detect"}, {"detector", "protocol-violation"}, {"domain", "driver-" + active_}};
  Json detect;
  EXPECT_TRUE(wait_until([&] { return !(detect = find_event(*lab_, before, want)).is_null(); }, 10s, 5ms))
      << event_lines(*lab_) << lab_->logs();
  EXPECT_NE(detect.value("detail", "").find("payload bytes"), std::string::npos) << detect.dump();
  Json fence = {{"event", "fence"}, {"domain", "driver-" + active_}};
  EXPECT_TRUE(wait_until([&] { return has_event(*lab_, before, fence); }, kDetectLimit, 5ms))
      << event_lines(*lab_);
  EXPECT_TRUE(wait_until([&] { return active_driver(*lab_) == spare_; }, kDetectLimit))
      << lab_->status_table() << event_lines(*lab_);
  pid_t restarted = front_pid(app_status(*lab_));
  ASSERT_GT(restarted, 0);
  expect_ping();
  Json now = app_status(*lab_);
  EXPECT_EQ(front_pid(now), restarted) << event_lines(*lab_);
  EXPECT_GE(counter(now, "detected_violation"), 1u) << now.dump();
  EXPECT_GE(counter(now, "fences"), 1u) << now.dump();
}

// Eight frontends on one liar: each judges it once. A frontend that fenced
// the domain once reconnected to it while it was still dying (its memory
// goes before its descriptors, tens of ms with eight regions mapped) and
// logged a second, false crash of it when the dying domain's sockets closed.
TEST(HostileManyAppsTest, EveryFrontendJudgesALiarOnce) {
  LabOptions o;
  o.apps = 8;
  LabGuard lab(o);
  ASSERT_TRUE(lab.ok()) << lab.error();
  std::string victim = active_driver(lab);
  ASSERT_FALSE(victim.empty()) << lab.status_table();
  auto s = lab.status();
  ASSERT_TRUE(s) << lab.status_table();
  pid_t liar = 0;
  for (const auto& d : s->at("drivers")) {
    if (d.value("name", "") == victim) liar = d.at("pid").get<pid_t>();
  }
  size_t before = read_events(lab).size();
  auto r = inject(lab, victim, "ctl-garbage");
  ASSERT_TRUE(r.ok()) << r.describe();
  auto all_rejoined = [&] {
    for (const auto& app : lab.apps()) {
      if (!has_event(lab, before, {{"event", "rejoin"}, {"source", "front-" + app.name}, {"domain", "driver-" + victim}})) {
        return false;
      }
    }
    return true;
  };
  EXPECT_TRUE(wait_until(all_rejoined, kReadyLimit)) << lab.status_table() << event_lines(lab);
  std::this_thread::sleep_for(200ms);  // any late verdict on the liar is in by now
  auto events = read_events(lab);
  for (const auto& app : lab.apps()) {
    int verdicts = 0;
    for (size_t i = before; i < events.size(); ++i) {
      const auto& e = events[i];
      verdicts += e.value("event", "") == "detect" && e.value("source", "") == "front-" + app.name &&
                  e.value("pid", 0) == liar;
    }
    EXPECT_EQ(verdicts, 1) << app.name << "\n" << event_lines(lab);
  }
  EXPECT_TRUE(has_event(lab, before, {{"event", "detect"}, {"detector", "protocol-violation"}, {"domain", "driver-" + victim}}))
      << event_lines(lab);
}

// ---- kicks ----------------------------------------------------------------------

// An honest domain kicks only after it moved frames, so a storm of kicks
// with no work behind them is a violation of the ring protocol, and a
// frontend that kept waking for every one would spin on a core for as long
// as the domain likes. Over the second after the injection the frontend
// may spend a fraction of a core at most (it spins only until the storm
// outgrows what any honest domain could have sent).
constexpr double kStormCpuLimit = 0.5;

class HostileKickStormTest : public HostileTest {
 protected:
  void SetUp() override {
    HostileTest::SetUp();
    after_inject_ = [this] {
      double cpu0 = cpu_seconds(pid_);
      std::this_thread::sleep_for(1s);
      used_ = cpu_seconds(pid_) - cpu0;
    };
  }
  void TearDown() override {
    EXPECT_LT(used_, kStormCpuLimit) << "the frontend used " << used_ << " s of CPU in the second after the storm began";
  }
  double used_ = 0;
};

TEST_F(HostileKickStormTest, FromTheActiveIsAViolationAndDoesNotSpinTheFrontend) {
  expect_active_lie_survived({"kick-storm", "protocol-violation", "kicks"});
}

TEST_F(HostileKickStormTest, FromTheSpareIsFencedWhileTheActiveServes) {
  expect_spare_lie_survived({"kick-storm", "protocol-violation", "kicks"});
}

}  // namespace
}  // namespace ng::it

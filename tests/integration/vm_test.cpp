// Driver VMs: real QEMU guests (TCG here) running the NIC's own kernel
// driver (e1000e), bridged to the host-side domain process that serves the
// frontends. One lab is shared by the suite: a driver VM boots in 10 to 15 s
// under TCG, and every test leaves the lab as it found it (both VMs up, one
// active, one spare). What must hold: TCP flows both ways with matching
// checksums; a guest panic, a QEMU kill and stopped vCPUs each fail over to
// the spare VM with the TCP connection alive, are found by the detector
// that should find them, and the failed VM comes back as the spare.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <future>
#include <memory>

#include "support.hpp"

namespace ng::it {
namespace {

using Json = nlohmann::json;

constexpr uint64_t kTransferBytes = uint64_t{24} << 20;
constexpr uint64_t kPaceBytesPerS = uint64_t{3} << 20;  // about 8 s; TCG moves 100-200 Mbit/s
constexpr int kTcpPort = 5321;
constexpr auto kDetectLimit = 5s;
// A restarted driver VM boots again: 10 to 15 s under TCG on 2 cores.
constexpr auto kRejoinLimit = 90s;

bool has_spare(const LabGuard& lab) {
  auto s = lab.status();
  if (!s || s->at("apps").empty()) return false;
  for (const auto& b : s->at("apps")[0].value("backends", Json::array())) {
    if (b.value("state", "") == "spare") return true;
  }
  return false;
}

class VmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    files_ = std::make_unique<TempDir>("ng-it-vm");
    std::string why;
    auto f = make_random_file(files_->path(), kTransferBytes, &why);
    if (f) file_ = *f;
    LabOptions o;
    o.domain = "vm";
    o.up_limit = 240s;
    lab_ = std::make_unique<LabGuard>(o);
  }
  static void TearDownTestSuite() {
    lab_.reset();
    files_.reset();
  }

  void SetUp() override {
    ASSERT_FALSE(file_.path.empty());
    ASSERT_TRUE(lab_->ok()) << lab_->error();
    ASSERT_TRUE(wait_until([] { return has_spare(*lab_) && !active_driver(*lab_).empty(); }, kRejoinLimit))
        << lab_->status_table() << lab_->logs();
  }

  // Injects `fault` into the active driver VM under a paced TCP transfer.
  void survive(const std::string& fault, const std::string& detector) {
    const auto& app = lab_->apps().at(0);
    auto transfer = std::async(std::launch::async, [&] {
      return tcp_transfer(lab_->ext_ns(), app.netns, app.ipv4, kTcpPort, file_, 120s, kPaceBytesPerS);
    });
    std::this_thread::sleep_for(2s);
    std::string victim = active_driver(*lab_);
    ASSERT_FALSE(victim.empty());
    size_t before = read_events(*lab_).size();
    auto r = run(fmt::format("{} inject {} {} -s {}", quote(kNicguard), victim, fault,
                             quote(lab_->control_socket())), 10s);
    ASSERT_TRUE(r.ok()) << r.describe();
    Json want = {{"event", "detect"}, {"detector", detector}, {"domain", "driver-" + victim}};
    EXPECT_TRUE(wait_until([&] { return has_event(*lab_, before, want); }, kDetectLimit, 5ms))
        << fault << " in driver VM " << victim << " was not found by " << detector << "\n"
        << event_lines(*lab_) << lab_->logs();
    auto t = transfer.get();
    EXPECT_TRUE(t.ok) << t.detail << event_lines(*lab_) << lab_->logs();
    EXPECT_TRUE(wait_until([&] { return has_spare(*lab_); }, kRejoinLimit))
        << "driver VM " << victim << " did not come back as the spare\n" << lab_->status_table() << lab_->logs();
    EXPECT_NE(active_driver(*lab_), victim);
  }

  static inline std::unique_ptr<TempDir> files_;
  static inline RandomFile file_;
  static inline std::unique_ptr<LabGuard> lab_;
};

TEST_F(VmTest, TcpFlowsBothWaysThroughTheDriverVm) {
  const auto& app = lab_->apps().at(0);
  auto in = tcp_transfer(lab_->ext_ns(), app.netns, app.ipv4, kTcpPort, file_, 120s);
  EXPECT_TRUE(in.ok) << in.detail << lab_->logs();
  auto out = tcp_transfer(app.netns, lab_->ext_ns(), lab_->ext_ipv4(), kTcpPort + 1, file_, 120s);
  EXPECT_TRUE(out.ok) << out.detail << lab_->logs();
  for (const auto& e : read_events(*lab_)) {
    EXPECT_NE(e.value("event", ""), "detect") << "a detection without a fault: " << e.dump();
  }
}

TEST_F(VmTest, GuestPanicIsACrashAndTheConnectionSurvives) { survive("crash", "crash"); }

TEST_F(VmTest, QemuKilledIsACrashAndTheConnectionSurvives) { survive("kill", "crash"); }

TEST_F(VmTest, StoppedVcpusAreAHangAndTheConnectionSurvives) { survive("hang", "hang"); }

// The paper's fault: a bit of a register flipped at an instruction of the
// guest's e1000e. What follows (a panic, a hang, nothing) is not up to the
// test; that the seed names the same fault twice, and that the lab is whole
// again afterwards, is.
TEST_F(VmTest, RegflipIntoTheGuestDriverIsReproducibleFromItsSeed) {
  const auto& app = lab_->apps().at(0);
  std::vector<Json> choices;
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(wait_until([] { return has_spare(*lab_) && !active_driver(*lab_).empty(); }, kRejoinLimit))
        << lab_->status_table() << lab_->logs();
    Background ping(in_ns(lab_->ext_ns(), fmt::format("ping -q -i 0.01 -w 8 {}", app.ipv4)));
    auto r = run(fmt::format("{} inject {} regflip --seed 2026 --json -s {}", quote(kNicguard), active_driver(*lab_),
                             quote(lab_->control_socket())), 20s);
    ASSERT_TRUE(r.ok()) << r.describe();
    auto j = Json::parse(r.out, nullptr, false);
    ASSERT_TRUE(j.is_object()) << r.describe();
    choices.push_back({{"function", j.value("function", "")}, {"steps", j.value("steps", -1)},
                       {"register", j.value("register", "")}, {"bit", j.value("bit", -1)}});
    EXPECT_FALSE(choices.back()["function"].get<std::string>().empty()) << r.out;
    // Chosen among the functions a profile saw run, so the ping reaches it.
    EXPECT_GT(j.value("running_functions", 0), 0) << r.out;
    EXPECT_TRUE(j.value("reached", false)) << r.out;
  }
  EXPECT_EQ(choices[0], choices[1]);
  EXPECT_TRUE(wait_until([] { return has_spare(*lab_) && !active_driver(*lab_).empty(); }, kRejoinLimit))
      << lab_->status_table() << lab_->logs();
}

}  // namespace
}  // namespace ng::it

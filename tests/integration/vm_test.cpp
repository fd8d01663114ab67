// Driver VMs: real QEMU guests (TCG here) running the NIC's own kernel
// driver (e1000e), bridged to the host-side domain process that serves the
// frontends. One lab is shared by the suite: a driver VM boots in 10 to 15 s
// under TCG, and every test leaves the lab as it found it (both VMs up, one
// active, one spare). What must hold: TCP flows both ways with matching
// checksums; a guest panic, a QEMU kill and stopped vCPUs each fail over to
// the spare VM with the TCP connection alive, are found by the detector
// that should find them, and the failed VM comes back as the spare. QEMU
// runs with no capability and in namespaces of its own. A second lab, whose
// guests drive a virtio-net NIC, checks the guest's own carrier report: the
// emulated e1000e never tells a Linux guest of a lost link (its MSI-X
// link interrupt is not raised), virtio-net does at once.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
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

// Two suites, a lab each; `Model` gives the guests' NIC.
template <const char* Model>
class VmLabTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    files_ = std::make_unique<TempDir>("ng-it-vm");
    std::string why;
    auto f = make_random_file(files_->path(), kTransferBytes, &why);
    if (f) file_ = *f;
    LabOptions o;
    o.domain = "vm";
    o.nic_model = Model;
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

constexpr char kE1000e[] = "";  // the default
constexpr char kVirtioNet[] = "virtio-net-pci";
using VmTest = VmLabTest<kE1000e>;
using VmCarrierTest = VmLabTest<kVirtioNet>;

// What /proc says of a process: the status line's value ("CapEff"), and
// which namespace it is in ("net").
std::string proc_status(pid_t pid, const std::string& key) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + ":", 0) == 0) return line.substr(line.find_first_not_of(" \t", key.size() + 1));
  }
  return "";
}
std::string namespace_of(pid_t pid, const std::string& ns) {
  std::error_code ec;
  return std::filesystem::read_symlink(fmt::format("/proc/{}/ns/{}", pid, ns), ec).string();
}

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

// QEMU, the biggest part of a driver VM's failure domain, holds no
// capability and sees no network, process or IPC of the host's.
TEST_F(VmTest, QemuRunsWithNoCapabilityInNamespacesOfItsOwn) {
  auto s = lab_->status();
  ASSERT_TRUE(s) << lab_->error();
  for (const auto& d : s->at("drivers")) {
    pid_t domain = d.value("pid", 0);
    pid_t qemu = d.contains("vm") ? d["vm"].value("qemu_pid", 0) : 0;
    ASSERT_GT(qemu, 0) << d.dump();
    EXPECT_EQ(proc_status(qemu, "CapEff"), "0000000000000000");
    EXPECT_EQ(proc_status(qemu, "CapBnd"), "0000000000000000");
    EXPECT_EQ(proc_status(qemu, "NoNewPrivs"), "1");
    EXPECT_EQ(proc_status(qemu, "Seccomp"), "2");  // its own -sandbox
    for (const char* ns : {"net", "pid", "ipc", "uts"}) {
      EXPECT_NE(namespace_of(qemu, ns), namespace_of(domain, ns)) << ns;
    }
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
// The guest sees its NIC lose the link and says so on the link (ng-carrier);
// the domain reports it, long before the path check would find the loss.
TEST_F(VmCarrierTest, TheGuestsCarrierLossIsACarrierFaultAndTheConnectionSurvives) {
  survive("link-down", "carrier");
}

}  // namespace ng::it

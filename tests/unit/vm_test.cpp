// Pure parts of the driver VM: QEMU's command line, the guest's kernel
// command line, the liveness question and answer, and the verdict on a
// silent guest.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "driver/vm_domain.hpp"
#include "vm/gdbstub.hpp"
#include "vm/guest_regflip.hpp"
#include "vm/liveness.hpp"
#include "vm/guest_report.hpp"
#include "vm/vm.hpp"

using ::testing::HasSubstr;

namespace {

ng::vm::VmSpec spec() {
  ng::vm::VmSpec s;
  s.name = "a";
  s.kernel = "/g/vmlinuz";
  s.initrd = "/g/initramfs.cpio";
  s.nic_mac = {0x52, 0x54, 0, 1, 2, 3};
  s.link_mac = {0x52, 0x54, 1, 1, 2, 3};
  s.bridge_mac = {0x52, 0x54, 2, 1, 2, 3};
  s.qmp_socket = "/s/vm-a.qmp";
  s.watch_socket = "/s/vm-a.watch";
  s.gdb_socket = "/s/vm-a.gdb";
  return s;
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& a : v) out += a + " ";
  return out;
}

}  // namespace

TEST(Vm, QemuCommandLineHasTheNicTheLinkAndTheSafetyNets) {
  auto s = spec();
  auto a = joined(ng::vm::qemu_args(s));
  EXPECT_THAT(a, HasSubstr("-accel tcg"));
  EXPECT_THAT(a, HasSubstr("-netdev tap,id=nic,fd=3 -device e1000e,netdev=nic,mac=52:54:00:01:02:03"));
  EXPECT_THAT(a, HasSubstr("-device virtio-net-pci,netdev=link,mac=52:54:01:01:02:03"));
  EXPECT_THAT(a, HasSubstr("-sandbox on,"));
  EXPECT_THAT(a, HasSubstr("-device pvpanic -action panic=exit-failure"));
  EXPECT_THAT(a, HasSubstr("-qmp unix:/s/vm-a.qmp,server=on,wait=off"));
  EXPECT_THAT(a, HasSubstr("-qmp unix:/s/vm-a.watch,server=on,wait=off"));
  EXPECT_THAT(a, HasSubstr("-gdb unix:/s/vm-a.gdb"));
  EXPECT_THAT(a, HasSubstr("-name ng-a,debug-threads=on"));
  s.accel = ng::vm::Accel::kvm;
  s.nic_model = "virtio-net-pci";
  a = joined(ng::vm::qemu_args(s));
  EXPECT_THAT(a, HasSubstr("-accel kvm -cpu host,-arch-capabilities"));
  EXPECT_THAT(a, HasSubstr("-device virtio-net-pci,netdev=nic"));
}

TEST(Vm, KernelCommandLineTellsInitTheLinkTheBridgeAndTheDriver) {
  auto s = spec();
  s.nic_model = "e1000";
  s.report_token = 0xab;
  auto c = ng::vm::kernel_cmdline(s);
  EXPECT_THAT(c, HasSubstr("ng.token=00000000000000ab"));
  EXPECT_THAT(c, HasSubstr("ng.link=52:54:01:01:02:03"));
  EXPECT_THAT(c, HasSubstr("ng.br=52:54:02:01:02:03"));
  EXPECT_THAT(c, HasSubstr("ng.ip=169.254.0.2"));
  EXPECT_THAT(c, HasSubstr("ng.drv=e1000"));
  EXPECT_THAT(c, HasSubstr("panic=-1 oops=panic"));
  EXPECT_THAT(c, HasSubstr("unknown_nmi_panic"));
}

TEST(Vm, OnlyTheGuestsAnswerToOurQuestionCounts) {
  ng::Mac host{2, 0, 0, 0, 0, 1}, bridge{0x52, 0x54, 2, 1, 2, 3};
  std::array<uint8_t, 4> ip{169, 254, 0, 2};
  auto q = ng::vm::guest_question(host, bridge, ip);
  EXPECT_TRUE(std::equal(bridge.begin(), bridge.end(), reinterpret_cast<const uint8_t*>(q.data())));
  EXPECT_FALSE(ng::vm::is_guest_answer(q.data(), q.size(), host, bridge, ip)) << "a question is no answer";
  // The answer the guest's kernel sends: to us, from the bridge, op 2.
  auto a = q;
  std::copy(host.begin(), host.end(), reinterpret_cast<uint8_t*>(a.data()));
  std::copy(bridge.begin(), bridge.end(), reinterpret_cast<uint8_t*>(a.data()) + 6);
  a[21] = std::byte{2};
  std::copy(bridge.begin(), bridge.end(), reinterpret_cast<uint8_t*>(a.data()) + 22);
  std::copy(ip.begin(), ip.end(), reinterpret_cast<uint8_t*>(a.data()) + 28);
  EXPECT_TRUE(ng::vm::is_guest_answer(a.data(), a.size(), host, bridge, ip));
  EXPECT_FALSE(ng::vm::is_guest_answer(a.data(), a.size() - 1, host, bridge, ip));
  auto other = a;
  other[31] = std::byte{3};  // another address answering
  EXPECT_FALSE(ng::vm::is_guest_answer(other.data(), other.size(), host, bridge, ip));
}

TEST(Vm, ASlowGuestIsNotAHungOne) {
  using ng::driver::judge_guest;
  using ng::driver::QemuSample;
  constexpr uint64_t kMs = 1'000'000, kTimeout = 20 * kMs, kStarve = 2000 * kMs;
  QemuSample then{{100 * kMs, 'S'}, {50 * kMs, 'S'}};
  // Not yet at the timeout: no verdict, whatever QEMU did.
  EXPECT_FALSE(judge_guest(10 * kMs, then, then, kTimeout, kStarve).hung);
  // Runnable, given hardly any CPU: the host is slow; wait.
  QemuSample starved{{101 * kMs, 'R'}, {50 * kMs, 'R'}};
  EXPECT_FALSE(judge_guest(30 * kMs, then, starved, kTimeout, kStarve).hung);
  // ... but not for ever.
  EXPECT_TRUE(judge_guest(2500 * kMs, then, starved, kTimeout, kStarve).hung);
  // Given 10 ms in 51 ms (a neighbour VM booting) and still no answer:
  // starved, not hung. Seen as a false hang when half the timeout sufficed.
  QemuSample slowed{{110 * kMs, 'R'}, {51 * kMs, 'R'}};
  EXPECT_FALSE(judge_guest(51 * kMs, then, slowed, kTimeout, kStarve).hung);
  // The vCPU ran twice the timeout and still no answer: a wedged guest kernel.
  QemuSample spinning{{141 * kMs, 'R'}, {51 * kMs, 'R'}};
  auto v = judge_guest(60 * kMs, then, spinning, kTimeout, kStarve);
  EXPECT_TRUE(v.hung);
  EXPECT_THAT(v.reason, HasSubstr("vCPU ran 41 ms"));
  // QEMU idle with the question waiting: vCPUs stopped.
  QemuSample idle{{100 * kMs, 'S'}, {50 * kMs, 'S'}};
  EXPECT_THAT(judge_guest(25 * kMs, then, idle, kTimeout, kStarve).reason, HasSubstr("idle"));
  QemuSample stopped{{100 * kMs, 'T'}, {50 * kMs, 'T'}};
  EXPECT_THAT(judge_guest(25 * kMs, then, stopped, kTimeout, kStarve).reason, HasSubstr("stopped"));
  // Ending: not a hang but QEMU going away.
  QemuSample ending{{100 * kMs, 'S', true}, {50 * kMs, 'D', true}};
  auto e = judge_guest(25 * kMs, then, ending, kTimeout, kStarve);
  EXPECT_TRUE(e.hung);
  EXPECT_TRUE(e.exiting);
}

TEST(Vm, AStopADebuggerHeldIsNoHang) {
  constexpr uint64_t kMs = 1'000'000;
  ng::driver::VcpuStops s(20 * kMs, 2000 * kMs);
  EXPECT_FALSE(s.stopped());
  EXPECT_EQ(s.verdict(1000 * kMs), "");
  // Stopped from outside, no debugger: a hang once it lasts the timeout.
  s.on_stop(100 * kMs);
  EXPECT_EQ(s.due_ns(), 120 * kMs);
  EXPECT_EQ(s.verdict(119 * kMs), "");
  EXPECT_THAT(s.verdict(125 * kMs), HasSubstr("stopped for 25 ms"));
  EXPECT_FALSE(s.on_resume());
  // A debugger attached during the stop: judged only after the debug limit,
  // even once it is gone (it detaches before QEMU's RESUME arrives).
  EXPECT_FALSE(s.debugger(true, 150 * kMs));
  EXPECT_TRUE(s.debugger_attached(150 * kMs));
  s.on_stop(200 * kMs);
  EXPECT_FALSE(s.debugger(true, 210 * kMs));
  EXPECT_TRUE(s.debugger(false, 220 * kMs));  // let go: forget the silence
  EXPECT_FALSE(s.debugger_attached(220 * kMs));
  EXPECT_EQ(s.verdict(500 * kMs), "");
  EXPECT_THAT(s.verdict(2300 * kMs), HasSubstr("a debugger has held"));
  // One that stays attached for longer than any regflip is not believed.
  EXPECT_FALSE(s.debugger(true, 2400 * kMs));
  EXPECT_TRUE(s.debugger_attached(4000 * kMs));
  EXPECT_FALSE(s.debugger_attached(4500 * kMs));
  s.debugger(false, 4500 * kMs);
  EXPECT_TRUE(s.on_resume());
  // The next stop starts afresh.
  s.on_stop(3000 * kMs);
  EXPECT_THAT(s.verdict(3030 * kMs), HasSubstr("QMP STOP"));
  EXPECT_FALSE(s.on_resume());
}

TEST(Vm, GuestSymbolsAreTakenFromTheLastBoot) {
  std::string console =
      "ng-guest: init\nng-guest: sym ffffffffc0001000 old_boot\n"
      "[    1.0] something\nng-guest: init\n"
      "ng-guest: sym ffffffffc0441000 e1000_xmit_frame\nng-guest: sym ffffffffc0440000 e1000_probe\n";
  auto s = ng::vm::guest_symbols(console);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].name, "e1000_xmit_frame");
  EXPECT_EQ(s[0].address, 0xffffffffc0441000ull);
}

TEST(Vm, AGuestRegflipPlanDependsOnTheSeedAndTheNamesOnly) {
  std::vector<std::string> names = {"e1000_xmit_frame", "e1000_probe", "e1000_clean_rx_irq", "e1000_watchdog"};
  auto a = ng::vm::plan_guest_regflip(42, names);
  std::reverse(names.begin(), names.end());  // another boot lists them in another order
  auto b = ng::vm::plan_guest_regflip(42, names);
  EXPECT_EQ(a.describe(), b.describe());
  EXPECT_LT(a.steps, ng::vm::kMaxSteps);
  EXPECT_LT(a.bit, 64);
  bool differs = false;
  for (uint64_t seed = 1; seed < 20; ++seed) differs |= ng::vm::plan_guest_regflip(seed, names).describe() != a.describe();
  EXPECT_TRUE(differs);
}

TEST(Vm, GdbPacketsCarryTheirChecksum) {
  EXPECT_EQ(ng::vm::gdb_frame("g"), "$g#67");
  EXPECT_EQ(ng::vm::gdb_frame("Z1,ffffffffc0441000,1"), "$Z1,ffffffffc0441000,1#" + [] {
    unsigned sum = 0;
    for (char c : std::string("Z1,ffffffffc0441000,1")) sum += static_cast<unsigned char>(c);
    char hex[3];
    std::snprintf(hex, sizeof(hex), "%02x", sum & 0xff);
    return std::string(hex);
  }());
}

TEST(Vm, AGuestReportCountsOnlyWithItsBootsToken) {
  std::array<uint8_t, 6> bridge{0x52, 0x54, 2, 1, 2, 3};
  auto f = ng::vm::build_guest_report(bridge, 0x1122334455667788, false, 7);
  ASSERT_TRUE(ng::vm::is_guest_report(f.data(), f.size()));
  auto r = ng::vm::parse_guest_report(f.data(), f.size(), 0x1122334455667788);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->carrier);
  EXPECT_EQ(r->seq, 7u);
  // Another token: a forgery from the wire, or a report from an earlier boot.
  EXPECT_FALSE(ng::vm::parse_guest_report(f.data(), f.size(), 0x1122334455667789));
  EXPECT_TRUE(ng::vm::parse_guest_report(ng::vm::build_guest_report(bridge, 1, true, 1).data(), 60, 1)->carrier);
  // Too short, or a path probe (same EtherType, another magic): no report.
  EXPECT_FALSE(ng::vm::is_guest_report(f.data(), 59));
  f[14] = std::byte{'X'};
  EXPECT_FALSE(ng::vm::is_guest_report(f.data(), f.size()));
}

TEST(Vm, AGuestReportWithACarrierByteOtherThanZeroOrOneIsRefused) {
  std::array<uint8_t, 6> bridge{0x52, 0x54, 2, 1, 2, 3};
  auto f = ng::vm::build_guest_report(bridge, 5, true, 1);
  f[26] = std::byte{2};
  EXPECT_FALSE(ng::vm::parse_guest_report(f.data(), f.size(), 5));
}

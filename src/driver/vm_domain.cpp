#include "driver/vm_domain.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/random.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "common/clock.hpp"
#include "common/hash.hpp"
#include "netlink/netlink.hpp"
#include "vm/liveness.hpp"

namespace ng::driver {
namespace {

constexpr const char* kBridge = "ngvm-br";
constexpr const char* kNicTap = "ngvm-nic";
constexpr const char* kLinkTap = "ngvm-link";
constexpr int kAskEveryMs = 20;

// Addresses of the guest's devices, from the domain's name: stable across
// reboots, so the lab switch and the peer's path probes need not relearn
// more than the domain's own restart makes them.
Mac guest_mac(const std::string& name, const std::string& nic, uint8_t device) {
  uint64_t h = fnv1a64(name + "/" + nic);
  return {0x52, 0x54, device, static_cast<uint8_t>(h >> 16), static_cast<uint8_t>(h >> 8),
          static_cast<uint8_t>(h)};
}

Status bridge_nic(netlink::Session& nl, const std::string& nic, const std::string& tap) {
  auto mtu = nl.mtu(nic);
  if (!mtu) return tl::unexpected(mtu.error());
  if (!nl.exists(kBridge)) {
    if (auto s = nl.create_bridge(kBridge); !s) return s;
  }
  for (const std::string& port : {nic, tap}) {
    if (auto s = nl.set_mtu(port, *mtu); !s) return s;
    if (auto s = nl.set_master(port, kBridge); !s) return s;
    if (auto s = nl.set_up(port); !s) return s;
  }
  return nl.set_up(kBridge);
}

Result<vm::VmSpec> make_spec(const std::string& name, const std::string& nic, const VmDomainOptions& o) {
  std::string dir = o.image_dir.empty() ? vm::default_image_dir() : o.image_dir;
  vm::VmSpec s;
  s.name = name;
  s.kernel = dir + "/vmlinuz";
  s.initrd = dir + "/initramfs.cpio";
  for (const auto& f : {s.kernel, s.initrd}) {
    if (::access(f.c_str(), R_OK) != 0) {
      return fail("the driver VM's guest image {} is missing: build it with './run.sh build' "
                  "(src/vm/guest/build-image.sh {})", f, dir);
    }
  }
  if (!vm::known_nic_model(o.nic_model)) return fail("unknown NIC model '{}'", o.nic_model);
  s.nic_model = o.nic_model;
  s.nic_mac = guest_mac(name, nic, 0x00);
  s.link_mac = guest_mac(name, nic, 0x01);
  s.bridge_mac = guest_mac(name, nic, 0x02);
  s.memory_mb = o.memory_mb;
  if (::getrandom(&s.report_token, sizeof s.report_token, 0) != sizeof s.report_token) {
    return fail_errno("choosing the guest's report token");
  }
  s.accel = o.accel == "kvm" ? vm::Accel::kvm : vm::Accel::tcg;
  std::string run = o.run_dir.empty() ? "." : o.run_dir;
  s.qmp_socket = run + "/vm-" + name + ".qmp";
  s.gdb_socket = run + "/vm-" + name + ".gdb";
  s.watch_socket = run + "/vm-" + name + ".watch";
  s.serial_log = run + "/vm-" + name + ".console";
  for (const auto& f : {s.qmp_socket, s.watch_socket, s.gdb_socket}) ::unlink(f.c_str());
  return s;
}

// Asks until the guest answers, QEMU exits or the deadline passes.
Status await_guest(Nic& link, vm::Qemu& qemu, const vm::VmSpec& s, uint32_t timeout_ms) {
  auto q = vm::guest_question(link.mac(), s.bridge_mac, s.guest_ip);
  std::array<std::byte, kVnetHdrLen + vm::kArpFrameLen> frame{};
  std::memcpy(frame.data() + kVnetHdrLen, q.data(), q.size());
  std::vector<std::byte> buf(65536 + 256);
  uint64_t deadline = mono_ns() + uint64_t{timeout_ms} * 1'000'000;
  while (mono_ns() < deadline) {
    iovec out{frame.data(), frame.size()};
    unsigned refused = 0;
    (void)link.send({&out, 1}, &refused);
    pollfd p[2] = {{link.fd(), POLLIN, 0}, {qemu.pidfd(), POLLIN, 0}};
    ::poll(p, 2, kAskEveryMs);
    if (p[1].revents & POLLIN) {
      std::string why = qemu.reap();
      return fail("QEMU {} while the guest booted; its console: {}", why, vm::console_tail(s.serial_log));
    }
    for (;;) {
      iovec in{buf.data(), buf.size()};
      uint32_t len = 0;
      auto got = link.receive({&in, 1}, {&len, 1});
      if (!got || *got == 0) break;
      if (len > kVnetHdrLen &&
          vm::is_guest_answer(buf.data() + kVnetHdrLen, len - kVnetHdrLen, link.mac(), s.bridge_mac, s.guest_ip)) {
        return {};
      }
    }
  }
  return fail("the guest did not answer within {} ms of QEMU's start (accel {}); its console: {}",
              timeout_ms, vm::accel_name(s.accel), vm::console_tail(s.serial_log));
}

Result<UniqueFd> open_proc(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return fail_errno("opening {}", path);
  return fd;
}

std::string read_at0(int fd) {
  char buf[512];
  ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

// QEMU names its vCPU threads "CPU 0/TCG" or "CPU 0/KVM".
Result<pid_t> vcpu_thread(pid_t qemu) {
  std::string dir = fmt::format("/proc/{}/task", qemu);
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::ifstream in(e.path() / "comm");
    std::string comm;
    std::getline(in, comm);
    if (comm.rfind("CPU 0/", 0) == 0) return static_cast<pid_t>(std::stol(e.path().filename().string()));
  }
  return fail("QEMU (pid {}) has no vCPU thread named 'CPU 0/...' in {}", qemu, dir);
}

uint64_t ms(uint64_t ns) { return ns / 1'000'000; }

}  // namespace

GuestVerdict judge_guest(uint64_t unanswered_ns, const QemuSample& then, const QemuSample& now,
                         uint64_t timeout_ns, uint64_t starve_limit_ns) {
  if (unanswered_ns < timeout_ns) return {};
  if (now.main.exiting) {
    return {true, true, fmt::format("QEMU is ending (killed or quit); the guest did not answer for {} ms", ms(unanswered_ns))};
  }
  uint64_t vcpu = now.vcpu.run_ns - std::min(now.vcpu.run_ns, then.vcpu.run_ns);
  uint64_t main = now.main.run_ns - std::min(now.main.run_ns, then.main.run_ns);
  // An ARP answer costs a guest well under a millisecond of its vCPU; a
  // TCG guest given a few milliseconds now and then (a neighbour VM
  // booting) can still owe it after 10 ms. A spinning kernel gets there
  // within twice the timeout at half a core.
  if (vcpu >= 2 * timeout_ns) {
    return {true, false, fmt::format("the guest did not answer for {} ms while its vCPU ran {} ms", ms(unanswered_ns), ms(vcpu))};
  }
  bool stopped = now.vcpu.state == 'T' || now.vcpu.state == 't';
  bool idle = now.vcpu.state != 'R' && now.main.state != 'R';
  if (stopped || idle) {
    return {true, false, fmt::format("the guest did not answer for {} ms while QEMU was {} (vCPU ran {} ms, main loop {} ms)",
                              ms(unanswered_ns), stopped ? "stopped" : "idle", ms(vcpu), ms(main))};
  }
  if (unanswered_ns >= starve_limit_ns) {
    return {true, false, fmt::format("the guest did not answer for {} ms; QEMU waited for the CPU all that time",
                              ms(unanswered_ns))};
  }
  return {};
}

bool VcpuStops::debugger(bool attached, uint64_t now) {
  held_ = held_ || (attached && since_ns_ != 0);
  if (attached) {
    if (attached_ns_ == 0) attached_ns_ = now;
    return false;
  }
  return std::exchange(attached_ns_, 0) != 0;
}

std::string VcpuStops::verdict(uint64_t now) const {
  if (since_ns_ == 0 || now - since_ns_ < limit_ns()) return "";
  uint64_t for_ms = (now - since_ns_) / 1'000'000;
  if (held_) return fmt::format("driver VM: a debugger has held its vCPUs for {} ms", for_ms);
  return fmt::format("driver VM: its vCPUs have been stopped for {} ms (QMP STOP)", for_ms);
}

Result<GuestWatch> GuestWatch::open(pid_t qemu, const vm::VmSpec& spec, const Mac& host_mac,
                                    uint32_t interval_us, uint32_t timeout_ms) {
  auto tid = vcpu_thread(qemu);
  if (!tid) return tl::unexpected(tid.error());
  GuestWatch w;
  auto task = [&](pid_t t, const char* file) { return open_proc(fmt::format("/proc/{}/task/{}/{}", qemu, t, file)); };
  auto vs = task(*tid, "stat"), vc = task(*tid, "schedstat"), ms = task(qemu, "stat"), mc = task(qemu, "schedstat");
  for (auto* r : {&vs, &vc, &ms, &mc}) {
    if (!*r) return tl::unexpected(r->error());
  }
  w.vcpu_stat_ = std::move(*vs);
  w.vcpu_sched_ = std::move(*vc);
  w.main_stat_ = std::move(*ms);
  w.main_sched_ = std::move(*mc);
  auto q = vm::guest_question(host_mac, spec.bridge_mac, spec.guest_ip);
  std::memcpy(w.frame_.data() + kVnetHdrLen, q.data(), q.size());
  w.host_ = host_mac;
  w.spec_ = spec;
  w.interval_ns_ = uint64_t{interval_us} * 1000;
  w.timeout_ns_ = uint64_t{timeout_ms} * 1'000'000;
  return w;
}

const std::byte* GuestWatch::question(uint64_t now, size_t* len) {
  if (now < next_ns_) return nullptr;
  next_ns_ = now + interval_ns_;
  if (asked_ns_ == 0) {
    asked_ns_ = now;
    at_question_ = sample();
  }
  *len = frame_.size();
  return frame_.data();
}

bool GuestWatch::is_answer(const std::byte* eth, size_t len) const {
  return vm::is_guest_answer(eth, len, host_, spec_.bridge_mac, spec_.guest_ip);
}

std::optional<GuestVerdict> GuestWatch::verdict(uint64_t now) {
  if (asked_ns_ == 0 || now - asked_ns_ < timeout_ns_) return std::nullopt;
  constexpr uint64_t kStarveLimitNs = 2'000'000'000;
  auto v = judge_guest(now - asked_ns_, at_question_, sample(), timeout_ns_, kStarveLimitNs);
  if (!v.hung) return std::nullopt;
  return v;
}

ThreadSample GuestWatch::read_thread(int stat_fd, int sched_fd) const {
  ThreadSample t;
  t.run_ns = std::strtoull(read_at0(sched_fd).c_str(), nullptr, 10);
  std::string stat = read_at0(stat_fd);
  auto paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return t;
  t.state = stat[paren + 2];
  // After the state: ppid pgrp session tty_nr tpgid, then flags.
  std::istringstream rest(stat.substr(paren + 3));
  std::string field;
  for (int i = 0; i < 6 && rest >> field; ++i) {
  }
  constexpr unsigned long kPfExiting = 0x4;
  t.exiting = (std::strtoul(field.c_str(), nullptr, 10) & kPfExiting) != 0;
  return t;
}

QemuSample GuestWatch::sample() const {
  return {read_thread(vcpu_stat_.get(), vcpu_sched_.get()), read_thread(main_stat_.get(), main_sched_.get())};
}

Result<VmDomain> boot_vm_domain(const std::string& name, const std::string& nic,
                                const VmDomainOptions& o, int log_fd) {
  auto spec = make_spec(name, nic, o);
  if (!spec) return tl::unexpected(spec.error());
  auto nl = netlink::Session::open();
  if (!nl) return tl::unexpected(nl.error());
  if (!nl->exists(nic)) return fail("NIC '{}' is not in the driver domain's namespace", nic);
  auto nic_tap = vm::open_tap(kNicTap);
  if (!nic_tap) return tl::unexpected(nic_tap.error());
  if (auto s = bridge_nic(*nl, nic, nic_tap->name); !s) return tl::unexpected(s.error());
  auto link_tap = vm::open_tap(kLinkTap);
  if (!link_tap) return tl::unexpected(link_tap.error());
  if (auto mtu = nl->mtu(nic); mtu) (void)nl->set_mtu(kLinkTap, *mtu);
  if (auto s = nl->set_up(kLinkTap); !s) return tl::unexpected(s.error());
  // The domain reads and writes the link's host side as a NIC; the TAP's
  // queue is QEMU's alone.
  auto link = open_af_packet(kLinkTap);
  if (!link) return tl::unexpected(link.error());
  uint64_t t0 = mono_ns();
  auto qemu = vm::Qemu::start(*spec, nic_tap->fd.get(), link_tap->fd.get(), log_fd);
  if (!qemu) return tl::unexpected(qemu.error());
  spdlog::info("driver {}: driver VM started (QEMU pid {}, {}, {} MiB, NIC model {})", name, qemu->pid(),
               vm::accel_name(spec->accel), spec->memory_mb, spec->nic_model);
  if (auto s = await_guest(**link, *qemu, *spec, o.boot_timeout_ms); !s) return tl::unexpected(s.error());
  UniqueFd console(::open(spec->serial_log.c_str(), O_RDONLY | O_CLOEXEC));
  auto watch = GuestWatch::open(qemu->pid(), *spec, (*link)->mac(), o.liveness_us, o.hang_timeout_ms);
  if (!watch) return tl::unexpected(watch.error());
  auto events = vm::QmpEvents::connect(spec->watch_socket);
  if (!events) return tl::unexpected(events.error());
  VmDomain d{std::move(*spec), std::move(*qemu), std::move(*link), std::move(console), std::move(*watch),
             std::move(*events), mono_ns() - t0};
  spdlog::info("driver {}: driver VM up in {} ms", name, d.boot_ns / 1'000'000);
  return d;
}

}  // namespace ng::driver

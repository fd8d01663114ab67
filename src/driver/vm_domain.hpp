#pragma once
// A driver domain whose NIC is driven by a driver VM (vm/vm.hpp). The
// process stays what it is for a NIC of its own: it serves the frontends'
// rings, probes the path and beats. Its "NIC" is the host end of the link
// into the guest, which bridges the link to the NIC that the guest kernel's
// own driver runs. Set up before the sandbox: the taps, the bridge in the
// lab, and QEMU are opened and started here, never after.
#include <array>
#include <cstdint>
#include <optional>
#include <memory>
#include <string>
#include <utility>

#include "common/error.hpp"
#include "driver/nic.hpp"
#include "vm/liveness.hpp"
#include "vm/qmp.hpp"
#include "vm/vm.hpp"

namespace ng::driver {

struct VmDomainOptions {
  bool enabled = false;
  std::string image_dir;  // vmlinuz and initramfs.cpio; empty: vm::default_image_dir()
  std::string nic_model = "e1000e";
  uint32_t memory_mb = 96;
  std::string accel = "tcg";
  std::string run_dir;  // QMP and gdbstub sockets, the guest's console
  uint32_t boot_timeout_ms = 120'000;
  // The guest is asked this often whether it runs, and judged after this
  // long without an answer (judge_guest). TCG guests answer in 1 to 2 ms
  // with spikes of tens; the verdict rests on QEMU's CPU time, not on this.
  uint32_t liveness_us = 10'000;
  uint32_t hang_timeout_ms = 20;
};

// QEMU's threads as the guest watch sees them: the vCPU's and the main
// loop's (which moves the link's frames in and out) run time and state.
struct ThreadSample {
  uint64_t run_ns = 0;
  char state = '?';  // /proc stat: R running or runnable, S, D, T stopped, ...
  bool exiting = false;  // PF_EXITING: killed or ending, not yet reaped
};
struct QemuSample {
  ThreadSample vcpu, main;
};

// The verdict on a guest that has not answered for `unanswered_ns`, from
// QEMU's threads when the question went out and now. A slow guest is not a
// hung one: it is hung when its vCPU ran for twice the timeout and still did
// not answer (a spinning or wedged kernel), or when QEMU sat idle with the
// question waiting (vCPUs stopped, the process frozen). A QEMU that waits
// for the CPU is waited for, up to `starve_limit_ns`.
struct GuestVerdict {
  bool hung = false;
  bool exiting = false;  // not hung but ending: QEMU was killed or quit
  std::string reason;
};
GuestVerdict judge_guest(uint64_t unanswered_ns, const QemuSample& then, const QemuSample& now,
                         uint64_t timeout_ns, uint64_t starve_limit_ns);

// Asks the guest when it has been silent for an interval and judges the
// silence (judge_guest). Each question costs a TCG guest about half a
// millisecond of CPU, so it is asked only when nothing else came. The
// /proc files are opened before the sandbox and re-read with pread.
class GuestWatch {
 public:
  static Result<GuestWatch> open(pid_t qemu, const vm::VmSpec& spec, const Mac& host_mac,
                                 uint32_t interval_us, uint32_t timeout_ms);
  uint64_t next_due_ns() const { return next_ns_; }
  // The question to send now, or nullptr when none is due.
  const std::byte* question(uint64_t now, size_t* len);
  // Any frame from the link proves the guest ran: the peer's path probes
  // come through it every millisecond, so a carrying pair rarely asks.
  void heard(uint64_t now) {
    asked_ns_ = 0;
    next_ns_ = now + interval_ns_;
  }
  // Whether the frame (without the virtio-net header) is the guest's answer.
  bool is_answer(const std::byte* eth, size_t len) const;
  // Once the guest is judged hung (or QEMU found ending).
  std::optional<GuestVerdict> verdict(uint64_t now);

 private:
  QemuSample sample() const;
  ThreadSample read_thread(int stat_fd, int sched_fd) const;

  UniqueFd vcpu_stat_, vcpu_sched_, main_stat_, main_sched_;
  std::array<std::byte, kVnetHdrLen + vm::kArpFrameLen> frame_{};
  Mac host_{};
  vm::VmSpec spec_;
  uint64_t interval_ns_ = 0, timeout_ns_ = 0;
  uint64_t next_ns_ = 0;
  uint64_t asked_ns_ = 0;  // the oldest unanswered question; 0: none
  QemuSample at_question_;
};

// Stopped vCPUs (QMP STOP, no RESUME since), judged by who stopped them,
// and the debugger that regflip attaches. Its gdbstub holds the guest while
// it places the fault, and while it is attached the guest runs slowed down
// (TCG translates around every breakpoint); nothing has been injected until
// it lets go. The manager says beforehand that it attaches (through the
// inject control file). So while it is attached, and over a stop it took
// part in, the guest's silence is not judged; it is a hang only after
// debug_limit. Any other stop that lasts the hang timeout is a hang.
class VcpuStops {
 public:
  VcpuStops(uint64_t hang_ns, uint64_t debug_limit_ns) : hang_ns_(hang_ns), debug_limit_ns_(debug_limit_ns) {}
  void on_stop(uint64_t now) {
    if (since_ns_ == 0) since_ns_ = now;
  }
  // True when a debugger held the guest: its silence is to be forgotten.
  bool on_resume() {
    since_ns_ = 0;
    return std::exchange(held_, false);
  }
  // Whether the manager's debugger is attached, every pass; true when it
  // just let go: the guest's silence till now is to be forgotten.
  bool debugger(bool attached, uint64_t now);
  // Attached, and not for longer than any regflip takes.
  bool debugger_attached(uint64_t now) const {
    return attached_ns_ != 0 && now - attached_ns_ < debug_limit_ns_;
  }
  bool stopped() const { return since_ns_ != 0; }
  // When verdict() may next say something; 0: nothing is pending.
  uint64_t due_ns() const { return since_ns_ == 0 ? 0 : since_ns_ + limit_ns(); }
  // Why the stop is a hang, once it is one; "" before.
  std::string verdict(uint64_t now) const;

 private:
  uint64_t limit_ns() const { return held_ ? debug_limit_ns_ : hang_ns_; }
  uint64_t hang_ns_, debug_limit_ns_;
  uint64_t since_ns_ = 0;
  uint64_t attached_ns_ = 0;  // since when the debugger is attached; 0: it is not
  bool held_ = false;         // a debugger was attached at some point of this stop
};

struct VmDomain {
  vm::VmSpec spec;
  vm::Qemu qemu;
  std::unique_ptr<Nic> link;  // the host end of the link, as the domain's NIC
  UniqueFd console;           // the guest's console log, for console_tail()
  std::optional<GuestWatch> watch;
  std::optional<vm::QmpEvents> events;  // GUEST_PANICKED and STOP arrive here
  uint64_t boot_ns = 0;       // QEMU start to the guest's first answer
};

// In the domain's namespace, which holds `nic`: bridges nic to a fresh TAP
// that the guest's emulated NIC sits on, starts QEMU, and waits until the
// guest answers through the link with the NIC's carrier up.
Result<VmDomain> boot_vm_domain(const std::string& name, const std::string& nic,
                                const VmDomainOptions& options, int log_fd);

}  // namespace ng::driver

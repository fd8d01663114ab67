#pragma once
// A driver VM: a QEMU process running a small Linux guest (src/vm/guest)
// that holds the NIC and runs the NIC's own kernel driver. The guest bridges
// the NIC to one virtio-net "link" whose host end is a TAP the driver
// domain's process serves frontends from (docs/vm.md says why this link and
// not vhost-user or ivshmem). A driver bug takes down the VM, never the host.
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/addr.hpp"
#include "common/error.hpp"
#include "common/fd.hpp"

namespace ng::vm {

enum class Accel { tcg, kvm };
const char* accel_name(Accel a);

// The NIC models the lab can emulate; on a real host the NIC is passed through.
inline constexpr std::array<const char*, 3> kNicModels = {"e1000e", "e1000", "virtio-net-pci"};
bool known_nic_model(const std::string& model);
// The guest module that drives the model.
const char* nic_module(const std::string& model);

struct VmSpec {
  std::string name;
  std::string kernel;  // the guest's vmlinuz
  std::string initrd;  // its initramfs.cpio
  std::string nic_model = "e1000e";
  Mac nic_mac{};
  Mac link_mac{};    // the guest's end of the link
  Mac bridge_mac{};  // the guest bridge, which answers the liveness ARP
  std::array<uint8_t, 4> guest_ip{169, 254, 0, 2};
  uint64_t report_token = 0;  // in the guest's reports (vm/guest_report.hpp); fresh per boot
  uint32_t memory_mb = 96;
  Accel accel = Accel::tcg;
  std::string qmp_socket;  // QMP monitor, a Unix socket QEMU listens on
  std::string watch_socket;  // a second QMP monitor: the domain's, for the guest's events
  std::string gdb_socket;  // gdbstub, for fault injection into the guest's driver
  std::string serial_log;  // the guest's console
};

// The descriptors QEMU inherits, as numbered in its command line.
inline constexpr int kNicTapFd = 3;
inline constexpr int kLinkTapFd = 4;

// QEMU's argv (argv[0] included) for the spec; pure, for tests.
std::vector<std::string> qemu_args(const VmSpec& spec, const std::string& qemu = "qemu-system-x86_64");

// The kernel command line the guest's init reads (src/vm/guest/init).
std::string kernel_cmdline(const VmSpec& spec);

// A TAP opened with a virtio-net header in the caller's namespace; a fresh
// one (name empty: the kernel picks "tapN") or an existing persistent one.
struct Tap {
  UniqueFd fd;
  std::string name;
};
Result<Tap> open_tap(const std::string& name);

// A running QEMU. Killed (SIGKILL) when the object goes and when the process
// that started it dies (PR_SET_PDEATHSIG), so no guest outlives its domain.
// It runs in PID, network, IPC and UTS namespaces of its own, as uid 0 with
// no capabilities and no_new_privs, besides its own -sandbox.
class Qemu {
 public:
  // Starts QEMU with nic_tap and link_tap as fds 3 and 4, its output to
  // log_fd. The spec's sockets must not exist yet.
  static Result<Qemu> start(const VmSpec& spec, int nic_tap, int link_tap, int log_fd);
  // Any command line, no descriptors passed (the KVM check).
  static Result<Qemu> start_plain(const std::vector<std::string>& args, int log_fd);
  Qemu() = default;
  Qemu(Qemu&&) noexcept;
  Qemu& operator=(Qemu&&) noexcept;
  ~Qemu();

  pid_t pid() const { return pid_; }
  int pidfd() const { return pidfd_.get(); }  // readable once QEMU has exited
  bool exited() const;
  // Waits for the exit and says it in words ("exited with status 1",
  // "killed by signal 9"); call once pidfd() is readable, or to end it.
  std::string reap();
  void kill();

 private:
  static Result<Qemu> spawn(const std::vector<std::string>& args, int log_fd, int nic_tap, int link_tap);
  pid_t pid_ = 0;
  UniqueFd pidfd_;
  UniqueFd lifeline_;  // the write end of QEMU's lifeline pipe (exec_qemu)
  bool reaped_ = false;
};

// The last lines of the guest's console, for the reason a VM failed; read
// through an fd opened earlier, since a sandboxed domain cannot open files.
std::string console_tail(int fd, size_t lines = 5);
std::string console_tail(const std::string& serial_log, size_t lines = 5);

// Where the guest image lives: $NICGUARD_GUEST_DIR, else "guest" beside the
// nicguard binary (./run.sh build puts it in build/guest).
std::string default_image_dir();

}  // namespace ng::vm

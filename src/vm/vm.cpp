#include "vm/vm.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/if_tun.h>
#include <linux/sched.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "common/clone.hpp"

#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ng::vm {

const char* accel_name(Accel a) { return a == Accel::kvm ? "kvm" : "tcg"; }

bool known_nic_model(const std::string& model) {
  for (const char* m : kNicModels) {
    if (model == m) return true;
  }
  return false;
}

const char* nic_module(const std::string& model) {
  if (model == "e1000") return "e1000";
  if (model == "virtio-net-pci") return "virtio_net";
  return "e1000e";
}

std::string kernel_cmdline(const VmSpec& s) {
  // panic=-1 and oops=panic: any oops in the driver ends the guest at once
  // (pvpanic, then QEMU exits); loglevel=3 keeps the oops off the slow
  // emulated serial port, which under TCG would delay the panic by tens of
  // milliseconds. unknown_nmi_panic lets `inject crash` panic the guest
  // with an NMI from QMP. No IPv6: the bridge must say nothing on the wire.
  return fmt::format(
      "console=ttyS0 panic=-1 oops=panic loglevel=3 quiet ipv6.disable=1 unknown_nmi_panic=1 "
      "mitigations=off ng.link={} ng.br={} ng.ip={}.{}.{}.{} ng.drv={} ng.token={:016x}",
      format_mac(s.link_mac), format_mac(s.bridge_mac), s.guest_ip[0], s.guest_ip[1],
      s.guest_ip[2], s.guest_ip[3], nic_module(s.nic_model), s.report_token);
}

std::vector<std::string> qemu_args(const VmSpec& s, const std::string& qemu) {
  bool kvm = s.accel == Accel::kvm;
  bool vhost = ::access("/dev/vhost-net", R_OK | W_OK) == 0;
  std::vector<std::string> a = {
      // debug-threads names the vCPU thread "CPU 0/TCG", which the guest
      // watch judges a silence by.
      qemu, "-name", "ng-" + s.name + ",debug-threads=on", "-M", "pc",
      // A small translation cache: the default (a gigabyte under TCG) makes
      // an idle guest's RSS ten times its memory.
      "-accel", kvm ? "kvm" : "tcg,tb-size=64",
      "-cpu", kvm ? "host,-arch-capabilities" : "max",
      "-m", std::to_string(s.memory_mb), "-smp", "1",
      "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
      "-msg", "timestamp=on",
      "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
      "-kernel", s.kernel, "-initrd", s.initrd, "-append", kernel_cmdline(s),
      "-serial", s.serial_log.empty() ? "null" : "file:" + s.serial_log,
      "-netdev", fmt::format("tap,id=nic,fd={}", kNicTapFd),
      "-device", fmt::format("{},netdev=nic,mac={},romfile=", s.nic_model, format_mac(s.nic_mac)),
      "-netdev", fmt::format("tap,id=link,fd={},vhost={}", kLinkTapFd, vhost ? "on" : "off"),
      "-device", fmt::format("virtio-net-pci,netdev=link,mac={},romfile=", format_mac(s.link_mac)),
      // A guest panic ends QEMU at once: its exit is the crash signal.
      "-device", "pvpanic", "-action", "panic=exit-failure"};
  if (!s.qmp_socket.empty()) {
    a.insert(a.end(), {"-qmp", fmt::format("unix:{},server=on,wait=off", s.qmp_socket)});
  }
  if (!s.watch_socket.empty()) {
    a.insert(a.end(), {"-qmp", fmt::format("unix:{},server=on,wait=off", s.watch_socket)});
  }
  if (!s.gdb_socket.empty()) {
    a.insert(a.end(), {"-gdb", fmt::format("unix:{},server=on,wait=off", s.gdb_socket)});
  }
  return a;
}

Result<Tap> open_tap(const std::string& name) {
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!fd) return fail_errno("opening /dev/net/tun (is the tun module loaded?)");
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (name.size() >= IFNAMSIZ) return fail("TAP name '{}' is longer than {} bytes", name, IFNAMSIZ - 1);
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
    return fail_errno("opening TAP {}", name.empty() ? std::string("(new)") : name);
  }
  return Tap{std::move(fd), ifr.ifr_name};
}

namespace {

// QEMU needs no network (its NICs are the TAP descriptors it inherits), no
// other process and no capability: every file it opens is root's, and it
// stays uid 0, because a change of uid would clear its parent-death signal.
constexpr uint64_t kQemuNamespaces = CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;

// Empty bounding, inheritable and ambient sets: the exec then grants uid 0
// nothing. Raw calls only: this runs between fork and exec.
void drop_capabilities() {
  for (unsigned long c = 0; c < 64; ++c) ::prctl(PR_CAPBSET_DROP, c, 0, 0, 0);  // EINVAL past the last: fine
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = {};
  ::syscall(SYS_capset, &h, d);
  ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

// The child's side: only async-signal-safe calls until execvp.
// `lifeline`: the read end of a pipe whose write end only the parent holds.
// In a PID namespace of its own QEMU's getppid() is 0, so a parent that
// died before PR_SET_PDEATHSIG took hold shows as the pipe's hang-up.
[[noreturn]] void exec_qemu(char* const* argv, int nic_tap, int link_tap, int log_fd, int lifeline) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  pollfd parent{lifeline, POLLIN, 0};
  if (::poll(&parent, 1, 0) != 0) ::_exit(126);
  drop_capabilities();
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  int null_fd = ::open("/dev/null", O_RDONLY);
  // Moved out of the way first, so that the dup2s below cannot clobber
  // each other whatever numbers the caller's descriptors have.
  int n = nic_tap < 0 ? -1 : ::fcntl(nic_tap, F_DUPFD, 10);
  int l = link_tap < 0 ? -1 : ::fcntl(link_tap, F_DUPFD, 10);
  int g = ::fcntl(log_fd, F_DUPFD, 10);
  ::dup2(null_fd, STDIN_FILENO);
  ::dup2(g, STDOUT_FILENO);
  ::dup2(g, STDERR_FILENO);
  if (n >= 0) ::dup2(n, kNicTapFd);
  if (l >= 0) ::dup2(l, kLinkTapFd);
  ::close_range(n < 0 ? STDERR_FILENO + 1 : kLinkTapFd + 1, ~0U, 0);
  ::execvp(argv[0], argv);
  static const char msg[] = "nicguard: exec qemu-system-x86_64 failed (install qemu-system-x86)\n";
  [[maybe_unused]] ssize_t w = ::write(STDERR_FILENO, msg, sizeof(msg) - 1);
  ::_exit(127);
}

}  // namespace

Result<Qemu> Qemu::start(const VmSpec& spec, int nic_tap, int link_tap, int log_fd) {
  return spawn(qemu_args(spec), log_fd, nic_tap, link_tap);
}

Result<Qemu> Qemu::start_plain(const std::vector<std::string>& args, int log_fd) {
  return spawn(args, log_fd, -1, -1);
}

bool Qemu::exited() const {
  pollfd p{pidfd_.get(), POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

Result<Qemu> Qemu::spawn(const std::vector<std::string>& args_in, int log_fd, int nic_tap, int link_tap) {
  auto args = args_in;
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return fail_errno("pipe for QEMU");
  UniqueFd lifeline(pipe_fds[0]);
  Qemu q;
  q.lifeline_.reset(pipe_fds[1]);
  int pidfd = -1;
  long pid = clone_with_pidfd(kQemuNamespaces, pidfd);
  if (pid < 0) return fail_errno("starting QEMU in namespaces of its own (clone3)");
  if (pid == 0) {
    ::close(pipe_fds[1]);
    exec_qemu(argv.data(), nic_tap, link_tap, log_fd, lifeline.get());
  }
  q.pid_ = static_cast<pid_t>(pid);
  q.pidfd_.reset(pidfd);
  return q;
}

Qemu::Qemu(Qemu&& o) noexcept
    : pid_(std::exchange(o.pid_, 0)), pidfd_(std::move(o.pidfd_)), lifeline_(std::move(o.lifeline_)), reaped_(o.reaped_) {}

Qemu& Qemu::operator=(Qemu&& o) noexcept {
  if (this != &o) {
    kill();
    pid_ = std::exchange(o.pid_, 0);
    pidfd_ = std::move(o.pidfd_);
    lifeline_ = std::move(o.lifeline_);
    reaped_ = o.reaped_;
  }
  return *this;
}

Qemu::~Qemu() { kill(); }

void Qemu::kill() {
  if (pid_ == 0 || reaped_) return;
  if (pidfd_) ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
  reap();
}

std::string Qemu::reap() {
  if (pid_ == 0) return "never started";
  if (reaped_) return "already reaped";
  int status = 0;
  if (::waitpid(pid_, &status, 0) != pid_) return fmt::format("waitpid: {}", std::strerror(errno));
  reaped_ = true;
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("killed by signal {}", WTERMSIG(status));
  return fmt::format("ended with wait status {:#x}", status);
}

std::string console_tail(const std::string& serial_log, size_t lines) {
  UniqueFd fd(::open(serial_log.c_str(), O_RDONLY | O_CLOEXEC));
  return fd ? console_tail(fd.get(), lines) : "(no console log " + serial_log + ")";
}

std::string console_tail(int fd, size_t lines) {
  constexpr off_t kTailBytes = 4096;
  off_t size = ::lseek(fd, 0, SEEK_END);
  if (size < 0) return "(console unreadable)";
  off_t from = size > kTailBytes ? size - kTailBytes : 0;
  std::string text(static_cast<size_t>(size - from), '\0');
  ssize_t got = ::pread(fd, text.data(), text.size(), from);
  text.resize(got > 0 ? static_cast<size_t>(got) : 0);
  std::istringstream in(text);
  std::deque<std::string> tail;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    tail.push_back(line);
    if (tail.size() > lines) tail.pop_front();
  }
  std::string out;
  for (auto& l : tail) out += (out.empty() ? "" : " | ") + l;
  return out;
}

std::string default_image_dir() {
  if (const char* env = std::getenv("NICGUARD_GUEST_DIR"); env != nullptr && *env != '\0') return env;
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "guest";
  return (exe.parent_path() / "guest").string();
}

}  // namespace ng::vm

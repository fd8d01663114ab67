#include "manager/manager.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "common/clock.hpp"
#include "common/clone.hpp"
#include "common/file.hpp"
#include "common/hash.hpp"
#include "common/sanitizer.hpp"
#include "common/text.hpp"
#include "frontend/settings.hpp"
#include "inject/regflip.hpp"
#include "manager/locate.hpp"
#include "manager/process.hpp"
#include "manager/systemd_job.hpp"
#include "netlink/netlink.hpp"
#include "sandbox/sandbox.hpp"
#include "vm/guest_regflip.hpp"
#include "vm/qmp.hpp"

namespace ng::manager {

namespace {

constexpr uint32_t kFirstBackoffMs = 100;  // after a domain failed again soon after a restart
constexpr uint32_t kMaxBackoffMs = 5000;
constexpr uint64_t kStableNs = 2'000'000'000ULL;  // up this long: the next restart is immediate
constexpr int kTermGraceMs = 2000;
constexpr int kKillWaitMs = 1000;
constexpr uint64_t kSocketWaitNs = 3'000'000'000ULL;
constexpr uint32_t kVmPathAnswerTimeoutMs = 250;

uint64_t wall_coarse_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

// Enough of a domain's log for the error it ends with, bounded whatever it wrote.
constexpr uint64_t kLogTailBytes = 64 * 1024;
// A child's log is moved to NAME.log.1 at a start once it holds this much:
// a sandboxed driver domain may make no file larger than 16 MiB
// (sandbox::Policy::file_size_limit_bytes), so each instance has at least
// 12 MiB left to write its own log into.
constexpr off_t kLogRotateBytes = off_t{4} << 20;

void rotate_log(const std::string& log) {
  struct stat st{};
  if (::stat(log.c_str(), &st) != 0 || st.st_size < kLogRotateBytes) return;
  std::string old = log + ".1";
  if (::rename(log.c_str(), old.c_str()) != 0) spdlog::warn("could not move {} to {}: {}", log, old, strerror(errno));
}

std::vector<std::string> read_cmdline(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/cmdline", pid), std::ios::binary);
  std::vector<std::string> out;
  for (std::string arg; std::getline(in, arg, '\0');) out.push_back(arg);
  return out;
}

std::optional<pid_t> read_pid_file(const std::string& path) {
  std::ifstream in(path);
  long pid = 0;
  if (!(in >> pid) || pid <= 0 || pid > INT32_MAX) return std::nullopt;
  return static_cast<pid_t>(pid);
}

Status write_file(const std::string& path, const std::string& content) { return write_file_atomic(path, content); }

std::string describe_exit(const siginfo_t& si) {
  switch (si.si_code) {
    case CLD_EXITED: return fmt::format("exited with status {}", si.si_status);
    case CLD_KILLED: return fmt::format("killed by signal {}", si.si_status);
    case CLD_DUMPED: return fmt::format("killed by signal {} (core dumped)", si.si_status);
    default: return fmt::format("ended (code {}, status {})", si.si_code, si.si_status);
  }
}

// The child side of spawn(): only async-signal-safe calls until execv.
// A domain starts up (exec, libraries, set-up: tens of milliseconds of CPU)
// at a low priority, so that restarting a failed one right after a failover
// does not take the CPU from the data path that just took over; it returns
// to the manager's own priority (--serve-nice) once it serves.
constexpr int kStartupNiceOffset = 10;

// Domains serve at the manager's own priority (a boost of 5 for the data
// path was measured and made the failover figures no better on 2 cores).
int serve_nice() { return ::getpriority(PRIO_PROCESS, 0); }

[[noreturn]] void exec_child(int null_fd, int log_fd, char* const* argv, const sigset_t* mask) {
  ::setsid();
  ::setpriority(PRIO_PROCESS, 0, std::min(19, ::getpriority(PRIO_PROCESS, 0) + kStartupNiceOffset));
  ::sigprocmask(SIG_SETMASK, mask, nullptr);
  ::dup2(null_fd, STDIN_FILENO);
  ::dup2(log_fd, STDOUT_FILENO);
  ::dup2(log_fd, STDERR_FILENO);
  ::close_range(3, ~0U, 0);
  ::execv("/proc/self/exe", argv);
  static const char msg[] = "nicguard manager: execv(/proc/self/exe) failed\n";
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, msg, sizeof(msg) - 1);
  ::_exit(127);
}

// How long ago the process started, from /proc/PID/stat (field 22, clock
// ticks since boot), so an adopted child's uptime survives the manager restart.
uint64_t process_age_ns(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto paren = stat.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream fields(stat.substr(paren + 1));
  std::string f;
  for (int field = 3; field <= 22; ++field) fields >> f;
  timespec boot{};
  ::clock_gettime(CLOCK_BOOTTIME, &boot);
  uint64_t now = static_cast<uint64_t>(boot.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(boot.tv_nsec);
  uint64_t start = std::strtoull(f.c_str(), nullptr, 10) * 1'000'000'000ULL /
                   static_cast<uint64_t>(::sysconf(_SC_CLK_TCK));
  return now > start ? now - start : 0;
}

bool netns_exists(const std::string& name) {
  return ::access(netlink::netns_path(name).c_str(), F_OK) == 0;
}

Result<std::string> self_exe() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return fail("cannot resolve /proc/self/exe: {}", ec.message());
  return p.string();
}


// A running domain serves this config if its command line is the one the
// config asks for, the memory limit aside: that one the manager sets on the
// running process (apply_memory_limit).
bool same_command(const std::vector<std::string>& args, const std::vector<std::string>& cmd) {
  if (cmd.size() != args.size() + 1) return false;
  for (size_t i = 0; i < args.size(); ++i) {
    bool limit = i > 0 && args[i - 1] == "--memory-limit-mb";
    if (!limit && args[i] != cmd[i + 1]) return false;
  }
  return true;
}

}  // namespace

Manager::Manager(Config config) : config_(std::move(config)) {}

Manager::~Manager() = default;

Result<std::unique_ptr<Manager>> Manager::start(Config config) {
  std::unique_ptr<Manager> m(new Manager(std::move(config)));
  m->started_mono_ns_ = mono_ns();
  Status s = m->setup_signals();
  if (s) s = m->take_state_dir();
  if (s) s = m->prepare_host();
  if (s) s = m->start_control();
  if (s) s = m->setup_children();
  if (!s) {
    m->abort_start();
    return tl::unexpected(s.error());
  }
  return m;
}

// Blocked before anything is touched, so a SIGTERM during setup is served by
// the orderly shutdown path instead of killing us halfway.
Status Manager::setup_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR2);
  if (::sigprocmask(SIG_BLOCK, &set, &child_mask_) != 0) return fail_errno("sigprocmask");
  signal_fd_.reset(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!signal_fd_) return fail_errno("signalfd");
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return fail_errno("epoll_create1");
  return watch_fd(signal_fd_.get(), kSignalKey);
}

Status Manager::watch_fd(int fd, uint64_t key) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = key;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return fail_errno("epoll_ctl");
  return {};
}

Status Manager::take_state_dir() {
  const std::string& dir = config_.state_dir;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(dir).parent_path(), ec);
  if (ec) return fail("cannot create the parent of state_dir {}: {}", dir, ec.message());
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return fail_errno("cannot create state_dir {}", dir);
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return fail_errno("state_dir {}", dir);
  if (!S_ISDIR(st.st_mode)) return fail("state_dir {} exists and is not a directory", dir);
  if (st.st_uid != ::geteuid()) {
    return fail("state_dir {} belongs to uid {}, not to us (uid {}): refusing to use it", dir,
                st.st_uid, ::geteuid());
  }
  if (::chmod(dir.c_str(), 0700) != 0) return fail_errno("chmod 0700 {}", dir);

  std::string pid_path = config_.path("manager.pid");
  UniqueFd fd(::open(pid_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return fail_errno("opening {}", pid_path);
  auto other = read_pid_file(pid_path);
  auto owned_by_other = [&] {
    return fail("another manager (pid {}) owns {}: stop it first (kill {}) or give this config "
                "another state_dir",
                other.value_or(0), dir, other.value_or(0));
  };
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return owned_by_other();
    return fail_errno("locking {}", pid_path);
  }
  // A manager of an older build might not lock: trust a live pid as well.
  if (other && *other != ::getpid() && ::kill(*other, 0) == 0) {
    auto cmd = read_cmdline(*other);
    if (cmd.size() >= 2 && cmd[1] == "manager") return owned_by_other();
  }
  std::string me = fmt::format("{}\n", ::getpid());
  if (::ftruncate(fd.get(), 0) != 0 || ::pwrite(fd.get(), me.data(), me.size(), 0) < 0) {
    return fail_errno("writing {}", pid_path);
  }
  lock_fd_ = std::move(fd);

  std::string events = config_.path("events.jsonl");
  auto log = EventLog::open(events);
  if (!log) return tl::unexpected(log.error());
  events_ = std::move(*log);
  events_.set_source("manager");
  event("manager-start", nullptr, {{"pid", ::getpid()}, {"config", config_.origin}});
  return {};
}

Status Manager::prepare_host() {
  auto exe = self_exe();
  if (!exe) return tl::unexpected(exe.error());
  exe_ = *exe;
  root_netns_.reset(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!root_netns_) return fail_errno("opening /proc/self/ns/net");
  load_owned();
  for (const auto& d : config_.drivers) {
    if (auto s = setup_driver_netns(d); !s) {
      return fail("driver {}: {}", d.name, s.error().message);
    }
  }
  for (const auto& a : config_.apps) {
    if (auto s = setup_app_netns(a); !s) return fail("app {}: {}", a.name, s.error().message);
  }
  return {};
}

Status Manager::setup_driver_netns(const DriverConfig& d) {
  UniqueFd ns;
  if (netns_exists(d.netns)) {
    auto opened = netlink::open_netns(d.netns);
    if (!opened) return tl::unexpected(opened.error());
    ns = std::move(*opened);
  } else {
    auto created = netlink::create_netns(d.netns);
    if (!created) return tl::unexpected(created.error());
    ns = std::move(*created);
    owned_.created_netns.insert(d.netns);
    fresh_.created_netns.insert(d.netns);
    save_owned();
    spdlog::info("driver {}: created network namespace {}", d.name, d.netns);
  }
  auto root = netlink::Session::open();
  if (!root) return tl::unexpected(root.error());
  if (root->exists(d.nic)) {
    if (auto s = root->move_to_netns(d.nic, ns.get()); !s) return s;
    owned_.moved_nics.insert(d.name);
    fresh_.moved_nics.insert(d.name);
    save_owned();
    spdlog::info("driver {}: moved NIC {} into {}", d.name, d.nic, d.netns);
  }
  auto inner = netlink::Session::open(ns.get());
  if (!inner) return tl::unexpected(inner.error());
  if (!inner->exists(d.nic)) {
    return fail("NIC {} is in neither the root namespace nor {}: check `ip link` and the "
                "driver's nic key",
                d.nic, d.netns);
  }
  return prepare_nic(d, ns.get());
}

// MTU, silence and up: done at start and again before each restart, since a
// failed domain (or a fault) may have left the NIC down.
Status Manager::prepare_nic(const DriverConfig& d, int ns_fd) {
  auto inner = netlink::Session::open(ns_fd);
  if (!inner) return tl::unexpected(inner.error());
  auto mtu = inner->mtu(d.nic);
  if (!mtu) return tl::unexpected(mtu.error());
  if (*mtu < config_.max_app_mtu()) {
    if (auto s = inner->set_mtu(d.nic, config_.max_app_mtu()); !s) return s;
  }
  // The namespace's own stack must stay silent on the NIC (no DAD, no router
  // solicitations): only the driver domain's frames may leave it. Without
  // /proc/sys/net/ipv6 the kernel has no IPv6 at all.
  if (::access("/proc/sys/net/ipv6", F_OK) == 0) {
    auto s = netlink::write_sysctl(ns_fd, "net/ipv6/conf/" + d.nic + "/disable_ipv6", "1");
    if (!s) return s;
  }
  return inner->set_up(d.nic);
}

Status Manager::setup_app_netns(const AppConfig& a) {
  if (netns_exists(a.netns)) {
    auto ns = netlink::open_netns(a.netns);
    return ns ? Status{} : tl::unexpected(ns.error());
  }
  auto ns = netlink::create_netns(a.netns);
  if (!ns) return tl::unexpected(ns.error());
  spdlog::info("app {}: created network namespace {}", a.name, a.netns);
  return {};
}

Status Manager::start_control() {
  auto server = ControlServer::listen(config_.control_socket,
                                      [this](const nlohmann::json& r) { return handle_request(r); });
  if (!server) return tl::unexpected(server.error());
  control_ = std::move(*server);
  if (auto s = watch_fd(control_->fd(), kControlKey); !s) return s;
  if (config_.metrics.listen.empty()) return {};
  auto m = MetricsServer::listen(config_.metrics.listen, [this] { return format_metrics(status_json()); });
  if (!m) return tl::unexpected(m.error());
  metrics_ = std::move(*m);
  return watch_fd(metrics_->fd(), kMetricsKey);
}

void Manager::build_children() {
  for (const auto& d : config_.drivers) children_.push_back(driver_child(config_, d));
  for (const auto& a : config_.apps) children_.push_back(front_child(config_, a));
  salvage_targets_ = salvage_targets(config_);
}

Child Manager::driver_child(const Config& cfg, const DriverConfig& d) {
  uint32_t rt = cfg.realtime_priority;
  Child c;
  c.kind = ChildKind::driver;
  c.name = d.name;
  c.config_index = static_cast<size_t>(&d - cfg.drivers.data());
  c.args = {"driver",   "--name",  d.name,
            "--netns",  netlink::netns_path(d.netns),
            "--nic",    d.nic,
            "--socket", cfg.driver_socket(d.name),
            "--stats",  cfg.path("driver-" + d.name + ".stats"),
            "--memory-limit-mb", std::to_string(d.memory_limit_mb),
            "--heartbeat-us", std::to_string(cfg.detect.heartbeat_ms * 1000),
            "--path-probe-us", std::to_string(cfg.detect.path_probe_us),
            "--pair-id", std::to_string(pair_id(cfg.state_dir)),
            "--inject", cfg.path("driver-" + d.name + ".inject"),
            "--serve-nice", std::to_string(serve_nice()),
            "--serve-realtime", std::to_string(rt)};
  if (d.kind == DriverKind::vm) {
    add_vm_args(d, c.args);
  } else {
    c.uid = sandbox::domain_id(pair_id(cfg.state_dir), c.config_index);
    c.args.insert(c.args.end(), {"--uid", std::to_string(c.uid)});
  }
  return c;
}

// The detector timeouts are not on the command line: they are in the
// frontend's settings file (frontend/settings.hpp), so that a reload can
// change them without a restart.
Child Manager::front_child(const Config& cfg, const AppConfig& a) {
  const auto& r = cfg.ring;
  uint32_t rt = cfg.realtime_priority;
  Child c;
  c.kind = ChildKind::front;
  c.name = a.name;
  c.config_index = static_cast<size_t>(&a - cfg.apps.data());
  c.args = {"front", "--name", a.name, "--netns", netlink::netns_path(a.netns),
            "--mac", format_mac(a.mac), "--mtu", std::to_string(a.mtu)};
  for (const auto& x : a.ipv4) c.args.insert(c.args.end(), {"--ipv4", x.text});
  for (const auto& x : a.ipv6) c.args.insert(c.args.end(), {"--ipv6", x.text});
  for (const auto& d : cfg.drivers) {
    c.args.insert(c.args.end(), {"--driver", d.name + "=" + cfg.driver_socket(d.name)});
  }
  c.args.insert(c.args.end(), {"--stats", cfg.path("front-" + a.name + ".stats"),
                               "--salvage", cfg.path("front-" + a.name + ".salvage"),
                               "--settings", cfg.path("front-" + a.name + ".settings"),
                               "--tx-slots", std::to_string(r.tx_slots),
                               "--rx-slots", std::to_string(r.rx_slots),
                               "--slot-size", std::to_string(r.slot_size),
                               "--events", cfg.path("events.jsonl"),
                               "--serve-nice", std::to_string(serve_nice()),
                               "--serve-realtime", std::to_string(rt == 0 ? 0 : rt + 1)});
  // A TCG driver VM forwarding at full rate holds frames in its guest
  // for tens of milliseconds (pings through one spike to 60-160 ms).
  if (std::any_of(cfg.drivers.begin(), cfg.drivers.end(),
                  [](const DriverConfig& d) { return d.kind == DriverKind::vm; })) {
    c.args.insert(c.args.end(), {"--path-answer-timeout-ms", std::to_string(kVmPathAnswerTimeoutMs)});
  }
  if (!a.rx_probe_target.empty()) c.args.insert(c.args.end(), {"--rx-probe-target", a.rx_probe_target});
  return c;
}

std::vector<SalvageTarget> salvage_targets(const Config& cfg) {
  std::vector<SalvageTarget> out;
  for (const auto& a : cfg.apps) out.push_back({a.mac, cfg.path("front-" + a.name + ".salvage")});
  return out;
}

frontend::LiveSettings live_settings(const Config& cfg) {
  const auto& d = cfg.detect;
  return {d.hang_timeout_ms, d.stall_timeout_ms, d.rx_probe_interval_ms, d.rx_probe_timeout_ms};
}

// Written before a frontend starts, and again (with a SIGHUP to reread it)
// when an adopted or running one has other settings than the config's.
void Manager::write_front_settings(const Child& c, bool tell) {
  std::string path = config_.path(c.domain() + ".settings");
  std::string want = frontend::settings_json(live_settings(config_));
  if (read_text(path) == want) return;
  if (auto s = write_file(path, want); !s) {
    spdlog::warn("{}: {}", c.domain(), s.error().message);
    return;
  }
  if (tell && c.pidfd && pidfd_signal(c.pidfd.get(), SIGHUP) != 0) {
    spdlog::warn("{}: cannot tell it of new settings: {}", c.domain(), strerror(errno));
  }
}

// The address-space limit grows with the app domains (each maps a ring
// region into every driver domain): a reload, or a manager adopting a
// domain that served fewer apps, raises it on the running process.
void Manager::apply_memory_limit(Child& c) {
  if (c.kind != ChildKind::driver || c.pid == 0) return;
  rlim_t want = rlim_t{config_.drivers[c.config_index].memory_limit_mb} << 20;
  rlimit now{};
  if (::prlimit(c.pid, RLIMIT_AS, nullptr, &now) != 0 || now.rlim_max == want) return;
  rlimit next{want, want};
  if (::prlimit(c.pid, RLIMIT_AS, &next, nullptr) != 0) {
    spdlog::warn("{}: cannot set its memory limit to {} MiB: {}", c.domain(), want >> 20, strerror(errno));
    return;
  }
  spdlog::info("{}: memory limit {} MiB (was {} MiB)", c.domain(), want >> 20, now.rlim_max >> 20);
#if !NG_ASAN
  if (c.cgroup) {
    if (auto s = c.cgroup->set_memory_max(want); !s) spdlog::warn("{}: {}", c.domain(), s.error().message);
  }
#endif
}

std::string vm_image_dir(const DriverConfig& d) { return d.vm.image_dir.empty() ? vm::default_image_dir() : d.vm.image_dir; }

std::string accel_key(const DriverConfig& d) { return d.vm.accel + " " + vm_image_dir(d); }

// The accelerator is chosen once per image and kept for the host's boot
// (vm/accel.hpp): checking KVM costs a guest boot.
void Manager::add_vm_args(const DriverConfig& d, std::vector<std::string>& args) {
  std::string image = vm_image_dir(d);
  auto key = accel_key(d);
  auto it = accel_.find(key);
  if (it == accel_.end()) {
    auto choice = vm::choose_accel(d.vm.accel, image, "/run/nicguard/accel-check");
    spdlog::info("driver VMs ({}): {}", image, choice.reason);
    event("accel", nullptr, {{"accel", vm::accel_name(choice.accel)}, {"reason", choice.reason}, {"image_dir", image}});
    it = accel_.emplace(key, choice).first;
  }
  args.insert(args.end(), {"--vm", "--vm-image-dir", image, "--vm-nic-model", d.vm.nic_model,
                           "--vm-memory-mb", std::to_string(d.vm.memory_mb),
                           "--vm-accel", vm::accel_name(it->second.accel),
                           "--vm-run-dir", config_.state_dir,
                           "--vm-boot-timeout-ms", std::to_string(d.vm.boot_timeout_ms)});
}

Status Manager::setup_children() {
  build_children();
  for (auto& c : children_) {
    if (c.kind == ChildKind::driver) {
      auto f = inject::ControlFile::create(config_.path(c.domain() + ".inject"));
      if (!f) return tl::unexpected(f.error());
      c.inject = std::move(*f);
      watch_carrier(c);
    }
    if (c.kind == ChildKind::front && c.name == config_.apps.front().name) wait_driver_sockets();
    if (try_adopt(c)) continue;
    if (auto s = spawn(c); !s) return s;
  }
  return {};
}

// Frontends start on whichever driver answers first; waiting (bounded) for
// the drivers' sockets makes the configured first driver the active one.
void Manager::wait_driver_sockets() {
  uint64_t start = mono_ns();
  for (auto& c : children_) {
    if (c.kind != ChildKind::driver) continue;
    // A driver VM's socket comes once its guest is up: seconds under TCG.
    const auto& d = config_.drivers[c.config_index];
    uint64_t deadline = start + (d.kind == DriverKind::vm ? uint64_t{d.vm.boot_timeout_ms} * 1'000'000 : kSocketWaitNs);
    std::string sock = config_.driver_socket(c.name);
    while (c.pidfd && ::access(sock.c_str(), F_OK) != 0 && mono_ns() < deadline) {
      pollfd p{c.pidfd.get(), POLLIN, 0};
      if (::poll(&p, 1, 10) > 0) break;  // it died; the event loop will restart it
    }
    if (c.pidfd && ::access(sock.c_str(), F_OK) != 0) {
      spdlog::warn("{}: no socket {} yet; starting the frontends anyway", c.domain(), sock);
    }
  }
}

// A previous manager's child is adopted only if it runs exactly the command
// line this config asks for; one of ours with another command line (the
// config changed) is stopped so it cannot fight the new one for the NIC.
bool Manager::try_adopt(Child& c) {
  std::string pid_path = config_.path(c.domain() + ".pid");
  auto pid = read_pid_file(pid_path);
  if (!pid) return false;
  auto fd = open_pidfd(*pid);
  if (!fd) return false;
  auto cmd = read_cmdline(*pid);
  // The pidfd pins the process: if it is still alive now, cmd was its own.
  if (pidfd_signal(fd->get(), 0) != 0) return false;
  bool same = same_command(c.args, cmd);
  if (!same) {
    bool ours = cmd.size() >= 4 && cmd[1] == c.kind_name() && cmd[2] == "--name" && cmd[3] == c.name;
    if (ours) {
      spdlog::warn("{}: pid {} runs with another command line; stopping it", c.domain(), *pid);
      event("replace", &c, {{"pid", *pid}});
      terminate(fd->get(), kTermGraceMs, kKillWaitMs);
    }
    return false;
  }
  c.pid = *pid;
  c.pidfd = std::move(*fd);
  c.adopted = true;
  c.salvage_grabbed = false;
  c.started_mono_ns = mono_ns() - std::min(process_age_ns(c.pid), mono_ns());
  c.started_wall_coarse_ns = 0;  // its stats file is long in place
  if (auto s = watch_fd(c.pidfd.get(), static_cast<uint64_t>(&c - children_.data())); !s) {
    spdlog::error("{}: {}", c.domain(), s.error().message);
  }
  spdlog::info("{}: adopted pid {} from a previous manager", c.domain(), c.pid);
  event("adopt", &c, {{"pid", c.pid}});
  // Its cgroup is the one a previous manager made: taken over, so that this
  // manager's shutdown removes it.
  if (c.kind == ChildKind::driver && config_.drivers[c.config_index].kind != DriverKind::vm) cgroup_for(c);
  apply_memory_limit(c);
  if (c.kind == ChildKind::front) write_front_settings(c, true);
  return true;
}

// A process driver domain starts as pid 1 of a pid namespace of its own (it
// sees no other process, and its death takes anything it might have started
// with it) and inside its cgroup, which it joins before exec.
Result<std::pair<pid_t, UniqueFd>> Manager::start_process(Child& c, int null_fd, int log_fd, char* const* argv) {
  bool confined = c.kind == ChildKind::driver && config_.drivers[c.config_index].kind != DriverKind::vm;
  if (!confined) {
    pid_t pid = ::fork();
    if (pid == 0) exec_child(null_fd, log_fd, argv, &child_mask_);
    if (pid < 0) return fail_errno("fork for {}", c.domain());
    // Our child stays a zombie until we reap it, so its pid cannot be reused here.
    auto fd = open_pidfd(pid);
    if (!fd) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      return tl::unexpected(fd.error());
    }
    return std::pair{pid, std::move(*fd)};
  }
  const sandbox::DomainCgroup* cgroup = cgroup_for(c);
  static const std::vector<int> kNoCgroup;
  const std::vector<int>& join = cgroup ? cgroup->procs_fds() : kNoCgroup;
  int pidfd = -1;
  long pid = clone_with_pidfd(CLONE_NEWPID, pidfd);
  if (pid == 0) {
    if (!sandbox::join_cgroups(join)) {
      static const char msg[] = "nicguard manager: cannot join the driver domain's cgroup\n";
      [[maybe_unused]] ssize_t n = ::write(log_fd, msg, sizeof(msg) - 1);
      ::_exit(125);
    }
    exec_child(null_fd, log_fd, argv, &child_mask_);
  }
  if (pid < 0) return fail_errno("starting {} in a pid namespace of its own (clone3)", c.domain());
  return std::pair{static_cast<pid_t>(pid), UniqueFd(pidfd)};
}

const sandbox::DomainCgroup* Manager::cgroup_for(Child& c) {
  if (c.cgroup) return &*c.cgroup;
  if (!c.cgroup_error.empty()) return nullptr;
#if NG_ASAN
  // AddressSanitizer's shadow memory fits no domain-sized limit, and its
  // leak check starts a thread.
  constexpr uint64_t kPids = 8;
  uint64_t memory = 0;
  spdlog::warn("{}: AddressSanitizer build: its cgroup has no memory limit", c.domain());
#else
  constexpr uint64_t kPids = 1;  // the domain is one single-threaded process
  uint64_t memory = uint64_t{config_.drivers[c.config_index].memory_limit_mb} << 20;
#endif
  auto name = sandbox::domain_cgroup_name(pair_id(config_.state_dir), c.domain());
  auto made = sandbox::DomainCgroup::create(name, memory, kPids);
  if (!made) {
    c.cgroup_error = made.error().message;
    spdlog::warn("{}: runs without a cgroup of its own (no memory or pids limit beyond its rlimits): {}",
                 c.domain(), c.cgroup_error);
    event("cgroup-unavailable", &c, {{"detail", c.cgroup_error}});
    return nullptr;
  }
  c.cgroup = std::move(*made);
  spdlog::info("{}: cgroup: {}", c.domain(), c.cgroup->describe());
  return &*c.cgroup;
}

void Manager::remove_cgroups() {
  for (auto& c : children_) {
    if (!c.cgroup || c.pidfd) continue;
    if (auto s = c.cgroup->remove(); !s) spdlog::warn("{}: {}", c.domain(), s.error().message);
    c.cgroup.reset();
  }
}

Status Manager::spawn(Child& c) {
  if (c.kind == ChildKind::front) write_front_settings(c, false);
  std::vector<std::string> args{exe_};
  args.insert(args.end(), c.args.begin(), c.args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::string log = config_.path(c.domain() + ".log");
  rotate_log(log);
  UniqueFd log_fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log_fd) return fail_errno("opening {}", log);
  UniqueFd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null_fd) return fail_errno("opening /dev/null");
  std::string banner = fmt::format("--- {} nicguard manager starts {}\n", iso8601(wall_ns()), c.domain());
  [[maybe_unused]] ssize_t n = ::write(log_fd.get(), banner.data(), banner.size());

  c.started_wall_coarse_ns = wall_coarse_ns();
  struct stat log_st{};
  c.log_start = ::fstat(log_fd.get(), &log_st) == 0 ? static_cast<uint64_t>(log_st.st_size) : 0;
  auto started = start_process(c, null_fd.get(), log_fd.get(), argv.data());
  if (!started) return tl::unexpected(started.error());
  pid_t pid = started->first;
  c.pid = pid;
  c.pidfd = std::move(started->second);
  c.adopted = false;
  c.salvage_grabbed = false;
  c.started_mono_ns = mono_ns();
  if (auto s = watch_fd(c.pidfd.get(), static_cast<uint64_t>(&c - children_.data())); !s) return s;
  if (auto s = write_file(config_.path(c.domain() + ".pid"), fmt::format("{}\n", pid)); !s) {
    spdlog::warn("{}: {}", c.domain(), s.error().message);
  }
  spdlog::info("{}: started pid {}", c.domain(), pid);
  event("start", &c, {{"pid", pid}});
  return {};
}

Status Manager::run() {
  spdlog::info("manager: serving {} (policy {}), control socket {}", config_.origin,
               policy_name(config_.policy), config_.control_socket);
  while (!stopping_) {
    epoll_event events[32];
    int n = ::epoll_wait(epoll_.get(), events, 32, next_timeout_ms());
    if (n < 0 && errno != EINTR) return fail_errno("epoll_wait");
    for (int i = 0; i < n; ++i) {
      uint64_t key = events[i].data.u64;
      if (key == kSignalKey) {
        handle_signal();
      } else if (key == kControlKey) {
        control_->process();
      } else if (key == kMetricsKey) {
        if (metrics_) metrics_->process();
      } else if (key >= kLinkKey && key - kLinkKey < children_.size()) {
        on_link_event(children_[key - kLinkKey]);
      } else if (key >= kSalvageKey && key - kSalvageKey < children_.size()) {
        Child& c = children_[key - kSalvageKey];
        c.salvage.drain(salvage_targets_);
        if (!c.salvage.draining()) end_salvage(c, "cap");
      } else if (key < children_.size() && children_[key].pidfd) {
        on_child_exit(children_[key]);
      }
    }
    restart_due();
    salvage_due();
    grab_salvage();
    service_tick();
  }
  notifier_.stopping();
  if (leaving_) {
    // As a crash would, but on purpose: children, namespaces and NICs stay
    // as they are, and owned.json tells the next manager what to undo.
    nlohmann::json fields{{"children", children_.size()}, {"reason", leave_reason_}, {"exit_status", leave_exit_status_}};
    if (asked_systemd_ms_ >= 0) fields["asked_systemd_ms"] = asked_systemd_ms_;
    event("manager-leave", nullptr, std::move(fields));
    release_cgroup_controllers();
    torn_down_ = true;
    return {};
  }
  teardown();
  return {};
}

// Ready once every app domain has an active driver domain (told to systemd
// and logged as an event, with how long it took); the watchdog is petted
// from here, so a loop that hangs is what systemd sees.
void Manager::service_tick() {
  constexpr uint64_t kReadyPollNs = 10'000'000;
  uint64_t now = mono_ns();
  notifier_.watchdog(now);
  if (ready_ || now < next_ready_check_ns_) return;
  next_ready_check_ns_ = now + kReadyPollNs;
  nlohmann::json s = status_json();
  for (const auto& a : s["apps"]) {
    if (!a.value("active_driver", nlohmann::json()).is_string()) return;
  }
  ready_ = true;
  uint64_t took_ms = (now - started_mono_ns_) / 1'000'000;
  event("ready", nullptr, {{"apps", s["apps"].size()}, {"since_start_ms", took_ms}});
  std::string health = health_line(s, nullptr);
  if (!health.empty() && health.back() == '\n') health.pop_back();
  notifier_.ready(health);
  spdlog::info("manager: ready in {} ms: {}", took_ms, health);
}

void Manager::handle_signal() {
  signalfd_siginfo si{};
  while (::read(signal_fd_.get(), &si, sizeof(si)) == sizeof(si)) {
    if (si.ssi_signo == SIGUSR2) {
      spdlog::info("manager: SIGUSR2 from pid {}: leaving the domains serving for the next manager "
                   "to adopt", si.ssi_pid);
      leave(fmt::format("SIGUSR2 from pid {}", si.ssi_pid), kExitLeftServing);
      continue;
    }
    if (si.ssi_signo == SIGHUP) {
      reload(fmt::format("SIGHUP from pid {}", si.ssi_pid));
      continue;
    }
    if (stopping_) continue;  // a second SIGTERM changes nothing
    if (si.ssi_signo == SIGTERM && under_systemd()) {
      on_sigterm(static_cast<pid_t>(si.ssi_pid));
      continue;
    }
    spdlog::info("manager: {} from pid {}: shutting down", strsignal(static_cast<int>(si.ssi_signo)),
                 si.ssi_pid);
    stop_trigger_ = fmt::format("{} from pid {}", sigabbrev_np(static_cast<int>(si.ssi_signo)), si.ssi_pid);
    stopping_ = true;
  }
}

void Manager::leave(const std::string& reason, int exit_status) {
  leave_reason_ = reason;
  leave_exit_status_ = exit_status;
  leaving_ = true;
  stopping_ = true;
}

// systemd (252) starts the next manager in the service's cgroup itself, not
// in the "manager" leaf, and the kernel refuses a process there while the
// cgroup hands controllers to its children: the unit would fail with
// 219/CGROUP. So a leaving manager gives them back as its last act; the
// domains run without their cgroup limits (their rlimits stay) until the
// next manager takes their cgroups over and enables the limits again.
void Manager::release_cgroup_controllers() {
  bool any = false;
  for (const auto& c : children_) any = any || (c.cgroup && c.pidfd);
  auto dir = sandbox::delegated_v2_dir();
  if (!dir) return;
  auto released = sandbox::release_controllers_v2(*dir);
  if (!released) {
    spdlog::warn("manager: {}; systemd may fail to start the next manager in that cgroup (status 219/CGROUP): "
                 "`systemctl restart nicguard` then starts the domains afresh",
                 released.error().message);
    event("cgroup-release", nullptr, {{"dir", *dir}, {"error", released.error().message}});
    return;
  }
  if (released->empty()) return;
  spdlog::info("manager: gave the {} controllers of {} back so that systemd can start the next manager "
               "there; {}", fmt::join(*released, " and "), *dir,
               any ? "the domains' cgroups run without memory and pids limits until it takes them over"
                   : "no domain cgroup is in use");
  event("cgroup-release", nullptr, {{"dir", *dir}, {"controllers", *released}, {"domains_unlimited", any}});
}

int Manager::exit_status() const { return leaving_ ? leave_exit_status_ : 0; }

// `systemctl restart` is a stop and a start, and both begin with this
// SIGTERM: systemd's job for the unit says which. Asked with a short
// deadline, since the loop waits meanwhile (the frontends do not); any doubt
// is a stop, as before.
void Manager::on_sigterm(pid_t from) {
  constexpr std::chrono::milliseconds kAskLimit{500};
  uint64_t asked = mono_ns();
  auto job = systemd_job_of(::getpid(), kAskLimit);
  uint64_t took_ms = (mono_ns() - asked) / 1'000'000;
  std::string trigger = fmt::format("SIGTERM from pid {}", from);
  if (job && job->id != 0 && is_restart_job(job->type)) {
    spdlog::info("manager: {}: systemd's job for {} is '{}' (job {}): leaving the domains serving for "
                 "the manager systemd starts next (asked in {} ms)",
                 trigger, job->unit, job->type, job->id, took_ms);
    leave(fmt::format("systemd {} job {}", job->type, job->id), 0);
    asked_systemd_ms_ = static_cast<int64_t>(took_ms);
    return;
  }
  std::string why;
  if (!job) {
    why = fmt::format("could not ask systemd whether this is a restart ({})", job.error().message);
  } else if (job->id == 0) {
    why = fmt::format("systemd has no job for {} (a kill, not a stop or restart)", job->unit);
  } else {
    why = fmt::format("systemd's job for {} is '{}' (job {})", job->unit, job->type, job->id);
  }
  spdlog::info("manager: {}: {}: stopping the domains", trigger, why);
  stop_trigger_ = trigger + ": " + why;
  asked_systemd_ms_ = static_cast<int64_t>(took_ms);
  stopping_ = true;
}

void Manager::on_child_exit(Child& c) {
  std::string status = "exited (status unknown: adopted from a previous manager)";
  if (!c.adopted) {
    siginfo_t si{};
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(c.pidfd.get()), &si,
                 WEXITED | WNOHANG) != 0) {
      status = fmt::format("exited (status unknown: waitid: {})", strerror(errno));
    } else if (si.si_pid == 0) {
      return;  // not gone after all
    } else {
      status = describe_exit(si);
    }
  }
  pid_t old = c.pid;
  uint64_t up = mono_ns() - c.started_mono_ns;
  // The domain's own words say why, where it logged an error; its exit
  // status alone ("exited with status 1") says nothing a user can act on.
  std::string why = last_logged_error(read_tail(config_.path(c.domain() + ".log"), c.log_start, kLogTailBytes));
  std::string reason = why.empty() ? status : fmt::format("{} ({})", why, status);
  bool again = reason == c.last_failure;
  if (!stopping_) {
    c.last_failure = reason;
    c.last_failure_wall = iso8601(wall_ns());
  }
  if (c.kind == ChildKind::driver && !stopping_) start_salvage(c);
  if (c.inject) c.inject->arm(inject::Fault::none);  // a restarted domain starts healthy
  c.pidfd.reset();
  c.pid = 0;
  c.driver_stats.reset();
  c.front_stats.reset();
  remove_file(config_.path(c.domain() + ".pid"));
  event("exit", &c, {{"pid", old}, {"status", status}, {"reason", reason}, {"uptime_ms", up / 1'000'000}});
  if (stopping_) {
    spdlog::info("{}: pid {} {}", c.domain(), old, status);
    return;
  }
  // The first failure after a stable run restarts at once; a domain that
  // keeps failing soon after its restart backs off so it cannot spin.
  c.backoff_ms = up >= kStableNs ? 0 : std::clamp(c.backoff_ms * 2, kFirstBackoffMs, kMaxBackoffMs);
  c.restart_delay_ms = c.backoff_ms;
  if (c.kind == ChildKind::driver && config_.policy == Policy::warm_spare) {
    c.restart_delay_ms = std::max(c.restart_delay_ms, config_.spare_restart_delay_ms);
  }
  c.restart_at_ns = mono_ns() + uint64_t{c.restart_delay_ms} * 1'000'000 + 1;
  // A domain that keeps failing the same way says so once, not at every try.
  if (again) return;
  spdlog::warn("{}: pid {} ended after {} ms up: {}; restarting in {} ms{}", c.domain(), old,
               up / 1'000'000, reason, c.restart_delay_ms,
               up >= kStableNs ? "" : " (backing off while it keeps failing)");
}

void Manager::restart_due() {
  uint64_t now = mono_ns();
  for (auto& c : children_) {
    if (c.restart_at_ns == 0 || c.restart_at_ns > now || stopping_) continue;
    c.restart_at_ns = 0;
    ++c.restarts;
    if (auto s = reset_nic(c); !s) spdlog::warn("{}: {}", c.domain(), s.error().message);
    if (auto s = spawn(c); !s) {
      c.backoff_ms = std::min(c.backoff_ms * 2, kMaxBackoffMs);
      c.restart_at_ns = now + uint64_t{c.backoff_ms} * 1'000'000;
      spdlog::error("{}: restart failed: {}; next try in {} ms", c.domain(), s.error().message,
                    c.backoff_ms);
      continue;
    }
    event("restart", &c, {{"pid", c.pid}, {"restarts", c.restarts}, {"delay_ms", c.restart_delay_ms}});
  }
}

int Manager::next_timeout_ms() const {
  uint64_t next = UINT64_MAX;
  for (const auto& c : children_) {
    if (c.restart_at_ns != 0) next = std::min(next, c.restart_at_ns);
    if (c.salvage.draining()) next = std::min(next, c.salvage.deadline_ns());
    // A new driver instance's packet socket is looked for every few ms
    // until it is held.
    if (c.kind == ChildKind::driver && c.pid != 0 && !c.salvage_grabbed) {
      next = std::min(next, mono_ns() + kSalvageGrabPollNs);
    }
  }
  next = std::min(next, notifier_.next_watchdog_ns());
  if (!ready_) next = std::min(next, next_ready_check_ns_);
  if (next == UINT64_MAX) return -1;
  uint64_t now = mono_ns();
  return next <= now ? 0 : static_cast<int>((next - now + 999'999) / 1'000'000);
}

nlohmann::json Manager::handle_request(const nlohmann::json& request) {
  if (auto why = request_type_error(request); !why.empty()) return {{"ok", false}, {"error", why}};
  std::string cmd = request["cmd"].get<std::string>();
  if (cmd == "status") return status_json();
  if (cmd == "inject") return inject(request);
  if (cmd == "profile-guest") return profile_guest();
  if (cmd == "reload") return reload("control socket");
  if (cmd == "shutdown") {
    spdlog::info("manager: shutdown requested on the control socket");
    if (!stopping_) stop_trigger_ = "control socket";
    stopping_ = true;
    return {{"ok", true}};
  }
  return {{"ok", false},
          {"error", fmt::format("unknown cmd '{}': expected \"status\", \"inject\", \"reload\", \"profile-guest\" or \"shutdown\"", cmd)}};
}

Child* Manager::find_driver(const std::string& name) {
  for (auto& c : children_) {
    if (c.kind == ChildKind::driver && (c.name == name || c.domain() == name)) return &c;
  }
  return nullptr;
}

// {"cmd":"inject","domain":"a","fault":"hang"}: only root reaches the
// control socket, which is what makes the driver's hooks safe to ship.
namespace {

// The request's seed, or a random one (the answer names it either way).
Result<uint64_t> seed_of(const nlohmann::json& request) {
  auto it = request.find("seed");
  if (it != request.end() && it->is_number_unsigned()) return it->get<uint64_t>();
  uint64_t seed = 0;
  if (::getrandom(&seed, sizeof(seed), 0) != sizeof(seed)) return fail_errno("choosing a seed");
  return seed;
}

}  // namespace

std::string last_logged_error(std::string_view log) {
  constexpr size_t kMaxReason = 400;
  std::string found;
  size_t at = 0;
  while (at < log.size()) {
    size_t end = log.find('\n', at);
    std::string_view line = log.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at);
    at = end == std::string_view::npos ? log.size() : end + 1;
    for (std::string_view mark : {"] [error] ", "] [critical] "}) {
      if (auto m = line.find(mark); m != std::string_view::npos) found = std::string(line.substr(m + mark.size()));
    }
    if (line.rfind("error: ", 0) == 0) found = std::string(line.substr(7));
  }
  if (found.size() > kMaxReason) found = found.substr(0, kMaxReason - 3) + "...";
  return found;
}

pid_t qemu_of(pid_t domain) {
  std::ifstream in(fmt::format("/proc/{}/task/{}/children", domain, domain));
  for (pid_t p; in >> p;) {
    auto cmd = read_cmdline(p);
    if (!cmd.empty() && cmd[0].find("qemu-system") != std::string::npos) return p;
  }
  return 0;
}

namespace {

std::vector<vm::GuestSymbol> console_symbols(const std::string& console_path) {
  std::ifstream in(console_path);
  std::string console((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return vm::guest_symbols(console);
}

// The debugger stops the guest and slows it down while it works; the
// domain is told first, so that it does not take that for a hang
// (driver::VcpuStops).
struct DebuggerNotice {
  inject::ControlFile* control;
  explicit DebuggerNotice(inject::ControlFile* c) : control(c) {
    if (control) control->arm(inject::Fault::regflip);
  }
  ~DebuggerNotice() {
    if (control) control->arm(inject::Fault::none);
  }
  DebuggerNotice(const DebuggerNotice&) = delete;
  DebuggerNotice& operator=(const DebuggerNotice&) = delete;
};

}  // namespace

bool Manager::is_vm(const Child& c) const {
  return c.kind == ChildKind::driver && config_.drivers[c.config_index].kind == DriverKind::vm;
}

bool Manager::running_vm(const Child& c) const { return is_vm(c) && c.pid != 0 && qemu_of(c.pid) != 0; }

// Profiled on another driver VM if one runs (the spare: its driver moves
// the path probes, and the profile's slowdown costs no traffic there), else
// on the target itself; every boot of the image has the same functions.
Result<std::vector<std::string>> Manager::guest_running_functions(Child& target,
                                                                   const std::vector<vm::GuestSymbol>& syms) {
  if (!guest_running_.empty()) return guest_running_;
  Child* on = &target;
  for (auto& d : children_) {
    if (&d != &target && running_vm(d)) on = &d;
  }
  auto on_syms = on == &target ? syms : console_symbols(config_.path("vm-" + on->name + ".console"));
  if (on_syms.empty()) return std::vector<std::string>();
  constexpr int kProfileMs = 300;
  DebuggerNotice notice(on->inject ? &*on->inject : nullptr);
  auto ran = vm::profile_guest(config_.path("vm-" + on->name + ".gdb"), on_syms, kProfileMs);
  if (!ran) return fail("profiling {}'s driver: {}", on->domain(), ran.error().message);
  guest_running_ = *ran;
  guest_running_from_ = on->domain();
  std::sort(guest_running_.begin(), guest_running_.end());
  event("profile", on, {{"running_functions", guest_running_}, {"window_ms", kProfileMs}});
  return guest_running_;
}

// {"cmd":"profile-guest"}: the functions regflip chooses from, profiled now
// if they were not yet, so that a campaign's first run does not carry the
// profile's slowdown.
nlohmann::json Manager::profile_guest() {
  for (auto& c : children_) {
    if (!running_vm(c)) continue;
    auto syms = console_symbols(config_.path("vm-" + c.name + ".console"));
    auto ran = guest_running_functions(c, syms);
    if (!ran) return {{"ok", false}, {"error", ran.error().message}};
    return {{"ok", true}, {"running_functions", *ran}, {"profiled_on", guest_running_from_}};
  }
  return {{"ok", false}, {"error", fmt::format("no driver VM is running in {}", config_.origin)}};
}

// regflip into the guest's NIC driver through the gdbstub (vm/guest_regflip.hpp).
nlohmann::json Manager::regflip_vm(Child& c, pid_t qemu, const nlohmann::json& request) {
  auto seed_or = seed_of(request);
  if (!seed_or) return {{"ok", false}, {"error", seed_or.error().message}};
  uint64_t seed = *seed_or;
  auto syms = console_symbols(config_.path("vm-" + c.name + ".console"));
  if (syms.empty()) {
    return {{"ok", false}, {"error", c.domain() + "'s guest printed no symbols of its NIC driver (see " +
                                         config_.path("vm-" + c.name + ".console") + ")"}};
  }
  auto running = guest_running_functions(c, syms);
  if (!running) return {{"ok", false}, {"error", running.error().message}};
  std::vector<std::string> choices = *running;
  if (choices.empty()) {
    for (const auto& s : syms) choices.push_back(s.name);
  }
  auto plan = vm::plan_guest_regflip(seed, choices);
  constexpr int kBreakpointWaitMs = 5000;
  Result<vm::GuestFlipResult> done = fail("not attempted");
  {
    DebuggerNotice notice(c.inject ? &*c.inject : nullptr);
    done = vm::apply_guest_regflip(config_.path("vm-" + c.name + ".gdb"), syms, plan, kBreakpointWaitMs);
  }
  if (!done) return {{"ok", false}, {"error", fmt::format("regflip into {}'s driver: {}", c.domain(), done.error().message)}};
  nlohmann::json what = {{"fault", "regflip"}, {"pid", c.pid}, {"qemu_pid", qemu}, {"seed", seed},
                         {"function", plan.function}, {"steps", plan.steps}, {"running_functions", running->size()},
                         {"profiled_on", guest_running_from_},
                         {"register", std::string(inject::regflip_registers()[static_cast<size_t>(plan.reg)])},
                         {"bit", plan.bit}, {"reached", done->reached}};
  if (done->reached) {
    ++injections_;
    what.update({{"rip", fmt::format("{:#x}", done->rip)}, {"offset", done->offset},
                 {"before", fmt::format("{:#x}", done->before)}, {"after", fmt::format("{:#x}", done->after)},
                 {"injected_mono_ns", done->flipped_mono_ns}});
    event("inject", &c, what);
  }
  what["ok"] = true;
  what["domain"] = c.domain();
  what["detail"] = plan.describe() + (done->reached ? "" : fmt::format(": not reached in {} ms, nothing flipped", kBreakpointWaitMs));
  what["ts_mono_ns"] = done->reached ? done->flipped_mono_ns : mono_ns();
  return what;
}

// Faults of a driver VM act on QEMU and the guest: kill and freeze on the
// QEMU process, hang stops the vCPUs, crash panics the guest kernel (an NMI
// it is told to panic on), link-down pulls the emulated NIC's link. A null
// result: the fault is the host-side process's own, handled as for any domain.
nlohmann::json Manager::inject_vm(Child& c, inject::Fault fault, const nlohmann::json& request) {
  using inject::Fault;
  if (fault != Fault::kill && fault != Fault::freeze && fault != Fault::hang && fault != Fault::crash &&
      fault != Fault::link_down && fault != Fault::regflip) {
    return nullptr;
  }
  auto refuse = [&](const std::string& why) { return nlohmann::json{{"ok", false}, {"error", why}}; };
  pid_t qemu = qemu_of(c.pid);
  if (qemu == 0) return refuse(c.domain() + " has no running QEMU (is its driver VM still booting?)");
  if (fault == Fault::regflip) return regflip_vm(c, qemu, request);
  std::string qmp = config_.path("vm-" + c.name + ".qmp");
  uint64_t at = mono_ns();
  Status done;
  if (fault == Fault::kill || fault == Fault::freeze) {
    auto fd = open_pidfd(qemu);
    int sig = fault == Fault::kill ? SIGKILL : SIGSTOP;
    if (!fd || pidfd_signal(fd->get(), sig) != 0) done = fail_errno("signalling QEMU (pid {})", qemu);
  } else {
    const char* cmd = fault == Fault::hang ? "stop" : fault == Fault::crash ? "inject-nmi" : "set_link";
    nlohmann::json args = nlohmann::json::object();
    if (fault == Fault::link_down) args = {{"name", "nic"}, {"up", false}};
    at = mono_ns();
    auto r = vm::qmp_command(qmp, cmd, args);
    // A hang or a panic is found and the VM fenced so fast that QEMU can be
    // gone before it answers: the command was sent, and it took.
    if (!r && !r.error().peer_gone) done = tl::unexpected(r.error());
  }
  if (!done) return refuse(done.error().message);
  ++injections_;
  event("inject", &c, {{"fault", inject::fault_name(fault)}, {"pid", c.pid}, {"qemu_pid", qemu}, {"injected_mono_ns", at}});
  return {{"ok", true}, {"domain", c.domain()}, {"fault", inject::fault_name(fault)}, {"pid", c.pid},
          {"qemu_pid", qemu}, {"ts_mono_ns", at}};
}

nlohmann::json Manager::inject(const nlohmann::json& request) {
  auto text = [&](const char* key) {
    auto it = request.find(key);
    return it != request.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  Child* c = find_driver(text("domain"));
  if (c == nullptr) {
    return {{"ok", false}, {"error", fmt::format("no driver domain '{}' in {}", text("domain"), config_.origin)}};
  }
  auto fault = inject::parse_fault(text("fault"));
  if (!fault) {
    return {{"ok", false}, {"error", fmt::format("unknown fault '{}': expected one of {}", text("fault"),
                                                 inject::fault_list())}};
  }
  if (c->pid == 0 || !c->pidfd) return {{"ok", false}, {"error", c->domain() + " is not running"}};
  if (is_vm(*c)) {
    if (auto r = inject_vm(*c, *fault, request); !r.is_null()) return r;
  }
  if (*fault == inject::Fault::regflip) return regflip(*c, request);
  // Taken before the act: a frontend may see a kill and log its detection
  // before this loop gets to log the injection.
  uint64_t at = mono_ns();
  Status done;
  if (*fault == inject::Fault::kill) done = pidfd_signal(c->pidfd.get(), SIGKILL) == 0 ? Status{} : fail_errno("SIGKILL");
  if (*fault == inject::Fault::freeze) done = pidfd_signal(c->pidfd.get(), SIGSTOP) == 0 ? Status{} : fail_errno("SIGSTOP");
  if (*fault == inject::Fault::link_down) {
    done = reset_nic_down(*c);
    // The carrier goes off only at the end of that call, after the kernel
    // has quiesced the device (an RCU wait: up to 90 ms seen under load).
    at = mono_ns();
  }
  if (inject::inside_domain(*fault)) c->inject->arm(*fault);
  if (!done) return {{"ok", false}, {"error", done.error().message}};
  ++injections_;
  event("inject", c, {{"fault", inject::fault_name(*fault)}, {"pid", c->pid}, {"injected_mono_ns", at}});
  return {{"ok", true}, {"domain", c->domain()}, {"fault", inject::fault_name(*fault)}, {"pid", c->pid},
          {"ts_mono_ns", at}};
}

// Synchronous: the moment is at most max_delay_us away, and only the
// manager's own loop waits for it; the frontends detect on their own.
nlohmann::json Manager::regflip(Child& c, const nlohmann::json& request) {
  auto seed_or = seed_of(request);
  if (!seed_or) return {{"ok", false}, {"error", seed_or.error().message}};
  uint64_t seed = *seed_or;
  auto plan = inject::plan_regflip_for(c.pid, seed);
  auto done = plan ? inject::apply_regflip(*plan) : Result<inject::RegflipResult>(tl::unexpected(plan.error()));
  if (!done) return {{"ok", false}, {"error", fmt::format("regflip into {}: {}", c.domain(), done.error().message)}};
  ++injections_;
  nlohmann::json what = {{"fault", "regflip"},
                         {"pid", c.pid},
                         {"seed", seed},
                         {"tid", done->plan.tid},
                         {"register", std::string(inject::regflip_registers()[static_cast<size_t>(done->plan.reg)])},
                         {"bit", done->plan.bit},
                         {"delay_us", done->plan.delay_us},
                         {"rip", fmt::format("{:#x}", done->rip)},
                         {"before", fmt::format("{:#x}", done->before)},
                         {"after", fmt::format("{:#x}", done->after)}};
  event("inject", &c, what);
  what["ok"] = true;
  what["domain"] = c.domain();
  what["detail"] = done->plan.describe();
  what["ts_mono_ns"] = done->flipped_mono_ns;
  return what;
}

Status Manager::reset_nic(const Child& c) {
  if (c.kind != ChildKind::driver) return {};
  const DriverConfig& d = config_.drivers[c.config_index];
  auto ns = netlink::open_netns(d.netns);
  if (!ns) return tl::unexpected(ns.error());
  return prepare_nic(d, ns->get());
}

Status Manager::reset_nic_down(const Child& c) {
  const DriverConfig& d = config_.drivers[c.config_index];
  auto ns = netlink::open_netns(d.netns);
  if (!ns) return tl::unexpected(ns.error());
  auto s = netlink::Session::open(ns->get());
  if (!s) return tl::unexpected(s.error());
  return s->set_up(d.nic, false);
}

// ---- carrier detector ------------------------------------------------------

void Manager::watch_carrier(Child& c) {
  const DriverConfig& d = config_.drivers[c.config_index];
  if (!config_.detect.carrier) return;
  auto ns = netlink::open_netns(d.netns);
  auto w = ns ? netlink::LinkWatcher::open(ns->get(), d.nic)
              : Result<netlink::LinkWatcher>(tl::unexpected(ns.error()));
  if (!w) {
    spdlog::warn("{}: carrier detector off: {}", c.domain(), w.error().message);
    return;
  }
  c.link = std::move(*w);
  if (auto s = watch_fd(c.link->fd(), kLinkKey + static_cast<uint64_t>(&c - children_.data())); !s) {
    spdlog::warn("{}: carrier detector off: {}", c.domain(), s.error().message);
    c.link.reset();
  }
}

void Manager::on_link_event(Child& c) {
  if (!c.link) return;
  bool before = c.link->carrier();
  auto now = c.link->drain();
  if (!now) {
    spdlog::warn("{}: {}", c.domain(), now.error().message);
    return;
  }
  if (before == *now) return;
  const DriverConfig& d = config_.drivers[c.config_index];
  event(*now ? "carrier-up" : "carrier-down", &c, {{"nic", d.nic}});
  if (*now || c.pid == 0 || stopping_) return;
  ++carrier_losses_;
  spdlog::warn("{}: NIC {} lost its carrier", c.domain(), d.nic);
  event("detect", &c, {{"detector", "carrier"}, {"pid", c.pid}, {"detail", fmt::format("NIC {} lost its carrier", d.nic)}});
  fence(c, "carrier");
}

// The verdict every frontend hears at once: the domain's sockets hang up.
void Manager::fence(Child& c, const std::string& reason) {
  if (!c.pidfd || pidfd_signal(c.pidfd.get(), SIGKILL) != 0) return;
  ++fences_;
  event("fence", &c, {{"pid", c.pid}, {"signal", "SIGKILL"}, {"reason", reason}});
}

// Stops the children this run spawned and undoes this run's host changes;
// what a previous manager left (children, namespaces) stays as it was.
void Manager::abort_start() {
  if (!lock_fd_) return;
  stopping_ = true;
  stop_children(false);
  remove_cgroups();
  restore_host(fresh_);
  for (const auto& n : fresh_.created_netns) owned_.created_netns.erase(n);
  for (const auto& n : fresh_.moved_nics) owned_.moved_nics.erase(n);
  save_owned();
  if (control_) remove_file(control_->path());
  metrics_.reset();
  event("manager-stop", nullptr, {{"reason", "start failed"}});
  remove_file(config_.path("manager.pid"));
}

void Manager::teardown() {
  if (torn_down_) return;
  torn_down_ = true;
  stopping_ = true;
  stop_children(true);
  remove_cgroups();
  restore_host(owned_);
  owned_ = {};
  remove_state_files();
  nlohmann::json fields{{"reason", "shutdown"}};
  if (!stop_trigger_.empty()) fields["trigger"] = stop_trigger_;
  if (asked_systemd_ms_ >= 0) fields["asked_systemd_ms"] = asked_systemd_ms_;
  event("manager-stop", nullptr, std::move(fields));
  spdlog::info("manager: stopped");
}

void Manager::stop_children(bool adopted_too) {
  std::vector<int> fds;
  std::vector<Child*> running;
  for (auto& c : children_) {
    c.restart_at_ns = 0;
    if (!c.pidfd || (c.adopted && !adopted_too)) continue;
    pidfd_signal(c.pidfd.get(), SIGTERM);
    fds.push_back(c.pidfd.get());
    running.push_back(&c);
  }
  auto left = wait_exits(fds, kTermGraceMs);
  for (size_t i : left) {
    spdlog::warn("{}: pid {} ignored SIGTERM for {} ms; killing it", running[i]->domain(),
                 running[i]->pid, kTermGraceMs);
    pidfd_signal(fds[i], SIGKILL);
  }
  if (!left.empty()) wait_exits(fds, kKillWaitMs);
  for (Child* c : running) {
    if (c->pidfd) on_child_exit(*c);
  }
}

// NICs go back to the root namespace before their namespace is deleted: a
// deleted namespace would destroy a veth and strand a physical NIC in init_net
// with whatever state it had.
void Manager::restore_host(const Owned& what) {
  for (const auto& d : config_.drivers) {
    if (!what.moved_nics.count(d.name) || !netns_exists(d.netns)) continue;
    auto ns = netlink::open_netns(d.netns);
    if (!ns) {
      spdlog::warn("driver {}: cannot return NIC {}: {}", d.name, d.nic, ns.error().message);
      continue;
    }
    auto s = netlink::Session::open(ns->get());
    if (!s) {
      spdlog::warn("driver {}: cannot return NIC {}: {}", d.name, d.nic, s.error().message);
      continue;
    }
    if (!s->exists(d.nic)) continue;
    s->set_up(d.nic, false);
    if (auto m = s->move_to_netns(d.nic, root_netns_.get()); !m) {
      spdlog::warn("driver {}: cannot return NIC {}: {}", d.name, d.nic, m.error().message);
    } else {
      spdlog::info("driver {}: returned NIC {} to the root namespace", d.name, d.nic);
    }
  }
  for (const auto& name : what.created_netns) {
    if (!netns_exists(name)) continue;
    if (auto s = netlink::delete_netns(name); !s) {
      spdlog::warn("cannot delete network namespace {}: {}", name, s.error().message);
    } else {
      spdlog::info("deleted network namespace {}", name);
    }
  }
}

void Manager::remove_child_files(const Child& c) {
  remove_file(config_.path(c.domain() + ".pid"));
  remove_file(config_.path(c.domain() + ".stats"));
  if (c.kind == ChildKind::driver) remove_file(config_.driver_socket(c.name));
  if (c.kind == ChildKind::front) remove_file(config_.path("front-" + c.name + ".salvage"));
  if (c.kind == ChildKind::front) remove_file(config_.path("front-" + c.name + ".settings"));
}

void Manager::remove_state_files() {
  for (const auto& c : children_) remove_child_files(c);
  if (control_) remove_file(control_->path());
  metrics_.reset();
  remove_file(config_.path("owned.json"));
  remove_file(config_.path("manager.pid"));
}

void Manager::save_owned() {
  std::string path = config_.path("owned.json");
  if (owned_.created_netns.empty() && owned_.moved_nics.empty()) {
    remove_file(path);
    return;
  }
  nlohmann::json j = {{"created_netns", owned_.created_netns},
                      {"moved_nics", owned_.moved_nics}};
  if (auto s = write_file(path, j.dump() + "\n"); !s) spdlog::warn("{}", s.error().message);
}

// Only entries that still match this config are inherited: a namespace the
// config no longer names is not ours to delete any more.
void Manager::load_owned() {
  std::ifstream in(config_.path("owned.json"));
  if (!in) return;
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return;
  for (const auto& d : config_.drivers) {
    auto has = [&](const char* key, const std::string& v) {
      const auto& list = j.value(key, nlohmann::json::array());
      return list.is_array() && std::find(list.begin(), list.end(), v) != list.end();
    };
    if (has("created_netns", d.netns)) owned_.created_netns.insert(d.netns);
    if (has("moved_nics", d.name)) owned_.moved_nics.insert(d.name);
  }
}

void Manager::event(const std::string& name, const Child* c, nlohmann::json fields) {
  if (c != nullptr) fields["domain"] = c->domain();
  events_.emit(name, fields);
}

int run_manager(const std::string& config_arg, bool check_only) {
  // Absolute, so that a reload finds the same file wherever the manager runs.
  std::error_code ec;
  std::string config_path = check_only ? config_arg : std::filesystem::absolute(config_arg, ec).string();
  if (ec) config_path = config_arg;
  auto config = load_config(config_path);
  if (!config) {
    fmt::print(stderr, "nicguard manager: {}\n", config.error().message);
    return 2;
  }
  if (check_only) {
    fmt::print("{}: OK ({} driver{}, {} app{}, policy {})\n", config_path, config->drivers.size(),
               config->drivers.size() == 1 ? "" : "s", config->apps.size(),
               config->apps.size() == 1 ? "" : "s", policy_name(config->policy));
    return 0;
  }
  if (::geteuid() != 0) {
    fmt::print(stderr, "nicguard manager: must run as root (it creates namespaces and moves NICs)\n");
    return 1;
  }
  if (auto s = refuse_shared_resources(*config); !s) {
    fmt::print(stderr, "nicguard manager: {}\n", s.error().message);
    return 1;
  }
  auto manager = Manager::start(std::move(*config));
  if (!manager) {
    spdlog::error("manager: {}", manager.error().message);
    return 1;
  }
  if (auto s = (*manager)->run(); !s) {
    spdlog::error("manager: {}; children keep running for the next manager to adopt",
                  s.error().message);
    return 1;
  }
  return (*manager)->exit_status();
}

}  // namespace ng::manager

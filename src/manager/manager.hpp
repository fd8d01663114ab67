#pragma once
// `nicguard manager`: sets up the driver and app namespaces, spawns one
// driver domain per [[driver]] and one frontend per [[app]], restarts them
// when they die, and answers the control socket.
//
// Children are deliberately not tied to the manager's life (own session, no
// PDEATHSIG): the data plane keeps flowing if the manager dies, and the next
// manager adopts the children it finds in the state directory.
#include <signal.h>
#include <sys/types.h>

#include <memory>
#include <optional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/events.hpp"
#include "common/fd.hpp"
#include "common/stats.hpp"
#include "frontend/settings.hpp"
#include "inject/inject.hpp"
#include "sandbox/cgroup.hpp"
#include "netlink/link_watch.hpp"
#include "manager/config.hpp"
#include "manager/control.hpp"
#include "manager/metrics.hpp"
#include "manager/salvage.hpp"
#include "manager/service_notify.hpp"
#include "vm/accel.hpp"
#include "vm/guest_regflip.hpp"

namespace ng::manager {

enum class ChildKind { driver, front };

struct Child {
  ChildKind kind = ChildKind::driver;
  std::string name;
  std::vector<std::string> args;  // argv after argv[0]
  pid_t pid = 0;                  // 0 while down
  UniqueFd pidfd;
  bool adopted = false;             // not our child: no exit status to collect
  uint64_t started_mono_ns = 0;
  uint64_t started_wall_coarse_ns = 0;  // same clock as file timestamps
  uint64_t restart_at_ns = 0;           // mono; 0: no restart pending
  uint32_t backoff_ms = 0;              // delay before the next restart
  uint32_t restart_delay_ms = 0;        // what the pending restart waits: back-off or policy
  uint32_t restarts = 0;
  std::optional<stats::DriverStatsFile> driver_stats;  // mapped lazily, dropped on exit
  std::optional<stats::FrontStatsFile> front_stats;
  size_t config_index = 0;                        // into config.drivers or config.apps
  std::optional<inject::ControlFile> inject;      // drivers: armed on request only
  std::optional<netlink::LinkWatcher> link;       // drivers: carrier of the NIC
  Salvage salvage;               // drivers: what the NIC holds when the domain dies
  bool salvage_grabbed = false;  // this instance's packet socket is held (or cannot be)
  uint64_t log_start = 0;        // size of its log when this instance started
  std::string last_failure;      // why the last instance ended, in words; "" before any
  std::string last_failure_wall; // when (ISO 8601)
  // Process driver domains: their memory and pids limits, made at the first
  // start and kept across restarts; nullopt with cgroup_error when the host
  // has none to give (said once, in the log and an event).
  std::optional<sandbox::DomainCgroup> cgroup;
  uint32_t uid = 0;  // the unprivileged uid a process driver domain takes
  std::string cgroup_error;

  const char* kind_name() const { return kind == ChildKind::driver ? "driver" : "front"; }
  std::string domain() const { return std::string(kind_name()) + "-" + name; }
};

// What this manager (or a previous one on the same state directory) changed
// on the host and must undo on shutdown; kept in STATE/owned.json so that a
// restarted manager inherits the duty.
struct Owned {
  std::set<std::string> created_netns;
  std::set<std::string> moved_nics;  // driver names whose NIC came from the root namespace
};

// A driver VM's guest image directory, and the key of its accelerator choice.
std::string vm_image_dir(const DriverConfig& d);
std::string accel_key(const DriverConfig& d);
// A driver VM's QEMU: the domain process's child running qemu-system; 0: none.
pid_t qemu_of(pid_t domain);
// The newest error a domain wrote to its log (spdlog's "[error]" or
// "[critical]" lines; fmt's "error: " lines), without the time stamp and
// level, at most 400 bytes; "" if none.
std::string last_logged_error(std::string_view log);
// Every app's MAC and salvage socket, for a salvage to hand frames to.
std::vector<SalvageTarget> salvage_targets(const Config& cfg);
// The detector timeouts a config gives the frontends.
frontend::LiveSettings live_settings(const Config& cfg);

class Manager {
 public:
  // Takes the state directory, prepares namespaces and NICs, adopts or spawns
  // the children. On failure everything it did is undone.
  static Result<std::unique_ptr<Manager>> start(Config config);
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // Serves until SIGTERM/SIGINT or a shutdown request, then stops the
  // children and undoes the host changes. An error return leaves children
  // running, as a crash would, for the next manager to adopt.
  Status run();

  nlohmann::json status_json();
  // Applies the config file as it reads now, touching only what changed
  // (docs/config.md, "Reload"): app domains added, removed or changed,
  // detector timeouts, and the other live keys of reload_blockers(). A
  // config that is bad, or changes what only a restart can, is refused
  // whole with every reason, and nothing changes. `trigger` is for the log.
  nlohmann::json reload(const std::string& trigger);
  // The run ended on SIGUSR2, or on systemd's SIGTERM of a restart: the
  // domains serve on, for the next manager.
  bool left_serving() const { return leaving_; }
  // What run_manager() exits with: 0, or kExitLeftServing after SIGUSR2 (a
  // restart's SIGTERM exits 0: systemd starts the next manager itself).
  int exit_status() const;

 private:
  explicit Manager(Config config);
  // epoll keys; a child's pidfd has its index in children_.
  static constexpr uint64_t kSignalKey = 1ULL << 62;
  static constexpr uint64_t kControlKey = kSignalKey + 1;
  static constexpr uint64_t kMetricsKey = kSignalKey + 2;
  static constexpr uint64_t kLinkKey = 1ULL << 61;     // + child index: a driver's carrier watch
  static constexpr uint64_t kSalvageKey = 1ULL << 60;  // + child index: a salvage socket

  Status take_state_dir();
  Status setup_signals();
  Status setup_driver_netns(const DriverConfig& d);
  Status setup_app_netns(const AppConfig& a);
  Status setup_children();
  void wait_driver_sockets();
  Status start_control();

  void build_children();
  Child driver_child(const Config& cfg, const DriverConfig& d);
  Child front_child(const Config& cfg, const AppConfig& a);
  void write_front_settings(const Child& c, bool tell);
  void apply_memory_limit(Child& c);
  Result<nlohmann::json> apply_reload(Config next);
  Status prepare_new_apps(const Config& next, std::vector<std::string>& created);
  void retire(Child& c);
  void rekey_children();
  Status reopen_metrics(const std::string& listen);
  void add_vm_args(const DriverConfig& d, std::vector<std::string>& args);
  bool try_adopt(Child& c);
  Status spawn(Child& c);
  Result<std::pair<pid_t, UniqueFd>> start_process(Child& c, int null_fd, int log_fd, char* const* argv);
  // The cgroup a process driver domain starts in (made on first use); null
  // where the host gives none, which is said once.
  const sandbox::DomainCgroup* cgroup_for(Child& c);
  void remove_cgroups();
  void on_child_exit(Child& c);
  void restart_due();
  Status prepare_nic(const DriverConfig& d, int ns_fd);
  Status reset_nic(const Child& c);
  Status reset_nic_down(const Child& c);
  void watch_carrier(Child& c);
  void grab_salvage();
  void start_salvage(Child& c);
  void end_salvage(Child& c, const char* why);
  void salvage_due();
  void on_link_event(Child& c);
  void fence(Child& c, const std::string& reason);
  nlohmann::json inject(const nlohmann::json& request);
  nlohmann::json regflip(Child& c, const nlohmann::json& request);
  nlohmann::json inject_vm(Child& c, inject::Fault fault, const nlohmann::json& request);
  nlohmann::json regflip_vm(Child& c, pid_t qemu, const nlohmann::json& request);
  nlohmann::json profile_guest();
  bool is_vm(const Child& c) const;
  bool running_vm(const Child& c) const;  // and its QEMU runs
  Result<std::vector<std::string>> guest_running_functions(Child& target, const std::vector<vm::GuestSymbol>& syms);
  Child* find_driver(const std::string& name);
  int next_timeout_ms() const;
  Status watch_fd(int fd, uint64_t key);
  void handle_signal();
  // SIGTERM under systemd: a restart job leaves the domains serving.
  void on_sigterm(pid_t from);
  void leave(const std::string& reason, int exit_status);
  // cgroup v2: before a leaving manager exits, its service's cgroup gives
  // the controllers back, so that systemd can start the next manager there.
  void release_cgroup_controllers();
  void service_tick();
  nlohmann::json handle_request(const nlohmann::json& request);

  Status prepare_host();
  void abort_start();
  void teardown();
  void stop_children(bool adopted_too);
  void restore_host(const Owned& what);
  void remove_child_files(const Child& c);
  void remove_state_files();
  void save_owned();
  void load_owned();

  void event(const std::string& name, const Child* c, nlohmann::json fields = {});

  nlohmann::json driver_status(size_t i);
  nlohmann::json app_status(size_t i);

  Config config_;
  std::string exe_;  // resolved /proc/self/exe, argv[0] of children
  UniqueFd lock_fd_;  // manager.pid, flock'ed while we run
  UniqueFd root_netns_;
  UniqueFd epoll_;
  UniqueFd signal_fd_;
  EventLog events_;
  std::optional<ControlServer> control_;
  std::optional<MetricsServer> metrics_;
  std::vector<Child> children_;  // drivers first, in config order, then fronts
  std::map<std::string, vm::AccelChoice> accel_;  // by "accel image_dir"
  // The driver VMs' NIC driver functions that a profile saw run, for regflip
  // to choose from: taken once, so that a seed names the same fault all along.
  std::vector<std::string> guest_running_;
  std::string guest_running_from_;  // the domain it was taken on
  Owned owned_;  // everything still to undo, inherited ones included
  Owned fresh_;  // what this run did: undone alone when start() fails
  sigset_t child_mask_{};  // the signal mask children get back
  ServiceNotifier notifier_;
  bool ready_ = false;             // every app domain has had an active driver domain
  uint64_t next_ready_check_ns_ = 0;
  bool stopping_ = false;
  bool leaving_ = false;  // SIGUSR2 or a restart: exit and leave every domain serving
  std::string leave_reason_;  // "SIGUSR2 from pid 12", "systemd restart job 1234"
  int leave_exit_status_ = 0;
  int64_t asked_systemd_ms_ = -1;  // how long the SIGTERM's question to systemd took; -1: not asked
  std::string stop_trigger_;  // why a stop: "SIGTERM from pid 1: systemd's job ... is 'stop'"
  bool torn_down_ = false;
  uint64_t started_mono_ns_ = 0;
  uint64_t fences_ = 0;
  uint64_t carrier_losses_ = 0;
  uint64_t injections_ = 0;
  uint64_t salvaged_ = 0;  // frames handed to frontends over all salvages
  uint64_t reloads_ = 0;
  uint64_t reloads_refused_ = 0;
  std::vector<SalvageTarget> salvage_targets_;  // every app's MAC and salvage socket
};

// The body of `nicguard manager -c FILE`: returns the process exit status.
// The exit status of a manager that SIGUSR2 ended: its domains serve on, and
// the unit's RestartForceExitStatus starts the next manager, which adopts
// them (an upgrade of the manager without a pause in the traffic).
inline constexpr int kExitLeftServing = 3;
int run_manager(const std::string& config_path, bool check_only);

}  // namespace ng::manager

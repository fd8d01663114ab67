#pragma once
// Helpers for the integration tests that drive the real `nicguard` binary
// (NICGUARD_BINARY) and real Debian traffic tools inside lab namespaces.
//
// Rules every helper keeps:
//   - every command has a deadline; past it the whole process tree is killed;
//   - nothing is ever configured in the root namespace: commands run inside
//     lab namespaces with `ip netns exec NS ...` (or `ip -n NS` to read);
//   - whatever a helper starts or builds is removed by its destructor, also
//     when an assertion fails halfway through a test.
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace ng::it {

using namespace std::chrono_literals;

#ifndef NICGUARD_BINARY
#error "NICGUARD_BINARY must name the nicguard binary under test"
#endif
inline constexpr const char* kNicguard = NICGUARD_BINARY;

// The outcome of one command.
struct CmdResult {
  std::string cmd;
  int exit_code = -1;  // exit status, 128+N when killed by signal N, -1 if it never ran
  bool timed_out = false;  // the harness deadline passed and the tree was killed
  std::string out;
  std::string err;
  double seconds = 0;

  bool ok() const { return exit_code == 0 && !timed_out; }
  // Everything a failing assertion should show.
  std::string describe() const;
};

// Single-quotes s for /bin/sh.
std::string quote(const std::string& s);

// Runs `/bin/sh -c cmd` with stdin from /dev/null, capturing stdout and
// stderr. Past `limit` the command and everything it started are killed
// (SIGTERM, then SIGKILL), and timed_out is set.
CmdResult run(const std::string& cmd, std::chrono::milliseconds limit = 30s);

// `ip netns exec NS sh -c CMD`, the form every traffic command takes.
std::string in_ns(const std::string& ns, const std::string& cmd);
CmdResult run_in(const std::string& ns, const std::string& cmd,
                 std::chrono::milliseconds limit = 30s);

// Repeats `probe` (every `every`) until it returns true or `limit` passes.
template <typename F>
bool wait_until(F&& probe, std::chrono::milliseconds limit,
                std::chrono::milliseconds every = 100ms);

// Kills pid and every process it started (walked through /proc before the
// first signal, so orphans are found too): SIGTERM, a grace period, SIGKILL.
void kill_tree(pid_t pid, std::chrono::milliseconds grace = 2s);

// Running (exists and is not a zombie).
bool process_alive(pid_t pid);
std::string process_cmdline(pid_t pid);  // arguments joined with spaces

// A command started in the background (`/bin/sh -c cmd`); its stdout and
// stderr go to files that can be read while it runs. The destructor kills
// whatever of it is still running.
class Background {
 public:
  explicit Background(const std::string& cmd);
  ~Background();
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  std::string out() const;  // what it wrote so far
  std::string err() const;
  // Waits up to `limit` for it to exit by itself, then kills it; either way
  // returns its result (timed_out set if it had to be killed).
  CmdResult finish(std::chrono::milliseconds limit);
  // Kills it now (SIGTERM first, so tools like tcpdump print their summary).
  CmdResult stop();

 private:
  void reap(bool block);

  std::string cmd_;
  std::string dir_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
  std::chrono::steady_clock::time_point started_;
};

// A private temporary directory, removed (with its contents) by the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "ng-it");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& content);

// ------------------------------------------------------------------- lab

struct LabApp {
  std::string name;   // "app1"
  std::string netns;  // "ng-SFX-app1"
  std::string link;   // "eth0"
  std::string ipv4;   // address only: "10.99.0.11"
  std::string ipv6;   // "fd99::11"
  std::string mac;    // "02:XX:YY:00:01:01"
  int mtu = 1500;
};

struct LabDriver {
  std::string name;   // "a"
  std::string netns;  // "ng-SFX-drv-a"
  std::string nic;
};

struct LabOptions {
  int apps = 1;
  int mtu = 1500;
  std::string policy = "warm-spare";
  int realtime_priority = -1;  // --realtime-priority; -1: the config's default
  int path_probe_us = -1;      // --path-probe-us; -1: the config's default
  std::string domain = "process";  // --domain: process or vm
  std::string nic_model;           // --nic-model (driver VMs); empty: the default
  std::chrono::milliseconds up_limit = 120s;
  // NAME=VALUE pairs added to `lab up`'s environment, which the lab's
  // manager inherits (DBUS_SYSTEM_BUS_ADDRESS, INVOCATION_ID, ...).
  std::vector<std::string> env;
};

// One `nicguard lab up --json` run, owned: the destructor runs
// `nicguard lab down --name SFX` (and `lab cleanup --name SFX` if anything
// of the lab is left). The suffix is chosen here, so even a lab whose `up`
// was killed halfway is found and removed.
class LabGuard {
 public:
  explicit LabGuard(const LabOptions& options = {});
  ~LabGuard();
  LabGuard(const LabGuard&) = delete;
  LabGuard& operator=(const LabGuard&) = delete;

  // Whether `lab up` succeeded and its JSON was understood; error() says why not.
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }

  const std::string& suffix() const { return suffix_; }
  const nlohmann::json& info() const { return info_; }  // lab.json as printed by `lab up --json`
  const std::string& ext_ns() const { return ext_ns_; }
  const std::string& ext_ipv4() const { return ext_ipv4_; }
  const std::string& ext_ipv6() const { return ext_ipv6_; }
  const std::string& switch_ns() const { return switch_ns_; }
  const std::vector<LabApp>& apps() const { return apps_; }
  const std::vector<LabDriver>& drivers() const { return drivers_; }
  const std::string& config() const { return config_; }
  const std::string& state_dir() const { return state_dir_; }
  const std::string& control_socket() const { return control_socket_; }
  const std::string& manager_log() const { return manager_log_; }
  pid_t manager_pid() const { return manager_pid_; }
  // Namespaces whose name carries this lab's suffix, as `ip netns list` shows them.
  std::vector<std::string> live_namespaces() const;

  // `nicguard status --json -s SOCKET`; nullopt (and *why set) on failure.
  std::optional<nlohmann::json> status(std::string* why = nullptr) const;
  // `nicguard status` (the table), for failure messages.
  std::string status_table() const;
  // The last lines of the manager's log and the children's logs, for failure messages.
  std::string logs(int lines = 20) const;

  // Tears the lab down now; idempotent. Returns the `lab down` result.
  CmdResult down();

 private:
  bool ok_ = false;
  bool down_done_ = false;
  std::string error_;
  std::string suffix_;
  nlohmann::json info_;
  std::string ext_ns_, ext_ipv4_, ext_ipv6_, switch_ns_;
  std::vector<LabApp> apps_;
  std::vector<LabDriver> drivers_;
  std::string config_, state_dir_, control_socket_, manager_log_;
  pid_t manager_pid_ = 0;
};

// The lab's event log (events.jsonl), parsed; and as text for failure messages.
std::vector<nlohmann::json> read_events(const LabGuard& lab);
std::string event_lines(const LabGuard& lab);
// The driver domain app1 currently sends through, "" when none.
std::string active_driver(const LabGuard& lab);
// An event with all of these fields appeared after the first `skip` lines.
bool has_event(const LabGuard& lab, size_t skip, const nlohmann::json& match);

// The lab's status once its manager answers (a manager just started), or
// nullopt after `limit`.
std::optional<nlohmann::json> wait_status(const LabGuard& lab, std::chrono::milliseconds limit);

// `nicguard status --json -s SOCKET` against any manager.
std::optional<nlohmann::json> status_json(const std::string& socket, std::string* why = nullptr);

// The MAC address of LINK inside NS ("aa:bb:..."), empty if unknown.
std::string link_mac(const std::string& ns, const std::string& link = "eth0");

// The lladdr `ip -n NS neigh show ADDR` reports for ADDR, empty if none.
std::string neighbour_mac(const std::string& ns, const std::string& address);

// Polls `ss -lnH` in NS until something listens on PORT (tcp or udp).
bool wait_listening(const std::string& ns, int port, bool udp,
                    std::chrono::milliseconds limit = 10s);

// A file of `bytes` random bytes in dir, with its sha256 (hex).
struct RandomFile {
  std::string path;
  uint64_t bytes = 0;
  std::string sha256;
};
std::optional<RandomFile> make_random_file(const std::string& dir, uint64_t bytes,
                                           std::string* why = nullptr);

// The outcome of one checksummed TCP transfer.
struct TransferResult {
  bool ok = false;  // both ends finished and the receiver's size and sum match
  uint64_t received_bytes = 0;
  std::string sent_sha256;
  std::string received_sha256;
  double seconds = 0;
  std::string detail;  // commands, outputs and logs for a failure message
};

// Sends `file` with `nc` from from_ns to to_address:port, a receiver `nc -l`
// in to_ns counting and hashing what arrives (nothing is written to disk on
// the receiving side). Every step is bounded by `limit`. With
// pace_bytes_per_s the sender is held to that rate, so that a transfer lasts
// long enough to live through failures injected meanwhile.
TransferResult tcp_transfer(const std::string& from_ns, const std::string& to_ns,
                            const std::string& to_address, int port, const RandomFile& file,
                            std::chrono::seconds limit, uint64_t pace_bytes_per_s = 0);

// ------------------------------------------------------------------- implementation

template <typename F>
bool wait_until(F&& probe, std::chrono::milliseconds limit, std::chrono::milliseconds every) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (probe()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(every);
  }
}

}  // namespace ng::it

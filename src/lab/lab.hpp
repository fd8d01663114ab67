#pragma once
// The test lab: a switch, an external host, one veth "NIC" per driver domain
// and the app domains, all inside network namespaces the lab creates and
// removes itself (docs in DESIGN.md, "Test lab"). Nothing is ever configured
// in the root namespace except the driver NICs, which stay down and
// address-less until the manager moves them into their driver domains.
//
// Every name carries the run's suffix SFX: namespaces "ng-SFX-*", root links
// "ngSFXn<driver>", files under /run/nicguard/lab-SFX/. Teardown is driven by
// those names, not by memory of what was made, so a killed run can be removed
// by another process (`nicguard lab cleanup`).
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.hpp"

namespace ng::lab {

inline constexpr const char* kRunDir = "/run/nicguard";

struct LabOptions {
  int apps = 1;                        // 1..64 app domains
  std::string policy = "warm-spare";   // "warm-spare" (drivers a, b) or "restart" (a)
  std::string domain = "process";      // driver domains: "process" or "vm" (driver VMs)
  std::string nic_model;               // driver VMs' emulated NIC (vm::kNicModels); empty: the config's default
  uint32_t mtu = 1500;                 // 68..9000, every lab link and app
  bool direct = false;                 // add ng-SFX-direct, a host straight on the switch
  int realtime_priority = -1;          // [manager] realtime_priority; -1: the config's default
  int path_probe_us = -1;              // [detect] path_probe_us; -1: the config's default
  std::string name;                    // suffix, [a-z0-9]{1,11}; random 4 hex digits if empty
  bool start_manager = true;           // false: topology and config only, no traffic wait
  std::string binary = "/proc/self/exe";  // the nicguard binary run as `manager -c CONFIG`
  std::chrono::milliseconds traffic_timeout{15'000};
  // Polled between setup steps and during waits; returning true aborts `up`
  // (which then removes everything it made).
  std::function<bool()> interrupted;
};

// A host interface inside a namespace. Addresses are "address/prefix".
struct Endpoint {
  std::string netns;
  std::string link = "eth0";
  std::string ipv4;
  std::string ipv6;
  std::string ipv4_address() const;  // without the prefix length
  std::string ipv6_address() const;
};

struct App : Endpoint {
  std::string name;  // "app1"
  std::string mac;   // "02:XX:YY:00:01:01": XX, YY from the lab's suffix
  uint32_t mtu = 1500;
};

struct Driver {
  std::string name;         // "a"
  std::string nic;          // "ngSFXna", created in the root namespace, down
  std::string switch_port;  // "ngSFXpa", its peer on the bridge
  std::string netns;        // "ng-SFX-drv-a", created by the manager
};

// Everything about one lab run; lab.json is its JSON form.
struct LabInfo {
  std::string suffix;
  std::string dir;             // /run/nicguard/lab-SFX
  std::string config;          // dir/nicguard.toml
  std::string state_dir;       // dir/state
  std::string control_socket;  // state_dir/control.sock
  std::string manager_log;     // state_dir/manager.log
  std::string policy;
  std::string domain = "process";
  std::string nic_model;  // empty: the config's default
  uint32_t mtu = 1500;
  int realtime_priority = -1;  // -1: not written, the config's default applies
  int path_probe_us = -1;      // the same
  std::string switch_netns;
  std::string bridge = "br0";
  Endpoint ext;
  std::optional<Endpoint> direct;
  std::vector<Driver> drivers;
  std::vector<App> apps;
  pid_t lab_pid = 0;      // the process that ran `lab up`
  pid_t manager_pid = 0;  // 0 until started

  // Every namespace of the run, the driver domains' included.
  std::vector<std::string> namespaces() const;
  std::vector<std::string> root_links() const;
  nlohmann::json to_json() const;
  static Result<LabInfo> from_json(const nlohmann::json& j);
};

// Owns a running lab; the destructor tears it down unless detach() was called.
class Lab {
 public:
  static Result<Lab> up(const LabOptions& options);
  ~Lab();
  Lab(Lab&& other) noexcept;
  Lab& operator=(Lab&& other) noexcept;
  Lab(const Lab&) = delete;
  Lab& operator=(const Lab&) = delete;

  const LabInfo& info() const { return info_; }
  const std::string& suffix() const { return info_.suffix; }
  const Endpoint& ext() const { return info_.ext; }
  const std::optional<Endpoint>& direct() const { return info_.direct; }
  const std::vector<App>& apps() const { return info_.apps; }
  const std::vector<Driver>& drivers() const { return info_.drivers; }
  const std::string& config_path() const { return info_.config; }
  const std::string& state_dir() const { return info_.state_dir; }
  const std::string& control_socket() const { return info_.control_socket; }
  pid_t manager_pid() const { return info_.manager_pid; }

  // Stops the manager (SIGTERM, then SIGKILL for whatever is left) and
  // removes every namespace, link and file of the run. Idempotent.
  Status down();
  // Leaves the lab running when this object goes away (`nicguard lab up`).
  void detach() { active_ = false; }

 private:
  explicit Lab(LabInfo info) : info_(std::move(info)) {}
  Status build(const LabOptions& options);
  Status start_manager(const LabOptions& options);
  Status wait_for_traffic(const LabOptions& options);
  Status save() const;

  LabInfo info_;
  bool active_ = true;
  bool manager_is_child_ = false;
};

std::string lab_dir(const std::string& suffix);
// Suffixes of the labs that have a directory under /run/nicguard.
std::vector<std::string> running_labs();
Result<LabInfo> load(const std::string& suffix);

// Tears down the lab SFX from any process: graceful manager stop, then
// everything named after SFX. Fails if nothing of that lab exists. With
// `keep_logs`, the lab's logs are copied into that directory once every
// process of the lab has ended, before its files go (what a process says as
// it exits, a sanitizer's report say, is in them).
Status down(const std::string& suffix, const std::string& keep_logs = "");

// Removes every lab, killed runs included (or only `only_suffix`): recorded
// processes and those living in lab namespaces, namespaces named ng-*, root
// links named ng[0-9a-f]{4}*, and /run/nicguard/lab-*. Returns one line per
// thing removed; what could not be removed is reported in `errors`.
std::vector<std::string> cleanup(const std::string& only_suffix, std::vector<std::string>& errors);

// What is left of lab SFX, one line each: namespaces named ng-SFX-*, root
// links of SFX, its directory under /run/nicguard, and processes whose
// command line names a file in it. Empty once the lab is gone for good.
std::vector<std::string> leftovers(const std::string& suffix);

// ICMP echo from inside `netns` until every address answered (IPv4 or IPv6
// literals, no prefix). Returns the addresses that stayed silent.
Result<std::vector<std::string>> ping_all(const std::string& netns,
                                          const std::vector<std::string>& addresses,
                                          std::chrono::milliseconds timeout,
                                          const std::function<bool()>& interrupted = {});
Status ping(const std::string& netns, const std::string& address,
            std::chrono::milliseconds timeout);

}  // namespace ng::lab

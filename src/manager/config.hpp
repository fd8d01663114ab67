#pragma once
// The manager's configuration (docs/config.md). parse_config() validates the
// whole file before anything is created or torn down, and reports every
// problem at once: an operator fixing a config should not have to iterate
// one error at a time.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/addr.hpp"
#include "common/error.hpp"

namespace ng::manager {

// The state directory of a config that names none: the host's manager.
inline constexpr const char* kDefaultStateDir = "/run/nicguard";

// What a driver domain needs besides the ring regions it maps (its own
// receive buffers of 2 MiB, libraries, stacks), with room to spare.
inline constexpr uint64_t kDriverBaseMemoryMb = 64;

enum class Policy { warm_spare, restart };
const char* policy_name(Policy p);

struct RingConfig {
  uint32_t tx_slots = 256;
  uint32_t rx_slots = 256;
  uint32_t slot_size = 65600;
};

// How driver-domain failures are detected (docs/config.md, [detect]).
struct DetectConfig {
  uint32_t heartbeat_ms = 10;      // a driver's heartbeat period while idle
  uint32_t hang_timeout_ms = 6;    // heartbeat silent this long, though asked for, = hang
  uint32_t stall_timeout_ms = 100;  // TX frames not taken this long, heartbeat alive = stall
  bool carrier = true;             // carrier loss on a domain's NIC is its failure
  uint32_t rx_probe_interval_ms = 100;  // receive-path check: an ARP question this often
  uint32_t rx_probe_timeout_ms = 300;   // ... unanswered this long is a stall
  uint32_t path_probe_us = 1000;  // driver domains probe each other's path this often; 0: never
};

struct MetricsConfig {
  std::string listen;  // "HOST:PORT" on loopback or "unix:/path"; empty: no listener
};

enum class DriverKind { process, vm };
const char* driver_kind_name(DriverKind k);

// A driver VM's guest (docs/vm.md): the NIC's own driver runs in it.
struct VmConfig {
  std::string nic_model = "e1000e";  // emulated in the lab; e1000, virtio-net-pci
  uint32_t memory_mb = 96;
  std::string accel = "auto";  // "auto": KVM if a guest really boots on it, else TCG
  std::string image_dir;       // empty: guest/ beside the nicguard binary
  uint32_t boot_timeout_ms = 120'000;
};

struct DriverConfig {
  std::string name;
  DriverKind kind = DriverKind::process;
  VmConfig vm;  // kind vm only
  std::string nic;
  std::string netns;  // defaults to "ng-drv-<name>"
  uint32_t memory_limit_mb = 256;  // raised to fit every app's ring region when not set
  bool memory_limit_set = false;
};

struct AppConfig {
  std::string name;
  std::string netns;  // defaults to "ng-app-<name>"
  Mac mac{};
  std::vector<Cidr> ipv4;
  std::vector<Cidr> ipv6;
  uint32_t mtu = 1500;
  // An IPv4 neighbour on the NIC's segment (a gateway) that the frontend
  // asks through the active domain (see frontend/rx_probe.hpp); empty: the
  // receive-path check is off for this app.
  std::string rx_probe_target;
};

struct Config {
  std::string origin;     // file name, for messages
  std::string state_dir;  // absolute, no trailing '/'
  Policy policy = Policy::warm_spare;
  std::string control_socket;  // defaults to "<state_dir>/control.sock"
  // Under warm-spare a failed driver domain is restarted this late: the
  // spare carries the traffic, and a restart at once takes the CPU from it
  // at the worst moment. The restart policy restarts at once.
  uint32_t spare_restart_delay_ms = 250;
  // Driver domains serve at SCHED_FIFO realtime_priority and frontends one
  // above (a hung driver spinning at realtime must not lock its frontend,
  // which is what detects it, out of a core); 0 keeps normal scheduling.
  // Off by default: on a small host it trades data-path throughput for
  // failover latency (docs/config.md, "Scheduling").
  uint32_t realtime_priority = 0;
  RingConfig ring;
  DetectConfig detect;
  MetricsConfig metrics;
  std::vector<DriverConfig> drivers;  // config order: the first starts as the active one
  std::vector<AppConfig> apps;

  std::string path(std::string_view file) const { return state_dir + "/" + std::string(file); }
  std::string driver_socket(const std::string& driver) const {
    return path("driver-" + driver + ".sock");
  }
  uint32_t max_app_mtu() const;
};

// Every error is one line "ORIGIN:LINE: KEY.PATH = VALUE: what is wrong, what is expected".
Result<Config> parse_config(std::string_view toml, std::string_view origin);
Result<Config> load_config(const std::string& path);

// What a reload (`nicguard reload`, SIGHUP) cannot apply while the domains
// serve, one line per difference naming the key, the values and the fix;
// empty: `next` can replace `now` live. Live are the app domains (added,
// removed, changed), the detector timeouts, the carrier detector, the
// spare's restart delay, the metrics listener and the driver domains'
// memory limits.
std::vector<std::string> reload_blockers(const Config& now, const Config& next);

// Serialises a validated config back to TOML with every default written out.
std::string to_toml(const Config& config);

// The pair's id, in path probes, domain uids and cgroup names: one per host
// and state directory, so that pairs of other hosts (or of another manager
// here) on the same segment keep their probes apart; the same on every
// start, so that a restarted manager still adopts the domains (their command
// line must not change).
uint64_t pair_id(const std::string& state_dir);

}  // namespace ng::manager

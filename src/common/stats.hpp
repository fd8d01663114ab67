#pragma once
// Counters of a driver domain or a frontend, kept in a small file-backed
// mapping under the manager's state directory. The process that owns the
// counters is their only writer (relaxed stores, no syscalls on the data
// path); the manager and `nicguard status` map the file read-only.
#include <atomic>
#include <cstdint>
#include <string>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace ng::stats {

inline constexpr uint32_t kDriverMagic = 0x5344474e;  // "NGDS"
inline constexpr uint32_t kFrontMagic = 0x5346474e;   // "NGFS"
inline constexpr uint32_t kVersion = 6;
inline constexpr int kMaxConnections = 64;
inline constexpr int kMaxBackends = 2;
inline constexpr int kNameLen = 64;

using Counter = std::atomic<uint64_t>;

inline void add(Counter& c, uint64_t v) {
  c.store(c.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}

struct DriverConnection {
  std::atomic<uint32_t> in_use;
  std::atomic<uint32_t> role;  // protocol::Role
  char app[kNameLen];
  uint8_t mac[8];
  Counter rx_frames;  // delivered to this frontend
  Counter rx_bytes;
  Counter tx_frames;  // sent on the NIC for this frontend
  Counter tx_bytes;
  Counter rx_drops;   // ring full
  Counter malformed;  // bad descriptors from this frontend
};

struct DriverStats {
  uint32_t magic;
  uint32_t version;
  char name[kNameLen];
  char nic[kNameLen];
  Counter pid;
  Counter heartbeat;
  Counter nic_rx_frames;
  Counter nic_rx_bytes;
  Counter nic_tx_frames;
  Counter nic_tx_bytes;
  Counter nic_tx_errors;
  Counter rx_unclaimed;  // unicast for no connected app
  Counter connections;
  Counter nic_rx_overruns;  // frames the NIC dropped: the driver read too late
  Counter nic_fd;  // the packet socket's descriptor number + 1 (0: not open), for the salvage
  Counter path_probes_sent;  // to the pair's other domain (driver/path_probe.hpp)
  Counter path_probes_seen;  // from it
  Counter guest_reports_refused;  // a driver VM's reports with the wrong token (vm/guest_report.hpp)
  DriverConnection conns[kMaxConnections];
};

enum class BackendState : uint32_t { down = 0, connecting = 1, spare = 2, active = 3 };
const char* backend_state_name(BackendState s);

struct FrontBackend {
  char name[kNameLen];
  std::atomic<uint32_t> state;  // BackendState
  Counter tx_frames;            // posted to this backend's TX ring
  Counter tx_bytes;
  Counter rx_frames;  // taken from this backend's RX ring
  Counter rx_bytes;
  Counter malformed;  // descriptors or indices that failed validation
  Counter connects;
};

struct FrontStats {
  uint32_t magic;
  uint32_t version;
  char name[kNameLen];
  char tap[kNameLen];
  Counter pid;
  Counter tap_rx_frames;  // read from the TAP device (apps sending)
  Counter tap_rx_bytes;
  Counter tap_tx_frames;  // written to the TAP device (apps receiving)
  Counter tap_tx_bytes;
  Counter tx_drops;   // no backend could take the frame
  Counter rx_drops;   // frames from a backend refused (too short, TAP error)
  Counter malformed;  // sum over backends
  Counter failovers;
  Counter replayed;  // frames re-posted to a new active backend
  // Failures this frontend detected by itself, by detector. A failure the
  // manager decided (carrier loss) reaches the frontend as a crash.
  Counter detected_crash;      // socket hang-up of the driver domain
  Counter detected_hang;       // heartbeat stopped
  Counter detected_stall;      // heartbeat alive, TX ring not drained
  Counter detected_violation;  // malformed descriptor or index
  Counter detected_carrier;    // the domain reported its NIC's carrier lost (a driver VM's guest)
  Counter fences;              // SIGKILLs this frontend sent a suspected domain
  Counter last_detect_us;      // how long the last failure went unnoticed (when measurable)
  Counter last_switch_us;      // detection to the new active domain's first kick
  Counter held_frames;         // frames kept while no driver domain was up
  Counter hold_drops;          // frames the bounded hold queue had no room for
  Counter salvaged;            // frames a failed domain's NIC received, handed over by the manager
  Counter spare_path_broken;   // path checks that found the spare's side broken (frontend/path_check.hpp)
  Counter path_questions;      // ARP questions the path check asked through the active domain
  // The most CPU time in its own code a kicked domain spent before its beat
  // came: the margin below the hang verdict's user-mode limit.
  Counter kick_user_max_us;
  std::atomic<int32_t> active;  // index into backends, -1 for none
  FrontBackend backends[kMaxBackends];
};

// Owns one mapped stats file. create() makes (or truncates) it for the
// writer; open() maps an existing one read-only for readers.
template <typename T>
class StatsFile {
 public:
  static Result<StatsFile> create(const std::string& path, uint32_t magic);
  static Result<StatsFile> open(const std::string& path, uint32_t magic);
  T* get() const { return static_cast<T*>(map_.data()); }
  T* operator->() const { return get(); }

 private:
  Mapping map_;
};

using DriverStatsFile = StatsFile<DriverStats>;
using FrontStatsFile = StatsFile<FrontStats>;

// Copies s into a fixed-size name field, always NUL-terminated.
void set_name(char (&field)[kNameLen], const std::string& s);

}  // namespace ng::stats

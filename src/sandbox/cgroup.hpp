#pragma once
// A driver domain's cgroup: a memory and a pids limit that the domain cannot
// lift, whatever it does to its own rlimits or its own cgroup namespace.
//
// The manager makes one per driver domain, beside itself: under its own
// cgroup in each hierarchy that has the memory and pids controllers (cgroup
// v2, or v1 where the controllers are mounted there, as on hybrid hosts). On
// cgroup v2 a cgroup that holds processes cannot hand controllers to child
// cgroups, so a manager alone in its cgroup (a systemd service with
// Delegate=yes) first moves itself into a "manager" leaf there. The child
// joins before it runs anything: it writes "0" to each cgroup.procs the
// manager opened for it, between fork and exec.
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace ng::sandbox {

class DomainCgroup {
 public:
  // Creates the cgroup `name` (or takes it over, limits reset, when a
  // previous manager left it) with memory.max = memory_max_bytes (0: no
  // limit) and pids.max = pids_max.
  static Result<DomainCgroup> create(const std::string& name, uint64_t memory_max_bytes, uint64_t pids_max);

  DomainCgroup(DomainCgroup&&) noexcept = default;
  DomainCgroup& operator=(DomainCgroup&&) noexcept = default;
  ~DomainCgroup() = default;  // kept: remove() is the manager's call at shutdown

  // The open cgroup.procs files the child writes "0" to (async-signal-safe).
  const std::vector<int>& procs_fds() const { return procs_raw_; }
  Status set_memory_max(uint64_t bytes);
  // Removes the directories; fails while a process is still inside.
  Status remove();
  // "memory.max 256 MiB, pids.max 1 (cgroup v1: /sys/fs/cgroup/memory/...)".
  std::string describe() const;

 private:
  DomainCgroup() = default;
  std::vector<std::string> dirs_;  // one per hierarchy (v1) or one (v2)
  std::string memory_file_;        // memory.max or memory.limit_in_bytes
  std::vector<UniqueFd> procs_;
  std::vector<int> procs_raw_;
  uint64_t memory_max_ = 0, pids_max_ = 0;
  bool v2_ = false;
};

// "nicguard-<pair id, 16 hex digits>-<domain>": one per domain of a pair.
std::string domain_cgroup_name(uint64_t pair_id, const std::string& domain);
// The cgroups whose name starts with `prefix` beside this process's own, in
// every hierarchy.
std::vector<std::string> cgroups_named(const std::string& prefix);
// Removes the empty cgroups whose name starts with `prefix` beside this
// process's own, in every hierarchy (what a killed manager left); returns
// the directories removed, and appends to `errors` those still busy.
std::vector<std::string> remove_cgroups_named(const std::string& prefix, std::vector<std::string>& errors);

// In the child, before exec: joins every cgroup in fds. False if one refused.
bool join_cgroups(const std::vector<int>& fds);

// What the kernel holds for a running process: the limits of its memory and
// pids cgroups (nullopt: no such controller or "max"), read from /proc/PID/cgroup.
struct CgroupLimits {
  std::optional<uint64_t> memory_max;
  std::optional<uint64_t> pids_max;
  std::string memory_dir, pids_dir;
};
CgroupLimits cgroup_limits_of(pid_t pid);

}  // namespace ng::sandbox

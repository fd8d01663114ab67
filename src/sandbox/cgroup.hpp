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
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace ng::sandbox {

// Where a domain's cgroup goes for one controller: the directory above it,
// whether that is a cgroup v2 directory, and whether it is the v2 root.
struct CgroupParent {
  std::string dir;
  bool v2 = false;
  bool is_root = false;
};

class DomainCgroup {
 public:
  // Creates the cgroup `name` (or takes it over, limits reset, when a
  // previous manager left it) with memory.max = memory_max_bytes (0: no
  // limit) and pids.max = pids_max.
  static Result<DomainCgroup> create(const std::string& name, uint64_t memory_max_bytes, uint64_t pids_max);
  // What create() does once it knows the directories (from /proc/self), for
  // a manager whose pid is `self`: on v2 it moves the manager into the
  // parent's "manager" leaf if the manager is in the parent itself, enables
  // the controllers, then makes (or takes over) `name` and writes its
  // limits. Only files under the given directories are touched (the unit
  // tests run it on a fake tree).
  static Result<DomainCgroup> create_under(const std::map<std::string, CgroupParent>& parents,
                                           const std::string& name, uint64_t memory_max_bytes,
                                           uint64_t pids_max, pid_t self);

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

// cgroup v2: lets `parent`'s children have the memory and pids controllers
// (see DomainCgroup::create_under); the manager `self` moves into the
// "manager" leaf first if it is in `parent` itself. Only the processes in
// parent's own cgroup.procs count, not those in its children.
Status delegate_v2(const std::string& parent, bool is_root, pid_t self);
// cgroup v2: takes the memory and pids controllers back from `parent`'s
// children (writes "-memory -pids", those enabled, to its
// cgroup.subtree_control), so that a process can be put into `parent`
// itself again: systemd puts the next ExecStartPre and ExecStart of a
// delegated unit there, which fails with EBUSY (status 219/CGROUP) while
// the controllers are enabled. The domain cgroups below (leaves) lose their
// memory.max and pids.max until the next manager enables them again.
// Returns the controllers it disabled (none: nothing was enabled).
Result<std::vector<std::string>> release_controllers_v2(const std::string& parent);
// The cgroup v2 directory this manager delegates from: the parent of the
// "manager" leaf it runs in, where memory and pids are v2 controllers;
// nullopt otherwise (cgroup v1 controllers, or not in a leaf).
std::optional<std::string> delegated_v2_dir();

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

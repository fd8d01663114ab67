#pragma once
// The driver domain: owns one NIC inside its own network namespace, serves any
// number of frontends over shared-memory rings, and moves frames between the
// NIC and the frontends whose role is active. Received frames are delivered by
// destination MAC (broadcast and multicast to every active frontend); frames
// sent for a frontend must carry that frontend's own source MAC.
#include <cstdint>
#include <string>

#include "common/priority.hpp"
#include "driver/vm_domain.hpp"

namespace ng::driver {

struct DriverOptions {
  std::string name;
  std::string netns;   // path of the namespace holding the NIC; empty: stay put
  std::string nic;
  std::string socket;  // Unix SOCK_SEQPACKET path frontends connect to
  std::string stats;   // counters file
  uint64_t memory_limit_mb = 256;
  // Longest gap between heartbeats while idle. A busy loop beats on every
  // pass; an idle one only proves it is alive, and each wake-up costs CPU
  // (1 ms cost an idle spare 2% of a core on the 2-core lab machine).
  uint32_t heartbeat_us = 10000;
  uint32_t spin_us = 50;  // busy-poll this long after work before sleeping
  std::string inject;     // fault-injection control file; empty: none
  // Path probes to the pair's other domain (driver/path_probe.hpp): one
  // this often, 0 for none; the pair's id keeps other pairs' probes apart.
  uint32_t path_probe_us = 0;
  uint64_t pair_id = 0;
  ServePriority serve;  // scheduling once serving
  bool sandbox = true;
  // The unprivileged uid the sandbox takes, in a user namespace of its own
  // with an empty root (sandbox::Policy::uid); 0: stays root, in the
  // host's filesystem. Process domains only: a driver VM's QEMU is its child.
  uint32_t uid = 0;
  // A driver VM drives the NIC (driver/vm_domain.hpp); off: the NIC is ours.
  VmDomainOptions vm;
};

// Runs until SIGTERM/SIGINT or a fatal NIC error; returns the exit status.
int run_driver(const DriverOptions& options);

}  // namespace ng::driver

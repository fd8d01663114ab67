#pragma once
// Domains start at a low priority and take their serving priority once set
// up (see the manager's exec_child): a restart must not slow the data path.
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "common/error.hpp"

namespace ng {

inline constexpr int kKeepNice = 100;  // outside -20..19: leave the priority as it is

// How a driver domain or frontend runs once it serves. A realtime priority
// (SCHED_FIFO) keeps the data path's wake-ups ahead of everything else on a
// busy host: on 2 cores under load, normal scheduling delayed frames by
// 3-10 ms, which is the whole failover budget.
struct ServePriority {
  int nice = kKeepNice;
  int realtime = 0;  // 0: normal scheduling; 1..99: SCHED_FIFO at this priority
};

// Under normal scheduling the data path asks for the shortest time slice
// (Linux 6.12+; older kernels ignore the request). A short slice gives a
// waking task an early deadline, so a frame's wake-up preempts the task on
// the CPU instead of waiting for its slice to end; the share of CPU time
// stays fair. On 2 cores under load it cut the longest gap per 400 ms of a
// 10 kpps stream from p50 3.0 to 0.9-1.0 ms.
inline constexpr uint64_t kDataPathSliceNs = 100'000;

struct SchedAttr {  // the kernel's struct sched_attr (glibc 2.36 has no wrapper)
  uint32_t size = sizeof(SchedAttr);
  uint32_t policy = SCHED_OTHER;
  uint64_t flags = 0;
  int32_t nice = 0;
  uint32_t priority = 0;
  uint64_t runtime = 0;
  uint64_t deadline = 0;
  uint64_t period = 0;
};

// A kernel without custom slices ignores or refuses the request; either way
// the loop runs as it would have, so the answer is not checked.
inline void ask_short_slice() {
  SchedAttr a;
  a.nice = ::getpriority(PRIO_PROCESS, 0);
  a.runtime = kDataPathSliceNs;
  (void)::syscall(SYS_sched_setattr, 0, &a, 0);
}

// A realtime loop must not busy-poll: it would take the CPU from everything
// else until the kernel's realtime throttling stops the whole data path.
inline uint32_t spin_us_at(int realtime, uint32_t spin_us) { return realtime > 0 ? 0 : spin_us; }

// Returns the realtime priority in effect (0: normal scheduling).
inline Result<int> serve_at(const ServePriority& p) {
  if (p.nice != kKeepNice && ::setpriority(PRIO_PROCESS, 0, p.nice) != 0) {
    return fail_errno("setting nice {}", p.nice);
  }
  if (p.realtime <= 0) {
    ask_short_slice();
    return 0;
  }
  sched_param param{};
  param.sched_priority = p.realtime;
  if (::sched_setscheduler(0, SCHED_FIFO, &param) != 0) {
    return fail_errno(
        "taking realtime priority SCHED_FIFO {} (the data path stays on normal scheduling and "
        "failovers may take milliseconds longer on a busy host; run as root with CAP_SYS_NICE, "
        "or set [manager] realtime_priority = 0)",
        p.realtime);
  }
  return p.realtime;
}

}  // namespace ng

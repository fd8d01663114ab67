#pragma once
// How much of a driver domain's CPU time was spent in its own code.
//
// The kernel charges its interrupt and softirq work to whichever task is on
// the CPU (this kernel has no IRQ time accounting), and on a host moving
// full-speed TCP through veths that made healthy drivers look as if they
// ran 3-10 ms without a beat. A spinning loop runs in user mode; the
// kernel's work does not. So while a beat is awaited, a sampling perf event
// (task clock, every 250 us of the domain's CPU time, user mode only)
// counts the domain's user-mode CPU time: 1 ms of it without one beat is a
// spin, which no pass of the packet loop comes near (it beats every 8 frames
// it copies; `kick_user_max_us` in the metrics shows the margin).
#include <sys/types.h>

#include <cstdint>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace ng::frontend {

class UserCpuSampler {
 public:
  static constexpr uint64_t kPeriodNs = 250'000;

  UserCpuSampler() = default;
  // Starts counting now. Fails where perf events are not available (no
  // CAP_PERFMON, perf_event_paranoid, a kernel without them); the watchdog
  // then judges on the total CPU time alone.
  static Result<UserCpuSampler> start(pid_t pid);

  // The kernel switches its per-task event hooks on when the first such
  // event is made and waits for an RCU grace period to do so: 12 ms was
  // seen, right when a hang must be judged. It switches them off a second
  // after the last one is gone. One disabled event on the caller itself,
  // held for as long as it may sample, keeps them on; it costs nothing
  // measurable.
  static Result<UniqueFd> keep_ready();

  bool running() const { return buffer_.valid(); }
  // User-mode CPU time since start, in steps of the sampling period.
  uint64_t user_ns() const;

 private:
  UniqueFd event_;
  Mapping buffer_;
};

}  // namespace ng::frontend

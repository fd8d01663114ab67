#pragma once
// The frontend's hang and stall detectors for one driver domain.
//
// Hang: the driver advances a heartbeat word on every pass of its packet
// loop, but an idle driver sleeps and beats only every heartbeat period, so
// silence alone proves nothing. When the beat has been silent for half the
// timeout the frontend kicks the driver (asks for a beat); if the beat stays
// silent for the other half, the driver's scheduler state decides:
//   exiting (killed, tearing down)    -> crash, already when the beat is
//                                        asked for: its sockets hang up only
//                                        after its memory is torn down, which
//                                        takes milliseconds
//   stopped (SIGSTOP)                 -> hang, already when the beat is
//                                        asked for
//   in a tracing stop                 -> hang
//   asleep although it was kicked     -> hang (blocked somewhere else),
//                                        unless in a timed sleep (a slow
//                                        driver that sleeps in its loop):
//                                        a hang at the kernel-call limit
//   a sixth of the timeout of CPU in
//   its own code (user mode) since the
//   kick, without one beat            -> hang at once, before the other half
//                                        (spinning: one pass of the loop
//                                        takes microseconds of it)
//   on a CPU for a whole timeout since
//   the kick, without one beat        -> hang (spinning: one pass of the
//                                        loop takes well under a millisecond),
//                                        unless the beat's low bit says it is
//                                        inside a NIC call (the kernel's
//                                        work, bounded): judged as starved.
//                                        Four timeouts where the user-mode
//                                        time is known: then this catches
//                                        only a loop inside the kernel, and
//                                        the interrupt work a busy host
//                                        charges to whoever runs cannot
//                                        reach it.
//   runnable but given no CPU         -> never a hang by itself: the machine
//                                        is overloaded, and failing over to a
//                                        domain on the same CPUs would not
//                                        help; hang only after the (long)
//                                        starvation limit.
//   inside a NIC or control call      -> the kernel's work: a hang only after
//   (the beat's low bit), or in 'D'      the kernel-call limit, and only if it
//                                        kept the CPU for half of the time
//                                        (else the starvation limit).
// That is what keeps a few-millisecond timeout free of false alarms on a
// loaded 2-core machine.
//
// Stall: the beat goes on, yet frames posted on the TX ring are not taken.
// The evidence is the driver's own pass counter: once two passes of its
// packet loop have begun since the frames were seen waiting, and the driver
// neither took them nor said the NIC refused them (tx_busy_pass), it is
// skipping them: a stall within about a millisecond. A NIC that keeps
// refusing them is a stall at the stall timeout (a transmit hang); beats
// without passes, or no acknowledgement of the active role, only at the
// starvation limit. Times are those the frontend itself was watching.
#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>

namespace ng::frontend {

struct ProcSample {
  bool alive = false;
  char state = '?';      // /proc/PID/stat state letter
  uint64_t cpu_ns = 0;   // time on a CPU, /proc/PID/schedstat
  bool exiting = false;  // killed and tearing down (PF_EXITING)
  bool timed_sleep = false;  // asleep in nanosleep or clock_nanosleep
};

// Reads the driver domain's scheduler state; alive=false once it is gone.
ProcSample sample_process(pid_t pid);
// Where a hung domain's thread is, for the verdict's detail: the syscall it
// is in ("running" in its own code) and the kernel function it waits in.
std::string where_is(pid_t pid);

struct WatchdogConfig {
  uint64_t hang_timeout_ns = 6'000'000;
  // User-mode CPU without a beat that is a spin; 0: a sixth of the timeout.
  uint64_t spin_user_ns = 0;
  uint64_t stall_timeout_ns = 100'000'000;
  uint64_t kernel_limit_ns = 200'000'000;  // one NIC or control call, or a 'D' wait
  uint64_t starve_limit_ns = 2'000'000'000;  // runnable but given no CPU
  // A stall judged on passes still needs this much watched time, so that a
  // frame published just before a pass began is not taken for skipped.
  uint64_t stall_min_ns = 1'000'000;
};

// crash: silent because it is dying (killed, still releasing its memory).
enum class Verdict { ok, demand_beat, hang, stall, crash };

// What the frontend read from the region header and its TX ring. Read
// `passes` before refreshing the TX ring's done index: the driver advances
// done in one pass and passes at the start of the next.
struct Seen {
  uint64_t heartbeat = 0;
  uint32_t tx_done = 0;
  uint32_t tx_in_flight = 0;
  uint64_t passes = 0;
  uint64_t tx_busy_pass = 0;
  bool passes_count = false;  // the driver acknowledged it serves this ring
  // CPU time in its own code since the beat was asked for (UserCpuSampler);
  // unknown where perf events are not available.
  bool user_known = false;
  uint64_t user_ns = 0;
  // Another frontend samples it: the spin is watched there, so the
  // total-CPU rule here is the one for a known user-mode time.
  bool spin_watched_elsewhere = false;
};

// The frontend's own clock for judging a domain: the time it was itself
// scheduled and watching. A wake-up later than planned by more than the
// slack (the frontend was given no CPU) counts only the plan and the slack,
// so a starved frontend does not blame its domain for the time it missed.
class WatchClock {
 public:
  static constexpr uint64_t kSlackNs = 2'000'000;
  void plan_sleep(uint64_t ns) { planned_ns_ = ns; }
  uint64_t tick(uint64_t now) {
    uint64_t gap = now > last_ns_ ? now - last_ns_ : 0;
    if (last_ns_ != 0) watched_ns_ += std::min(gap, planned_ns_ + kSlackNs);
    last_ns_ = std::max(now, last_ns_);
    planned_ns_ = 0;
    return watched_ns_;
  }
  uint64_t now() const { return watched_ns_; }

 private:
  uint64_t last_ns_ = 0;
  uint64_t planned_ns_ = 0;
  uint64_t watched_ns_ = 1;  // never 0: callers use 0 for "never"
};

class Watchdog {
 public:
  Watchdog() = default;
  explicit Watchdog(WatchdogConfig c) : cfg_(c) {}

  void reset(uint64_t now, uint64_t heartbeat, uint32_t tx_done);
  // New timeouts (a reload) for the watch in progress: a suspicion already
  // raised is judged on them from now on.
  void retime(uint64_t hang_timeout_ns, uint64_t stall_timeout_ns) {
    cfg_.hang_timeout_ns = hang_timeout_ns;
    cfg_.stall_timeout_ns = stall_timeout_ns;
  }
  // One observation of the domain. `sample` is called only while a hang is
  // suspected. After a hang or stall verdict, detail() says why.
  Verdict check(uint64_t now, const Seen& seen, const std::function<ProcSample()>& sample);
  Verdict check(uint64_t now, uint64_t heartbeat, uint32_t tx_done, uint32_t tx_in_flight,
                const std::function<ProcSample()>& sample) {
    return check(now, Seen{heartbeat, tx_done, tx_in_flight}, sample);
  }

  // How long the failure went unnoticed at the last verdict.
  uint64_t silent_ns() const { return silent_ns_; }
  const std::string& detail() const { return detail_; }
  // While a beat was asked for, the frontend must look again soon.
  bool suspecting() const { return demand_ns_ != 0; }
  // A suspect seen runnable but given no CPU is sampled again only after a
  // growing pause (up to kMaxResampleNs): until then, 0 if none.
  uint64_t resample_at() const { return demand_ns_ != 0 ? resample_at_ns_ : 0; }
  static constexpr uint64_t kMaxResampleNs = 16'000'000;

 private:
  Verdict check_hang(uint64_t now, const Seen& seen, const std::function<ProcSample()>& sample);
  Verdict check_stall(uint64_t now, const Seen& seen);
  Verdict stall(const Seen& seen, uint64_t stuck_ns, const std::string& why);
  Verdict dying(uint64_t now, const ProcSample& s);
  Verdict stopped(uint64_t now);
  void watch_time(uint64_t now);
  void pace_samples(uint64_t now, const ProcSample& s);

  WatchdogConfig cfg_;
  uint64_t beat_ = 0;
  uint64_t beat_ns_ = 0;    // when beat_ last changed
  uint64_t demand_ns_ = 0;  // when a beat was asked for; 0: not asked
  uint64_t cpu_at_demand_ns_ = 0;
  uint64_t last_cpu_ns_ = 0;       // at the last sample while suspected
  uint64_t resample_at_ns_ = 0;
  uint64_t resample_pause_ns_ = 0;
  uint32_t done_ = 0;
  uint64_t last_check_ns_ = 0;
  // Time the frontend was watching: a gap between two checks (the frontend
  // itself was not scheduled) counts only up to kMaxGapNs, so a frontend
  // starved for 100 ms does not blame the domain for them.
  uint64_t watched_ns_ = 0;
  uint64_t stuck_watched_ns_ = 0;  // watched_ns_ when the TX ring last made progress or was empty
  uint64_t stuck_pass_ = 0;        // the driver's pass counter then
  bool stuck_pass_known_ = false;
  uint64_t silent_ns_ = 0;
  std::string detail_;
};

}  // namespace ng::frontend

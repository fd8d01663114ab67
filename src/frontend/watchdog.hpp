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
//   stopped (SIGSTOP, traced)         -> hang
//   asleep although it was kicked     -> hang (blocked somewhere else)
//   on a CPU for 3/4 of the time since
//   the kick, without one beat        -> hang (spinning: one pass of the
//                                        loop takes well under a millisecond),
//                                        unless the beat's low bit says it is
//                                        inside a NIC call (the kernel's
//                                        work, bounded): judged as starved
//   runnable but given no CPU         -> not yet: the machine is overloaded,
//                                        and failing over to a domain on the
//                                        same CPUs would not help; hang only
//                                        after the starvation limit.
// That is what keeps a few-millisecond timeout free of false alarms on a
// loaded 2-core machine.
//
// Stall: the beat goes on, yet frames posted on the TX ring are not finished
// within the stall timeout.
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

namespace ng::frontend {

struct ProcSample {
  bool alive = false;
  char state = '?';      // /proc/PID/stat state letter
  uint64_t cpu_ns = 0;   // time on a CPU, /proc/PID/schedstat
  bool exiting = false;  // killed and tearing down (PF_EXITING)
};

// Reads the driver domain's scheduler state; alive=false once it is gone.
ProcSample sample_process(pid_t pid);

struct WatchdogConfig {
  uint64_t hang_timeout_ns = 6'000'000;
  uint64_t stall_timeout_ns = 100'000'000;
  uint64_t starve_limit_ns = 200'000'000;
};

// crash: silent because it is dying (killed, still releasing its memory).
enum class Verdict { ok, demand_beat, hang, stall, crash };

class Watchdog {
 public:
  Watchdog() = default;
  explicit Watchdog(WatchdogConfig c) : cfg_(c) {}

  void reset(uint64_t now, uint64_t heartbeat, uint32_t tx_done);
  // One observation of the domain. `sample` is called only while a hang is
  // suspected. After a hang or stall verdict, detail() says why.
  Verdict check(uint64_t now, uint64_t heartbeat, uint32_t tx_done, uint32_t tx_in_flight,
                const std::function<ProcSample()>& sample);

  // How long the failure went unnoticed at the last verdict.
  uint64_t silent_ns() const { return silent_ns_; }
  const std::string& detail() const { return detail_; }
  // While a beat was asked for, the frontend must look again soon.
  bool suspecting() const { return demand_ns_ != 0; }

 private:
  Verdict check_hang(uint64_t now, const std::function<ProcSample()>& sample);
  Verdict dying(uint64_t now, const ProcSample& s);

  WatchdogConfig cfg_;
  uint64_t beat_ = 0;
  uint64_t beat_ns_ = 0;    // when beat_ last changed
  uint64_t demand_ns_ = 0;  // when a beat was asked for; 0: not asked
  uint64_t cpu_at_demand_ns_ = 0;
  uint32_t done_ = 0;
  uint64_t done_ns_ = 0;  // when the TX ring last made progress or was empty
  uint64_t silent_ns_ = 0;
  std::string detail_;
};

}  // namespace ng::frontend

#include "frontend/watchdog.hpp"

#include <sys/syscall.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace ng::frontend {
namespace {

// `now` may predate a reset done later in the same pass of the caller.
uint64_t since(uint64_t now, uint64_t then) { return now > then ? now - then : 0; }

}  // namespace

ProcSample sample_process(pid_t pid) {
  ProcSample s;
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(stat, line)) return s;
  // The command name may hold spaces and parentheses: the state follows the last ')'.
  auto close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return s;
  s.state = line[close + 2];
  s.alive = s.state != 'Z' && s.state != 'X';
  // After the state: ppid pgrp session tty_nr tpgid flags.
  std::istringstream rest(line.substr(close + 3));
  std::string skip;
  unsigned long flags = 0;
  rest >> skip >> skip >> skip >> skip >> skip >> flags;
  constexpr unsigned long kPfExiting = 0x4;
  s.exiting = (flags & kPfExiting) != 0;
  std::ifstream sched(fmt::format("/proc/{}/schedstat", pid));
  sched >> s.cpu_ns;
  if (s.state == 'S') {
    std::ifstream sys(fmt::format("/proc/{}/syscall", pid));
    std::string nr;
    sys >> nr;
    // It woke between the two reads (a timed sleep that just ended): it
    // runs, and must not be judged as asleep although kicked.
    if (nr == "running") s.state = 'R';
    long n = std::strtol(nr.c_str(), nullptr, 10);
    s.timed_sleep = !nr.empty() && nr != "running" && (n == SYS_nanosleep || n == SYS_clock_nanosleep);
  }
  return s;
}

constexpr uint64_t kMaxGapNs = 2'000'000;

std::string where_is(pid_t pid) {
  std::ifstream sys(fmt::format("/proc/{}/syscall", pid));
  std::string call;
  sys >> call;
  std::ifstream wchan(fmt::format("/proc/{}/wchan", pid));
  std::string in;
  wchan >> in;
  return fmt::format("syscall {}, waiting in {}", call.empty() ? "?" : call, in.empty() || in == "0" ? "-" : in);
}

void Watchdog::reset(uint64_t now, uint64_t heartbeat, uint32_t tx_done) {
  beat_ = heartbeat;
  beat_ns_ = now;
  demand_ns_ = 0;
  done_ = tx_done;
  last_check_ns_ = now;
  stuck_watched_ns_ = watched_ns_;
  stuck_pass_known_ = false;
}

void Watchdog::watch_time(uint64_t now) {
  watched_ns_ += std::min(since(now, last_check_ns_), kMaxGapNs);
  last_check_ns_ = std::max(now, last_check_ns_);
}

Verdict Watchdog::check(uint64_t now, const Seen& seen, const std::function<ProcSample()>& sample) {
  watch_time(now);
  if (seen.heartbeat != beat_) {
    beat_ = seen.heartbeat;
    beat_ns_ = now;
    demand_ns_ = 0;
  }
  if (Verdict v = check_hang(now, seen, sample); v != Verdict::ok) return v;
  return check_stall(now, seen);
}

Verdict Watchdog::check_stall(uint64_t now, const Seen& seen) {
  if (seen.tx_in_flight == 0 || seen.tx_done != done_) {
    done_ = seen.tx_done;
    stuck_watched_ns_ = watched_ns_;
    stuck_pass_known_ = false;
    return Verdict::ok;
  }
  if (seen.passes_count && !stuck_pass_known_) {
    // Read after the waiting frames were published: the pass after this
    // one begins with them in view.
    stuck_pass_ = seen.passes;
    stuck_pass_known_ = true;
  }
  // Only a domain that is seen beating can be stalled; a silent one is the
  // hang check's to judge (it knows starvation from failure).
  if (since(now, beat_ns_) >= cfg_.hang_timeout_ns / 2) return Verdict::ok;
  uint64_t stuck_ns = watched_ns_ - stuck_watched_ns_;
  if (!stuck_pass_known_ || !seen.passes_count) {
    // Not yet acknowledged as active (the handshake watch covers that), or
    // no pass to go by: only a very long wait is a stall.
    return stuck_ns >= cfg_.starve_limit_ns ? stall(seen, stuck_ns, "while the heartbeat went on") : Verdict::ok;
  }
  uint64_t passes = seen.passes - stuck_pass_;
  if (passes < 2) {
    // Beats without passes: one pass is taking long (many frontends, the
    // host's load); the hang check judges a pass that never ends.
    return stuck_ns >= cfg_.starve_limit_ns ? stall(seen, stuck_ns, "and the driver's loop made no pass")
                                             : Verdict::ok;
  }
  if (seen.tx_busy_pass + 2 >= seen.passes) {
    // The NIC refused them in a recent pass: backpressure, unless it lasts
    // as long as a NIC's transmit watchdog would wait.
    return stuck_ns >= cfg_.stall_timeout_ns ? stall(seen, stuck_ns, "with the NIC refusing them") : Verdict::ok;
  }
  if (stuck_ns < cfg_.stall_min_ns) return Verdict::ok;
  return stall(seen, stuck_ns, fmt::format("for {} passes of the driver's loop", passes));
}

Verdict Watchdog::stall(const Seen& seen, uint64_t stuck_ns, const std::string& why) {
  silent_ns_ = stuck_ns;
  detail_ = fmt::format("{} TX frames not taken in {:.1f} ms {}", seen.tx_in_flight,
                        static_cast<double>(stuck_ns) / 1e6, why);
  return Verdict::stall;
}

Verdict Watchdog::dying(uint64_t now, const ProcSample& s) {
  silent_ns_ = since(now, beat_ns_);
  detail_ = fmt::format("no heartbeat for {:.1f} ms and the process is {}",
                        static_cast<double>(silent_ns_) / 1e6, s.alive ? "exiting" : "gone");
  return Verdict::crash;
}

Verdict Watchdog::stopped(uint64_t now) {
  silent_ns_ = since(now, beat_ns_);
  detail_ = fmt::format("no heartbeat for {:.1f} ms: the domain is stopped", static_cast<double>(silent_ns_) / 1e6);
  return Verdict::hang;
}

// A suspect that was given no CPU since the last look cannot have shown
// anything new: looking again every millisecond only takes more CPU from it.
// With 64 frontends at a realtime priority above their domain's, that
// looking starved the domain for the 2 s it takes to call it a hang. The
// pause doubles while it stays starved and ends when it runs.
void Watchdog::pace_samples(uint64_t now, const ProcSample& s) {
  bool starved = s.state == 'R' && s.cpu_ns == last_cpu_ns_;
  last_cpu_ns_ = s.cpu_ns;
  resample_pause_ns_ = !starved ? 0
                       : std::min(kMaxResampleNs, std::max<uint64_t>(2 * resample_pause_ns_, 1'000'000));
  resample_at_ns_ = now + resample_pause_ns_;
}

Verdict Watchdog::check_hang(uint64_t now, const Seen& seen, const std::function<ProcSample()>& sample) {
  uint64_t half = cfg_.hang_timeout_ns / 2;
  // A domain with frames waiting for it passes, and beats, well within a
  // quarter of the timeout; one that does not is asked at once, and the
  // time in its own code is watched from then on. Asking costs a kick and
  // a sampler; the verdicts below are the same either way.
  uint64_t ask_after = seen.tx_in_flight != 0 ? cfg_.hang_timeout_ns / 4 : half;
  if (since(now, beat_ns_) < (demand_ns_ == 0 ? ask_after : half)) return Verdict::ok;
  if (demand_ns_ == 0) {
    ProcSample s = sample();
    // Killed from outside: the hang-up comes only after the kernel has torn
    // down the whole address space, milliseconds for a domain with rings.
    if (!s.alive || s.exiting) return dying(now, s);
    // Stopped by a signal (SIGSTOP), it cannot answer until someone resumes
    // it: no kick is needed to tell. A tracing stop ('t') is left to the
    // kick: a debugger stops a healthy domain briefly at every event.
    if (s.state == 'T') return stopped(now);
    demand_ns_ = now;
    cpu_at_demand_ns_ = last_cpu_ns_ = s.cpu_ns;
    resample_at_ns_ = resample_pause_ns_ = 0;
    return Verdict::demand_beat;
  }
  uint64_t asked = since(now, demand_ns_);
  // Its own code, not the kernel's: no pass of the loop and no NIC call
  // spends milliseconds of user-mode CPU between two beats. Judged as soon
  // as it is seen, however long the kick is ago.
  uint64_t spin_user = cfg_.spin_user_ns != 0 ? cfg_.spin_user_ns : cfg_.hang_timeout_ns / 6;
  bool spinning = seen.user_known && seen.user_ns >= spin_user;
  if (asked < half && !spinning) return Verdict::ok;
  if (now < resample_at_ns_ && !spinning) return Verdict::ok;
  ProcSample s = sample();
  pace_samples(now, s);
  silent_ns_ = since(now, beat_ns_);
  double ms = static_cast<double>(silent_ns_) / 1e6;
  if (!s.alive || s.exiting) return dying(now, s);
  uint64_t ran = s.cpu_ns - cpu_at_demand_ns_;
  double ran_ms = static_cast<double>(ran) / 1e6;
  if (spinning) {
    detail_ = fmt::format("no heartbeat for {:.1f} ms while running {:.1f} ms in its own code ({:.1f} ms on a CPU)",
                          ms, static_cast<double>(seen.user_ns) / 1e6, ran_ms);
    return Verdict::hang;
  }
  if (s.state == 'T' || s.state == 't') return stopped(now);
  // A NIC call can legitimately hold the CPU for milliseconds: a batch sent
  // through a veth runs the receiving stack in the sender's time (4.7 ms
  // seen on a 2-core VM for a spare's first pass after a failover, 8 ms
  // under a parallel compile), and so can control work at a connection
  // storm. The driver says so in the heartbeat's low bit; such a call, like
  // an uninterruptible wait, is the kernel's work and judged only at the
  // kernel-call limit. Asleep is different: the driver's NIC calls never
  // block, so a kicked domain asleep anywhere is hung.
  bool in_kernel = (beat_ & 1) != 0 || s.state == 'D';
  // A timed sleep ends by itself: the kick cannot wake it, so only a sleep
  // that goes on for the kernel-call limit is a hang.
  if (s.timed_sleep) {
    if (silent_ns_ < cfg_.kernel_limit_ns) return Verdict::ok;
    detail_ = fmt::format("no heartbeat for {:.1f} ms, asleep in a timed sleep", ms);
    return Verdict::hang;
  }
  if (s.state != 'R' && s.state != 'D') {
    detail_ = fmt::format("no heartbeat for {:.1f} ms: asleep (state {}) although kicked", ms,
                          s.state);
    return Verdict::hang;
  }
  // Outside one, a whole timeout of CPU since the kick without a beat is a
  // spin (one pass of the loop takes well under a millisecond), however
  // long a loaded host took to give it that CPU (a spinner sharing its core
  // with others). Not less: the interrupt work a busy host charges to
  // whoever runs made a healthy driver look like it ran 3-10 ms unbeaten.
  // Where user-mode time is known, a spin in the driver's code was judged
  // above, and this is left to catch a loop inside the kernel, judged like
  // any kernel work at the kernel-call limit: four timeouts were not
  // enough, a 32-app start-up charged 31 ms of softirq work to a healthy
  // driver between two beats.
  uint64_t spin_cpu = seen.user_known || seen.spin_watched_elsewhere ? cfg_.kernel_limit_ns : cfg_.hang_timeout_ns;
  if (ran >= spin_cpu && !in_kernel) {
    detail_ = fmt::format("no heartbeat for {:.1f} ms while running {:.1f} ms on a CPU", ms, ran_ms);
    return Verdict::hang;
  }
  // Inside one, only a call that keeps the CPU (a livelock in the kernel)
  // is judged early; a domain waiting for a CPU is the host's overload.
  if (in_kernel && silent_ns_ >= cfg_.kernel_limit_ns && ran >= asked / 2) {
    detail_ = fmt::format("no heartbeat for {:.1f} ms inside one NIC call, {:.1f} ms of it on a CPU (state {})",
                          ms, ran_ms, s.state);
    return Verdict::hang;
  }
  if (silent_ns_ >= cfg_.starve_limit_ns) {
    detail_ = fmt::format("no heartbeat for {:.1f} ms, runnable but given no CPU ({:.1f} ms since the kick)",
                          ms, ran_ms);
    return Verdict::hang;
  }
  return Verdict::ok;
}

}  // namespace ng::frontend

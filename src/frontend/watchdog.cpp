#include "frontend/watchdog.hpp"

#include <fmt/format.h>

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
  return s;
}

void Watchdog::reset(uint64_t now, uint64_t heartbeat, uint32_t tx_done) {
  beat_ = heartbeat;
  beat_ns_ = now;
  demand_ns_ = 0;
  done_ = tx_done;
  done_ns_ = now;
}

Verdict Watchdog::check(uint64_t now, uint64_t heartbeat, uint32_t tx_done, uint32_t tx_in_flight,
                        const std::function<ProcSample()>& sample) {
  if (heartbeat != beat_) {
    beat_ = heartbeat;
    beat_ns_ = now;
    demand_ns_ = 0;
  }
  if (tx_in_flight == 0 || tx_done != done_) {
    done_ = tx_done;
    done_ns_ = now;
  }
  if (Verdict v = check_hang(now, sample); v != Verdict::ok) return v;
  // Only a domain that is seen beating can be stalled; a silent one is the
  // hang check's to judge (it knows starvation from failure).
  bool beating = since(now, beat_ns_) < cfg_.hang_timeout_ns / 2;
  if (beating && since(now, done_ns_) >= cfg_.stall_timeout_ns) {
    silent_ns_ = since(now, done_ns_);
    detail_ = fmt::format("{} TX frames not taken for {:.1f} ms while the heartbeat went on",
                          tx_in_flight, static_cast<double>(silent_ns_) / 1e6);
    return Verdict::stall;
  }
  return Verdict::ok;
}

Verdict Watchdog::dying(uint64_t now, const ProcSample& s) {
  silent_ns_ = since(now, beat_ns_);
  detail_ = fmt::format("no heartbeat for {:.1f} ms and the process is {}",
                        static_cast<double>(silent_ns_) / 1e6, s.alive ? "exiting" : "gone");
  return Verdict::crash;
}

Verdict Watchdog::check_hang(uint64_t now, const std::function<ProcSample()>& sample) {
  uint64_t half = cfg_.hang_timeout_ns / 2;
  if (since(now, beat_ns_) < half) return Verdict::ok;
  if (demand_ns_ == 0) {
    ProcSample s = sample();
    // Killed from outside: the hang-up comes only after the kernel has torn
    // down the whole address space, milliseconds for a domain with rings.
    if (!s.alive || s.exiting) return dying(now, s);
    demand_ns_ = now;
    cpu_at_demand_ns_ = s.cpu_ns;
    return Verdict::demand_beat;
  }
  uint64_t asked = since(now, demand_ns_);
  if (asked < half) return Verdict::ok;
  ProcSample s = sample();
  silent_ns_ = since(now, beat_ns_);
  double ms = static_cast<double>(silent_ns_) / 1e6;
  if (!s.alive || s.exiting) return dying(now, s);
  if (s.state == 'T' || s.state == 't') {
    detail_ = fmt::format("no heartbeat for {:.1f} ms: the domain is stopped", ms);
    return Verdict::hang;
  }
  if (s.state != 'R') {
    detail_ = fmt::format("no heartbeat for {:.1f} ms: asleep (state {}) although kicked", ms,
                          s.state);
    return Verdict::hang;
  }
  uint64_t ran = s.cpu_ns - cpu_at_demand_ns_;
  // A NIC call can legitimately hold the CPU for milliseconds: a batch sent
  // through a veth runs the receiving stack in the sender's time (4.7 ms
  // seen on a 2-core VM for a spare's first pass after a failover, 8 ms
  // under a parallel compile). The driver says so in the heartbeat's low
  // bit; such a call is judged like starvation. Outside one, most of the
  // time since the kick spent on a CPU without a beat is a spin.
  bool in_nic_call = (beat_ & 1) != 0;
  if (ran >= asked / 4 * 3 && !in_nic_call) {
    detail_ = fmt::format("no heartbeat for {:.1f} ms while running {:.1f} ms on a CPU", ms,
                          static_cast<double>(ran) / 1e6);
    return Verdict::hang;
  }
  if (silent_ns_ >= cfg_.starve_limit_ns) {
    detail_ = in_nic_call ? fmt::format("no heartbeat for {:.1f} ms inside one NIC call", ms)
                          : fmt::format("no heartbeat for {:.1f} ms, runnable but given no CPU", ms);
    return Verdict::hang;
  }
  return Verdict::ok;
}

}  // namespace ng::frontend

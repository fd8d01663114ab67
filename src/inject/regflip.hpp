#pragma once
// Software-implemented fault injection in the manner of the classic SWIFI
// work: stop one thread of a running process at a random moment with ptrace,
// flip one random bit of one general-purpose register, let it go. What follows
// (a crash, a hang, wrong frames, or nothing) is what nicguard must survive.
//
// The choice of thread, moment, register and bit comes from a 64-bit seed
// through a PRNG written out here (splitmix64), not the standard library's
// distributions, so that a seed names the same fault on every machine and
// toolchain, given the same number of threads.
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace ng::inject {

// splitmix64 (Steele, Lea and Flood, 2014): fully specified integer
// arithmetic, so a seed draws the same numbers on every machine and libc.
inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

struct RegflipPlan {
  pid_t tid = 0;          // from /proc/PID/task, sorted ascending, index = draw % count
  uint32_t delay_us = 0;  // wait this long before attaching, in [0, max_delay_us)
  int reg = 0;            // index into regflip_registers()
  int bit = 0;            // 0..63
  // "tid 1234 rip bit 17 after 3210 us"
  std::string describe() const;
};

// A thread caught in a blocking syscall stops with rax = -ERESTART* and rip
// just past the syscall instruction; on resuming, the kernel restarts the call
// by moving rip back 2 bytes, so a flipped rip there lands at after - 2, and a
// flipped rax either still restarts or returns early with a garbage result.
struct RegflipResult {
  RegflipPlan plan;
  uint64_t before = 0, after = 0;  // the register's value, before and after the flip
  uint64_t rip = 0;                // where the thread was stopped (before the flip)
  uint64_t flipped_mono_ns = 0;    // CLOCK_MONOTONIC when the flipped registers were written back
};

// The registers a flip may hit: rax rbx rcx rdx rsi rdi rbp rsp r8..r15 rip
// (x86-64 names; the list and the plans are the same on every architecture).
const std::vector<std::string_view>& regflip_registers();

// Pure: the choice for `seed` among `tids`, in any order (sorted inside).
// Same seed and same thread count give the same choice. With no tids, tid is 0.
RegflipPlan plan_regflip(uint64_t seed, std::vector<pid_t> tids, uint32_t max_delay_us = 10000);

// Lists /proc/PID/task and plans; fails if the process is gone.
Result<RegflipPlan> plan_regflip_for(pid_t pid, uint64_t seed, uint32_t max_delay_us = 10000);

// Sleeps plan.delay_us, seizes and interrupts the thread, waits (at most 1 s)
// for it to stop, flips the bit and detaches, on error paths too. Needs root
// or CAP_SYS_PTRACE; x86-64 only (elsewhere it fails saying so).
Result<RegflipResult> apply_regflip(const RegflipPlan& plan);

}  // namespace ng::inject

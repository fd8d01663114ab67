#include "driver/crash.hpp"

#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace ng::driver {
namespace {

// Every descriptor the driver holds is below this (the sandbox caps
// RLIMIT_NOFILE at 4096, and a driver serves at most 64 frontends).
constexpr int kLowestFd = 3;
constexpr int kHighestFd = 1023;
constexpr size_t kAltStackSize = 64 * 1024;

// Async-signal-safe and stateless: one close_range() releases every
// frontend socket on the way back from the syscall. Returning re-runs the
// faulting instruction under the default action (SA_RESETHAND), which ends
// the process with the original signal, or lets abort() re-raise.
//
// The dying process then tears down its memory (the rings, the packet
// socket's buffers) for milliseconds, on a CPU the spare that takes over
// needs now: SCHED_IDLE first, so that teardown runs only when nothing
// else wants the CPU.
void on_crash(int) {
  ::syscall(SYS_close_range, kLowestFd, kHighestFd, 0);
  sched_param idle{};
  ::sched_setscheduler(0, SCHED_IDLE, &idle);
}

}  // namespace

std::unique_ptr<char[]> hang_up_on_crash() {
  auto stack = std::make_unique<char[]>(kAltStackSize);
  stack_t ss{};
  ss.ss_sp = stack.get();
  ss.ss_size = kAltStackSize;
  ::sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_handler = on_crash;
  sa.sa_flags = SA_RESETHAND | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) ::sigaction(sig, &sa, nullptr);
  return stack;
}

}  // namespace ng::driver

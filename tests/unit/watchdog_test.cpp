#include "frontend/watchdog.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include "frontend/cpu_sampler.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include "inject/inject.hpp"

namespace ng::frontend {
namespace {

constexpr uint64_t kMs = 1'000'000;

WatchdogConfig config() {
  WatchdogConfig c;
  c.hang_timeout_ns = 6 * kMs;
  c.stall_timeout_ns = 50 * kMs;
  c.starve_limit_ns = 200 * kMs;
  return c;
}

struct Fake {
  ProcSample sample{true, 'S', 0};
  int calls = 0;
  std::function<ProcSample()> fn() {
    return [this] {
      ++calls;
      return sample;
    };
  }
};

TEST(Watchdog, BeatingDomainIsNeverSuspected) {
  Watchdog w(config());
  Fake f;
  w.reset(0, 1, 0);
  for (uint64_t t = 1; t < 1000; ++t) {
    EXPECT_EQ(w.check(t * kMs, t + 1, static_cast<uint32_t>(t), 1, f.fn()), Verdict::ok);
  }
  EXPECT_EQ(f.calls, 0);
}

TEST(Watchdog, SilenceFirstAsksForABeat) {
  Watchdog w(config());
  Fake f;
  w.reset(0, 7, 0);
  EXPECT_EQ(w.check(2 * kMs, 7, 0, 0, f.fn()), Verdict::ok);
  EXPECT_EQ(w.check(3 * kMs, 7, 0, 0, f.fn()), Verdict::demand_beat);
  EXPECT_TRUE(w.suspecting());
  // The idle driver answers the kick: suspicion cleared.
  EXPECT_EQ(w.check(4 * kMs, 8, 0, 0, f.fn()), Verdict::ok);
  EXPECT_FALSE(w.suspecting());
}

// Frames waiting for a domain that does not beat: asked after a quarter of
// the timeout, not half; the verdict still needs its evidence.
TEST(Watchdog, SilenceWithFramesWaitingAsksSooner) {
  Watchdog w(config());
  Fake f;
  w.reset(0, 7, 0);
  EXPECT_EQ(w.check(1 * kMs, 7, 0, 3, f.fn()), Verdict::ok);
  EXPECT_EQ(w.check(2 * kMs, 7, 0, 3, f.fn()), Verdict::demand_beat);
  EXPECT_EQ(w.check(3 * kMs, 7, 0, 3, f.fn()), Verdict::ok);  // runnable, no CPU yet
  EXPECT_EQ(w.check(4 * kMs, 8, 1, 2, f.fn()), Verdict::ok);
  EXPECT_FALSE(w.suspecting());
}

// SIGSTOP: nothing but a SIGCONT lets it answer, so no kick is waited for.
TEST(Watchdog, StoppedDomainIsAHangWithoutAKick) {
  Watchdog w(config());
  Fake f;
  f.sample.state = 'T';
  w.reset(0, 7, 0);
  EXPECT_EQ(w.check(2 * kMs, 7, 0, 0, f.fn()), Verdict::ok);
  EXPECT_EQ(w.check(3 * kMs, 7, 0, 0, f.fn()), Verdict::hang);
  EXPECT_NE(w.detail().find("stopped"), std::string::npos);
  EXPECT_EQ(w.silent_ns(), 3 * kMs);
}

// A debugger stops a healthy domain at every event it traces: judged only
// when it stays stopped through the kick.
TEST(Watchdog, ATracingStopIsAHangOnlyAfterTheKick) {
  Watchdog w(config());
  Fake f;
  f.sample.state = 't';
  w.reset(0, 7, 0);
  EXPECT_EQ(w.check(3 * kMs, 7, 0, 0, f.fn()), Verdict::demand_beat);
  EXPECT_EQ(w.check(5 * kMs, 7, 0, 0, f.fn()), Verdict::ok);
  EXPECT_EQ(w.check(6 * kMs, 7, 0, 0, f.fn()), Verdict::hang);
}

TEST(Watchdog, AsleepAfterAKickIsAHang) {
  Watchdog w(config());
  Fake f;
  w.reset(0, 7, 0);
  EXPECT_EQ(w.check(3 * kMs, 7, 0, 0, f.fn()), Verdict::demand_beat);
  EXPECT_EQ(w.check(6 * kMs, 7, 0, 0, f.fn()), Verdict::hang);
  EXPECT_NE(w.detail().find("asleep"), std::string::npos);
}

// A driver that sleeps in its loop (nanosleep) cannot be woken by the kick:
// a slow pass is no hang, a sleep that lasts the kernel-call limit is.
TEST(Watchdog, ATimedSleepIsAHangOnlyAtTheKernelCallLimit) {
  Watchdog w(config());
  Fake f;
  f.sample.timed_sleep = true;
  w.reset(0, 7, 0);
  EXPECT_EQ(w.check(3 * kMs, 7, 0, 0, f.fn()), Verdict::demand_beat);
  for (uint64_t t = 6; t < 200; t += 7) EXPECT_EQ(w.check(t * kMs, 7, 0, 0, f.fn()), Verdict::ok) << t;
  EXPECT_EQ(w.check(200 * kMs, 7, 0, 0, f.fn()), Verdict::hang);
  EXPECT_NE(w.detail().find("timed sleep"), std::string::npos);
}

// A domain on a CPU whose heartbeat stopped at `beat` (odd: inside a NIC
// call) at time 0, kicked at half the timeout; ran() adds CPU time to it
// and check(ms) judges it then.
struct Silent {
  explicit Silent(uint64_t silent_at, const WatchdogConfig& c = config()) : w(c), beat(silent_at) {
    f.sample = {true, 'R', 100 * kMs};
    w.reset(0, beat, 0);
    EXPECT_EQ(w.check(3 * kMs, beat, 0, 0, f.fn()), Verdict::demand_beat);
  }
  void ran(uint64_t ms) { f.sample.cpu_ns += ms * kMs; }
  Verdict check(uint64_t ms) { return w.check(ms * kMs, beat, 0, 0, f.fn()); }
  // Looked at every ms from `first` to `last`: the first verdict that is
  // not ok (a starved suspect is looked at after growing pauses).
  Verdict judged_between(uint64_t first, uint64_t last) {
    for (uint64_t t = first; t <= last; ++t) {
      if (Verdict v = check(t); v != Verdict::ok) return v;
    }
    return Verdict::ok;
  }
  // With the user-mode CPU time since the kick known (perf sampling).
  Verdict check(uint64_t ms, uint64_t user_ms) { return check_user_us(ms, user_ms * 1000); }
  Verdict check_user_us(uint64_t ms, uint64_t user_us) {
    Seen s{beat, 0, 0};
    s.user_known = true;
    s.user_ns = user_us * 1000;
    return w.check(ms * kMs, s, f.fn());
  }

  Watchdog w;
  Fake f;
  uint64_t beat;
};

TEST(Watchdog, SpinningWithoutBeatingIsAHang) {
  Silent d(8);  // even: outside a NIC call
  d.ran(2);  // 2 of 3 ms: could still be starved part of the time
  EXPECT_EQ(d.check(6), Verdict::ok);
  d.ran(3);  // 5 ms on a CPU: a busy host's interrupts could do that
  EXPECT_EQ(d.check(9), Verdict::ok);
  d.ran(1);  // a whole timeout of CPU, and one pass takes far less
  EXPECT_EQ(d.check(10), Verdict::hang);
  EXPECT_NE(d.w.detail().find("running"), std::string::npos);
}

TEST(Watchdog, SpinningTheWholeTimeIsAHangAfterATimeoutOfCpu) {
  Silent d(8);
  d.ran(3);
  EXPECT_EQ(d.check(6), Verdict::ok);
  d.ran(3);
  EXPECT_EQ(d.check(9), Verdict::hang);
}

// A millisecond (a sixth of the timeout) in its own code without a beat:
// no pass of the loop comes near that (it beats every 8 frames it copies),
// so it is judged as soon as it is seen, before half the timeout since the
// kick, on a CPU it shares with others or not.
TEST(Watchdog, AMillisecondInItsOwnCodeIsAHangAtOnce) {
  Silent d(8);
  d.ran(2);
  EXPECT_EQ(d.check_user_us(4, 750), Verdict::ok);
  EXPECT_EQ(d.check_user_us(5, 1000), Verdict::hang);
  EXPECT_NE(d.w.detail().find("own code"), std::string::npos);
}

TEST(Watchdog, AUserModeSpinInsideANicCallIsStillAHang) {
  Silent d(9);
  d.ran(3);
  EXPECT_EQ(d.check(5, 2), Verdict::hang);
}

// A suspect given no CPU is looked at less and less often (looking takes
// CPU from it), is still a hang at the starvation limit, and is looked at
// every time again once it runs.
TEST(Watchdog, StarvedSuspectIsSampledLessOften) {
  Silent starved(8);
  int before = starved.f.calls;
  for (uint64_t t = 4; t <= 100; ++t) EXPECT_EQ(starved.check(t), Verdict::ok);
  EXPECT_LE(starved.f.calls - before, 12);
  EXPECT_GT(starved.w.resample_at(), 100 * kMs);
  EXPECT_EQ(starved.judged_between(101, 200 + Watchdog::kMaxResampleNs / kMs), Verdict::hang);
  EXPECT_NE(starved.w.detail().find("given no CPU"), std::string::npos);

  Silent running(8);
  int first = running.f.calls;
  for (uint64_t t = 6; t <= 8; ++t) {
    running.f.sample.cpu_ns += 100'000;  // a little CPU each time: no spin yet, not starved
    EXPECT_EQ(running.check(t), Verdict::ok);
  }
  EXPECT_EQ(running.f.calls - first, 3);
}

// The kernel's work charged to a healthy domain (softirqs of other traffic)
// is CPU time without user-mode time: with that known, even five timeouts
// of it are no spin; a loop inside the kernel is one at the kernel-call limit.
TEST(Watchdog, KernelTimeWithoutUserTimeIsNoSpinUntilTheKernelCallLimit) {
  Silent d(8);
  d.ran(10);
  EXPECT_EQ(d.check(6, 0), Verdict::ok);
  EXPECT_EQ(d.check(15, 0), Verdict::ok);
  d.ran(21);
  EXPECT_EQ(d.check_user_us(40, 500), Verdict::ok);
  d.ran(170);
  EXPECT_EQ(d.check_user_us(205, 500), Verdict::hang);
  EXPECT_NE(d.w.detail().find("on a CPU"), std::string::npos);
}

// The beat's low bit set: the domain is inside a NIC call, whose kernel work
// (a veth peer's receive path) may run on its CPU time for milliseconds.
TEST(Watchdog, LongNicCallIsNotASpinUntilTheKernelCallLimit) {
  Silent d(9);
  d.ran(150);  // the call keeps the CPU
  for (uint64_t t = 6; t < 200; ++t) EXPECT_EQ(d.check(t), Verdict::ok);
  EXPECT_EQ(d.judged_between(200, 200 + Watchdog::kMaxResampleNs / kMs), Verdict::hang);
  EXPECT_NE(d.w.detail().find("NIC call"), std::string::npos);
}

// Control work at a start-up storm on a loaded host: inside a call, but
// waiting for a CPU most of the time. That is the host's overload.
// A spinner that shares its core with CPU hogs gets a third of it: judged
// once it has spun a whole timeout in all since the kick.
TEST(Watchdog, ASpinnerOnABusyCoreIsAHangOnceItSpunATimeout) {
  Silent d(8);
  d.ran(4);
  EXPECT_EQ(d.check(15), Verdict::ok);  // 4 of 12 ms on a CPU
  d.ran(2);
  EXPECT_EQ(d.check(21), Verdict::hang);
}

TEST(Watchdog, NicCallWaitingForACpuIsNoHangUntilTheStarvationLimit) {
  WatchdogConfig c = config();
  c.starve_limit_ns = 1000 * kMs;
  Silent d(9, c);
  d.ran(20);
  for (uint64_t t = 6; t < 1000; t += 3) EXPECT_EQ(d.check(t), Verdict::ok) << t;
  EXPECT_EQ(d.check(1000), Verdict::hang);
}

TEST(Watchdog, StarvedDomainIsNotAHangUntilTheStarvationLimit) {
  Silent d(8);
  d.ran(1);  // a long batch, not a hang
  for (uint64_t t = 6; t < 200; ++t) EXPECT_EQ(d.check(t), Verdict::ok);
  EXPECT_EQ(d.judged_between(200, 200 + Watchdog::kMaxResampleNs / kMs), Verdict::hang);
  EXPECT_NE(d.w.detail().find("no CPU"), std::string::npos);
}

TEST(Watchdog, GoneOrExitingProcessIsACrash) {
  for (bool alive : {false, true}) {
    Watchdog w(config());
    Fake f;
    f.sample = {alive, 'D', 0, alive};
    w.reset(0, 7, 0);
    EXPECT_EQ(w.check(2 * kMs, 7, 0, 0, f.fn()), Verdict::ok);
    // No waiting for a beat that cannot come: a crash at half the timeout.
    EXPECT_EQ(w.check(3 * kMs, 7, 0, 0, f.fn()), Verdict::crash);
    EXPECT_NE(w.detail().find(alive ? "exiting" : "gone"), std::string::npos);
  }
}

TEST(Watchdog, DyingAfterTheKickIsACrash) {
  Watchdog w(config());
  Fake f;
  w.reset(0, 7, 0);
  EXPECT_EQ(w.check(3 * kMs, 7, 0, 0, f.fn()), Verdict::demand_beat);
  f.sample = {true, 'D', 0, true};
  EXPECT_EQ(w.check(6 * kMs, 7, 0, 0, f.fn()), Verdict::crash);
}

TEST(Watchdog, UntakenTxFramesWithBeatsAreAStall) {
  Watchdog w(config());
  Fake f;
  w.reset(0, 1, 10);
  uint64_t beat = 1;
  for (uint64_t t = 1; t < 200; ++t) {  // without the driver's passes to go by: the kernel-call limit
    EXPECT_EQ(w.check(t * kMs, ++beat, 10, 5, f.fn()), Verdict::ok) << t;
  }
  EXPECT_EQ(w.check(200 * kMs, ++beat, 10, 5, f.fn()), Verdict::stall);
  EXPECT_NE(w.detail().find("5 TX frames"), std::string::npos);
}

TEST(Watchdog, ASilentDomainIsNoStall) {
  Watchdog w(config());
  Fake f;
  f.sample = {true, 'R', 0};  // runnable, given no CPU
  w.reset(0, 1, 10);
  for (uint64_t t = 1; t < 100; ++t) {
    EXPECT_NE(w.check(t * kMs, 1, 10, 5, f.fn()), Verdict::stall) << t;
  }
}

TEST(Watchdog, ProgressOrAnEmptyRingIsNoStall) {
  Watchdog w(config());
  Fake f;
  w.reset(0, 1, 0);
  uint64_t beat = 1;
  uint32_t done = 0;
  for (uint64_t t = 1; t < 500; ++t) {
    // frames always pending, but the driver keeps finishing some
    if (t % 20 == 0) ++done;
    EXPECT_EQ(w.check(t * kMs, ++beat, done, 3, f.fn()), Verdict::ok);
  }
  for (uint64_t t = 500; t < 1000; ++t) {
    EXPECT_EQ(w.check(t * kMs, ++beat, done, 0, f.fn()), Verdict::ok);
  }
}

// The pass counter is the stall's evidence: two passes of the driver's loop
// began after the frames were seen waiting, and none was taken.
TEST(Watchdog, FramesSkippedForTwoPassesAreAStallAtOnce) {
  Watchdog w(config());
  Fake f;
  w.reset(0, 1, 10);
  Seen seen{2, 10, 5, 100, 0, true};
  EXPECT_EQ(w.check(kMs / 2, seen, f.fn()), Verdict::ok);  // frames first seen waiting at pass 100
  seen.heartbeat = 3;
  seen.passes = 101;
  EXPECT_EQ(w.check(kMs, seen, f.fn()), Verdict::ok);  // the pass that began before may not have seen them
  seen.heartbeat = 4;
  seen.passes = 102;
  EXPECT_EQ(w.check(2 * kMs, seen, f.fn()), Verdict::stall);
  EXPECT_NE(w.detail().find("passes"), std::string::npos);
}

TEST(Watchdog, PassesProveNothingBeforeTheDriverAcknowledgedItsRole) {
  Watchdog w(config());
  Fake f;
  w.reset(0, 1, 10);
  uint64_t beat = 1;
  for (uint64_t t = 1; t < 50; ++t) {
    Seen seen{++beat, 10, 5, 100 + t * 10, 0, false};
    EXPECT_EQ(w.check(t * kMs, seen, f.fn()), Verdict::ok) << t;
  }
}

TEST(Watchdog, AFullNicQueueIsBackpressureNotAStall) {
  Watchdog w(config());
  Fake f;
  w.reset(0, 1, 10);
  uint64_t beat = 1;
  for (uint64_t t = 1; t < 50; ++t) {
    // every pass found our frames and the NIC refusing them
    Seen seen{++beat, 10, 5, 100 + t * 10, 100 + t * 10, true};
    EXPECT_EQ(w.check(t * kMs, seen, f.fn()), Verdict::ok) << t;
  }
  Seen seen{++beat, 10, 5, 600, 600, true};
  EXPECT_EQ(w.check(50 * kMs, seen, f.fn()), Verdict::stall);  // the stall timeout still holds
}

// A frontend that was not scheduled for a while has not watched the domain
// for that long: 100 ms without a check count as 2.
TEST(Watchdog, TheFrontendsOwnStarvationIsNoStall) {
  Watchdog w(config());
  Fake f;
  w.reset(0, 1, 10);
  EXPECT_EQ(w.check(kMs, 2, 10, 5, f.fn()), Verdict::ok);
  EXPECT_EQ(w.check(101 * kMs, 3, 10, 5, f.fn()), Verdict::ok);
  for (uint64_t t = 102; t < 140; ++t) EXPECT_EQ(w.check(t * kMs, t, 10, 5, f.fn()), Verdict::ok) << t;
}

TEST(Watchdog, AnObservationOlderThanTheResetIsNoVerdict) {
  Watchdog w(config());
  Fake f;
  w.reset(100 * kMs, 7, 3);
  EXPECT_EQ(w.check(99 * kMs, 7, 3, 100, f.fn()), Verdict::ok);
  EXPECT_EQ(f.calls, 0);
}

TEST(Watchdog, SamplesThisProcess) {
  ProcSample s = sample_process(::getpid());
  EXPECT_TRUE(s.alive);
  EXPECT_EQ(s.state, 'R');
  EXPECT_FALSE(s.exiting);
  EXPECT_GT(s.cpu_ns, 0u);
  EXPECT_FALSE(sample_process(0x3fffffff).alive);
}

// A child that spins in its own code, or one that spends its time in the
// kernel (copying from /dev/zero), for 100 ms of wall time.
uint64_t user_ns_of(bool spin_in_user_mode) {
  pid_t child = ::fork();
  if (child == 0) {
    if (spin_in_user_mode) {
      for (;;) asm volatile("" ::: "memory");
    }
    static char buf[1 << 16];
    int zero = ::open("/dev/zero", O_RDONLY);
    // The raw syscall: a sanitizer's read() interceptor checks the buffer
    // in user mode, which is exactly the time this must not count.
    for (;;) {
      if (::syscall(SYS_read, zero, buf, sizeof(buf)) < 0) ::_exit(1);
    }
  }
  auto sampler = UserCpuSampler::start(child);
  uint64_t ns = UINT64_MAX;
  if (sampler) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ns = sampler->user_ns();
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  return ns;
}

// A child asleep in usleep is in a timed sleep; one blocked reading a pipe
// is not.
TEST(Watchdog, TellsATimedSleepFromABlockedRead) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t sleeper = ::fork();
  if (sleeper == 0) {
    for (;;) ::usleep(100'000);
  }
  pid_t reader = ::fork();
  if (reader == 0) {
    char c;
    for (;;) {
      if (::read(fds[0], &c, 1) < 0) ::_exit(1);
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ProcSample s = sample_process(sleeper), r = sample_process(reader);
  ::kill(sleeper, SIGKILL);
  ::kill(reader, SIGKILL);
  ::waitpid(sleeper, nullptr, 0);
  ::waitpid(reader, nullptr, 0);
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_EQ(s.state, 'S');
  EXPECT_TRUE(s.timed_sleep);
  EXPECT_EQ(r.state, 'S');
  EXPECT_FALSE(r.timed_sleep);
}

TEST(UserCpuSampler, CountsTimeInTheDomainsOwnCodeOnly) {
  uint64_t spinner = user_ns_of(true);
  if (spinner == UINT64_MAX) GTEST_SKIP() << "perf events are not available here";
  uint64_t copier = user_ns_of(false);
  // On a CPU for up to 100 ms each (less on a busy machine).
  EXPECT_GE(spinner, 10 * kMs);
  EXPECT_LT(copier, spinner / 2);
}

TEST(Inject, EveryFaultParsesBackFromItsName) {
  for (const auto& f : inject::faults()) {
    auto parsed = inject::parse_fault(f.name);
    ASSERT_TRUE(parsed.has_value()) << f.name;
    EXPECT_EQ(*parsed, f.fault);
    EXPECT_STREQ(inject::fault_name(f.fault), f.name);
  }
  EXPECT_FALSE(inject::parse_fault("explode").has_value());
  EXPECT_TRUE(inject::inside_domain(inject::Fault::hang));
  EXPECT_FALSE(inject::inside_domain(inject::Fault::kill));
  EXPECT_FALSE(inject::inside_domain(inject::Fault::link_down));
}

TEST(Inject, ArmingIsSeenThroughTheReadOnlyMapping) {
  char dir[] = "/tmp/ng-inject-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/d.inject";
  auto writer = inject::ControlFile::create(path);
  ASSERT_TRUE(writer) << writer.error().message;
  auto reader = inject::ControlFile::open(path);
  ASSERT_TRUE(reader) << reader.error().message;
  EXPECT_EQ(reader->armed(), inject::Fault::none);
  writer->arm(inject::Fault::stall_tx);
  EXPECT_EQ(reader->armed(), inject::Fault::stall_tx);
  writer->arm(inject::Fault::none);
  EXPECT_EQ(reader->armed(), inject::Fault::none);
  ::unlink(path.c_str());
  ::rmdir(dir);
}

}  // namespace
}  // namespace ng::frontend

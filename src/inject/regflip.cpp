#include "inject/regflip.hpp"

#include <dirent.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <memory>
#include <thread>

#if defined(__x86_64__)
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>

#include <array>
#include <fstream>
#endif

#include "common/clock.hpp"

namespace ng::inject {

namespace {

std::string_view register_name(int reg) {
  const auto& names = regflip_registers();
  if (reg < 0 || static_cast<size_t>(reg) >= names.size()) return "reg?";
  return names[static_cast<size_t>(reg)];
}

}  // namespace

const std::vector<std::string_view>& regflip_registers() {
  static const std::vector<std::string_view> names = {
      "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8",
      "r9",  "r10", "r11", "r12", "r13", "r14", "r15", "rip"};
  return names;
}

std::string RegflipPlan::describe() const {
  return fmt::format("tid {} {} bit {} after {} us", tid, register_name(reg), bit, delay_us);
}

RegflipPlan plan_regflip(uint64_t seed, std::vector<pid_t> tids, uint32_t max_delay_us) {
  std::sort(tids.begin(), tids.end());
  uint64_t state = seed;
  // Fixed draw order, every draw taken whatever the ranges, and plain modulo
  // rather than a std:: distribution: reproducible across machines for the
  // same seed and thread count, at a bias below 2^-32 for these ranges.
  uint64_t t = splitmix64(state);
  uint64_t d = splitmix64(state);
  uint64_t r = splitmix64(state);
  uint64_t b = splitmix64(state);
  RegflipPlan p;
  p.tid = tids.empty() ? 0 : tids[t % tids.size()];
  p.delay_us = max_delay_us == 0 ? 0 : static_cast<uint32_t>(d % max_delay_us);
  p.reg = static_cast<int>(r % regflip_registers().size());
  p.bit = static_cast<int>(b % 64);
  return p;
}

namespace {

Result<std::vector<pid_t>> list_threads(pid_t pid) {
  if (pid <= 0) return fail("no process {} to flip a bit in", pid);
  std::string path = fmt::format("/proc/{}/task", pid);
  struct CloseDir {
    void operator()(DIR* d) const { ::closedir(d); }
  };
  std::unique_ptr<DIR, CloseDir> dir(::opendir(path.c_str()));
  if (!dir && errno == ENOENT) return fail("process {} is gone (no {})", pid, path);
  if (!dir) return fail_errno("listing the threads of process {} in {}", pid, path);
  std::vector<pid_t> tids;
  while (const dirent* e = ::readdir(dir.get())) {
    std::string_view name = e->d_name;
    pid_t tid = 0;
    auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), tid);
    if (ec == std::errc() && end == name.data() + name.size() && tid > 0) tids.push_back(tid);
  }
  if (tids.empty()) return fail("process {} has no threads left: it is exiting", pid);
  return tids;
}

}  // namespace

Result<RegflipPlan> plan_regflip_for(pid_t pid, uint64_t seed, uint32_t max_delay_us) {
  auto tids = list_threads(pid);
  if (!tids) return tl::unexpected(tids.error());
  return plan_regflip(seed, std::move(*tids), max_delay_us);
}

#if defined(__x86_64__)

namespace {

using Field = unsigned long long user_regs_struct::*;

// In the order of regflip_registers().
constexpr std::array<Field, 17> kFields = {
    &user_regs_struct::rax, &user_regs_struct::rbx, &user_regs_struct::rcx,
    &user_regs_struct::rdx, &user_regs_struct::rsi, &user_regs_struct::rdi,
    &user_regs_struct::rbp, &user_regs_struct::rsp, &user_regs_struct::r8,
    &user_regs_struct::r9,  &user_regs_struct::r10, &user_regs_struct::r11,
    &user_regs_struct::r12, &user_regs_struct::r13, &user_regs_struct::r14,
    &user_regs_struct::r15, &user_regs_struct::rip};

constexpr auto kStopWait = std::chrono::seconds(1);
constexpr auto kStopPoll = std::chrono::microseconds(100);

void* ptrace_data(long value) { return reinterpret_cast<void*>(value); }

// What wait_for_stop yields for a thread that exited instead of stopping.
constexpr int kExited = -1;

// Polled rather than blocking: a thread deep in an uninterruptible sleep may
// not stop for a long time, and the caller (the manager's loop) must go on.
// Yields the signal to hand back on detach, so that catching the thread in a
// signal-delivery stop does not swallow its signal, or kExited.
Result<int> wait_for_stop(pid_t tid) {
  auto deadline = std::chrono::steady_clock::now() + kStopWait;
  for (;;) {
    int st = 0;
    pid_t got = ::waitpid(tid, &st, __WALL | WNOHANG);
    if (got < 0 && errno != EINTR) return fail_errno("waiting for thread {} to stop", tid);
    if (got == tid && (WIFEXITED(st) || WIFSIGNALED(st))) return kExited;
    if (got == tid && WIFSTOPPED(st)) return (st >> 16) == PTRACE_EVENT_STOP ? 0 : WSTOPSIG(st);
    if (std::chrono::steady_clock::now() >= deadline) {
      return fail(
          "thread {} did not stop within 1 s of PTRACE_INTERRUPT (an uninterruptible sleep in "
          "the kernel?): nothing was flipped; try another seed",
          tid);
    }
    std::this_thread::sleep_for(kStopPoll);
  }
}

// A thread left traced by a long-lived manager would stop for good at its
// next trap, with nobody to let it go: so every path detaches.
class Seized {
 public:
  explicit Seized(pid_t tid) : tid_(tid) {}
  ~Seized() { (void)detach(); }
  Seized(const Seized&) = delete;
  Seized& operator=(const Seized&) = delete;

  void stopped(int resume_signal) {
    stopped_ = true;
    resume_signal_ = resume_signal;
  }

  void gone() { done_ = true; }

  Status detach() {
    if (std::exchange(done_, true)) return {};
    // The kernel detaches only a stopped tracee; give a late one one more chance.
    if (!stopped_) {
      auto sig = wait_for_stop(tid_);
      if (!sig) {
        return fail(
            "thread {} could not be detached: once it stops it stays stopped until this "
            "process exits; kill its process if it matters",
            tid_);
      }
      if (*sig == kExited) return {};
      resume_signal_ = *sig;
    }
    // ESRCH on a stopped tracee means it was killed meanwhile: nothing to let go.
    if (::ptrace(PTRACE_DETACH, tid_, nullptr, ptrace_data(resume_signal_)) != 0 &&
        errno != ESRCH) {
      return fail_errno("detaching from thread {}", tid_);
    }
    return {};
  }

 private:
  pid_t tid_;
  bool stopped_ = false;
  bool done_ = false;
  int resume_signal_ = 0;
};

// The kernel refuses a zombie with the same EPERM as a missing privilege.
bool thread_exiting(pid_t tid) {
  std::ifstream in(fmt::format("/proc/{}/stat", tid));
  std::string stat;
  std::getline(in, stat);
  auto paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return !in;
  char state = stat[paren + 2];
  return state == 'Z' || state == 'X';
}

tl::unexpected<Error> seize_error(pid_t tid) {
  int err = errno;
  if (err == ESRCH) return fail("thread {} is gone (it exited after the plan was made): plan again", tid);
  if (err == EPERM && thread_exiting(tid)) return fail("thread {} is exiting (a zombie): plan again", tid);
  if (err == EPERM) {
    return fail(
        "attaching to thread {} with ptrace is not permitted: run as root or with CAP_SYS_PTRACE, "
        "keep kernel.yama.ptrace_scope below 3, detach any other tracer (gdb, strace), and pick "
        "a thread of another process than this one",
        tid);
  }
  errno = err;
  return fail_errno("attaching to thread {} with ptrace", tid);
}

Status check_plan(const RegflipPlan& plan) {
  if (plan.tid <= 0) return fail("regflip plan names no thread (tid {})", plan.tid);
  if (plan.reg < 0 || static_cast<size_t>(plan.reg) >= kFields.size()) {
    return fail("regflip plan names register {}, not one of the {}", plan.reg, kFields.size());
  }
  if (plan.bit < 0 || plan.bit > 63) return fail("regflip plan names bit {}, not 0..63", plan.bit);
  return {};
}

Result<RegflipResult> flip(const RegflipPlan& plan) {
  user_regs_struct regs{};
  if (::ptrace(PTRACE_GETREGS, plan.tid, nullptr, &regs) != 0) {
    return fail_errno("reading the registers of thread {}", plan.tid);
  }
  Field field = kFields[static_cast<size_t>(plan.reg)];
  RegflipResult r;
  r.plan = plan;
  r.rip = regs.rip;
  r.before = regs.*field;
  regs.*field ^= 1ull << plan.bit;
  r.after = regs.*field;
  if (::ptrace(PTRACE_SETREGS, plan.tid, nullptr, &regs) != 0) {
    return fail_errno("writing the flipped registers of thread {} back", plan.tid);
  }
  r.flipped_mono_ns = mono_ns();
  return r;
}

}  // namespace

Result<RegflipResult> apply_regflip(const RegflipPlan& plan) {
  if (auto ok = check_plan(plan); !ok) return tl::unexpected(ok.error());
  std::this_thread::sleep_for(std::chrono::microseconds(plan.delay_us));
  // SEIZE, unlike ATTACH, sends no SIGSTOP that the target could observe, and
  // lets INTERRUPT stop a thread already in a group-stop.
  if (::ptrace(PTRACE_SEIZE, plan.tid, nullptr, nullptr) != 0) return seize_error(plan.tid);
  Seized seized(plan.tid);
  if (::ptrace(PTRACE_INTERRUPT, plan.tid, nullptr, nullptr) != 0) {
    return fail_errno("interrupting thread {}", plan.tid);
  }
  auto sig = wait_for_stop(plan.tid);
  if (!sig) {
    auto detached = seized.detach();
    return fail("{}{}", sig.error().message, detached ? "" : "; " + detached.error().message);
  }
  if (*sig == kExited) {
    seized.gone();
    return fail("thread {} exited before it stopped: nothing was flipped", plan.tid);
  }
  seized.stopped(*sig);
  auto result = flip(plan);
  if (!result) return result;
  if (auto detached = seized.detach(); !detached) return tl::unexpected(detached.error());
  return result;
}

#else

Result<RegflipResult> apply_regflip(const RegflipPlan&) {
  return fail("regflip supports x86-64 only: the register names and ptrace layout are x86-64's");
}

#endif

}  // namespace ng::inject

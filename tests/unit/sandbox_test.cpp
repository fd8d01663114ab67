#include "sandbox/sandbox.hpp"

#include <fcntl.h>
#include <linux/if_packet.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/capability.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "common/sanitizer.hpp"

namespace {

using ng::sandbox::Policy;

// The sandbox is irreversible, so every test confines a forked child and
// looks at how it ended; the test process itself stays unconfined.
constexpr int kApplyFailed = 100;

struct ChildEnd {
  int status = 0;
  std::string report;  // what the child wrote to its report pipe

  bool exited_ok() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
  bool killed_by(int sig) const { return WIFSIGNALED(status) && WTERMSIG(status) == sig; }
  std::string describe() const {
    std::string how = WIFEXITED(status)     ? fmt::format("exited with {}", WEXITSTATUS(status))
                      : WIFSIGNALED(status) ? fmt::format("killed by signal {} ({})", WTERMSIG(status),
                                                          strsignal(WTERMSIG(status)))
                                            : fmt::format("status {:#x}", status);
    return how + (report.empty() ? "" : "; child reported: " + report);
  }
};

// Runs fn(report_fd) in a child; fn's return value is the child's exit code.
ChildEnd run_child(const std::function<int(int)>& fn) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return {-1, "pipe2 failed"};
  std::fflush(nullptr);  // or the child's exit would print the parent's buffered output again
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    ::_exit(fn(fds[1]));
  }
  ::close(fds[1]);
  ChildEnd end;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) end.report.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  while (::waitpid(pid, &end.status, 0) < 0 && errno == EINTR) {
  }
  return end;
}

// Writes a failure note for the parent and returns the exit code to use.
int report(int fd, const std::string& text, int code = 1) {
  [[maybe_unused]] auto n = ::write(fd, text.data(), text.size());
  return code;
}

// apply(policy), then body(report_fd).
ChildEnd run_confined(const Policy& policy, const std::function<int(int)>& body) {
  return run_child([&](int fd) {
    if (auto s = ng::sandbox::apply(policy); !s) return report(fd, s.error().message, kApplyFailed);
    return body(fd);
  });
}

#define REQUIRE_ROOT()                                                                   \
  do {                                                                                   \
    if (::geteuid() != 0) GTEST_SKIP() << "the sandbox drops capabilities: run as root"; \
  } while (0)

#define CHILD_CHECK(fd, cond) \
  do {                        \
    if (!(cond)) return report(fd, "check failed: " #cond); \
  } while (0)

std::optional<uint64_t> mapped_bytes() {
  std::ifstream in("/proc/self/statm");
  uint64_t pages = 0;
  if (!(in >> pages)) return std::nullopt;
  return pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

TEST(Sandbox, SteadyStateSyscallsStayAllowed) {
  REQUIRE_ROOT();
  auto end = run_confined(Policy{}, [](int fd) {
    CHILD_CHECK(fd, ::syscall(SYS_getpid) > 0);
    CHILD_CHECK(fd, ::syscall(SYS_gettid) > 0);
    timespec ts{};
    CHILD_CHECK(fd, ::syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) == 0);
    timespec nap{0, 1'000'000};
    CHILD_CHECK(fd, ::nanosleep(&nap, nullptr) == 0);
    CHILD_CHECK(fd, ::sched_yield() == 0);

    // The allocator, small and large (mmap-backed), and a ring-like mapping.
    void* volatile small = std::malloc(4096);
    void* volatile large = std::malloc(8 << 20);
    CHILD_CHECK(fd, small != nullptr && large != nullptr);
    std::free(small);
    std::free(large);
    void* ring = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHILD_CHECK(fd, ring != MAP_FAILED);
    CHILD_CHECK(fd, ::mprotect(ring, 4096, PROT_READ) == 0);
    CHILD_CHECK(fd, ::munmap(ring, 1 << 20) == 0);
    std::string s = fmt::format("{:>20}", "heap");  // C++ runtime paths
    CHILD_CHECK(fd, s.size() == 20);

    // Event loop pieces: eventfd kick through epoll, a timerfd.
    int ev = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    CHILD_CHECK(fd, ev >= 0 && ep >= 0);
    epoll_event want{.events = EPOLLIN, .data = {.fd = ev}};
    CHILD_CHECK(fd, ::epoll_ctl(ep, EPOLL_CTL_ADD, ev, &want) == 0);
    uint64_t one = 1;
    CHILD_CHECK(fd, ::write(ev, &one, sizeof one) == sizeof one);
    epoll_event got{};
    CHILD_CHECK(fd, ::epoll_wait(ep, &got, 1, 100) == 1);
    CHILD_CHECK(fd, ::read(ev, &one, sizeof one) == sizeof one);
    int tfd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    CHILD_CHECK(fd, tfd >= 0);
    itimerspec its{};
    its.it_value.tv_nsec = 1'000'000;
    CHILD_CHECK(fd, ::timerfd_settime(tfd, 0, &its, nullptr) == 0);

    // Descriptor housekeeping.
    struct stat st{};
    CHILD_CHECK(fd, ::fstat(ev, &st) == 0);
    CHILD_CHECK(fd, ::fcntl(ev, F_GETFL) >= 0);
    CHILD_CHECK(fd, ::fcntl(ev, F_SETFD, FD_CLOEXEC) == 0);
    CHILD_CHECK(fd, ::close(tfd) == 0 && ::close(ep) == 0 && ::close(ev) == 0);

    uint64_t seed = 0;
    CHILD_CHECK(fd, ::getrandom(&seed, sizeof seed, 0) == sizeof seed);
    // The NIC's overrun counter, and its own scheduling (the crash handler's).
    tpacket_stats ps{};
    socklen_t len = sizeof ps;
    CHILD_CHECK(fd, ::getsockopt(-1, SOL_PACKET, PACKET_STATISTICS, &ps, &len) == -1 && errno == EBADF);
    sched_param normal{};
    CHILD_CHECK(fd, ::sched_setscheduler(0, SCHED_OTHER, &normal) == 0);
    // Signal 0 to itself: tgkill is allowed when aimed at this process.
    CHILD_CHECK(fd, ::syscall(SYS_tgkill, ::getpid(), ::gettid(), 0) == 0);
    return 0;
  });
  EXPECT_TRUE(end.exited_ok()) << end.describe();
}

TEST(Sandbox, LoggingAfterApplyWorks) {
  REQUIRE_ROOT();
  auto end = run_confined(Policy{}, [](int fd) {
    std::ostringstream out;
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    spdlog::logger log("sandboxed", sink);
    log.info("driver domain {} serving", "a");
    CHILD_CHECK(fd, out.str().find("driver domain a serving") != std::string::npos);
    return 0;
  });
  EXPECT_TRUE(end.exited_ok()) << end.describe();
}

TEST(Sandbox, FirstStdioWriteToCharacterDeviceWorks) {
  REQUIRE_ROOT();
  // A fresh stream on a character device asks isatty() on its first write.
  auto end = run_child([](int fd) {
    FILE* null = std::fopen("/dev/null", "w");
    if (null == nullptr) return report(fd, "cannot open /dev/null");
    if (auto s = ng::sandbox::apply(Policy{}); !s) return report(fd, s.error().message, kApplyFailed);
    CHILD_CHECK(fd, std::fputs("hello\n", null) >= 0);
    CHILD_CHECK(fd, std::fflush(null) == 0);
    return 0;
  });
  EXPECT_TRUE(end.exited_ok()) << end.describe();
}

TEST(Sandbox, NormalExitStillWorks) {
  REQUIRE_ROOT();
  // exit() runs atexit handlers, static destructors and the stdio flush.
  auto end = run_confined(Policy{}, [](int) -> int {
    std::printf("%s", "");
    std::exit(0);
  });
  EXPECT_TRUE(end.exited_ok()) << end.describe();
}

TEST(Sandbox, AbortStillRaisesSigabrt) {
  REQUIRE_ROOT();
  auto end = run_confined(Policy{}, [](int) -> int { std::abort(); });
  EXPECT_TRUE(end.killed_by(SIGABRT)) << end.describe();
}

struct Denied {
  const char* what;
  std::function<void(pid_t parent)> call;
};

TEST(Sandbox, ForbiddenSyscallsKillWithSigsys) {
  REQUIRE_ROOT();
  const pid_t parent = ::getpid();
  const Denied cases[] = {
      {"openat", [](pid_t) { ::syscall(SYS_openat, AT_FDCWD, "/etc/hostname", O_RDONLY); }},
      {"open via libc", [](pid_t) { ::open("/dev/null", O_RDONLY); }},
      {"socket", [](pid_t) { ::socket(AF_INET, SOCK_DGRAM, 0); }},
      {"socket AF_PACKET", [](pid_t) { ::socket(AF_PACKET, SOCK_RAW, 0); }},
      {"execve", [](pid_t) { ::execl("/bin/true", "true", static_cast<char*>(nullptr)); }},
      {"fork",
       [](pid_t) {
         if (::fork() == 0) ::_exit(0);
       }},
      {"kill of the parent", [](pid_t p) { ::kill(p, 0); }},
      {"tgkill of the parent", [](pid_t p) { ::syscall(SYS_tgkill, p, p, 0); }},
      {"ptrace", [](pid_t p) { ::syscall(SYS_ptrace, 16 /*PTRACE_ATTACH*/, p, 0, 0); }},
      {"prctl", [](pid_t) { ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); }},
      {"unshare", [](pid_t) { ::syscall(SYS_unshare, 0); }},
      {"mmap with PROT_EXEC",
       [](pid_t) {
         ::mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
       }},
      {"mprotect to PROT_EXEC",
       [](pid_t) {
         void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
         ::mprotect(p, 4096, PROT_READ | PROT_EXEC);
       }},
      {"fcntl F_SETOWN", [](pid_t p) { ::fcntl(0, F_SETOWN, p); }},
      // Clearing O_NONBLOCK on a descriptor shared with a frontend blocks the frontend.
      {"fcntl F_SETFL", [](pid_t) { ::fcntl(0, F_SETFL, 0); }},
      {"setsockopt", [](pid_t) {
         int one = 1;
         ::setsockopt(0, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
       }},
      {"getsockopt of another option", [](pid_t) {
         int v = 0;
         socklen_t len = sizeof v;
         ::getsockopt(0, SOL_SOCKET, SO_RCVBUF, &v, &len);
       }},
      // The warm spare, say, set to SCHED_IDLE.
      {"sched_setscheduler of the parent", [](pid_t p) {
         sched_param idle{};
         ::sched_setscheduler(p, SCHED_IDLE, &idle);
       }},
      {"ioctl FIONREAD", [](pid_t) {
         int n = 0;
         ::ioctl(0, FIONREAD, &n);
       }},
#if defined(__x86_64__)
      // The x32 ABI's entry must not offer a second, unfiltered table.
      {"x32 getpid", [](pid_t) { ::syscall(0x40000000 | SYS_getpid); }},
#endif
  };
  for (const auto& c : cases) {
    auto end = run_confined(Policy{}, [&](int) {
      c.call(parent);
      return 0;
    });
    EXPECT_TRUE(end.killed_by(SIGSYS)) << c.what << ": " << end.describe();
  }
}

#if defined(__x86_64__)
long i386_getpid() {
  long ret;
  asm volatile("int $0x80" : "=a"(ret) : "a"(20) : "memory", "r8", "r9", "r10", "r11");
  return ret;
}

TEST(Sandbox, I386EntryIsKilledToo) {
  REQUIRE_ROOT();
  // Some kernels and hypervisors have no int 0x80 entry at all (SIGSEGV).
  auto plain = run_child([](int) { return i386_getpid() > 0 ? 0 : 1; });
  if (!plain.exited_ok()) GTEST_SKIP() << "no i386 syscall entry here: " << plain.describe();
  auto end = run_confined(Policy{}, [](int) { return static_cast<int>(i386_getpid() & 0); });
  EXPECT_TRUE(end.killed_by(SIGSYS)) << end.describe();
}
#endif

TEST(Sandbox, CapabilitiesAreDroppedExceptThoseKept) {
  REQUIRE_ROOT();
  const int dumpable_before = ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
  Policy policy;
  policy.keep_caps = {CAP_NET_RAW};
  // capget and prctl are not on the allowlist; this also exercises extras.
  policy.extra_syscalls = {SCMP_SYS(capget), SCMP_SYS(prctl)};
  auto end = run_confined(policy, [&](int fd) {
    std::unique_ptr<std::remove_pointer_t<cap_t>, int (*)(void*)> caps(cap_get_proc(), cap_free);
    CHILD_CHECK(fd, caps != nullptr);
    auto flag = [&](cap_value_t cap, cap_flag_t which) {
      cap_flag_value_t v = CAP_CLEAR;
      cap_get_flag(caps.get(), cap, which, &v);
      return v == CAP_SET;
    };
    CHILD_CHECK(fd, flag(CAP_NET_RAW, CAP_EFFECTIVE) && flag(CAP_NET_RAW, CAP_PERMITTED));
    CHILD_CHECK(fd, !flag(CAP_NET_RAW, CAP_INHERITABLE));
    for (cap_value_t gone : {CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_SETPCAP, CAP_KILL,
                             CAP_DAC_OVERRIDE, CAP_SETUID}) {
      if (flag(gone, CAP_EFFECTIVE) || flag(gone, CAP_PERMITTED))
        return report(fd, fmt::format("capability {} still held", gone));
      if (::prctl(PR_CAPBSET_READ, gone, 0, 0, 0) != 0)
        return report(fd, fmt::format("capability {} still in the bounding set", gone));
    }
    CHILD_CHECK(fd, ::prctl(PR_CAPBSET_READ, CAP_NET_RAW, 0, 0, 0) == 1);
    CHILD_CHECK(fd, ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_RAW, 0, 0) == 0);
    CHILD_CHECK(fd, ::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1);
    // The manager ptraces drivers for fault injection: must stay possible.
    CHILD_CHECK(fd, ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == dumpable_before);
    CHILD_CHECK(fd, ::prctl(PR_GET_SECCOMP, 0, 0, 0, 0) == 2);
    return 0;
  });
  EXPECT_TRUE(end.exited_ok()) << end.describe();
}

TEST(Sandbox, NoCapabilityKeptByDefault) {
  REQUIRE_ROOT();
  Policy policy;
  policy.seccomp = false;
  auto end = run_confined(policy, [](int fd) {
    std::unique_ptr<std::remove_pointer_t<cap_t>, int (*)(void*)> caps(cap_get_proc(), cap_free);
    std::unique_ptr<std::remove_pointer_t<cap_t>, int (*)(void*)> none(cap_init(), cap_free);
    CHILD_CHECK(fd, caps && none && cap_compare(caps.get(), none.get()) == 0);
    CHILD_CHECK(fd, ::prctl(PR_CAPBSET_READ, CAP_NET_RAW, 0, 0, 0) == 0);
    return 0;
  });
  EXPECT_TRUE(end.exited_ok()) << end.describe();
}

TEST(Sandbox, SeccompOffSkipsOnlyTheFilter) {
  REQUIRE_ROOT();
  Policy policy;
  policy.seccomp = false;
  auto end = run_confined(policy, [](int fd) {
    CHILD_CHECK(fd, ::prctl(PR_GET_SECCOMP, 0, 0, 0, 0) == 0);
    CHILD_CHECK(fd, ::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1);
    int f = ::open("/dev/null", O_RDONLY);
    CHILD_CHECK(fd, f >= 0);
    int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
    CHILD_CHECK(fd, s >= 0);
    rlimit core{};
    CHILD_CHECK(fd, ::getrlimit(RLIMIT_CORE, &core) == 0 && core.rlim_max == 0);
    rlimit files{};
    CHILD_CHECK(fd, ::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_max <= 4096);
    return 0;
  });
  EXPECT_TRUE(end.exited_ok()) << end.describe();
}

TEST(Sandbox, ExtraSyscallsWidenTheAllowlist) {
  REQUIRE_ROOT();
  Policy policy;
  // ioctl unconditionally, on top of the TCGETS-only rule.
  policy.extra_syscalls = {SCMP_SYS(getppid), SCMP_SYS(ioctl)};
  auto end = run_confined(policy, [](int fd) {
    CHILD_CHECK(fd, ::getppid() > 0);
    int n = -1;
    CHILD_CHECK(fd, ::ioctl(fd, FIONREAD, &n) == 0);
    report(fd, "extras ok;");
    ::dup(fd);  // still denied: the extras widen nothing else
    return 0;
  });
  EXPECT_TRUE(end.killed_by(SIGSYS)) << end.describe();
  EXPECT_EQ(end.report, "extras ok;");
}

#if NG_ASAN
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif

TEST(Sandbox, MemoryLimitMakesLargeAllocationsFail) {
  REQUIRE_ROOT();
  if (kAsan) GTEST_SKIP() << "AddressSanitizer reserves terabytes of address space";
  auto mapped = mapped_bytes();
  ASSERT_TRUE(mapped.has_value()) << "/proc/self/statm unreadable";
  Policy policy;
  policy.memory_limit_bytes = (*mapped + (64ULL << 20)) & ~0xfffffULL;
  auto end = run_confined(policy, [](int fd) {
    void* big = ::mmap(nullptr, 256 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHILD_CHECK(fd, big == MAP_FAILED && errno == ENOMEM);
    void* volatile heap = std::malloc(512 << 20);
    CHILD_CHECK(fd, heap == nullptr);
    void* small = ::mmap(nullptr, 8 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHILD_CHECK(fd, small != MAP_FAILED);
    return 0;
  });
  EXPECT_TRUE(end.exited_ok()) << end.describe();
}

// Its log lives on tmpfs: past the limit a write fails, and the domain lives on.
TEST(Sandbox, FileSizeLimitStopsTheLogAndKillsNothing) {
  REQUIRE_ROOT();
  FILE* tmp = std::tmpfile();
  ASSERT_NE(tmp, nullptr);
  int file = ::fileno(tmp);
  Policy p;
  p.file_size_limit_bytes = 1 << 20;
  auto end = run_confined(p, [file](int fd) {
    std::string block(64 << 10, 'x');
    ssize_t n = 0;
    for (int i = 0; i < 32 && n >= 0; ++i) n = ::write(file, block.data(), block.size());
    CHILD_CHECK(fd, n < 0 && errno == EFBIG);
    return 0;
  });
  EXPECT_TRUE(end.exited_ok()) << end.describe();
  struct stat st{};
  ASSERT_EQ(::fstat(file, &st), 0);
  EXPECT_LE(st.st_size, 1 << 20);
  std::fclose(tmp);
}

TEST(Sandbox, MemoryLimitBelowCurrentUsageIsRefused) {
  REQUIRE_ROOT();
  Policy policy;
  policy.memory_limit_bytes = 1 << 20;  // less than any process's text and stacks
  auto end = run_confined(policy, [](int) { return 0; });
  EXPECT_TRUE(WIFEXITED(end.status) && WEXITSTATUS(end.status) == kApplyFailed) << end.describe();
  EXPECT_THAT(end.report, ::testing::HasSubstr("memory limit"));
}

TEST(Sandbox, UnknownCapabilityIsRefused) {
  REQUIRE_ROOT();
  Policy policy;
  policy.keep_caps = {4000};
  auto end = run_confined(policy, [](int) { return 0; });
  EXPECT_TRUE(WIFEXITED(end.status) && WEXITSTATUS(end.status) == kApplyFailed) << end.describe();
  EXPECT_THAT(end.report, ::testing::HasSubstr("cannot keep capability 4000"));
}

TEST(Sandbox, RefusesToRunWithThreads) {
  REQUIRE_ROOT();
  auto end = run_child([](int fd) {
    std::thread t([] { ::pause(); });
    t.detach();
    auto s = ng::sandbox::apply(Policy{});
    if (s) return report(fd, "apply succeeded with a second thread running");
    return report(fd, s.error().message, 0);
  });
  EXPECT_TRUE(end.exited_ok()) << end.describe();
  EXPECT_THAT(end.report, ::testing::HasSubstr("before any thread starts"));
}

TEST(Sandbox, AllowlistHasNoWayOut) {
  auto names = ng::sandbox::allowed_syscall_names();
  auto has = [&](const char* n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  EXPECT_TRUE(has("read"));
  EXPECT_TRUE(has("recvmsg"));
  EXPECT_TRUE(has("epoll_wait"));
  for (const char* n : {"open", "openat", "openat2", "execve", "execveat", "socket", "connect",
                        "bind", "listen", "ptrace", "mount", "setns", "unshare", "clone", "clone3",
                        "fork", "vfork", "kill", "prctl", "capset", "bpf", "process_vm_writev",
                        "io_uring_setup", "dup"}) {
    EXPECT_FALSE(has(n)) << n;
  }
}

// A test uid in the domains' range, of a pair no lab uses.
constexpr uint32_t kTestId = ng::sandbox::kDomainIdBase + 16 * 4095 + 15;

TEST(Sandbox, IsolatedDomainHoldsNothingOfTheHost) {
  REQUIRE_ROOT();
  Policy policy;
  policy.uid = kTestId;
  policy.seccomp = false;  // so that the child can look around
  auto end = run_confined(policy, [](int fd) {
    CHILD_CHECK(fd, ::getuid() == kTestId && ::geteuid() == kTestId);
    CHILD_CHECK(fd, ::getgid() == kTestId && ::getegid() == kTestId);
    CHILD_CHECK(fd, ::getgroups(0, nullptr) == 0);
    CHILD_CHECK(fd, ::access("/etc", F_OK) != 0 && errno == ENOENT);
    CHILD_CHECK(fd, ::access("/proc/self", F_OK) != 0);
    CHILD_CHECK(fd, ::mkdir("/x", 0700) != 0);
    CHILD_CHECK(fd, ::open("/x", O_WRONLY | O_CREAT | O_CLOEXEC, 0600) < 0);
    // Root of the host, and the host's init, are nobody's to it.
    CHILD_CHECK(fd, ::kill(1, 0) != 0 && errno == EPERM);
    CHILD_CHECK(fd, ::setuid(0) != 0);
    // RLIMIT_NPROC 0 binds now that it is not root.
    pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    CHILD_CHECK(fd, pid < 0);
    char host[64] = {};
    CHILD_CHECK(fd, ::gethostname(host, sizeof host - 1) == 0 && std::string(host) == "nicguard-driver");
    return 0;
  });
  EXPECT_TRUE(end.exited_ok()) << end.describe();
}

TEST(Sandbox, IsolatedDomainStillServesUnderSeccomp) {
  REQUIRE_ROOT();
  Policy policy;
  policy.uid = kTestId;
  auto end = run_confined(policy, [](int fd) {
    int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    CHILD_CHECK(fd, efd >= 0);
    uint64_t one = 1;
    CHILD_CHECK(fd, ::write(efd, &one, sizeof one) == sizeof one);
    CHILD_CHECK(fd, ::read(efd, &one, sizeof one) == sizeof one);
    spdlog::info("logging still works");
    return 0;
  });
  EXPECT_TRUE(end.exited_ok()) << end.describe();
}

TEST(Sandbox, DomainIdsDifferPerPairAndIndex) {
  EXPECT_NE(ng::sandbox::domain_id(0, 0), 0u);
  EXPECT_NE(ng::sandbox::domain_id(7, 0), ng::sandbox::domain_id(7, 1));
  EXPECT_NE(ng::sandbox::domain_id(7, 0), ng::sandbox::domain_id(8, 0));
  EXPECT_GE(ng::sandbox::domain_id(~uint64_t{0}, 99), ng::sandbox::kDomainIdBase);
}

TEST(Sandbox, DescribeNamesWhatIsKept) {
  Policy policy;
  policy.memory_limit_bytes = 256ULL << 20;
  policy.keep_caps = {CAP_NET_RAW};
  policy.extra_syscalls = {SCMP_SYS(getppid)};
  auto text = ng::sandbox::describe(policy);
  EXPECT_THAT(text, ::testing::HasSubstr("256 MiB"));
  EXPECT_THAT(text, ::testing::HasSubstr("cap_net_raw"));
  EXPECT_THAT(text, ::testing::HasSubstr("recvmsg"));
  EXPECT_THAT(text, ::testing::HasSubstr("getppid[extra]"));
  EXPECT_THAT(text, ::testing::HasSubstr("mmap[no PROT_EXEC]"));

  policy.uid = kTestId;
  EXPECT_THAT(ng::sandbox::describe(policy), ::testing::HasSubstr("user namespace of its own"));
  policy.seccomp = false;
  EXPECT_THAT(ng::sandbox::describe(policy), ::testing::HasSubstr("no seccomp filter"));
}

}  // namespace

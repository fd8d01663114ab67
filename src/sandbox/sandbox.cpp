#include "sandbox/sandbox.hpp"

#include <fcntl.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <linux/if_packet.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <memory>
#include <optional>
#include <span>
#include <sstream>
#include <type_traits>

#include <fmt/format.h>

#include "common/sanitizer.hpp"
#include "sandbox/isolate.hpp"

#if NG_ASAN
#include <sanitizer/lsan_interface.h>
#endif

namespace ng::sandbox {
namespace {

// How far a syscall on the allowlist is narrowed by its arguments.
enum class Limit {
  none,
  no_exec_prot,  // arg 2 (prot of mmap and mprotect) without PROT_EXEC
  fcntl_cmds,    // arg 1 among kFcntlCmds
  ioctl_tcgets,  // arg 1 == TCGETS
  own_process,   // arg 0 (tgid of tgkill) == getpid()
  own_thread,    // arg 0 (pid of sched_setscheduler) == 0: the caller itself
  packet_stats,  // arg 1 == SOL_PACKET and arg 2 == PACKET_STATISTICS (getsockopt)
};

struct Entry {
  const char* name;
  Limit limit;
};

// Grouped as in sandbox.hpp, which says why each group is there.
constexpr Entry kAllowlist[] = {
    // packet and frontend I/O
    {"read", Limit::none},
    {"write", Limit::none},
    {"readv", Limit::none},
    {"writev", Limit::none},
    {"pread64", Limit::none},
    {"recvfrom", Limit::none},
    {"recvmsg", Limit::none},
    {"recvmmsg", Limit::none},
    {"sendto", Limit::none},
    {"sendmsg", Limit::none},
    {"sendmmsg", Limit::none},
    {"accept4", Limit::none},
    {"accept", Limit::none},
    {"shutdown", Limit::none},
    {"close", Limit::none},
    {"close_range", Limit::none},  // the crash handler (driver/crash.cpp)
    {"sched_setscheduler", Limit::own_thread},  // ... which lowers the dying domain to SCHED_IDLE
    {"getsockopt", Limit::packet_stats},
    // event loop
    {"epoll_create1", Limit::none},
    {"epoll_ctl", Limit::none},
    {"epoll_wait", Limit::none},
    {"epoll_pwait", Limit::none},
    {"epoll_pwait2", Limit::none},
    {"poll", Limit::none},
    {"ppoll", Limit::none},
    {"eventfd2", Limit::none},
    {"timerfd_create", Limit::none},
    {"timerfd_settime", Limit::none},
    {"timerfd_gettime", Limit::none},
    // memory
    {"mmap", Limit::no_exec_prot},
    {"munmap", Limit::none},
    {"mremap", Limit::none},
    {"madvise", Limit::none},
    {"mprotect", Limit::no_exec_prot},
    {"brk", Limit::none},
    {"futex", Limit::none},
    // time
    {"clock_gettime", Limit::none},
    {"gettimeofday", Limit::none},
    {"clock_nanosleep", Limit::none},
    {"nanosleep", Limit::none},
    {"sched_yield", Limit::none},
    // process housekeeping
    {"exit", Limit::none},
    {"exit_group", Limit::none},
    {"restart_syscall", Limit::none},
    {"rt_sigreturn", Limit::none},
    {"rt_sigprocmask", Limit::none},
    {"rt_sigaction", Limit::none},
    {"getpid", Limit::none},
    {"gettid", Limit::none},
    {"tgkill", Limit::own_process},
    // file descriptors
    {"fstat", Limit::none},
    {"newfstatat", Limit::none},
    {"lseek", Limit::none},
    {"fcntl", Limit::fcntl_cmds},
    {"ioctl", Limit::ioctl_tcgets},
    // misc
    {"getrandom", Limit::none},
#if NG_ASAN
    // AddressSanitizer builds only: its abort() and error paths set up an
    // alternate signal stack, and it probes whether memory is readable by
    // writing it into a pipe.
    {"sigaltstack", Limit::none},
    {"pipe2", Limit::none},
#endif
};

// No F_SETFL: the file status flags of a descriptor shared with a frontend
// (its doorbell, its socket) are the frontend's too, and clearing
// O_NONBLOCK on them would make the frontend block on the domain's behalf.
constexpr int kFcntlCmds[] = {F_GETFD, F_SETFD, F_GETFL, F_DUPFD_CLOEXEC, F_GET_SEALS};

constexpr rlim_t kMaxOpenFiles = 4096;

const char* limit_note(Limit limit) {
  switch (limit) {
    case Limit::none: return "";
    case Limit::no_exec_prot: return "[no PROT_EXEC]";
    case Limit::fcntl_cmds: return "[GETFD/SETFD/GETFL/DUPFD_CLOEXEC/GET_SEALS]";
    case Limit::ioctl_tcgets: return "[TCGETS]";
    case Limit::own_process: return "[own process]";
    case Limit::own_thread: return "[itself]";
    case Limit::packet_stats: return "[PACKET_STATISTICS]";
  }
  return "";
}

std::string seccomp_error(int rc) { return std::strerror(-rc); }

std::string cap_name(cap_value_t cap) {
  std::unique_ptr<char, int (*)(void*)> name(cap_to_name(cap), cap_free);
  return name ? std::string(name.get()) : fmt::format("cap_{}", cap);
}

std::string syscall_name(int nr) {
  std::unique_ptr<char, void (*)(void*)> name(seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr),
                                              std::free);
  return name ? std::string(name.get()) : fmt::format("syscall {}", nr);
}

std::string format_bytes(uint64_t bytes) {
  constexpr uint64_t kMiB = 1024 * 1024;
  if (bytes >= kMiB && bytes % kMiB == 0) return fmt::format("{} MiB", bytes / kMiB);
  return fmt::format("{} bytes", bytes);
}

// Both values from /proc, which may be missing in a bare mount namespace; the
// checks they feed are then skipped rather than failing the domain.
std::optional<long> thread_count() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // The command name (field 2) may hold spaces and parentheses; count from
  // the last ')'. num_threads is field 20, the 18th after it.
  auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 1));
  std::string field;
  for (int i = 0; i < 17 && rest >> field; ++i) {
  }
  long threads = 0;
  if (!(rest >> threads)) return std::nullopt;
  return threads;
}

std::optional<uint64_t> mapped_bytes() {
  std::ifstream in("/proc/self/statm");
  uint64_t pages = 0;
  if (!(in >> pages)) return std::nullopt;
  return pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

Status lower_limit(int resource, const char* name, rlim_t value) {
  rlimit current{};
  if (::getrlimit(resource, &current) != 0) return fail_errno("getrlimit({})", name);
  // Never raise: without CAP_SYS_RESOURCE that fails, and a lower limit set by
  // whoever started the domain is theirs to keep.
  rlim_t target = std::min(value, current.rlim_max);
  rlimit next{target, target};
  if (::setrlimit(resource, &next) != 0)
    return fail_errno("cannot set {} to {} for the driver domain", name, target);
  return {};
}

Status apply_limits(const Policy& policy) {
  if (policy.memory_limit_bytes != 0) {
    if (auto mapped = mapped_bytes(); mapped && *mapped >= policy.memory_limit_bytes) {
      // setrlimit would succeed, and then every later allocation would fail.
      return fail(
          "memory limit {} is below the {} this process has already mapped; raise the driver "
          "domain's memory limit (sanitizer builds need it unset)",
          format_bytes(policy.memory_limit_bytes), format_bytes(*mapped));
    }
    if (auto s = lower_limit(RLIMIT_AS, "RLIMIT_AS", policy.memory_limit_bytes); !s) return s;
  }
  if (auto s = lower_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", kMaxOpenFiles); !s) return s;
  if (auto s = lower_limit(RLIMIT_NPROC, "RLIMIT_NPROC", 0); !s) return s;
  if (auto s = lower_limit(RLIMIT_CORE, "RLIMIT_CORE", 0); !s) return s;
  if (policy.file_size_limit_bytes != 0) {
    // Its stdout and stderr are the manager's log file on /run (tmpfs, RAM):
    // past the limit a write fails with EFBIG instead of filling the host's
    // memory, and does not kill the domain (SIGXFSZ ignored).
    ::signal(SIGXFSZ, SIG_IGN);
    if (auto s = lower_limit(RLIMIT_FSIZE, "RLIMIT_FSIZE", policy.file_size_limit_bytes); !s) return s;
  }
  return {};
}

// The kernel's last capability, asked from the kernel rather than from the
// headers this was built with, so that newer capabilities are dropped too.
int last_capability() {
  int cap = 0;
  while (::prctl(PR_CAPBSET_READ, cap + 1, 0, 0, 0) >= 0) ++cap;
  return cap;
}

Status apply_capabilities(const Policy& policy) {
  const int last = last_capability();
  for (cap_value_t cap : policy.keep_caps) {
    if (cap < 0 || cap > last)
      return fail("cannot keep capability {}: this kernel's capabilities are 0..{}", cap, last);
  }
  auto kept = [&](int cap) {
    return std::find(policy.keep_caps.begin(), policy.keep_caps.end(), cap) != policy.keep_caps.end();
  };

  // Bounding set first: dropping from it needs CAP_SETPCAP, which the
  // cap_set_proc below takes away.
  for (int cap = 0; cap <= last; ++cap) {
    if (kept(cap) || ::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1) continue;
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      return fail_errno(
          "cannot drop {} from the capability bounding set (the driver domain must be started "
          "with CAP_SETPCAP, e.g. by the manager as root)",
          cap_name(cap));
    }
  }

  // EINVAL: a kernel before 4.3 has no ambient set to clear.
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
    return fail_errno("cannot clear the ambient capability set");

  std::unique_ptr<std::remove_pointer_t<cap_t>, int (*)(void*)> caps(cap_init(), cap_free);
  if (!caps) return fail_errno("cap_init");
  if (!policy.keep_caps.empty()) {
    auto n = static_cast<int>(policy.keep_caps.size());
    if (cap_set_flag(caps.get(), CAP_PERMITTED, n, policy.keep_caps.data(), CAP_SET) != 0 ||
        cap_set_flag(caps.get(), CAP_EFFECTIVE, n, policy.keep_caps.data(), CAP_SET) != 0)
      return fail_errno("cap_set_flag");
  }
  if (cap_set_proc(caps.get()) != 0) {
    std::string names;
    for (cap_value_t cap : policy.keep_caps) names += (names.empty() ? "" : ", ") + cap_name(cap);
    return fail_errno(
        "cannot set the driver domain's capabilities to {{{}}}: a kept capability must already "
        "be in the process's permitted set",
        names);
  }
  return {};
}

Status add_rule(scmp_filter_ctx ctx, const char* name, int nr, std::span<const scmp_arg_cmp> args) {
  int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, static_cast<unsigned>(args.size()),
                                  args.data());
  if (rc != 0 && rc != -EEXIST)
    return fail("cannot add {} to the seccomp allowlist: {}", name, seccomp_error(rc));
  return {};
}

Status add_entry(scmp_filter_ctx ctx, const Entry& entry, int nr) {
  switch (entry.limit) {
    case Limit::none:
      return add_rule(ctx, entry.name, nr, {});
    case Limit::no_exec_prot: {
      scmp_arg_cmp cmp{.arg = 2, .op = SCMP_CMP_MASKED_EQ, .datum_a = PROT_EXEC, .datum_b = 0};
      return add_rule(ctx, entry.name, nr, std::span(&cmp, 1));
    }
    case Limit::fcntl_cmds:
      // One rule per command: the arguments of a single rule are ANDed.
      for (int cmd : kFcntlCmds) {
        scmp_arg_cmp cmp{.arg = 1, .op = SCMP_CMP_EQ, .datum_a = static_cast<scmp_datum_t>(cmd)};
        if (auto s = add_rule(ctx, entry.name, nr, std::span(&cmp, 1)); !s) return s;
      }
      return {};
    case Limit::ioctl_tcgets: {
      scmp_arg_cmp cmp{.arg = 1, .op = SCMP_CMP_EQ, .datum_a = TCGETS};
      return add_rule(ctx, entry.name, nr, std::span(&cmp, 1));
    }
    case Limit::own_process: {
      scmp_arg_cmp cmp{.arg = 0, .op = SCMP_CMP_EQ,
                       .datum_a = static_cast<scmp_datum_t>(::getpid())};
      return add_rule(ctx, entry.name, nr, std::span(&cmp, 1));
    }
    case Limit::own_thread: {
      scmp_arg_cmp cmp{.arg = 0, .op = SCMP_CMP_EQ, .datum_a = 0};
      return add_rule(ctx, entry.name, nr, std::span(&cmp, 1));
    }
    case Limit::packet_stats: {
      scmp_arg_cmp cmp[] = {{.arg = 1, .op = SCMP_CMP_EQ, .datum_a = SOL_PACKET},
                            {.arg = 2, .op = SCMP_CMP_EQ, .datum_a = PACKET_STATISTICS}};
      return add_rule(ctx, entry.name, nr, std::span(cmp));
    }
  }
  return {};
}

Status apply_seccomp(const Policy& policy) {
  std::unique_ptr<void, void (*)(scmp_filter_ctx)> ctx(seccomp_init(SCMP_ACT_KILL_PROCESS),
                                                       seccomp_release);
  if (!ctx)
    return fail("cannot create a seccomp filter (libseccomp or the kernel lacks "
                "SECCOMP_RET_KILL_PROCESS; Linux >= 4.14 is required)");
  // A syscall made through another architecture's entry (int 0x80, x32)
  // would otherwise get the weaker default of killing only the thread.
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS); rc != 0)
    return fail("cannot set the seccomp bad-architecture action: {}", seccomp_error(rc));
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_TSYNC, 1); rc != 0)
    return fail("cannot ask for seccomp thread synchronisation: {}", seccomp_error(rc));

  for (const Entry& entry : kAllowlist) {
    int nr = seccomp_syscall_resolve_name(entry.name);
    if (nr < 0) continue;  // not a syscall on this architecture (e.g. poll on arm64)
    if (auto s = add_entry(ctx.get(), entry, nr); !s) return s;
  }
  for (int nr : policy.extra_syscalls) {
    if (nr < 0) return fail("extra syscall number {} is not a valid syscall", nr);
    auto name = syscall_name(nr);
    if (auto s = add_rule(ctx.get(), name.c_str(), nr, {}); !s) return s;
  }

  if (int rc = seccomp_load(ctx.get()); rc != 0) {
    return fail("cannot load the driver domain's seccomp filter: {}{}", seccomp_error(rc),
                rc > 0 ? fmt::format(" (thread {} could not be synchronised)", rc) : "");
  }
  return {};
}

}  // namespace

uint32_t domain_id(uint64_t pair_id, size_t index) {
  return kDomainIdBase + 16 * static_cast<uint32_t>(pair_id % 4096) + static_cast<uint32_t>(index % 16);
}

std::vector<std::string> allowed_syscall_names() {
  std::vector<std::string> names;
  for (const Entry& entry : kAllowlist) {
    if (seccomp_syscall_resolve_name(entry.name) >= 0) names.emplace_back(entry.name);
  }
  return names;
}

Status apply(const Policy& policy) {
  if (auto threads = thread_count(); threads && *threads > 1) {
    return fail(
        "sandbox must be applied before any thread starts ({} threads are running): "
        "capabilities are per thread and the others would keep theirs",
        *threads);
  }
  // Load the time zone now: the first localtime_r() of a log line would
  // otherwise open /etc/localtime after open is forbidden.
  ::tzset();
#if NG_ASAN
  // LeakSanitizer's end-of-process check stops the world with clone and
  // ptrace, which the filter would answer with SIGSYS at every exit. Check
  // for leaks now instead; the later check is then skipped.
  if (policy.seccomp) __lsan_do_leak_check();
#endif

  if (auto s = apply_limits(policy); !s) return s;
  if (policy.uid != 0) {
    if (auto s = isolate(policy.uid); !s) return s;
  }
  if (auto s = apply_capabilities(policy); !s) return s;
  if (policy.uid != 0 && ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) return fail_errno("cannot set PR_SET_DUMPABLE");
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return fail_errno("cannot set no_new_privs");
  if (policy.seccomp) {
    if (auto s = apply_seccomp(policy); !s) return s;
  }
  return {};
}

std::string describe(const Policy& policy) {
  std::string out = policy.memory_limit_bytes != 0
                        ? fmt::format("memory limit {}", format_bytes(policy.memory_limit_bytes))
                        : std::string("no memory limit");
  out += fmt::format(", at most {} open files, no new processes, no core dumps", kMaxOpenFiles);
  if (policy.keep_caps.empty()) {
    out += ", keeps no capabilities";
  } else {
    out += ", keeps";
    for (size_t i = 0; i < policy.keep_caps.size(); ++i)
      out += (i == 0 ? " " : ", ") + cap_name(policy.keep_caps[i]);
  }
  if (policy.uid != 0)
    out += fmt::format(", uid {} alone in a user namespace of its own, own mount, IPC, UTS and cgroup "
                       "namespaces, an empty read-only root", policy.uid);
  out += ", no_new_privs";
  if (!policy.seccomp) return out + ", no seccomp filter";

  std::string list;
  size_t count = 0;
  for (const Entry& entry : kAllowlist) {
    if (seccomp_syscall_resolve_name(entry.name) < 0) continue;
    list += fmt::format("{}{}{}", list.empty() ? "" : " ", entry.name, limit_note(entry.limit));
    ++count;
  }
  for (int nr : policy.extra_syscalls) {
    list += fmt::format(" {}[extra]", syscall_name(nr));
    ++count;
  }
  return out + fmt::format(", seccomp allowlist of {} syscalls, anything else kills ({})", count,
                           list);
}

}  // namespace ng::sandbox

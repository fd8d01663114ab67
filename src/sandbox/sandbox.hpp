#pragma once
// Confinement of a driver domain process.
//
// The driver domain runs untrusted NIC driver code. It opens everything it
// will ever need first (its AF_PACKET socket on its NIC, its Unix listening
// socket for frontends, its stats file), then calls apply() once. From then on
// it can only move packets between the descriptors it already holds, accept
// frontends, and map the shared memory they pass it. A compromised driver can
// break its own traffic; it cannot open files, create sockets, run programs,
// reach other namespaces, start processes or signal anyone but itself.
//
// apply() works in this order, each step narrowing what the next may do:
//   1. resource limits: RLIMIT_AS (Policy::memory_limit_bytes), RLIMIT_NOFILE
//      (4096 or the existing hard limit if lower), RLIMIT_NPROC 0, RLIMIT_CORE
//      0 (a driver's memory holds other applications' frames, so it must not
//      end up in a core file), RLIMIT_FSIZE (Policy::file_size_limit_bytes:
//      its log lives on tmpfs, in the host's memory; SIGXFSZ is ignored, so a
//      write past it fails instead of killing the domain). Soft and hard
//      limits are both set: the hard one cannot be raised again once
//      CAP_SYS_RESOURCE is gone (the manager, which keeps it, raises
//      RLIMIT_AS when a reload adds app domains).
//   2. isolation (Policy::uid, sandbox/isolate.hpp), if asked for: the
//      domain takes an unprivileged uid and gid of its own, then a user
//      namespace in which only that id is mapped, new mount, IPC, UTS and
//      cgroup namespaces, and pivots into an empty read-only root, so that
//      even with seccomp gone it holds no capability over the host, sees no
//      file, and shares no System V IPC or host name. Its pid namespace and
//      its cgroup (memory and pids limits) are the manager's to give at
//      spawn (manager.cpp, sandbox/cgroup.hpp).
//   3. capabilities: every capability not in Policy::keep_caps leaves the
//      bounding set, the ambient set is cleared, the inheritable set is
//      emptied and permitted = effective = keep_caps.
//   4. PR_SET_NO_NEW_PRIVS, so no later execve could gain privileges.
//      PR_SET_DUMPABLE stays 1 (the change of uid clears it): the manager
//      attaches to the driver with ptrace for fault injection, and nobody
//      else runs as the domain's uid.
//   5. a seccomp allowlist (below); anything else kills the whole process with
//      SIGSYS, which the manager sees as a crash and handles as a failure.
//
// The syscall allowlist, by what the driver's steady state uses them for:
//   packet and frontend I/O
//     read, write, readv, writev, pread64, recvfrom, recvmsg, recvmmsg,
//     sendto, sendmsg, sendmmsg: frames on the AF_PACKET socket, control
//     messages and passed descriptors (SCM_RIGHTS) on frontend connections,
//     eventfd kicks.
//     accept4, accept, shutdown, close: serving frontends on the Unix socket
//     that was bound before apply(); dropping a frontend or a passed fd.
//     getsockopt limited to SOL_PACKET/PACKET_STATISTICS: the NIC's receive
//     overruns. No setsockopt: every socket option is set before apply(),
//     and a free one reached TPACKET rings and fanout groups, a kernel area
//     with a history of CVEs.
//   event loop
//     epoll_create1, epoll_ctl, epoll_wait, epoll_pwait, epoll_pwait2, poll,
//     ppoll; eventfd2 (kick channels), timerfd_create, timerfd_settime,
//     timerfd_gettime (heartbeat and stall timers).
//   memory
//     mmap, munmap, mremap, madvise, mprotect, brk: the allocator, and mapping
//     the ring memfds frontends pass in. mmap and mprotect are refused when
//     they ask for PROT_EXEC, so an exploited driver cannot create new code.
//     futex: the C++ runtime's locks and once-initialisation.
//   time
//     clock_gettime, gettimeofday (vDSO fallbacks), clock_nanosleep,
//     nanosleep, sched_yield.
//   process housekeeping
//     sched_setscheduler only on itself (pid 0): the crash handler lowers the
//     dying domain to SCHED_IDLE; on any other pid it could starve the
//     warm spare.
//     exit, exit_group, restart_syscall, rt_sigreturn, rt_sigprocmask,
//     rt_sigaction, getpid, gettid; tgkill only aimed at this process (abort()
//     raises SIGABRT with it) - the driver runs as uid 0 without CAP_KILL, and
//     an unrestricted tgkill would still let it signal same-uid processes
//     such as the manager and the frontends.
//   file descriptors
//     fstat, newfstatat (fstat on glibc >= 2.33, sizes of passed memfds),
//     lseek, fcntl limited to F_GETFD/F_SETFD/F_GETFL/F_DUPFD_CLOEXEC/
//     F_GET_SEALS (F_SETFL could make a descriptor shared with a frontend
//     blocking, F_SETOWN/F_SETSIG could aim SIGIO at another process,
//     F_ADD_SEALS could interfere with a frontend's memfd), ioctl limited to
//     TCGETS (glibc stdio asks whether a character device is a terminal on a
//     stream's first write; the query has no side effects).
//   misc
//     getrandom (hash seeds, std::random_device).
// Everything else is denied by omission, notably open/openat, execve(at),
// socket, connect, bind, listen, clone/fork, ptrace, kill, mount, setns,
// unshare, prctl, capset, bpf, io_uring_*, process_vm_*, and the 32-bit and
// x32 entry points (a filter for another architecture is a kill too).
// Policy::extra_syscalls are allowed unconditionally on top.
// AddressSanitizer builds also allow sigaltstack and pipe2, which its runtime
// uses, and run LeakSanitizer's check inside apply(), because its exit-time
// check needs clone and ptrace.
//
// Call apply() from a single-threaded process (it refuses otherwise when it
// can tell): capabilities are per thread, and a thread started earlier would
// keep them. The seccomp filter is synchronised to all threads regardless.
#include <sys/capability.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/error.hpp"

namespace ng::sandbox {

struct Policy {
  uint64_t memory_limit_bytes = 0;     // RLIMIT_AS; 0: leave unlimited
  // RLIMIT_FSIZE: the most any file it writes (its log) may hold; 0: unlimited.
  uint64_t file_size_limit_bytes = uint64_t{16} << 20;
  // Capabilities are checked when a socket is created, not when it is used:
  // a driver whose AF_PACKET socket is already open normally keeps none.
  std::vector<cap_value_t> keep_caps;  // e.g. CAP_NET_RAW
  std::vector<int> extra_syscalls;     // native syscall numbers (SCMP_SYS(name))
  bool seccomp = true;                 // false: limits, capabilities and no_new_privs only
  // Step 2: the unprivileged uid (and gid) the domain takes; 0 keeps the
  // caller's identity, user namespace and filesystem. Needs root on entry.
  uint32_t uid = 0;
};

// The uids driver domains take: kDomainIdBase + 16 * (pair % 4096) + the
// domain's index, one per domain of every pair on a host, far above the
// ranges Debian gives to users (1000..59999) and to systemd's dynamic users.
inline constexpr uint32_t kDomainIdBase = 0x4E470000;
uint32_t domain_id(uint64_t pair_id, size_t index);

// Confines the calling process as described above. Not reversible. On error
// the process may be partly confined; the caller should exit rather than go
// on running the driver.
Status apply(const Policy& policy);

// One line for logs, e.g. "memory limit 256 MiB, keeps cap_net_raw,
// seccomp allowlist of 58 syscalls (read write ...)".
std::string describe(const Policy& policy);

// The allowlist's syscall names for this architecture (without the policy's
// extras), in the order they are added to the filter.
std::vector<std::string> allowed_syscall_names();

}  // namespace ng::sandbox

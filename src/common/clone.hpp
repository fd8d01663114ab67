#pragma once
// clone3 with a pidfd: a child started in namespaces of its own, and a handle
// on it that a reused pid can never redirect.
#include <linux/sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

namespace ng {

// As fork(), plus `flags` (CLONE_NEW*); returns the pid (0 in the child, -1
// with errno on failure) and sets pidfd in the parent. The child runs on a
// copy of the caller's memory like a fork child: async-signal-safe calls only.
inline long clone_with_pidfd(uint64_t flags, int& pidfd) {
  clone_args ca{};
  ca.flags = flags | CLONE_PIDFD;
  ca.pidfd = reinterpret_cast<uintptr_t>(&pidfd);
  ca.exit_signal = SIGCHLD;
  return ::syscall(SYS_clone3, &ca, sizeof ca);
}

}  // namespace ng

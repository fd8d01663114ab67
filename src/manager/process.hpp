#pragma once
// Pidfds: the manager signals and waits for its children only through them,
// so that a pid reused after an exit is never signalled by mistake.
#include <sys/types.h>

#include <vector>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace ng::manager {

Result<UniqueFd> open_pidfd(pid_t pid);
int pidfd_signal(int pidfd, int sig);
// Waits until every pidfd in fds has turned readable (process gone) or the
// time is up; returns the indices still alive.
std::vector<size_t> wait_exits(const std::vector<int>& fds, int timeout_ms);
// SIGTERM, then SIGKILL if it is still there after grace_ms.
void terminate(int pidfd, int grace_ms, int kill_wait_ms);

}  // namespace ng::manager

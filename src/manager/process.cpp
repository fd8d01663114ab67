#include "manager/process.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "common/clock.hpp"

namespace ng::manager {

Result<UniqueFd> open_pidfd(pid_t pid) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return fail_errno("pidfd_open({})", pid);
  return UniqueFd(fd);
}

int pidfd_signal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

std::vector<size_t> wait_exits(const std::vector<int>& fds, int timeout_ms) {
  uint64_t deadline = mono_ns() + static_cast<uint64_t>(timeout_ms) * 1'000'000;
  std::vector<size_t> alive(fds.size());
  for (size_t i = 0; i < fds.size(); ++i) alive[i] = i;
  while (!alive.empty()) {
    std::vector<pollfd> p;
    for (size_t i : alive) p.push_back({fds[i], POLLIN, 0});
    uint64_t now = mono_ns();
    if (now >= deadline) break;
    int rc = ::poll(p.data(), p.size(), static_cast<int>((deadline - now) / 1'000'000 + 1));
    if (rc < 0 && errno != EINTR) break;
    std::vector<size_t> still;
    for (size_t k = 0; k < p.size(); ++k) {
      if (!(p[k].revents & POLLIN)) still.push_back(alive[k]);
    }
    alive = std::move(still);
  }
  return alive;
}

void terminate(int pidfd, int grace_ms, int kill_wait_ms) {
  pidfd_signal(pidfd, SIGTERM);
  if (wait_exits({pidfd}, grace_ms).empty()) return;
  pidfd_signal(pidfd, SIGKILL);
  wait_exits({pidfd}, kill_wait_ms);
}

}  // namespace ng::manager

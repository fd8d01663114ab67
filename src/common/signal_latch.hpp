#pragma once
// SIGINT/SIGTERM/SIGHUP are blocked while a SignalLatch lives and read from a
// signalfd: long operations poll fired() at safe points, stop, and let their
// RAII owners remove what they made instead of dying half-way. Children must
// drop the mask before exec.
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/fd.hpp"

namespace ng {

class SignalLatch {
 public:
  SignalLatch() {
    sigset_t set;
    ::sigemptyset(&set);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaddset(&set, sig);
    ::pthread_sigmask(SIG_BLOCK, &set, &old_);
    fd_.reset(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  }
  ~SignalLatch() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  SignalLatch(const SignalLatch&) = delete;
  SignalLatch& operator=(const SignalLatch&) = delete;

  bool fired() {
    signalfd_siginfo info{};
    while (fd_ && ::read(fd_.get(), &info, sizeof(info)) == sizeof(info)) fired_ = true;
    return fired_;
  }

 private:
  UniqueFd fd_;
  sigset_t old_{};
  bool fired_ = false;
};

}  // namespace ng

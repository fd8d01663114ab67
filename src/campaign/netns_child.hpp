#pragma once
// A forked child that runs a function inside a network namespace and hands
// its JSON answer back through a pipe. The campaign's traffic (probe streams,
// echo end, TCP ends) runs this way, each in the namespace it belongs to,
// while the campaign itself stays in the root namespace.
#include <fcntl.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "netlink/netlink.hpp"

namespace ng::campaign {

class NetnsChild {
 public:
  template <typename Fn>
  static Result<NetnsChild> start(const std::string& netns, Fn fn) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return fail_errno("creating a pipe");
    pid_t pid = ::fork();
    if (pid < 0) {
      ::close(p[0]);
      ::close(p[1]);
      return fail_errno("forking a traffic process");
    }
    if (pid == 0) {
      ::close(p[0]);
      // The parent may die first (a killed campaign): take the child along.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      std::string out;
      if (auto s = netlink::enter_netns(netns); !s) {
        out = nlohmann::json{{"error", s.error().message}}.dump();
      } else {
        out = fn().dump();
      }
      write_all(p[1], out);
      ::_exit(0);
    }
    ::close(p[1]);
    NetnsChild c;
    c.pid_ = pid;
    c.out_ = UniqueFd(p[0]);
    return c;
  }
  NetnsChild() = default;
  NetnsChild(NetnsChild&& o) noexcept : pid_(std::exchange(o.pid_, 0)), out_(std::move(o.out_)) {}
  NetnsChild& operator=(NetnsChild&& o) noexcept {
    if (this != &o) {
      stop();
      pid_ = std::exchange(o.pid_, 0);
      out_ = std::move(o.out_);
    }
    return *this;
  }
  NetnsChild(const NetnsChild&) = delete;
  NetnsChild& operator=(const NetnsChild&) = delete;
  ~NetnsChild() { stop(); }

  // Started and not yet collected.
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }  // 0 once collected
  // Still running (not reaped, not exited).
  bool alive() {
    if (pid_ <= 0) return false;
    if (::waitpid(pid_, nullptr, WNOHANG) == 0) return true;
    pid_ = 0;
    return false;
  }

  // Waits for the child and parses what it wrote; discarded (null) when it
  // wrote nothing parseable, e.g. because it was killed.
  nlohmann::json result() {
    std::string text;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(out_.get(), buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
    if (pid_ > 0) ::waitpid(pid_, nullptr, 0);
    pid_ = 0;
    return nlohmann::json::parse(text, nullptr, false);
  }

  void stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = 0;
    }
  }

 private:
  static void write_all(int fd, const std::string& s) {
    size_t done = 0;
    while (done < s.size()) {
      ssize_t n = ::write(fd, s.data() + done, s.size() - done);
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  }

  pid_t pid_ = 0;
  UniqueFd out_;
};

}  // namespace ng::campaign

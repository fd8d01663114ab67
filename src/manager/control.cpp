#include "manager/control.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <optional>

#include <spdlog/spdlog.h>

#include "common/clock.hpp"

namespace ng::manager {

namespace {

// Requests are tiny; anything longer is a confused or hostile client.
constexpr size_t kMaxLine = 64 * 1024;
constexpr size_t kMaxAnswer = 16 * 1024 * 1024;
constexpr size_t kMaxConns = 64;
// Fairness: a client that pipelines thousands of requests gets this many
// answered per turn, and is read no further while this much of its input or
// output waits, so another client waits a few turns at most.
constexpr size_t kAnswersPerTurn = 16;
constexpr size_t kMaxPendingIn = 2 * kMaxLine;
constexpr size_t kMaxPendingOut = 1024 * 1024;

const char* kStartHint = "is the manager running? start it with `nicguard manager -c FILE`";

std::string line_of(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

nlohmann::json refusal(const std::string& why) { return {{"ok", false}, {"error", why}}; }

Result<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return fail("socket path {} is {} bytes; Unix socket paths hold at most {}", path, path.size(),
                sizeof(addr.sun_path) - 1);
  }
  path.copy(addr.sun_path, path.size());
  return addr;
}

}  // namespace

Result<ControlServer> ControlServer::listen(const std::string& path, Handler handler) {
  auto addr = unix_address(path);
  if (!addr) return tl::unexpected(addr.error());
  ControlServer s;
  s.path_ = path;
  s.handler_ = std::move(handler);
  s.epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!s.epoll_) return fail_errno("epoll_create1 for the control socket");
  s.listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.listen_) return fail_errno("creating the control socket");
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return fail_errno("removing the stale control socket {}", path);
  }
  // The socket file must never exist with looser permissions, not even
  // between bind() and chmod(); the manager is single-threaded here.
  mode_t old_mask = ::umask(0177);
  int rc = ::bind(s.listen_.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr));
  ::umask(old_mask);
  if (rc != 0) return fail_errno("binding the control socket {}", path);
  if (::listen(s.listen_.get(), 16) != 0) return fail_errno("listening on {}", path);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = s.listen_.get();
  if (::epoll_ctl(s.epoll_.get(), EPOLL_CTL_ADD, s.listen_.get(), &ev) != 0) {
    return fail_errno("epoll_ctl for the control socket");
  }
  return s;
}

void ControlServer::process() {
  epoll_event events[16];
  int n = ::epoll_wait(epoll_.get(), events, 16, 0);
  for (int i = 0; i < n; ++i) {
    int fd = events[i].data.fd;
    if (fd == listen_.get()) {
      accept_all();
      continue;
    }
    auto it = conns_.find(fd);
    if (it == conns_.end()) continue;
    serve(it->second, events[i].events);
    if (finished(it->second)) conns_.erase(it);
  }
}

void ControlServer::accept_all() {
  for (;;) {
    UniqueFd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) {
      if (errno != EAGAIN && errno != EINTR) spdlog::warn("control socket accept: {}", strerror(errno));
      return;
    }
    if (conns_.size() >= kMaxConns) {
      spdlog::warn("control socket: {} connections open; dropping a new one", conns_.size());
      continue;
    }
    Conn c;
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != 0) {
      spdlog::warn("control socket: refused a client with uid {} (pid {})", cred.uid, cred.pid);
      refuse(c, fmt::format(
                    "permission denied: the control socket serves only root (uid 0), you are uid {}",
                    cred.uid));
    }
    c.fd = std::move(fd);
    int key = c.fd.get();
    auto& stored = conns_.emplace(key, std::move(c)).first->second;
    serve(stored, 0);
    if (finished(stored)) conns_.erase(key);
  }
}

// A refused client gets one answer; the rest of what it sends is read and
// dropped until it hangs up, because closing with unread input would reset
// the connection and lose the answer.
void ControlServer::refuse(Conn& c, const std::string& why) {
  c.out += line_of(refusal(why));
  c.in.clear();
  c.refused = true;
}

void ControlServer::serve(Conn& c, uint32_t events) {
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_input(c);
  if (!c.refused) answer_lines(c);
  flush(c);
  if (c.refused && c.out.empty() && !c.shut) {
    ::shutdown(c.fd.get(), SHUT_WR);
    c.shut = true;
  }
  if (!finished(c)) watch(c);
}

void ControlServer::read_input(Conn& c) {
  char buf[4096];
  while (c.in.size() < kMaxPendingIn) {
    ssize_t n = ::read(c.fd.get(), buf, sizeof(buf));
    if (n > 0) {
      if (!c.refused) c.in.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 || errno != EAGAIN) c.eof = true;
    return;
  }
}

bool ControlServer::has_request(const Conn& c) { return !c.refused && c.in.find('\n') != std::string::npos; }

bool ControlServer::finished(const Conn& c) { return c.eof && c.out.empty() && !has_request(c); }

void ControlServer::answer_lines(Conn& c) {
  size_t start = 0, answered = 0;
  for (size_t nl; answered < kAnswersPerTurn && c.out.size() < kMaxPendingOut &&
                  (nl = c.in.find('\n', start)) != std::string::npos;
       start = nl + 1, ++answered) {
    std::string_view line(c.in.data() + start, nl - start);
    auto req = parse_request(line);
    nlohmann::json answer;
    if (!req) {
      answer = refusal(req.error().message);
    } else {
      // The handler builds JSON from our own state; a library exception
      // there must cost one answer, not the manager.
      try {
        answer = handler_(*req);
      } catch (const std::exception& e) {
        answer = refusal(fmt::format("internal error: {}", e.what()));
      }
    }
    c.out += line_of(answer);
  }
  c.in.erase(0, start);
  if (c.in.size() > kMaxLine) refuse(c, "request line too long");
}

void ControlServer::flush(Conn& c) {
  while (!c.out.empty()) {
    ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c.out.erase(0, static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      if (n < 0 && errno != EAGAIN) {
        c.out.clear();  // peer gone: nothing left to deliver
        c.eof = true;
      }
      return;
    }
  }
}

// Re-arms the connection: readable until the peer is done and while its
// backlog is short; writable while output waits, or while requests wait for
// their turn (a writable socket brings it back on the next pass, after the
// other clients had theirs).
void ControlServer::watch(Conn& c) {
  epoll_event ev{};
  bool more_in = !c.eof && c.in.size() < kMaxPendingIn && c.out.size() < kMaxPendingOut;
  bool more_out = !c.out.empty() || has_request(c);
  ev.events = (more_in ? uint32_t{EPOLLIN} : 0u) | (more_out ? uint32_t{EPOLLOUT} : 0u);
  ev.data.fd = c.fd.get();
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev) != 0 && errno == ENOENT) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c.fd.get(), &ev);
  }
}

namespace {

Result<UniqueFd> connect_control(const std::string& path) {
  auto addr = unix_address(path);
  if (!addr) return tl::unexpected(addr.error());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno("creating a socket");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) == 0) {
    return fd;
  }
  switch (errno) {
    case ENOENT:
      return fail("no control socket at {}: {}", path, kStartHint);
    case ECONNREFUSED:
      return fail("nothing listens on {} (left behind by a manager that stopped): {}", path,
                  kStartHint);
    case EACCES:
    case EPERM:
      return fail("permission denied on {}: the control socket is root's, run as root", path);
    default:
      return fail_errno("connecting to the manager at {}", path);
  }
}

// Waits for fd to become ready for `events` until deadline (mono ns).
Status wait_ready(int fd, short events, uint64_t deadline, const std::string& path) {
  for (;;) {
    uint64_t now = mono_ns();
    if (now >= deadline) return fail("the manager at {} did not answer in time", path);
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, static_cast<int>((deadline - now + 999'999) / 1'000'000));
    if (rc > 0) return {};
    if (rc < 0 && errno != EINTR) return fail_errno("waiting for the manager at {}", path);
  }
}

}  // namespace

Result<nlohmann::json> parse_request(std::string_view line) {
  auto req = nlohmann::json::parse(line, nullptr, false);
  if (req.is_discarded() || !req.is_object()) {
    return fail("the request is not a JSON object on one line, e.g. {{\"cmd\":\"status\"}}");
  }
  return req;
}

std::string request_type_error(const nlohmann::json& request) {
  if (!request.is_object()) return fmt::format("a request is a JSON object, not {}", request.type_name());
  auto it = request.find("cmd");
  if (it == request.end()) return "the request has no \"cmd\"";
  if (!it->is_string()) return fmt::format("\"cmd\" must be a string, not {}", it->type_name());
  for (const char* key : {"domain", "fault"}) {
    auto k = request.find(key);
    if (k != request.end() && !k->is_string()) return fmt::format("\"{}\" must be a string, not {}", key, k->type_name());
  }
  auto seed = request.find("seed");
  if (seed != request.end() && !seed->is_number_unsigned()) {
    return fmt::format("\"seed\" must be an unsigned integer, not {}", seed->type_name());
  }
  return "";
}

Result<nlohmann::json> control_request(const std::string& socket_path,
                                       const nlohmann::json& request, int timeout_ms) {
  auto fd = connect_control(socket_path);
  if (!fd) return tl::unexpected(fd.error());
  uint64_t deadline = mono_ns() + static_cast<uint64_t>(std::max(timeout_ms, 1)) * 1'000'000;
  std::string out = line_of(request);
  // A send that fails may still have an answer waiting (a refusal sent before
  // the manager stopped reading): read it before reporting the send error.
  std::optional<Error> send_error;
  for (size_t sent = 0; sent < out.size() && !send_error;) {
    if (auto s = wait_ready(fd->get(), POLLOUT, deadline, socket_path); !s) {
      return tl::unexpected(s.error());
    }
    ssize_t n = ::send(fd->get(), out.data() + sent, out.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      send_error = fail_errno("sending to the manager at {}", socket_path).value();
    }
    if (n > 0) sent += static_cast<size_t>(n);
  }
  std::string in;
  while (in.find('\n') == std::string::npos) {
    if (auto s = wait_ready(fd->get(), POLLIN, deadline, socket_path); !s) {
      return tl::unexpected(send_error.value_or(s.error()));
    }
    char buf[8192];
    ssize_t n = ::recv(fd->get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n <= 0 && send_error) return tl::unexpected(*send_error);
    if (n == 0) return fail("the manager at {} closed the connection without answering", socket_path);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return fail_errno("reading the manager's answer from {}", socket_path);
    }
    if (n > 0) in.append(buf, static_cast<size_t>(n));
    if (in.size() > kMaxAnswer) return fail("the manager's answer is implausibly long");
  }
  auto answer = nlohmann::json::parse(in.substr(0, in.find('\n')), nullptr, false);
  if (answer.is_discarded() || !answer.is_object()) {
    return fail("the manager at {} answered something that is not a JSON object", socket_path);
  }
  if (answer["ok"] != true) {
    const auto& why = answer["error"];
    return fail("the manager refused: {}", why.is_string() ? why.get<std::string>() : why.dump());
  }
  return answer;
}

}  // namespace ng::manager

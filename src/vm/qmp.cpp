#include "vm/qmp.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "common/clock.hpp"
#include "common/fd.hpp"
#include "common/unix_socket.hpp"

namespace ng::vm {
namespace {

class Line {
 public:
  Line(int fd, uint64_t deadline) : fd_(fd), deadline_(deadline) {}

  Result<nlohmann::json> next() {
    for (;;) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        auto j = nlohmann::json::parse(buf_.substr(0, nl), nullptr, false);
        buf_.erase(0, nl + 1);
        if (j.is_discarded() || !j.is_object()) return fail("QMP sent a line that is not a JSON object");
        return j;
      }
      uint64_t now = mono_ns();
      if (now >= deadline_) return fail("QMP did not answer in time");
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>((deadline_ - now) / 1'000'000) + 1) <= 0) continue;
      char chunk[4096];
      ssize_t n = ::read(fd_, chunk, sizeof(chunk));
      if (n <= 0) {
        auto e = fail("QMP closed the connection");
        e.value().peer_gone = true;
        return e;
      }
      buf_.append(chunk, static_cast<size_t>(n));
      if (buf_.size() > (1u << 20)) return fail("QMP sent more than 1 MiB without a newline");
    }
  }

  // The next reply, skipping events.
  Result<nlohmann::json> reply() {
    for (;;) {
      auto j = next();
      if (!j) return j;
      if (j->contains("event")) continue;
      if (j->contains("error")) {
        return fail("QMP error: {}", (*j)["error"].value("desc", std::string("(no description)")));
      }
      if (j->contains("return")) return (*j)["return"];
    }
  }

 private:
  int fd_;
  uint64_t deadline_;
  std::string buf_;
};

Status send_line(int fd, const nlohmann::json& j) {
  std::string s = j.dump() + "\n";
  if (::send(fd, s.data(), s.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(s.size())) {
    return fail_errno("writing to QMP");
  }
  return {};
}

// Connected and past qmp_capabilities.
Result<UniqueFd> negotiate(const std::string& socket, Line*& in, std::optional<Line>& storage, int timeout_ms) {
  auto connected = connect_unix(SOCK_STREAM, socket, "driver VM's QMP socket");
  if (!connected) return tl::unexpected(connected.error());
  UniqueFd fd = std::move(*connected);
  storage.emplace(fd.get(), mono_ns() + uint64_t(timeout_ms) * 1'000'000);
  in = &*storage;
  auto greeting = in->next();
  if (!greeting) return tl::unexpected(greeting.error());
  if (!greeting->contains("QMP")) return fail("{} is not a QMP socket: no greeting", socket);
  if (auto s = send_line(fd.get(), {{"execute", "qmp_capabilities"}}); !s) return tl::unexpected(s.error());
  if (auto r = in->reply(); !r) return tl::unexpected(r.error());
  return fd;
}

}  // namespace

Result<nlohmann::json> qmp_command(const std::string& socket, const std::string& command,
                                   const nlohmann::json& arguments, int timeout_ms) {
  Line* in = nullptr;
  std::optional<Line> storage;
  auto fd = negotiate(socket, in, storage, timeout_ms);
  if (!fd) return tl::unexpected(fd.error());
  nlohmann::json cmd = {{"execute", command}};
  if (!arguments.empty()) cmd["arguments"] = arguments;
  if (auto s = send_line(fd->get(), cmd); !s) return tl::unexpected(s.error());
  return in->reply();
}

Result<QmpEvents> QmpEvents::connect(const std::string& socket, int timeout_ms) {
  Line* in = nullptr;
  std::optional<Line> storage;
  auto fd = negotiate(socket, in, storage, timeout_ms);
  if (!fd) return tl::unexpected(fd.error());
  QmpEvents e;
  e.fd_ = std::move(*fd);
  return e;
}

Result<std::vector<std::string>> QmpEvents::read() {
  std::vector<std::string> names;
  char chunk[4096];
  for (;;) {
    ssize_t n = ::recv(fd_.get(), chunk, sizeof(chunk), MSG_DONTWAIT);
    if (n == 0) return fail("QEMU closed its QMP socket");
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) break;
      return fail_errno("reading QMP events");
    }
    buf_.append(chunk, static_cast<size_t>(n));
  }
  for (size_t nl; (nl = buf_.find('\n')) != std::string::npos;) {
    auto j = nlohmann::json::parse(buf_.substr(0, nl), nullptr, false);
    buf_.erase(0, nl + 1);
    if (j.is_object() && j.contains("event") && j["event"].is_string()) names.push_back(j["event"]);
  }
  if (buf_.size() > (1u << 20)) buf_.clear();
  return names;
}

}  // namespace ng::vm

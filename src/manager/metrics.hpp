#pragma once
// The manager's status as Prometheus metrics (text exposition format 0.0.4),
// for `nicguard status --metrics` and for a scrape endpoint.
//
// The endpoint has no authentication, so it listens only on a loopback
// address or on a Unix socket: counters and pids are not secret, but nothing
// on another host should be able to make the manager do work.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace ng::manager {

// Maps the {"cmd":"status"} answer (docs/config.md) to metric families:
// every numeric field of a driver's, connection's, app's or backend's
// "counters" becomes a counter (`..._total`), except gauge-like ones;
// `_ms`/`_us` fields become gauges in seconds. Never throws on a status of
// an unexpected shape: what is missing is left out.
std::string format_metrics(const nlohmann::json& status);

// Where the endpoint listens: "unix:/ABSOLUTE/PATH", or "HOST:PORT" with
// HOST one of 127.0.0.0/8, [::1] or localhost.
struct MetricsEndpoint {
  sa_family_t family = AF_UNSPEC;  // AF_UNIX, AF_INET or AF_INET6
  std::string address;             // the socket path, or the numeric host
  uint16_t port = 0;               // TCP only
};

// The errors say what is wrong and what is accepted, without repeating the
// value, to follow "KEY = VALUE: " in a config error.
Result<MetricsEndpoint> parse_metrics_listen(const std::string& where);
Status check_metrics_listen(const std::string& where);

// What an HTTP request for the endpoint asks, from the bytes read so far
// (a request line and headers ended by an empty line; more than the server
// reads without one is too_large). The server's parsing, apart from its
// sockets, so that it can be fuzzed.
enum class MetricsRequest { too_large, malformed, not_found, not_allowed, get, head };
MetricsRequest parse_metrics_request(std::string_view request);

// A tiny HTTP/1.x server: GET (or HEAD) /metrics answers 200 with body(),
// any other path 404; every connection is closed after one answer. Nothing
// blocks: a client that sends slowly keeps a slot (at most 16) for at most
// 2 s and never holds up the caller's loop.
class MetricsServer {
 public:
  using Body = std::function<std::string()>;

  // A stale Unix socket file at the path is replaced; a live one (another
  // process serves it) or any other file is refused. The socket file is
  // made mode 0666 (its directory decides who may scrape) and removed when
  // the server is destroyed. body() runs inside process(), on the caller's
  // thread, once per scrape.
  static Result<MetricsServer> listen(const std::string& where, Body body);

  // An epoll fd that turns readable whenever a client needs service; poll it
  // next to the other fds and then call process().
  int fd() const { return epoll_.get(); }
  // Accepts, reads, answers and writes whatever is ready; never blocks.
  void process();
  const std::string& where() const { return where_; }

 private:
  struct Conn {
    UniqueFd fd;
    std::string in;
    std::string out;
    uint64_t deadline_ns = 0;
    bool answered = false;
    bool broken = false;
  };

  // Removes the Unix socket file it bound when destroyed, unless another
  // socket has replaced it there since; empty after a move.
  class SocketFile {
   public:
    SocketFile() = default;
    SocketFile(std::string path, dev_t dev, ino_t ino)
        : path_(std::move(path)), dev_(dev), ino_(ino) {}
    SocketFile(SocketFile&& o) noexcept
        : path_(std::exchange(o.path_, {})), dev_(o.dev_), ino_(o.ino_) {}
    SocketFile& operator=(SocketFile&& o) noexcept;
    SocketFile(const SocketFile&) = delete;
    SocketFile& operator=(const SocketFile&) = delete;
    ~SocketFile() { remove(); }

   private:
    void remove();
    std::string path_;
    dev_t dev_ = 0;
    ino_t ino_ = 0;
  };

  MetricsServer() = default;
  void accept_all();
  void expire(uint64_t now);
  void serve(Conn& c);
  void read_request(Conn& c);
  std::string answer(std::string_view request);
  void flush(Conn& c);
  void watch(Conn& c);
  static bool done(const Conn& c);

  UniqueFd epoll_;
  UniqueFd listen_;
  SocketFile socket_file_;
  std::map<int, Conn> conns_;
  Body body_;
  std::string where_;
};

}  // namespace ng::manager

#pragma once
// The manager's control socket: Unix SOCK_STREAM, mode 0600, one JSON object
// per line each way. Only uid 0 is served (SO_PEERCRED), because the socket
// can stop every domain on the host.
//
// Requests: {"cmd":"status"}, {"cmd":"shutdown"}. Every answer carries
// "ok": true, or "ok": false with "error" saying what went wrong.
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace ng::manager {

class ControlServer {
 public:
  using Handler = std::function<nlohmann::json(const nlohmann::json& request)>;

  // Replaces a stale socket file at path (the caller holds the state lock).
  static Result<ControlServer> listen(const std::string& path, Handler handler);

  // An epoll fd that turns readable whenever a client needs service; the
  // manager polls it next to its own fds and then calls process().
  int fd() const { return epoll_.get(); }
  // Accepts, reads, answers and writes whatever is ready; never blocks.
  void process();
  const std::string& path() const { return path_; }

 private:
  struct Conn {
    UniqueFd fd;
    std::string in;
    std::string out;
    bool eof = false;      // the peer sent all it will (or the connection broke)
    bool refused = false;  // no more answers: drop input, close after the refusal
    bool shut = false;     // our write side is shut down
  };

  ControlServer() = default;
  void accept_all();
  void refuse(Conn& c, const std::string& why);
  void serve(Conn& c, uint32_t events);
  void read_input(Conn& c);
  void answer_lines(Conn& c);
  void flush(Conn& c);
  void watch(Conn& c);
  static bool finished(const Conn& c);
  static bool has_request(const Conn& c);

  UniqueFd epoll_;
  UniqueFd listen_;
  std::map<int, Conn> conns_;
  Handler handler_;
  std::string path_;
};

// One request line (without its newline) as the server takes it: a JSON
// object, or the refusal's text. The handler still checks its members with
// request_type_error().
Result<nlohmann::json> parse_request(std::string_view line);

// What is wrong with a request's types ("cmd" must be a string, ...), or ""
// when nothing is: a wrong type is named, not taken for an empty value.
std::string request_type_error(const nlohmann::json& request);

// Connects, sends one request line and returns the answer. An answer with
// "ok": false becomes an error carrying the manager's message.
Result<nlohmann::json> control_request(const std::string& socket_path,
                                       const nlohmann::json& request, int timeout_ms);

// The human view of a {"cmd":"status"} answer, for `nicguard status`. It
// leads with health_line. `last_failover`: the newest `detect` event on an
// active domain (from events.jsonl), or null.
std::string format_status_table(const nlohmann::json& status, const nlohmann::json& last_failover = nullptr);
// One line: every app served or not, a spare ready or not, the last failover
// and its cause.
std::string health_line(const nlohmann::json& status, const nlohmann::json& last_failover);

}  // namespace ng::manager

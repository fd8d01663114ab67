#pragma once
// The event log: one JSON object per line, appended to STATE/events.jsonl by
// the manager and by every frontend. Each line is written with a single
// write() on an O_APPEND descriptor, so lines from several processes never
// interleave. Every line carries a monotonic timestamp (to compute
// latencies across processes) and a wall-clock one (for people).
#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace ng {

std::string iso8601(uint64_t wall_ns);

// The newest event in the log's last `tail_bytes` that `match` accepts, or
// null. Unparsable lines (a line cut by the tail's start) are skipped.
nlohmann::json last_event(const std::string& path, const std::function<bool(const nlohmann::json&)>& match,
                          size_t tail_bytes = 1 << 20);

class EventLog {
 public:
  EventLog() = default;  // inert: emit() does nothing
  static Result<EventLog> open(const std::string& path);

  // Writes {"ts_mono_ns", "ts_wall", "event", "source", ...fields}. A full
  // disk must not stop the data path, so a failed write is only logged.
  void emit(const std::string& event, const nlohmann::json& fields = nlohmann::json::object());
  void set_source(std::string source) { source_ = std::move(source); }
  bool is_open() const { return static_cast<bool>(fd_); }

 private:
  UniqueFd fd_;
  std::string source_;
};

}  // namespace ng

#include "common/events.hpp"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <sstream>

#include "common/clock.hpp"
#include "common/text.hpp"

namespace ng {

nlohmann::json last_event(const std::string& path, const std::function<bool(const nlohmann::json&)>& match,
                          size_t tail_bytes) {
  std::istringstream in(read_tail(path, 0, tail_bytes));
  nlohmann::json found = nullptr;
  for (std::string line; std::getline(in, line);) {
    auto e = nlohmann::json::parse(line, nullptr, false);
    if (e.is_object() && match(e)) found = std::move(e);
  }
  return found;
}

std::string iso8601(uint64_t ns) {
  time_t secs = static_cast<time_t>(ns / 1'000'000'000ULL);
  tm t{};
  ::gmtime_r(&secs, &t);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", t.tm_year + 1900, t.tm_mon + 1,
                     t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, (ns % 1'000'000'000ULL) / 1000);
}

Result<EventLog> EventLog::open(const std::string& path) {
  EventLog log;
  log.fd_.reset(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log.fd_) return fail_errno("opening the event log {}", path);
  return log;
}

void EventLog::emit(const std::string& event, const nlohmann::json& fields) {
  if (!fd_) return;
  nlohmann::ordered_json j = {
      {"ts_mono_ns", mono_ns()}, {"ts_wall", iso8601(wall_ns())}, {"event", event}};
  if (!source_.empty()) j["source"] = source_;
  for (const auto& [k, v] : fields.items()) j[k] = v;
  std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (::write(fd_.get(), line.data(), line.size()) < 0) {
    spdlog::warn("writing the event log: {}", std::strerror(errno));
  }
}

}  // namespace ng

#pragma once
// Mapping a child's stats file, for the status answer and the salvage.
#include <sys/stat.h>

#include <optional>
#include <string>

#include <fmt/format.h>

#include "common/stats.hpp"
#include "manager/manager.hpp"

namespace ng::manager {

// A child re-creates (truncates) its stats file when it starts; a mapping
// taken before that would fault on the truncated pages. The file is only
// mapped once its change time says this incarnation of the child made it.
template <typename T>
std::optional<stats::StatsFile<T>>& mapped(std::optional<stats::StatsFile<T>>& slot,
                                            const std::string& path, uint32_t magic,
                                            const Child& c, std::string& error) {
  if (slot || c.pid == 0) return slot;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    error = "no stats file yet";
    return slot;
  }
  uint64_t changed = static_cast<uint64_t>(st.st_ctim.tv_sec) * 1'000'000'000ULL +
                     static_cast<uint64_t>(st.st_ctim.tv_nsec);
  if (changed < c.started_wall_coarse_ns) {
    error = "stats file not yet created by this run of the process";
    return slot;
  }
  auto f = stats::StatsFile<T>::open(path, magic);
  if (!f) {
    error = f.error().message;
    return slot;
  }
  uint64_t writer = (*f)->pid.load(std::memory_order_relaxed);
  if (writer != 0 && writer != static_cast<uint64_t>(c.pid)) {
    error = fmt::format("stats file written by pid {}, not by {}", writer, c.pid);
    return slot;
  }
  slot = std::move(*f);
  return slot;
}

}  // namespace ng::manager

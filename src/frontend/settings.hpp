#pragma once
// The detector timeouts a frontend takes from its settings file, which the
// manager rewrites on `nicguard reload` before it sends the frontend SIGHUP.
// They are kept off the command line on purpose: a manager adopts a running
// frontend only if its command line is the one the config asks for, and a
// changed timeout would then restart the frontend, and cut its app's
// traffic, for a change that needs no restart.
#include <cstdint>
#include <string>
#include <string_view>

#include "common/error.hpp"

namespace ng::frontend {

struct LiveSettings {
  uint32_t hang_timeout_ms = 6;
  uint32_t stall_timeout_ms = 100;
  uint32_t rx_probe_interval_ms = 100;
  uint32_t rx_probe_timeout_ms = 300;

  bool operator==(const LiveSettings&) const = default;
};

std::string settings_json(const LiveSettings& s);
// Every key is required and range-checked as the config checks it; the
// error names the file, the key and what is expected.
Result<LiveSettings> parse_settings(std::string_view text, std::string_view origin);
Result<LiveSettings> read_settings(const std::string& path);
Status write_settings(const std::string& path, const LiveSettings& s);

}  // namespace ng::frontend

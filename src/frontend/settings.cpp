#include "frontend/settings.hpp"

#include <nlohmann/json.hpp>

#include "common/file.hpp"
#include "common/text.hpp"

namespace ng::frontend {

namespace {

struct Field {
  const char* key;
  uint32_t LiveSettings::*member;
  uint32_t min, max;
};

// The same ranges as the config's [detect] (manager/config.cpp).
constexpr Field kFields[] = {
    {"hang_timeout_ms", &LiveSettings::hang_timeout_ms, 2, 10000},
    {"stall_timeout_ms", &LiveSettings::stall_timeout_ms, 5, 60000},
    {"rx_probe_interval_ms", &LiveSettings::rx_probe_interval_ms, 10, 10000},
    {"rx_probe_timeout_ms", &LiveSettings::rx_probe_timeout_ms, 20, 60000},
};

}  // namespace

std::string settings_json(const LiveSettings& s) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& f : kFields) j[f.key] = s.*f.member;
  return j.dump() + "\n";
}

Result<LiveSettings> parse_settings(std::string_view text, std::string_view origin) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return fail("{}: not a JSON object; the manager writes this file (remove it and restart the manager)", origin);
  }
  LiveSettings s;
  for (const auto& f : kFields) {
    auto it = j.find(f.key);
    if (it == j.end() || !it->is_number_unsigned()) {
      return fail("{}: {} is missing or not a whole number; expected {} to {}", origin, f.key, f.min, f.max);
    }
    auto v = it->get<uint64_t>();
    if (v < f.min || v > f.max) return fail("{}: {} = {}: expected {} to {}", origin, f.key, v, f.min, f.max);
    s.*f.member = static_cast<uint32_t>(v);
  }
  if (s.rx_probe_timeout_ms < 2 * s.rx_probe_interval_ms) {
    return fail("{}: rx_probe_timeout_ms = {} is less than twice rx_probe_interval_ms = {}", origin,
                s.rx_probe_timeout_ms, s.rx_probe_interval_ms);
  }
  return s;
}

Result<LiveSettings> read_settings(const std::string& path) {
  std::string text = read_text(path);
  if (text.empty()) return fail("cannot read the settings file {} (missing or empty)", path);
  return parse_settings(text, path);
}

Status write_settings(const std::string& path, const LiveSettings& s) {
  return write_file_atomic(path, settings_json(s));
}

}  // namespace ng::frontend

#pragma once
// CSV time series the probes write next to their JSON reports, for plotting a
// failover (throughput dips, latency spikes) rather than reading one number.
// Built in memory after a run ends, never on a measuring loop.
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "common/error.hpp"

namespace ng::probe {

// A header line, then one line per row(); fields are separated by commas and
// lines end in '\n'. Text fields are quoted (RFC 4180) only when they need it.
class Csv {
 public:
  Csv(std::initializer_list<std::string_view> columns);

  // One line: integers as they are, floating point with 3 decimals, bools as 1/0.
  template <typename... Fields>
  void row(const Fields&... fields) {
    bool first = true;
    ((field(fields, first), first = false), ...);
    text_ += '\n';
  }

  const std::string& text() const { return text_; }

 private:
  template <typename T>
  void field(const T& value, bool first) {
    if (!first) text_ += ',';
    if constexpr (std::same_as<T, bool>) {
      text_ += value ? '1' : '0';
    } else if constexpr (std::floating_point<T>) {
      fmt::format_to(std::back_inserter(text_), "{:.3f}", value);
    } else if constexpr (std::integral<T>) {
      fmt::format_to(std::back_inserter(text_), "{}", value);
    } else {
      quoted(std::string_view(value));
    }
  }
  void quoted(std::string_view s);

  std::string text_;
};

// Writes text to path (replacing it); the error names the file.
Status write_text_file(const std::string& path, const std::string& text);

}  // namespace ng::probe

#include "probe/csv.hpp"

#include <cerrno>
#include <cstdio>
#include <memory>

namespace ng::probe {

Csv::Csv(std::initializer_list<std::string_view> columns) {
  bool first = true;
  for (auto c : columns) {
    if (!first) text_ += ',';
    quoted(c);
    first = false;
  }
  text_ += '\n';
}

void Csv::quoted(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) {
    text_ += s;
    return;
  }
  text_ += '"';
  for (char c : s) {
    if (c == '"') text_ += '"';
    text_ += c;
  }
  text_ += '"';
}

Status write_text_file(const std::string& path, const std::string& text) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "w"), &std::fclose);
  if (!f) return fail_errno("cannot write {} (does its directory exist and is it writable?)", path);
  if (std::fwrite(text.data(), 1, text.size(), f.get()) != text.size()) {
    return fail_errno("writing {} failed (disk full?)", path);
  }
  if (std::fclose(f.release()) != 0) return fail_errno("writing {} failed (disk full?)", path);
  return {};
}

}  // namespace ng::probe

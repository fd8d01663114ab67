#pragma once
// Small text helpers for error messages built from files and logs.
#include <fstream>
#include <sstream>
#include <string>

namespace ng {

// The whole file; "" when it cannot be read.
inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The last n lines of text, without the final newline.
inline std::string last_lines(const std::string& text, size_t n) {
  size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (size_t i = 0; i < n && pos != std::string::npos && pos > 0; ++i) {
    pos = text.rfind('\n', pos - 1);
  }
  std::string out = pos == std::string::npos ? text : text.substr(pos + 1);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace ng

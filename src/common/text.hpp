#pragma once
// Small text helpers for error messages built from files and logs.
#include <cstdint>
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

// The file from `offset` on, but at most its last `max_bytes`; "" when it
// cannot be read or holds nothing past offset.
inline std::string read_tail(const std::string& path, uint64_t offset, uint64_t max_bytes) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  auto size = static_cast<uint64_t>(in.tellg());
  if (size <= offset) return "";
  if (size - offset > max_bytes) offset = size - max_bytes;
  in.seekg(static_cast<std::streamoff>(offset));
  std::string out(size - offset, '\0');
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
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

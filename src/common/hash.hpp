#pragma once
// FNV-1a: a stable hash of a short name, the same on every run and host.
#include <cstdint>
#include <string_view>

namespace ng {

inline uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 14695981039346656037ULL;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

}  // namespace ng

#include "driver/path_probe.hpp"

#include <cstring>

#include "common/hash.hpp"

namespace ng::driver {
namespace {

constexpr size_t kMagicAt = 14;
constexpr size_t kPairAt = 18;
constexpr size_t kSenderAt = 26;
constexpr size_t kSeqAt = 30;
constexpr char kMagic[4] = {'N', 'G', 'P', 'P'};

template <typename T>
void put(std::byte* p, T v) {
  std::memcpy(p, &v, sizeof(v));
}

template <typename T>
T get(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

}  // namespace

uint32_t path_probe_sender_id(std::string_view domain_name) {
  uint64_t h = fnv1a64(domain_name);
  return static_cast<uint32_t>(h ^ (h >> 32));
}

void build_path_probe(std::array<std::byte, kPathProbeLen>& out, const Mac& dst, const Mac& src,
                      uint64_t pair, uint32_t sender, uint64_t seq) {
  out.fill(std::byte{0});
  std::memcpy(out.data(), dst.data(), 6);
  std::memcpy(out.data() + 6, src.data(), 6);
  out[12] = std::byte{kPathProbeEtherType >> 8};
  out[13] = std::byte{kPathProbeEtherType & 0xff};
  std::memcpy(out.data() + kMagicAt, kMagic, sizeof(kMagic));
  put(out.data() + kPairAt, pair);
  put(out.data() + kSenderAt, sender);
  put(out.data() + kSeqAt, seq);
}

bool is_path_probe(const std::byte* eth, size_t len) {
  return len >= 14 && eth[12] == std::byte{kPathProbeEtherType >> 8} &&
         eth[13] == std::byte{kPathProbeEtherType & 0xff};
}

std::optional<PathProbe> parse_path_probe(const std::byte* eth, size_t len, uint64_t pair, uint32_t self) {
  if (!is_path_probe(eth, len) || len < kSeqAt + sizeof(uint64_t)) return std::nullopt;
  if (std::memcmp(eth + kMagicAt, kMagic, sizeof(kMagic)) != 0 || get<uint64_t>(eth + kPairAt) != pair) {
    return std::nullopt;
  }
  PathProbe p;
  p.sender = get<uint32_t>(eth + kSenderAt);
  if (p.sender == self) return std::nullopt;
  std::memcpy(p.src.data(), eth + 6, 6);
  p.seq = get<uint64_t>(eth + kSeqAt);
  return p;
}

}  // namespace ng::driver

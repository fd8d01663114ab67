// Path probe frames (driver/path_probe.hpp): what one domain builds the
// other parses; its own, another pair's and malformed ones are refused.
#include <gtest/gtest.h>

#include "driver/path_probe.hpp"

namespace ng::driver {
namespace {

constexpr uint64_t kPair = 0x1122334455667788ULL;
const Mac kDst{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
const Mac kSrc{0x02, 0x10, 0x20, 0x30, 0x40, 0x50};

TEST(PathProbeTest, PeerParsesWhatWasBuilt) {
  std::array<std::byte, kPathProbeLen> f;
  uint32_t a = path_probe_sender_id("a"), b = path_probe_sender_id("b");
  ASSERT_NE(a, b);
  build_path_probe(f, kDst, kSrc, kPair, a, 42);
  EXPECT_TRUE(is_path_probe(f.data(), f.size()));
  auto p = parse_path_probe(f.data(), f.size(), kPair, b);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->sender, a);
  EXPECT_EQ(p->seq, 42u);
  EXPECT_EQ(p->src, kSrc);
}

TEST(PathProbeTest, OwnOtherPairsAndShortOnesAreRefused) {
  std::array<std::byte, kPathProbeLen> f;
  uint32_t a = path_probe_sender_id("a");
  build_path_probe(f, kDst, kSrc, kPair, a, 1);
  EXPECT_FALSE(parse_path_probe(f.data(), f.size(), kPair, a));
  EXPECT_FALSE(parse_path_probe(f.data(), f.size(), kPair + 1, path_probe_sender_id("b")));
  EXPECT_FALSE(parse_path_probe(f.data(), 30, kPair, path_probe_sender_id("b")));
  EXPECT_TRUE(is_path_probe(f.data(), 30));  // still never delivered to an app
  f[14] = std::byte{'X'};
  EXPECT_FALSE(parse_path_probe(f.data(), f.size(), kPair, path_probe_sender_id("b")));
}

TEST(PathProbeTest, OtherEtherTypesAreNotProbes) {
  std::array<std::byte, kPathProbeLen> f{};
  f[12] = std::byte{0x08};
  EXPECT_FALSE(is_path_probe(f.data(), f.size()));
  EXPECT_FALSE(is_path_probe(f.data(), 13));
}

}  // namespace
}  // namespace ng::driver

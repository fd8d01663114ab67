#include "frontend/announce.hpp"

#include <gtest/gtest.h>

TEST(Announce, GratuitousArpAndNeighbourAdvertisement) {
  auto mac = *ng::parse_mac("02:00:00:00:01:01");
  auto frames = ng::frontend::announcements(
      mac, {*ng::parse_cidr("10.99.0.11/24"), *ng::parse_cidr("fd99::11/64")});
  ASSERT_EQ(frames.size(), 2u);
  const auto& arp = frames[0];
  ASSERT_EQ(arp.size(), 60u);
  EXPECT_EQ(arp[0], 0xff);
  EXPECT_EQ(arp[12], 0x08);
  EXPECT_EQ(arp[13], 0x06);
  EXPECT_EQ(arp[28], 10);  // sender IP
  EXPECT_EQ(arp[41], 11);  // target IP == sender IP
  const auto& na = frames[1];
  EXPECT_EQ(na[0], 0x33);
  EXPECT_EQ(na[12], 0x86);
  EXPECT_EQ(na[13], 0xdd);
  EXPECT_EQ(na[20], 58);    // ICMPv6
  EXPECT_EQ(na[21], 255);   // hop limit
  EXPECT_EQ(na[54], 136);   // neighbour advertisement
  // Checksum over the pseudo-header and body folds to zero when valid.
  uint32_t sum = 0;
  auto add = [&](size_t off, size_t n) {
    for (size_t i = 0; i < n; i += 2) sum += uint32_t{na[off + i]} << 8 | na[off + i + 1];
  };
  add(22, 32);
  size_t len = na.size() - 54;
  sum += static_cast<uint32_t>(len) + 58;
  add(54, len);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  EXPECT_EQ(sum, 0xffffu);
}

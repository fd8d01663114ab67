// The record format of salvage datagrams (manager to frontend): every whole
// record is handed over, and a datagram that ends inside one is reported
// without reading past its end.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/salvage_record.hpp"

namespace ng {
namespace {

std::vector<std::byte> records(const std::vector<std::string>& frames) {
  std::vector<std::byte> out;
  for (const auto& f : frames) {
    auto len = static_cast<uint32_t>(f.size());
    const auto* l = reinterpret_cast<const std::byte*>(&len);
    out.insert(out.end(), l, l + sizeof(len));
    const auto* d = reinterpret_cast<const std::byte*>(f.data());
    out.insert(out.end(), d, d + f.size());
  }
  return out;
}

std::vector<std::string> parse(std::span<const std::byte> d, bool* whole) {
  std::vector<std::string> got;
  *whole = for_each_salvage_record(d, [&](std::span<const std::byte> f) {
    got.emplace_back(reinterpret_cast<const char*>(f.data()), f.size());
  });
  return got;
}

TEST(SalvageRecordTest, EveryRecordInOrder) {
  auto d = records({"first", "", "third frame"});
  bool whole = false;
  EXPECT_EQ(parse(d, &whole), (std::vector<std::string>{"first", "", "third frame"}));
  EXPECT_TRUE(whole);
}

TEST(SalvageRecordTest, EmptyDatagramHoldsNothing) {
  bool whole = false;
  EXPECT_TRUE(parse({}, &whole).empty());
  EXPECT_TRUE(whole);
}

TEST(SalvageRecordTest, LengthPastTheEndStopsBeforeIt) {
  auto d = records({"ok", "cut short"});
  d.resize(d.size() - 3);
  bool whole = true;
  EXPECT_EQ(parse(d, &whole), (std::vector<std::string>{"ok"}));
  EXPECT_FALSE(whole);
}

TEST(SalvageRecordTest, HalfALengthIsMalformed) {
  auto d = records({"ok"});
  d.push_back(std::byte{1});
  d.push_back(std::byte{0});
  bool whole = true;
  EXPECT_EQ(parse(d, &whole), (std::vector<std::string>{"ok"}));
  EXPECT_FALSE(whole);
}

TEST(SalvageRecordTest, HugeLengthIsNotTrusted) {
  std::vector<std::byte> d(4, std::byte{0xff});
  d.resize(64, std::byte{0});
  bool whole = true;
  EXPECT_TRUE(parse(d, &whole).empty());
  EXPECT_FALSE(whole);
}

}  // namespace
}  // namespace ng

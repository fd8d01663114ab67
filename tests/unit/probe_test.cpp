#include "probe/probe.hpp"

#include <gtest/gtest.h>

using ng::probe::Arrival;
using ng::probe::analyse;

namespace {

constexpr uint64_t kMs = 1'000'000;

std::vector<Arrival> steady(uint32_t first, uint32_t count, uint64_t start_ns, uint64_t step_ns) {
  std::vector<Arrival> v;
  for (uint32_t i = 0; i < count; ++i) {
    uint64_t t = start_ns + i * step_ns;
    v.push_back({first + i, t, t + 50'000});
  }
  return v;
}

}  // namespace

TEST(ProbeAnalyse, SteadyStreamHasNoLossAndPeriodGap) {
  auto v = steady(0, 100, 0, kMs / 10);
  auto r = analyse(v, 100, 0);
  EXPECT_EQ(r.received, 100u);
  EXPECT_EQ(r.lost, 0u);
  EXPECT_EQ(r.duplicated, 0u);
  EXPECT_EQ(r.reordered, 0u);
  EXPECT_NEAR(r.interruption_ms, 0.1, 1e-9);
  EXPECT_NEAR(r.rtt_us_p50, 50, 1e-9);
}

TEST(ProbeAnalyse, GapIsLongestSilenceAndWhere) {
  auto v = steady(0, 10, 0, kMs);
  auto tail = steady(30, 10, 40 * kMs, kMs);  // 20 lost, 31 ms of silence
  v.insert(v.end(), tail.begin(), tail.end());
  auto r = analyse(v, 40, 0);
  EXPECT_EQ(r.lost, 20u);
  EXPECT_NEAR(r.interruption_ms, 31.0, 1e-9);
  EXPECT_NEAR(r.interruption_at_ms, 9.05, 1e-9);
}

TEST(ProbeAnalyse, DuplicatesAndReorderingCounted) {
  auto v = steady(0, 5, 0, kMs);
  std::swap(v[1], v[2]);
  v[1].recv_ns = 1 * kMs + 50'000;
  v[2].recv_ns = 2 * kMs + 50'000;
  v.push_back(v[3]);  // duplicate of seq 3
  v.back().recv_ns = 6 * kMs;
  auto r = analyse(v, 5, 0);
  EXPECT_EQ(r.received, 5u);
  EXPECT_EQ(r.duplicated, 1u);
  EXPECT_EQ(r.reordered, 1u);
  EXPECT_EQ(r.lost, 0u);
}

TEST(ProbeAnalyse, SequenceWrapIsUnwrapped) {
  auto v = steady(0xfffffffbu, 10, 0, kMs);  // crosses 2^32
  auto r = analyse(v, 10, 0);
  EXPECT_EQ(r.received, 10u);
  EXPECT_EQ(r.reordered, 0u);
  EXPECT_EQ(r.duplicated, 0u);
}

TEST(ProbeAnalyse, NothingReceivedIsAllLost) {
  auto r = analyse({}, 100, 0);
  EXPECT_EQ(r.lost, 100u);
  EXPECT_EQ(r.received, 0u);
}

TEST(ProbeAnalyse, EverySilenceOverTheThresholdIsListed) {
  auto v = steady(0, 10, 0, kMs / 10);
  auto second = steady(10, 10, 5 * kMs, kMs / 10);   // 4.1 ms silence
  auto third = steady(20, 10, 20 * kMs, kMs / 10);   // 14.1 ms silence
  v.insert(v.end(), second.begin(), second.end());
  v.insert(v.end(), third.begin(), third.end());
  auto r = analyse(v, 30, 0, 2 * kMs);
  ASSERT_EQ(r.gaps.size(), 2u);
  EXPECT_NEAR(r.gaps[0].ms, 4.1, 1e-9);
  EXPECT_EQ(r.gaps[0].begin_mono_ns, 9 * kMs / 10 + 50'000);
  EXPECT_NEAR(r.gaps[1].ms, 14.1, 1e-9);
  EXPECT_TRUE(analyse(v, 30, 0, 20 * kMs).gaps.empty());
  EXPECT_EQ(ng::probe::to_json(r)["gaps"].size(), 2u);
}

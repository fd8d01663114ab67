// The campaign's pure parts: how a run is classified and how its silence is
// measured. The campaign itself runs in tests/integration/campaign_test.cpp.
#include <gtest/gtest.h>

#include <set>

#include "campaign/campaign.hpp"

namespace ng::campaign {
namespace {

constexpr uint64_t kMs = 1'000'000;

Observation seen(bool detected, bool flowing, double interruption_ms, uint64_t lost = 0) {
  Observation o;
  o.detected = detected;
  o.flowing_at_end = flowing;
  o.interruption_ms = interruption_ms;
  o.sent = 10000;
  o.lost = lost;
  return o;
}

TEST(CampaignClassify, DetectedAndFlowingIsRecovered) {
  EXPECT_EQ(classify(seen(true, true, 8)), Outcome::recovered);
  EXPECT_EQ(classify(seen(true, true, 300)), Outcome::recovered);  // slow, but traffic came back
}

TEST(CampaignClassify, DetectedButStillSilentIsNotRecovered) {
  EXPECT_EQ(classify(seen(true, false, 400)), Outcome::not_recovered);
}

TEST(CampaignClassify, BrokenTrafficWithoutDetectorIsSilentFailure) {
  EXPECT_EQ(classify(seen(false, false, 400)), Outcome::silent_failure);
  EXPECT_EQ(classify(seen(false, true, kBrokenMs)), Outcome::silent_failure);
  EXPECT_EQ(classify(seen(false, true, 1, 600)), Outcome::silent_failure);  // 6% lost
}

TEST(CampaignClassify, NothingVisibleIsNoEffect) {
  EXPECT_EQ(classify(seen(false, true, 3)), Outcome::no_effect);
  EXPECT_EQ(classify(seen(false, true, 3, 20)), Outcome::no_effect);   // 0.2% lost: within noise
  EXPECT_EQ(classify(seen(false, true, 8, 300)), Outcome::no_effect);  // 3%: a scheduling hiccup
}

std::vector<uint64_t> every(uint64_t from, uint64_t until, uint64_t step) {
  std::vector<uint64_t> v;
  for (uint64_t t = from; t < until; t += step) v.push_back(t);
  return v;
}

TEST(CampaignSilence, SteadyStreamIsItsPeriod) {
  auto recv = every(0, 1000 * kMs, kMs / 10);
  EXPECT_DOUBLE_EQ(longest_silence(recv, 100 * kMs, 500 * kMs), kMs / 10.0);
}

TEST(CampaignSilence, GapStraddlingTheWindowStartCountsWhole) {
  auto recv = every(0, 100 * kMs, kMs);
  auto after = every(130 * kMs, 300 * kMs, kMs);
  recv.insert(recv.end(), after.begin(), after.end());
  EXPECT_DOUBLE_EQ(longest_silence(recv, 110 * kMs, 200 * kMs), 31.0 * kMs);
}

TEST(CampaignSilence, StreamThatNeverComesBackIsSilentToTheWindowEnd) {
  auto recv = every(0, 100 * kMs, kMs);
  EXPECT_DOUBLE_EQ(longest_silence(recv, 100 * kMs, 500 * kMs), 401.0 * kMs);
}

TEST(CampaignSilence, GapAfterTheWindowIsNotItsOwn) {
  auto recv = every(0, 200 * kMs, kMs);
  auto after = every(400 * kMs, 500 * kMs, kMs);
  recv.insert(recv.end(), after.begin(), after.end());
  EXPECT_DOUBLE_EQ(longest_silence(recv, 0, 150 * kMs), 1.0 * kMs);
}

TEST(CampaignSilence, OrderOfArrivalDoesNotMatter) {
  std::vector<uint64_t> recv{5 * kMs, 1 * kMs, 2 * kMs, 3 * kMs, 4 * kMs, 20 * kMs};
  EXPECT_DOUBLE_EQ(longest_silence(recv, 0, 30 * kMs), 15.0 * kMs);
}

TEST(CampaignSilence, NoArrivalsAtAllIsTheWholeWindow) {
  EXPECT_DOUBLE_EQ(longest_silence({}, 10 * kMs, 30 * kMs), 20.0 * kMs);
}

TEST(CampaignLoss, CountsOnlyThePacketsSentInTheWindow) {
  // 1000 pps from t = 0: packet k leaves at k ms; 100..199 never came back.
  std::vector<uint32_t> seqs;
  for (uint32_t k = 0; k < 1000; ++k) {
    if (k < 100 || k >= 200) seqs.push_back(k);
  }
  Loss all = loss_in(seqs, 0, 1000, 0, 1000 * kMs);
  EXPECT_EQ(all.sent, 1000u);
  EXPECT_EQ(all.lost, 100u);
  Loss part = loss_in(seqs, 0, 1000, 150 * kMs, 250 * kMs);
  EXPECT_EQ(part.sent, 100u);
  EXPECT_EQ(part.lost, 50u);
  EXPECT_EQ(loss_in(seqs, 0, 1000, 500 * kMs, 600 * kMs).lost, 0u);
  EXPECT_EQ(loss_in(seqs, 0, 1000, 600 * kMs, 500 * kMs).sent, 0u);  // empty window
}

TEST(CampaignLoss, DuplicatesDoNotHideALoss) {
  std::vector<uint32_t> seqs{0, 1, 1, 1, 3};
  Loss l = loss_in(seqs, 0, 1000, 0, 4 * kMs);
  EXPECT_EQ(l.sent, 4u);
  EXPECT_EQ(l.lost, 1u);
}

TEST(CampaignClassify, LossNoWorseThanTheBaselineIsNoEffect) {
  Observation o = seen(false, true, 3, 200);
  o.baseline_lost = 150;
  EXPECT_EQ(classify(o), Outcome::no_effect);
}

TEST(CampaignSeeds, DistinctPerRunAndRepeatable) {
  std::set<uint64_t> seeds;
  for (int run = 1; run <= 1000; ++run) seeds.insert(run_seed(42, run));
  EXPECT_EQ(seeds.size(), 1000u);
  EXPECT_EQ(run_seed(42, 7), run_seed(42, 7));
  EXPECT_NE(run_seed(42, 7), run_seed(43, 7));
}

TEST(CampaignOptionsCheck, BadInputIsNamed) {
  CampaignOptions o;
  o.kinds = {"crash", "bitflip"};
  auto s = check_options(o);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("bitflip"), std::string::npos);
  EXPECT_NE(s.error().message.find("regflip"), std::string::npos);  // the list of known kinds
  o.kinds = {"regflip"};
  o.policies = {"cold-spare"};
  ASSERT_FALSE(check_options(o));
  o.policies = {"restart", "warm-spare"};
  EXPECT_TRUE(check_options(o));
  o.runs = 0;
  EXPECT_FALSE(check_options(o));
}

}  // namespace
}  // namespace ng::campaign

// The receive-path check's pure logic: the question it asks, the answer it
// accepts, and when silence is a failure.
#include "frontend/rx_probe.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <vector>

namespace ng::frontend {
namespace {

constexpr uint64_t kMs = 1'000'000;
const Mac kMac{0x02, 0, 0, 0, 1, 1};
const Ipv4 kApp{10, 99, 0, 11};
const Ipv4 kGateway{10, 99, 0, 1};

RxProbe probe() { return RxProbe(kMac, kApp, kGateway, 100 * kMs, 500 * kMs); }

// What the gateway answers: an ARP reply from it to the app.
std::vector<uint8_t> reply(const Ipv4& from, const Mac& to, uint16_t op = 2) {
  std::vector<uint8_t> f = {0x02, 0, 0, 0, 1, 1, 0x02, 0xee, 0, 0, 0, 1, 0x08, 0x06,
                            0, 1, 0x08, 0x00, 6, 4, static_cast<uint8_t>(op >> 8), static_cast<uint8_t>(op)};
  f.insert(f.end(), {0x02, 0xee, 0, 0, 0, 1});
  f.insert(f.end(), from.begin(), from.end());
  f.insert(f.end(), to.begin(), to.end());
  f.insert(f.end(), kApp.begin(), kApp.end());
  f.resize(60, 0);
  return f;
}

TEST(RxProbe, AsksTheTargetFromTheAppsAddress) {
  auto p = probe();
  const auto& f = p.frame();
  ASSERT_EQ(f.size(), 60u);
  EXPECT_EQ(std::vector<uint8_t>(f.begin(), f.begin() + 6), std::vector<uint8_t>(6, 0xff));
  EXPECT_EQ(f[12], 0x08);
  EXPECT_EQ(f[13], 0x06);
  EXPECT_EQ(f[21], 1);  // request
  EXPECT_EQ(std::vector<uint8_t>(f.begin() + 22, f.begin() + 28), std::vector<uint8_t>(kMac.begin(), kMac.end()));
  EXPECT_EQ(std::vector<uint8_t>(f.begin() + 28, f.begin() + 32), std::vector<uint8_t>(kApp.begin(), kApp.end()));
  EXPECT_EQ(std::vector<uint8_t>(f.begin() + 38, f.begin() + 42),
            std::vector<uint8_t>(kGateway.begin(), kGateway.end()));
}

TEST(RxProbe, AcceptsOnlyTheTargetsReplyToTheApp) {
  auto p = probe();
  auto good = reply(kGateway, kMac);
  EXPECT_TRUE(p.is_answer(good.data(), good.size()));
  auto other_sender = reply({10, 99, 0, 2}, kMac);
  EXPECT_FALSE(p.is_answer(other_sender.data(), other_sender.size()));
  auto other_mac = reply(kGateway, {0x02, 0, 0, 0, 1, 2});
  EXPECT_FALSE(p.is_answer(other_mac.data(), other_mac.size()));
  auto request = reply(kGateway, kMac, 1);
  EXPECT_FALSE(p.is_answer(request.data(), request.size()));
  EXPECT_FALSE(p.is_answer(good.data(), 30));  // truncated
  RxProbe off;
  EXPECT_FALSE(off.is_answer(good.data(), good.size()));
}

TEST(RxProbe, AnsweredPathNeverFails) {
  auto p = probe();
  p.restart(0);
  for (uint64_t t = 0; t < 5000 * kMs; t += 10 * kMs) {
    if (p.due(t)) p.sent(t);
    if (t % (100 * kMs) == 50 * kMs) p.answered(t);
    ASSERT_FALSE(p.failed(t)) << t / kMs << " ms";
  }
}

TEST(RxProbe, SilenceForTheTimeoutWithTwoQuestionsIsAFailure) {
  auto p = probe();
  p.restart(1000 * kMs);
  uint64_t t = 1000 * kMs;
  for (; !p.failed(t); t += kMs) {
    if (p.due(t)) p.sent(t);
    ASSERT_LT(t, 2000 * kMs);
  }
  EXPECT_EQ(t, 1500 * kMs);
  EXPECT_NE(p.detail(t).find("10.99.0.1"), std::string::npos);
}

TEST(RxProbe, NoQuestionsAskedIsNoFailure) {
  auto p = probe();
  p.restart(0);
  EXPECT_FALSE(p.failed(10'000 * kMs));  // e.g. the TX ring stayed full: nothing was asked
  p.sent(10'000 * kMs);
  EXPECT_FALSE(p.failed(10'001 * kMs));  // one unanswered question is not yet a verdict
}

TEST(RxProbe, OffUnlessConfigured) {
  RxProbe off;
  EXPECT_FALSE(off.enabled());
  EXPECT_FALSE(off.due(1'000'000 * kMs));
  EXPECT_FALSE(off.failed(1'000'000 * kMs));
}

TEST(RxProbe, SenderIsTheAppsAddressOnTheTargetsSegment) {
  auto cidr = [](const char* ip, int prefix) {
    Cidr c;
    c.family = AF_INET;
    ::inet_pton(AF_INET, ip, c.addr.data());
    c.prefix = prefix;
    return c;
  };
  Ipv4 out{};
  ASSERT_TRUE(pick_sender({cidr("192.0.2.5", 24), cidr("10.99.0.11", 24)}, kGateway, out));
  EXPECT_EQ(out, kApp);
  ASSERT_TRUE(pick_sender({cidr("192.0.2.5", 24)}, kGateway, out));  // none on it: the first
  EXPECT_EQ(out, (Ipv4{192, 0, 2, 5}));
  EXPECT_FALSE(pick_sender({}, kGateway, out));
}

}  // namespace
}  // namespace ng::frontend

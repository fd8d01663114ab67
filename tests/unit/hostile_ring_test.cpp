// The ring against a hostile peer: the exact lies the driver's hostile
// faults tell (src/driver/driver.cpp, `nicguard inject DOMAIN KIND`), and a
// descriptor rewritten while it is read. tests/integration/hostile_test.cpp
// tells the same lies through the real driver and frontend.
#include "ring/ring.hpp"
#include "ring_region.hpp"

#include <gtest/gtest.h>

#include <sys/socket.h>

#include <atomic>
#include <cstring>
#include <thread>

namespace ring = ng::ring;

namespace {

using ng::test::Region;

// A consumer that took and finished `n` frames, as the frontend's RX side.
ring::Consumer consumer_after(Region& r, uint32_t n) {
  ring::Consumer c(ring::rx_ring(r.mem, r.layout), ring::kFresh);
  r.header()->rx.prod.value = n;
  for (uint32_t i = 0; i < n; ++i) r.rx_descs()[i % r.layout.rx_slots] = {0, 64};
  EXPECT_EQ(*c.available(), n);
  c.release(n);
  return c;
}

}  // namespace

// rx-index-jump and rx-index-back, from an empty ring and from a used one.
TEST(HostileRing, RxProducerIndexJumpsAndMovesBackAreRefused) {
  for (uint32_t taken : {0u, 5u, 16u}) {
    Region r(16);
    ring::Consumer c = consumer_after(r, taken);
    for (uint32_t lie : {taken + (1u << 31), taken - 1, taken + 17, taken - 16}) {
      r.header()->rx.prod.value = lie;
      EXPECT_FALSE(c.available()) << "taken " << taken << ", producer index " << lie;
    }
    r.header()->rx.prod.value = taken + 16;  // a full ring is no lie
    EXPECT_EQ(*c.available(), 16u);
  }
}

// tx-index-jump (past what was posted by a ring and one) and tx-index-back
// (behind what the consumer finished by as much).
TEST(HostileRing, TxDoneIndexJumpsAndMovesBackAreRefused) {
  Region r(16);
  ring::Producer p(ring::tx_ring(r.mem, r.layout), ring::kFresh);
  for (uint32_t i = 0; i < 10; ++i) p.set(i, ring::Desc{0, 64});
  p.publish(10);
  r.header()->tx.done.value = 4;
  ASSERT_TRUE(p.refresh());
  for (uint32_t lie : {p.prod() + 17, 4u - 17, 3u, 11u}) {
    r.header()->tx.done.value = lie;
    EXPECT_FALSE(p.refresh()) << "done index " << lie;
    EXPECT_EQ(p.done(), 4u);  // the last good value stays
  }
}

// desc-outside, len-zero and len-max.
TEST(HostileRing, DescriptorsOutsideTheirSlotAreRefused) {
  Region r(8, 2048);
  ring::Consumer c = consumer_after(r, 0);
  r.header()->rx.prod.value = 1;
  ASSERT_EQ(*c.available(), 1u);
  for (ring::Desc lie : {ring::Desc{2048 - 16, 64}, ring::Desc{0, 0}, ring::Desc{0, UINT32_MAX},
                         ring::Desc{2048, 64}, ring::Desc{UINT32_MAX, 1}}) {
    r.rx_descs()[0] = lie;
    EXPECT_FALSE(c.frame(0)) << "offset " << lie.offset << " len " << lie.len;
  }
}

// desc-flip: the peer rewrites the descriptor while it is read. Whatever
// frame() returns was checked and is used from the same copy: inside its
// slot, with a length and offset that were written together or apart, never
// a checked value replaced by an unchecked one.
TEST(HostileRing, DescriptorRewrittenWhileReadYieldsOnlyCheckedFrames) {
  constexpr uint32_t kSlot = 2048;
  Region r(8, kSlot);
  ring::Consumer c = consumer_after(r, 0);
  r.header()->rx.prod.value = 1;
  ASSERT_EQ(*c.available(), 1u);
  ring::Desc& shared = r.rx_descs()[0];
  std::atomic<bool> stop{false};
  std::thread flipper([&] {
    for (uint32_t n = 0; !stop.load(std::memory_order_relaxed); ++n) {
      std::atomic_ref<uint32_t>(shared.len).store(n & 1 ? UINT32_MAX : 64, std::memory_order_relaxed);
      std::atomic_ref<uint32_t>(shared.offset).store(n & 2 ? kSlot - 8 : 0, std::memory_order_relaxed);
    }
  });
  const std::byte* slot = r.mem + r.layout.rx_data_off;
  unsigned good = 0, refused = 0;
  for (int i = 0; i < 2'000'000; ++i) {
    auto f = c.frame(0);
    if (!f) {
      ++refused;
      continue;
    }
    ++good;
    ASSERT_EQ(f->data, slot) << "the only offset valid with a length of 64 is 0";
    ASSERT_EQ(f->len, 64u);
  }
  stop = true;
  flipper.join();
  EXPECT_GT(refused, 0u);
  RecordProperty("good", good);
}

// hold() and replay() read back the frontend's own TX descriptors, which the
// failed domain can still write: desc_at hands out one copy to check and use.
TEST(HostileRing, TxDescriptorReadBackIsOneCopy) {
  Region r(8);
  ring::Producer p(ring::tx_ring(r.mem, r.layout), ring::kFresh);
  p.set(0, ring::Desc{0, 100});
  p.publish(1);
  EXPECT_EQ(p.desc_at(0).len, 100u);
  r.tx_descs()[0] = {7, UINT32_MAX};
  ring::Desc d = p.desc_at(0);
  r.tx_descs()[0] = {0, 100};
  EXPECT_EQ(d.offset, 7u);
  EXPECT_EQ(d.len, UINT32_MAX);  // the copy, not the region
}

// The frontend's kick-storm detector counts doorbell reads that found kicks
// and allows a wedged domain's one flood of its doorbell: that flood must
// take far fewer reads than the allowance (kKickFloodReads, 256).
TEST(HostileRing, AFloodedDoorbellIsTakenInAFewDozenReads) {
  ng::UniqueFd mine, theirs;
  ASSERT_TRUE(ring::make_doorbell(mine, theirs));
  char junk[4096] = {};
  size_t sent = 0;
  for (ssize_t n; (n = ::send(theirs.get(), junk, sizeof(junk), MSG_DONTWAIT)) > 0;) sent += static_cast<size_t>(n);
  unsigned reads = 0;
  size_t taken = 0;
  for (size_t kicks = 0; ring::drain(mine.get(), &kicks) && kicks != 0; taken += kicks) ++reads;
  EXPECT_EQ(taken, sent);
  EXPECT_LT(reads, 128u) << sent << " bytes";
  size_t none = 1;
  EXPECT_TRUE(ring::drain(mine.get(), &none));
  EXPECT_EQ(none, 0u);
  theirs.reset();
  EXPECT_FALSE(ring::drain(mine.get(), &none));
  EXPECT_EQ(none, 0u);
}

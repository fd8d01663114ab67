#include "ring/ring.hpp"
#include "ring_region.hpp"
#include "ring/idle.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/socket.h>

#include <cstring>
#include <thread>
#include <vector>

namespace ring = ng::ring;

namespace {

using ng::test::Region;

void put(ring::Producer& p, uint32_t i, uint32_t value) {
  std::memcpy(p.slot(i), &value, sizeof(value));
  p.set(i, ring::Desc{0, sizeof(value)});
}

uint32_t get(const ring::Frame& f) {
  uint32_t v;
  std::memcpy(&v, f.data, sizeof(v));
  return v;
}

}  // namespace

TEST(RingLayout, RejectsBadSizes) {
  EXPECT_FALSE(ring::compute_layout(100, 256, 4096));
  EXPECT_FALSE(ring::compute_layout(256, 0, 4096));
  EXPECT_FALSE(ring::compute_layout(4, 256, 4096));
  EXPECT_FALSE(ring::compute_layout(8192, 256, 4096));
  EXPECT_FALSE(ring::compute_layout(256, 256, 1000));
  EXPECT_FALSE(ring::compute_layout(256, 256, 4100));
  EXPECT_FALSE(ring::compute_layout(256, 256, 256 * 1024));
  auto l = ring::compute_layout(256, 128, 65600);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->region_size % ring::kPage, 0u);
  EXPECT_GE(l->rx_data_off, l->tx_data_off + 256ull * 65600);
}

TEST(RingLayout, AttachChecksHeader) {
  Region r;
  EXPECT_TRUE(ring::attach_region(r.mem, r.layout.region_size, r.layout));
  EXPECT_FALSE(ring::attach_region(r.mem, r.layout.region_size - 1, r.layout));
  auto other = *ring::compute_layout(32, 16, 2048);
  EXPECT_FALSE(ring::attach_region(r.mem, r.layout.region_size * 4, other));
  reinterpret_cast<ring::RegionHeader*>(r.mem)->magic = 0;
  EXPECT_FALSE(ring::attach_region(r.mem, r.layout.region_size, r.layout));
}

TEST(Ring, IndicesOnSeparateCacheLines) {
  ring::RingControl c;
  auto prod = reinterpret_cast<uintptr_t>(&c.prod);
  auto cons = reinterpret_cast<uintptr_t>(&c.cons);
  auto done = reinterpret_cast<uintptr_t>(&c.done);
  EXPECT_GE(cons - prod, ring::kCacheLine);
  EXPECT_GE(done - cons, ring::kCacheLine);
}

TEST(Ring, EmptyThenFullThenEmpty) {
  Region r(16);
  ring::Producer p(ring::tx_ring(r.mem, r.layout));
  ring::Consumer c(ring::tx_ring(r.mem, r.layout));
  EXPECT_EQ(*c.available(), 0u);
  EXPECT_EQ(*p.free_slots(), 16u);
  for (uint32_t i = 0; i < 16; ++i) put(p, i, i);
  p.publish(16);
  EXPECT_EQ(*p.free_slots(), 0u);
  EXPECT_EQ(p.in_flight(), 16u);
  ASSERT_EQ(*c.available(), 16u);
  for (uint32_t i = 0; i < 16; ++i) EXPECT_EQ(get(*c.frame(i)), i);
  c.release(16);
  EXPECT_EQ(*c.available(), 0u);
  EXPECT_EQ(*p.free_slots(), 16u);
  EXPECT_EQ(p.in_flight(), 0u);
}

TEST(Ring, TakenButNotDoneStaysInFlight) {
  Region r(8);
  ring::Producer p(ring::tx_ring(r.mem, r.layout));
  ring::Consumer c(ring::tx_ring(r.mem, r.layout));
  for (uint32_t i = 0; i < 8; ++i) put(p, i, i);
  p.publish(8);
  ASSERT_EQ(*c.available(), 8u);
  c.take(5);
  c.finish(3);
  ASSERT_TRUE(p.refresh());
  EXPECT_EQ(p.in_flight(), 5u);  // frames 3..7 would be re-posted on failover
  EXPECT_EQ(p.done(), 3u);
}

TEST(Ring, WrapsAroundIndexOverflow) {
  Region r(8);
  auto* h = reinterpret_cast<ring::RegionHeader*>(r.mem);
  const uint32_t start = 0xfffffffa;
  h->tx.prod.value = start;
  h->tx.cons.value = start;
  h->tx.done.value = start;
  ring::Producer p(ring::tx_ring(r.mem, r.layout));
  ring::Consumer c(ring::tx_ring(r.mem, r.layout));
  uint32_t next = 0;
  for (int round = 0; round < 10; ++round) {
    uint32_t n = *p.free_slots();
    ASSERT_EQ(n, 8u);
    for (uint32_t i = 0; i < 5; ++i) put(p, i, next + i);
    p.publish(5);
    ASSERT_EQ(*c.available(), 5u);
    for (uint32_t i = 0; i < 5; ++i) EXPECT_EQ(get(*c.frame(i)), next + i);
    c.release(5);
    next += 5;
    ASSERT_TRUE(p.refresh());
  }
  EXPECT_LT(p.prod(), start);  // wrapped
}

TEST(Ring, BatchPublishesOnce) {
  Region r(64);
  ring::Producer p(ring::tx_ring(r.mem, r.layout));
  ring::Consumer c(ring::tx_ring(r.mem, r.layout));
  for (uint32_t i = 0; i < 32; ++i) put(p, i, i);
  EXPECT_EQ(*c.available(), 0u);  // nothing visible before publish
  p.publish(32);
  EXPECT_EQ(*c.available(), 32u);
}

TEST(RingValidation, ProducerIndexBeyondRingIsViolation) {
  Region r(8);
  auto* h = reinterpret_cast<ring::RegionHeader*>(r.mem);
  ring::Consumer c(ring::rx_ring(r.mem, r.layout));
  h->rx.prod.value = 9;  // more frames than slots
  EXPECT_FALSE(c.available());
  h->rx.prod.value = 0xffffffff;  // "negative"
  EXPECT_FALSE(c.available());
  h->rx.prod.value = 8;
  EXPECT_EQ(*c.available(), 8u);
}

// A producer index moved back behind frames taken but not finished (take and
// finish split, as ring.hpp allows) once made available() 2^32-2.
TEST(RingValidation, ProducerIndexMovedBackBehindTakenFramesIsViolation) {
  Region r(64);
  auto* h = reinterpret_cast<ring::RegionHeader*>(r.mem);
  ring::Consumer c(ring::rx_ring(r.mem, r.layout));
  h->rx.prod.value = 2;
  ASSERT_EQ(*c.available(), 2u);
  c.take(2);
  h->rx.prod.value = 0;
  auto a = c.available();
  ASSERT_FALSE(a) << "available() = " << *a;
  EXPECT_NE(a.error().message.find("from 2 (taken)"), std::string::npos) << a.error().message;
  c.finish(2);
  h->rx.prod.value = 66;  // finished 2, plus the 64 slots: just fits
  EXPECT_EQ(*c.available(), 64u);
}

// The side that initialised the region trusts what it wrote, not what a
// stale mapping wrote since: nothing in flight, and a bogus prod is refused.
TEST(RingValidation, AFreshRingStartsFromTheIndicesInitWrote) {
  Region r(8);
  auto* h = reinterpret_cast<ring::RegionHeader*>(r.mem);
  h->tx.prod.value = 0x80000000u;  // written by a stale mapping after init_region()
  h->rx.prod.value = 0x80000000u;
  ring::Producer p(ring::tx_ring(r.mem, r.layout), ring::kFresh);
  ring::Consumer c(ring::rx_ring(r.mem, r.layout), ring::kFresh);
  EXPECT_EQ(p.in_flight(), 0u);
  EXPECT_EQ(p.prod(), 0u);
  EXPECT_FALSE(c.available());
  ring::Producer attached(ring::tx_ring(r.mem, r.layout));
  EXPECT_EQ(attached.in_flight(), 0x80000000u);  // what the old constructor would have walked
}

TEST(RingValidation, DoneIndexOutsideWindowIsViolation) {
  Region r(8);
  auto* h = reinterpret_cast<ring::RegionHeader*>(r.mem);
  ring::Producer p(ring::tx_ring(r.mem, r.layout));
  for (uint32_t i = 0; i < 4; ++i) put(p, i, i);
  p.publish(4);
  h->tx.done.value = 5;  // beyond what was published
  EXPECT_FALSE(p.refresh());
  h->tx.done.value = 0xfffffff0;  // backwards
  EXPECT_FALSE(p.refresh());
  h->tx.done.value = 4;
  EXPECT_TRUE(p.refresh());
}

TEST(RingValidation, EveryDescriptorFieldIsChecked) {
  Region r(8, 2048);
  auto* descs = reinterpret_cast<ring::Desc*>(r.mem + r.layout.rx_desc_off);
  auto* h = reinterpret_cast<ring::RegionHeader*>(r.mem);
  h->rx.prod.value = 1;
  ring::Consumer c(ring::rx_ring(r.mem, r.layout));
  ASSERT_EQ(*c.available(), 1u);
  struct Case {
    uint32_t offset, len;
    bool ok;
  } cases[] = {
      {0, 0, false},          {0, 1, true},           {0, 2048, true},
      {0, 2049, false},       {2047, 1, true},        {2047, 2, false},
      {2048, 1, false},       {0xffffffff, 2, false}, {1, 0xffffffff, false},
      {1024, 1024, true},     {1024, 1025, false},
  };
  for (const auto& k : cases) {
    descs[0] = {k.offset, k.len};
    auto f = c.frame(0);
    EXPECT_EQ(f.has_value(), k.ok) << "offset " << k.offset << " len " << k.len;
    if (f) {
      EXPECT_GE(f->data, r.mem + r.layout.rx_data_off);
      EXPECT_LE(f->data + f->len, r.mem + r.layout.rx_data_off + 2048);
    }
  }
}

TEST(Ring, ConcurrentProducerConsumerKeepsOrder) {
  Region r(64);
  constexpr uint32_t kFrames = 2'000'000;
  std::thread producer([&] {
    ring::Producer p(ring::tx_ring(r.mem, r.layout));
    uint32_t next = 0;
    while (next < kFrames) {
      uint32_t n = std::min(*p.free_slots(), std::min<uint32_t>(16, kFrames - next));
      for (uint32_t i = 0; i < n; ++i) put(p, i, next + i);
      if (n) p.publish(n);
      next += n;
    }
  });
  ring::Consumer c(ring::tx_ring(r.mem, r.layout));
  uint32_t expect = 0;
  bool in_order = true;
  while (expect < kFrames) {
    auto n = c.available();
    ASSERT_TRUE(n);
    for (uint32_t i = 0; i < *n; ++i) in_order = in_order && get(*c.frame(i)) == expect + i;
    c.release(*n);
    expect += *n;
  }
  producer.join();
  EXPECT_TRUE(in_order);
  EXPECT_EQ(expect, kFrames);
}

TEST(RingSleep, KickOnlyWhenPeerSleeps) {
  ring::Flag peer;
  EXPECT_FALSE(ring::peer_needs_kick(peer));
  ring::prepare_sleep(peer);
  EXPECT_TRUE(ring::peer_needs_kick(peer));
  ring::cancel_sleep(peer);
  EXPECT_FALSE(ring::peer_needs_kick(peer));
}

// What a hostile peer can do to its end of the doorbell (make it blocking,
// stop reading, fill it) must not make a kick block the other side.
TEST(RingDoorbell, AHostilePeerCannotMakeAKickBlock) {
  ng::UniqueFd mine, theirs;
  ASSERT_TRUE(ring::make_doorbell(mine, theirs));
  ASSERT_EQ(::fcntl(theirs.get(), F_SETFL, 0), 0);
  ASSERT_EQ(::fcntl(mine.get(), F_GETFL) & O_NONBLOCK, O_NONBLOCK);  // their flags are not ours
  for (int i = 0; i < 100'000; ++i) ring::kick(mine.get());  // nobody reads: the queue fills
  char junk[4096] = {};
  while (::send(theirs.get(), junk, sizeof(junk), MSG_DONTWAIT) > 0) {
  }
  EXPECT_TRUE(ring::drain(mine.get()));
  EXPECT_TRUE(ring::drain(theirs.get()));
  ring::kick(mine.get());
  theirs.reset();
  while (ring::drain(mine.get())) {
  }
  EXPECT_FALSE(ring::drain(mine.get()));  // the hang-up is seen, not an endless wake-up
}

TEST(RingIdler, SpinsAfterWorkThenSleepsAndSkipsSpinAfterTimeout) {
  ring::Idler idler(50);  // 50 us
  const uint64_t t = 1'000'000;
  EXPECT_TRUE(idler.keep_polling(1, t));           // work: poll again
  EXPECT_TRUE(idler.keep_polling(0, t + 1000));    // idle 0 us: spin
  EXPECT_TRUE(idler.keep_polling(0, t + 40'000));  // 39 us idle: still spinning
  EXPECT_FALSE(idler.keep_polling(0, t + 52'000)); // past 50 us: sleep
  idler.slept(false, t + 60'000);                  // timed out
  EXPECT_FALSE(idler.keep_polling(0, t + 61'000)); // straight back to sleep
  idler.slept(true, t + 70'000);                   // woken by an event
  EXPECT_TRUE(idler.keep_polling(0, t + 71'000));  // spin again
}

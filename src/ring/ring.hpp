#pragma once
// Shared-memory rings between one frontend and one driver domain.
//
// The frontend creates one region (a sealed memfd) per driver domain it is
// connected to. The region holds a header page, a TX ring (frontend -> driver)
// and an RX ring (driver -> frontend). Every ring slot owns a fixed buffer of
// slot_size bytes, so a descriptor only says where inside its own slot the
// frame lies; both sides compute the layout from the negotiated sizes and
// never read offsets of the layout from shared memory.
//
// Index discipline: indices run free (wrapping at 2^32) and are published once
// per batch with release stores; each side caches the peer's index and only
// reloads it when the cache says the ring is empty/full. Producer and consumer
// indices live on separate cache lines. A side that is about to sleep sets its
// sleeping flag, fences, and re-checks; a side that publishes fences and kicks
// only a sleeping peer (notification suppression).
//
// The peer is untrusted: every index or descriptor read from the region is
// loaded once into a local copy and validated before use.
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "common/error.hpp"

namespace ng::ring {

inline constexpr uint32_t kMagic = 0x3152474e;  // "NGR1"
inline constexpr uint32_t kLayoutVersion = 1;
inline constexpr size_t kCacheLine = 64;
inline constexpr size_t kPage = 4096;
inline constexpr uint32_t kMinSlots = 8;
inline constexpr uint32_t kMaxSlots = 4096;
inline constexpr uint32_t kMinSlotSize = 2048;
inline constexpr uint32_t kMaxSlotSize = 128 * 1024;

struct Desc {
  uint32_t offset;  // start of the frame inside its slot
  uint32_t len;     // bytes, including the virtio-net header when negotiated
};

struct alignas(kCacheLine) Index {
  std::atomic<uint32_t> value{0};
};

struct RingControl {
  Index prod;  // written by the producer: slots filled
  Index cons;  // written by the consumer: slots taken
  Index done;  // written by the consumer: slots finished and free again (done <= cons)
};

struct alignas(kCacheLine) Flag {
  std::atomic<uint32_t> value{0};
};

struct alignas(kCacheLine) Counter64 {
  std::atomic<uint64_t> value{0};
};

struct RegionHeader {
  uint32_t magic;
  uint32_t version;
  uint32_t tx_slots;
  uint32_t rx_slots;
  uint32_t slot_size;
  uint32_t reserved;
  uint64_t region_size;
  Counter64 heartbeat;   // advanced by the driver's packet loop
  Flag driver_sleeping;  // driver is (about to be) blocked on its eventfd
  Flag front_sleeping;   // frontend is (about to be) blocked on its eventfd
  RingControl tx;        // frontend produces, driver consumes
  RingControl rx;        // driver produces, frontend consumes
};
static_assert(sizeof(RegionHeader) <= kPage);

struct Layout {
  uint32_t tx_slots = 0;
  uint32_t rx_slots = 0;
  uint32_t slot_size = 0;
  size_t tx_desc_off = 0;
  size_t rx_desc_off = 0;
  size_t tx_data_off = 0;
  size_t rx_data_off = 0;
  size_t region_size = 0;
};

// Checks sizes (powers of two within bounds) and computes where everything lies.
Result<Layout> compute_layout(uint32_t tx_slots, uint32_t rx_slots, uint32_t slot_size);

// Writes a fresh header into a zeroed region of layout.region_size bytes.
RegionHeader* init_region(void* base, const Layout& layout);

// Validates a region mapped from the peer against the negotiated layout.
Result<RegionHeader*> attach_region(void* base, size_t mapped_size, const Layout& layout);

struct RingRef {
  RingControl* control = nullptr;
  Desc* descs = nullptr;
  std::byte* data = nullptr;
  uint32_t slots = 0;  // power of two
  uint32_t slot_size = 0;
};

RingRef tx_ring(void* base, const Layout& layout);
RingRef rx_ring(void* base, const Layout& layout);

// Producer side of one ring. fill slots with slot(i)/set(i), publish(n) once
// per batch. Slots come back when the consumer advances `done`.
class Producer {
 public:
  Producer() = default;
  explicit Producer(RingRef ring);

  // Free slots, refreshing the cached peer index only when needed.
  // A `done` index outside [old done, prod] is a protocol violation.
  Result<uint32_t> free_slots();
  // Reloads the peer's done index now (validated), e.g. before re-posting
  // unfinished frames elsewhere.
  Status refresh();
  // i counts from the first unpublished slot.
  std::byte* slot(uint32_t i) const;
  void set(uint32_t i, Desc desc);
  void publish(uint32_t n);

  uint32_t prod() const { return prod_; }
  uint32_t done() const { return done_; }
  // Frames published but not yet finished by the consumer: [done, prod).
  uint32_t in_flight() const { return prod_ - done_; }
  uint32_t slot_size() const { return ring_.slot_size; }
  // Buffer of an absolute index, for re-posting unfinished frames elsewhere.
  const std::byte* slot_at(uint32_t index) const;
  Desc desc_at(uint32_t index) const;
  bool attached() const { return ring_.control != nullptr; }

 private:
  RingRef ring_;
  uint32_t prod_ = 0;
  uint32_t done_ = 0;  // cached, validated
};

struct Frame {
  const std::byte* data;
  uint32_t len;
};

// Consumer side of one ring: available() then frame(i) for each, then
// take(n) and finish(n) (or release(n) for both) once per batch.
class Consumer {
 public:
  Consumer() = default;
  explicit Consumer(RingRef ring);

  // Frames ready to read. prod - cons beyond the ring size is a protocol violation.
  Result<uint32_t> available();
  // Copies the descriptor once and checks offset and length against the slot.
  Result<Frame> frame(uint32_t i) const;
  void take(uint32_t n);
  void finish(uint32_t n);
  void release(uint32_t n) {
    take(n);
    finish(n);
  }
  bool attached() const { return ring_.control != nullptr; }
  uint32_t cons() const { return cons_; }

 private:
  RingRef ring_;
  uint32_t cons_ = 0;
  uint32_t done_ = 0;
  uint32_t prod_ = 0;  // cached, validated
};

// Sleep/kick handshake. `mine` is this side's sleeping flag, `peer` the other
// side's. Call prepare_sleep(), re-check for work, then either cancel_sleep()
// or block; after publishing, peer_needs_kick() says whether to write the
// peer's eventfd.
inline void prepare_sleep(Flag& mine) {
  mine.value.store(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
}
inline void cancel_sleep(Flag& mine) { mine.value.store(0, std::memory_order_relaxed); }
inline bool peer_needs_kick(const Flag& peer) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return peer.value.load(std::memory_order_relaxed) != 0;
}

// Eventfd kicks. A failed write can only mean the counter is saturated,
// i.e. the peer has plenty of wake-ups pending already.
inline void kick(int eventfd) {
  uint64_t one = 1;
  [[maybe_unused]] auto r = ::write(eventfd, &one, sizeof(one));
}
inline void drain(int eventfd) {
  uint64_t v;
  [[maybe_unused]] auto r = ::read(eventfd, &v, sizeof(v));
}

}  // namespace ng::ring

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
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace ng::ring {

inline constexpr uint32_t kMagic = 0x3152474e;  // "NGR1"
inline constexpr uint32_t kLayoutVersion = 3;
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
  // Advanced by the driver at the start of every pass of its packet loop:
  // frames that stay untaken across passes are the evidence of a stall.
  Counter64 passes;
  // The pass in which the driver last found this ring's frames and the NIC
  // refusing them (a full NIC queue): backpressure, not a stall.
  Counter64 tx_busy_pass;
  // Frames the driver's NIC dropped because the driver read too late: an
  // overloaded domain, not a broken receive path.
  Counter64 rx_overruns;
  // The last pass in which the driver read its NIC until it had nothing
  // more: every frame that arrived before that pass began was delivered.
  Counter64 rx_drained_pass;
  // Path probes (driver/path_probe.hpp): those this domain sent its peer
  // across the switch, and those of its peer's it has seen.
  Counter64 path_probes_sent;
  Counter64 path_probes_seen;
  Flag driver_sleeping;  // driver is (about to be) blocked on its doorbell
  Flag front_sleeping;   // frontend is (about to be) blocked on its doorbell
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

// A copy of a descriptor in shared memory, each field loaded exactly once.
Desc load_once(Desc& shared);

struct RingRef {
  RingControl* control = nullptr;
  Desc* descs = nullptr;
  std::byte* data = nullptr;
  uint32_t slots = 0;  // power of two
  uint32_t slot_size = 0;
};

RingRef tx_ring(void* base, const Layout& layout);
RingRef rx_ring(void* base, const Layout& layout);

// The side that just ran init_region() starts from the indices it wrote
// (all zero), never from the shared memory: a stale mapping of the region
// could have written anything there since, and hold()/replay() would walk
// whatever in_flight() then says.
struct Fresh {};
inline constexpr Fresh kFresh{};

// Producer side of one ring. fill slots with slot(i)/set(i), publish(n) once
// per batch. Slots come back when the consumer advances `done`.
class Producer {
 public:
  Producer() = default;
  explicit Producer(RingRef ring);  // attaching: the indices as the region holds them
  Producer(RingRef ring, Fresh) : ring_(ring) {}

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
  // The descriptor as the region holds it now (the peer can write it too),
  // each field loaded once: check and use the copy, never the region.
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
  Consumer(RingRef ring, Fresh) : ring_(ring) {}

  // Frames ready to read. prod - cons beyond the ring size is a protocol violation.
  Result<uint32_t> available();
  // Copies the descriptor once (one load of each field, see load_once) and
  // checks offset and length against the slot.
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
// or block; after publishing, peer_needs_kick() says whether to ring the
// peer's doorbell.
inline void prepare_sleep(Flag& mine) {
  mine.value.store(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
}
inline void cancel_sleep(Flag& mine) { mine.value.store(0, std::memory_order_relaxed); }
inline bool peer_needs_kick(const Flag& peer) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return peer.value.load(std::memory_order_relaxed) != 0;
}

// Doorbells: one end each of a SOCK_STREAM socketpair per connection, one
// byte per kick. Not eventfds: an eventfd's O_NONBLOCK lives in the file
// description both sides share, so a domain could clear it and saturate the
// counter, and the frontend's next kick would block for good. Sockets take
// MSG_DONTWAIT per call, and each end is its own file. A full socket means
// the peer has plenty of wake-ups pending already.
Status make_doorbell(UniqueFd& mine, UniqueFd& theirs);
inline void kick(int doorbell) {
  char one = 1;
  [[maybe_unused]] auto r = ::send(doorbell, &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
}
// Takes the pending kicks (up to a buffer's worth; `kicks`, if given, says
// how many); false once the peer closed its end (a readable doorbell that
// yields nothing would otherwise wake the caller for ever).
inline bool drain(int doorbell, size_t* kicks = nullptr) {
  char buf[4096];
  ssize_t r = ::recv(doorbell, buf, sizeof(buf), MSG_DONTWAIT);
  if (kicks != nullptr) *kicks = r > 0 ? static_cast<size_t>(r) : 0;
  return r != 0;
}

}  // namespace ng::ring

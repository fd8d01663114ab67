// The ring paths a frontend runs (frontend.cpp), against a driver domain
// that may write anything anywhere in the shared region between steps.
//
// The input is a script: a layout, then steps. A step is either what the
// frontend does with a backend (TAP to TX ring, RX ring to TAP, the check
// before sleeping, the watchdog's refresh, hold, resume, replay onto the
// other backend, a new setup) or what the peer does: bytes at an offset,
// an index or a descriptor set to a value, or an honest driver's work with
// the driver side's own Producer/Consumer attached to the region.
//
// Each region ends right before a PROT_NONE page and starts right after
// one, so a read or write outside it faults. Violations must come back as
// errors; no step may loop longer than a ring holds.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "frontend/replayable.hpp"
#include "frontend/rx_probe.hpp"
#include "fuzz_support.hpp"
#include "ring/ring.hpp"

namespace ring = ng::ring;

namespace {

// As in frontend.cpp.
constexpr unsigned kBatch = 32;
constexpr uint32_t kVnetHdrLen = 10;
constexpr uint32_t kMinFrame = kVnetHdrLen + 14;
constexpr size_t kHoldFrames = 256;  // FrontendOptions::hold_frames
constexpr int kMaxSteps = 64;

constexpr uint32_t kMaxSlotsHere = 64;
constexpr uint32_t kMaxSlotSizeHere = 4096;
// Two pages of header and descriptors, then the slots of both rings.
constexpr size_t kMaxRegion = 2 * ring::kPage + 2 * kMaxSlotsHere * size_t{kMaxSlotSizeHere};

// One mapping per backend for the whole run; each input's region is placed
// at its end, and everything before it is made inaccessible.
class GuardedRegion {
 public:
  GuardedRegion() {
    total_ = kMaxRegion + 2 * ring::kPage;
    void* p = ::mmap(nullptr, total_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) std::abort();
    map_ = static_cast<std::byte*>(p);
  }
  std::byte* place(size_t size) {
    if (size > kMaxRegion) std::abort();
    std::byte* end = map_ + total_ - ring::kPage;  // the last page stays PROT_NONE
    std::byte* base = end - size;
    if (::mprotect(map_, total_ - ring::kPage, PROT_NONE) != 0) std::abort();
    if (::mprotect(base, size, PROT_READ | PROT_WRITE) != 0) std::abort();
    std::memset(base, 0, size);
    return base;
  }

 private:
  std::byte* map_ = nullptr;
  size_t total_ = 0;
};

// Keeps the reads of every frame's bytes from being optimised away.
volatile uint64_t g_sink;

struct Backend {
  ring::Layout layout;
  std::byte* base = nullptr;
  ring::RegionHeader* header = nullptr;
  ring::Producer tx;  // the frontend's
  ring::Consumer rx;
  bool ready = false;  // false once the frontend failed it (fail_backend)
  // The driver domain's side, attached as driver.cpp's finish_setup() does.
  ring::Producer peer_rx;
  ring::Consumer peer_tx;
  uint64_t tap_bytes = 0;
};

// Where the data of a slot lies, to check a frame stays inside its own.
bool inside_slot(const Backend& b, const ring::Frame& f, size_t data_off, uint32_t slots) {
  const std::byte* lo = b.base + data_off;
  const std::byte* hi = lo + size_t{slots} * b.layout.slot_size;
  if (f.data < lo || f.data + f.len > hi) return false;
  size_t at = static_cast<size_t>(f.data - lo);
  return at / b.layout.slot_size == (at + f.len - 1) / b.layout.slot_size;
}

class Harness {
 public:
  explicit Harness(FuzzedDataProvider& in) : in_(in) {}

  void run(GuardedRegion (&regions)[2]) {
    uint8_t shape = in_.ConsumeIntegral<uint8_t>();
    uint32_t tx_slots = ring::kMinSlots << (shape & 3);
    uint32_t rx_slots = ring::kMinSlots << ((shape >> 2) & 3);
    uint32_t slot_size = ring::kMinSlotSize << ((shape >> 4) & 1);
    auto layout = ring::compute_layout(tx_slots, rx_slots, slot_size);
    FUZZ_CHECK(layout.has_value());
    for (int i = 0; i < 2; ++i) {
      backends_[i].layout = *layout;
      backends_[i].base = regions[i].place(layout->region_size);
      setup(backends_[i]);
    }
    probe_ = ng::frontend::RxProbe({2, 0, 0, 0, 0, 1}, {192, 0, 2, 10}, {192, 0, 2, 1}, 1, 2);
    for (int step = 0; step < kMaxSteps && in_.remaining_bytes() > 0; ++step) {
      Backend& b = backends_[in_.ConsumeBool() ? 1 : 0];
      Backend& other = &b == &backends_[0] ? backends_[1] : backends_[0];
      this->step(b, other);
      check(b);
      check(other);
    }
    g_sink = backends_[0].tap_bytes + backends_[1].tap_bytes;
  }

 private:
  void step(Backend& b, Backend& other) {
    int op = in_.ConsumeIntegralInRange<int>(0, 12);
    act(op, b, other);
    // FUZZ_TRACE=1 shows what an input did, to read a finding or a seed.
    static const bool trace = std::getenv("FUZZ_TRACE") != nullptr;
    if (trace) {
      std::fprintf(stderr, "%-12s backend %d: %s tx prod %u done %u, rx cons %u, held %zu\n", kOps[op],
                   &b == &backends_[0] ? 0 : 1, b.ready ? "ready" : "failed", b.tx.prod(), b.tx.done(),
                   b.rx.cons(), held_.size());
    }
  }

  static constexpr const char* kOps[] = {"tap_to_ring", "ring_to_tap", "before_sleep", "watch",
                                         "hold",        "resume_held", "replay",       "setup",
                                         "peer_bytes",  "peer_index",  "peer_desc",    "peer_drive",
                                         "peer_attach"};

  void act(int op, Backend& b, Backend& other) {
    switch (op) {
      case 0: tap_to_ring(b); break;
      case 1: ring_to_tap(b); break;
      case 2: before_sleep(b); break;
      case 3: watch(b); break;
      case 4: hold(b); break;
      case 5: resume_held(b); break;
      case 6: replay(other, b); break;
      case 7: setup(b); break;
      case 8: peer_bytes(b); break;
      case 9: peer_index(b); break;
      case 10: peer_desc(b); break;
      case 11: peer_drive(b); break;
      default: peer_attach(b); break;
    }
  }

  // frontend.cpp send_setup(): a fresh header over the old region, the
  // frontend's sides from the indices it wrote, never from the region.
  void setup(Backend& b) {
    b.header = ring::init_region(b.base, b.layout);
    b.tx = ring::Producer(ring::tx_ring(b.base, b.layout), ring::kFresh);
    b.rx = ring::Consumer(ring::rx_ring(b.base, b.layout), ring::kFresh);
    b.ready = true;
    peer_attach(b);
  }

  void peer_attach(Backend& b) {
    auto h = ring::attach_region(b.base, b.layout.region_size, b.layout);
    if (!h) return;  // a driver refuses the region; its objects stay as they were
    b.peer_rx = ring::Producer(ring::rx_ring(b.base, b.layout));
    b.peer_tx = ring::Consumer(ring::tx_ring(b.base, b.layout));
  }

  // tap_to_ring(): frames the app sent, as many as the ring has room for.
  void tap_to_ring(Backend& b) {
    if (!b.ready) return;
    auto free = b.tx.free_slots();
    if (!free) return fail(b);
    FUZZ_CHECK(*free <= b.layout.tx_slots);
    unsigned n = std::min<unsigned>(*free, kBatch);
    unsigned frames = in_.ConsumeIntegralInRange<unsigned>(0, n + 1);
    unsigned count = 0;
    for (unsigned k = 0; k < frames && count < n; ++k) {
      uint32_t len = in_.ConsumeIntegralInRange<uint32_t>(0, b.tx.slot_size());
      if (len < kMinFrame) continue;
      std::memset(b.tx.slot(count), static_cast<int>(len & 0xff), len);
      b.tx.set(count++, ring::Desc{0, len});
    }
    if (count == 0) return;
    b.tx.publish(count);
    [[maybe_unused]] bool kick = ring::peer_needs_kick(b.header->driver_sleeping);
  }

  // ring_to_tap(): what the driver delivered, written to the TAP (here:
  // read byte by byte, so every byte of a frame is touched).
  void ring_to_tap(Backend& b) {
    if (!b.ready) return;
    auto avail = b.rx.available();
    if (!avail) return fail(b);
    FUZZ_CHECK(*avail <= b.layout.rx_slots);
    unsigned n = std::min<unsigned>(*avail, kBatch);
    for (unsigned i = 0; i < n; ++i) {
      auto f = b.rx.frame(i);
      if (!f || f->len < kMinFrame) {
        b.rx.release(i);
        return fail(b);
      }
      FUZZ_CHECK(inside_slot(b, *f, b.layout.rx_data_off, b.layout.rx_slots));
      [[maybe_unused]] bool answer =
          probe_.is_answer(reinterpret_cast<const uint8_t*>(f->data) + kVnetHdrLen, f->len - kVnetHdrLen);
      for (uint32_t k = 0; k < f->len; ++k) b.tap_bytes += static_cast<uint8_t>(f->data[k]);
    }
    if (n == 0) return;
    b.rx.release(n);
  }

  // sleep(): the last look at both rings before the frontend blocks.
  void before_sleep(Backend& b) {
    if (!b.ready) return;
    ring::prepare_sleep(b.header->front_sleeping);
    auto free = b.tx.free_slots();
    if (free) FUZZ_CHECK(*free <= b.layout.tx_slots);
    auto avail = b.rx.available();
    if (avail) FUZZ_CHECK(*avail <= b.layout.rx_slots);
    ring::cancel_sleep(b.header->front_sleeping);
  }

  // watch(): the watchdog's view of the TX ring.
  void watch(Backend& b) {
    if (!b.ready) return;
    [[maybe_unused]] uint64_t seen = b.header->passes.value.load(std::memory_order_acquire) +
                                     b.header->tx_busy_pass.value.load(std::memory_order_acquire) +
                                     b.header->heartbeat.value.load(std::memory_order_relaxed);
    if (auto s = b.tx.refresh(); !s) return fail(b);
    FUZZ_CHECK(b.tx.in_flight() <= b.layout.tx_slots);
  }

  // fail_backend(): the frontend stops using the rings; hold/replay still
  // walk what it had posted.
  void fail(Backend& b) { b.ready = false; }

  // hold(): keeps what the failed domain took but never finished.
  void hold(Backend& failed) {
    fail(failed);
    if (!failed.tx.attached() || !failed.tx.refresh()) return;
    FUZZ_CHECK(failed.tx.in_flight() <= failed.layout.tx_slots);
    for (uint32_t i = failed.tx.done(); i != failed.tx.prod(); ++i) {
      ring::Desc d = failed.tx.desc_at(i);
      if (!ng::frontend::replayable(d, failed.tx.slot_size())) continue;
      if (held_.size() >= kHoldFrames) continue;
      const std::byte* p = failed.tx.slot_at(i) + d.offset;
      held_.emplace_back(p, p + d.len);
    }
  }

  void resume_held(Backend& b) {
    if (!b.ready) return;
    while (!held_.empty()) {
      const auto& f = held_.front();
      if (post(b, f.data(), static_cast<uint32_t>(f.size())) == 0) break;
      held_.pop_front();
    }
    held_.clear();
  }

  // replay(): re-posts the failed domain's unfinished frames on the next.
  void replay(Backend& next, Backend& failed) {
    if (!next.ready) return;
    fail(failed);
    if (!failed.tx.attached() || !failed.tx.refresh()) return;
    FUZZ_CHECK(failed.tx.in_flight() <= failed.layout.tx_slots);
    for (uint32_t i = failed.tx.done(); i != failed.tx.prod(); ++i) {
      ring::Desc d = failed.tx.desc_at(i);
      if (!ng::frontend::replayable(d, failed.tx.slot_size())) continue;
      post(next, failed.tx.slot_at(i) + d.offset, d.len);
    }
  }

  // post(), without the virtio-net header variant.
  unsigned post(Backend& b, const void* data, uint32_t len) {
    auto free = b.tx.free_slots();
    if (!free || *free == 0 || len > b.tx.slot_size()) return 0;
    std::memcpy(b.tx.slot(0), data, len);
    b.tx.set(0, ring::Desc{0, len});
    b.tx.publish(1);
    return 1;
  }

  // ---- the peer ----------------------------------------------------------

  void peer_bytes(Backend& b) {
    size_t size = b.layout.region_size;
    // Mostly the header page and the descriptors, where the indices live.
    size_t limit = in_.ConsumeBool() ? b.layout.tx_data_off : size;
    size_t at = in_.ConsumeIntegralInRange<size_t>(0, limit - 1);
    auto bytes = in_.ConsumeBytes<uint8_t>(in_.ConsumeIntegralInRange<size_t>(1, 16));
    size_t n = std::min(bytes.size(), size - at);
    if (n == 0) return;  // the input ran out
    std::memcpy(b.base + at, bytes.data(), n);
  }

  // An index near where the frontend's side stands, or anything at all.
  void peer_index(Backend& b) {
    ring::RingControl& c = in_.ConsumeBool() ? b.header->tx : b.header->rx;
    ring::Index* which = in_.PickValueInArray({&c.prod, &c.cons, &c.done});
    uint32_t near = in_.ConsumeBool() ? b.tx.prod() : b.rx.cons();
    uint32_t v = in_.ConsumeBool() ? near + static_cast<uint32_t>(in_.ConsumeIntegral<int8_t>())
                                   : in_.ConsumeIntegral<uint32_t>();
    which->value.store(v, std::memory_order_release);
  }

  void peer_desc(Backend& b) {
    bool tx = in_.ConsumeBool();
    auto r = tx ? ring::tx_ring(b.base, b.layout) : ring::rx_ring(b.base, b.layout);
    uint32_t i = in_.ConsumeIntegral<uint32_t>() & (r.slots - 1);
    uint32_t offset = in_.ConsumeBool() ? in_.ConsumeIntegralInRange<uint32_t>(0, 64)
                                        : in_.ConsumeIntegral<uint32_t>();
    uint32_t len = in_.ConsumeBool() ? in_.ConsumeIntegralInRange<uint32_t>(0, r.slot_size + 1)
                                     : in_.ConsumeIntegral<uint32_t>();
    r.descs[i] = ring::Desc{offset, len};
  }

  // What driver.cpp's poll_tx()/copy_to() do with the driver's side; its
  // indices came from the region at attach time, so they can be anything:
  // only memory safety is asked of them.
  void peer_drive(Backend& b) {
    if (!b.peer_tx.attached()) return;
    if (in_.ConsumeBool()) {
      auto avail = b.peer_tx.available();
      if (!avail) return;
      unsigned n = std::min<unsigned>(*avail, kBatch);
      for (unsigned i = 0; i < n; ++i) {
        auto f = b.peer_tx.frame(i);
        if (f) FUZZ_CHECK(inside_slot(b, *f, b.layout.tx_data_off, b.layout.tx_slots));
      }
      b.peer_tx.release(std::min<unsigned>(n, in_.ConsumeIntegralInRange<unsigned>(0, n)));
      return;
    }
    auto free = b.peer_rx.free_slots();
    if (!free) return;
    unsigned n = std::min<unsigned>({*free, kBatch, in_.ConsumeIntegralInRange<unsigned>(0, 8)});
    for (unsigned i = 0; i < n; ++i) {
      uint32_t len = in_.ConsumeIntegralInRange<uint32_t>(kMinFrame, b.peer_rx.slot_size());
      std::memset(b.peer_rx.slot(i), 0x5a, len);
      b.peer_rx.set(i, ring::Desc{0, len});
    }
    if (n != 0) b.peer_rx.publish(n);
  }

  // What must hold whatever the peer did.
  void check(const Backend& b) {
    FUZZ_CHECK(b.tx.in_flight() <= b.layout.tx_slots);
    FUZZ_CHECK(held_.size() <= kHoldFrames);
  }

  FuzzedDataProvider& in_;
  Backend backends_[2];
  std::deque<std::vector<std::byte>> held_;
  ng::frontend::RxProbe probe_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static GuardedRegion regions[2];
  FuzzedDataProvider in(data, size);
  Harness(in).run(regions);
  return 0;
}

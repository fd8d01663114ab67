#include "ring/ring.hpp"

#include <cstring>
#include <new>

namespace ng::ring {
namespace {

bool power_of_two(uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

Status check_slots(const char* what, uint32_t slots) {
  if (!power_of_two(slots) || slots < kMinSlots || slots > kMaxSlots) {
    return fail("{} = {} is not valid: expected a power of two between {} and {}", what, slots,
                kMinSlots, kMaxSlots);
  }
  return {};
}

}  // namespace

Result<Layout> compute_layout(uint32_t tx_slots, uint32_t rx_slots, uint32_t slot_size) {
  if (auto s = check_slots("tx_slots", tx_slots); !s) return tl::unexpected(s.error());
  if (auto s = check_slots("rx_slots", rx_slots); !s) return tl::unexpected(s.error());
  if (slot_size < kMinSlotSize || slot_size > kMaxSlotSize || slot_size % kCacheLine != 0) {
    return fail("slot_size = {} is not valid: expected a multiple of {} between {} and {}",
                slot_size, kCacheLine, kMinSlotSize, kMaxSlotSize);
  }
  Layout l;
  l.tx_slots = tx_slots;
  l.rx_slots = rx_slots;
  l.slot_size = slot_size;
  l.tx_desc_off = kPage;
  l.rx_desc_off = round_up(l.tx_desc_off + sizeof(Desc) * tx_slots, kCacheLine);
  l.tx_data_off = round_up(l.rx_desc_off + sizeof(Desc) * rx_slots, kPage);
  l.rx_data_off = l.tx_data_off + size_t{slot_size} * tx_slots;
  l.region_size = round_up(l.rx_data_off + size_t{slot_size} * rx_slots, kPage);
  return l;
}

RegionHeader* init_region(void* base, const Layout& layout) {
  auto* h = new (base) RegionHeader{};
  h->magic = kMagic;
  h->version = kLayoutVersion;
  h->tx_slots = layout.tx_slots;
  h->rx_slots = layout.rx_slots;
  h->slot_size = layout.slot_size;
  h->region_size = layout.region_size;
  return h;
}

Result<RegionHeader*> attach_region(void* base, size_t mapped_size, const Layout& layout) {
  if (mapped_size < layout.region_size) {
    return fail("shared region is {} bytes, the negotiated layout needs {}", mapped_size,
                layout.region_size);
  }
  auto* h = static_cast<RegionHeader*>(base);
  if (h->magic != kMagic || h->version != kLayoutVersion) {
    return fail("shared region has magic {:#x} version {}, expected {:#x} version {}", h->magic,
                h->version, kMagic, kLayoutVersion);
  }
  if (h->tx_slots != layout.tx_slots || h->rx_slots != layout.rx_slots ||
      h->slot_size != layout.slot_size || h->region_size != layout.region_size) {
    return fail("shared region header does not match the sizes negotiated in the handshake");
  }
  return h;
}

RingRef tx_ring(void* base, const Layout& layout) {
  auto* b = static_cast<std::byte*>(base);
  auto* h = static_cast<RegionHeader*>(base);
  return RingRef{&h->tx, reinterpret_cast<Desc*>(b + layout.tx_desc_off), b + layout.tx_data_off,
                 layout.tx_slots, layout.slot_size};
}

RingRef rx_ring(void* base, const Layout& layout) {
  auto* b = static_cast<std::byte*>(base);
  auto* h = static_cast<RegionHeader*>(base);
  return RingRef{&h->rx, reinterpret_cast<Desc*>(b + layout.rx_desc_off), b + layout.rx_data_off,
                 layout.rx_slots, layout.slot_size};
}

// One load of each field into the copy, whatever the compiler would rather
// do: the peer may rewrite a descriptor between two reads of it, and a
// check of one read followed by a use of another (time of check to time of
// use) would let it point a frame anywhere. Relaxed suffices: the index
// that published the descriptor was loaded with acquire.
Desc load_once(Desc& shared) {
  return Desc{std::atomic_ref<uint32_t>(shared.offset).load(std::memory_order_relaxed),
              std::atomic_ref<uint32_t>(shared.len).load(std::memory_order_relaxed)};
}

Producer::Producer(RingRef ring)
    : ring_(ring),
      prod_(ring.control->prod.value.load(std::memory_order_relaxed)),
      done_(ring.control->done.value.load(std::memory_order_acquire)) {}

Result<uint32_t> Producer::free_slots() {
  uint32_t free = ring_.slots - (prod_ - done_);
  if (free != 0) return free;
  if (auto s = refresh(); !s) return tl::unexpected(s.error());
  return ring_.slots - (prod_ - done_);
}

Status Producer::refresh() {
  uint32_t seen = ring_.control->done.value.load(std::memory_order_acquire);
  if (seen - done_ > prod_ - done_) {
    return fail("peer moved its done index to {} outside [{}, {}]", seen, done_, prod_);
  }
  done_ = seen;
  return {};
}

std::byte* Producer::slot(uint32_t i) const {
  return ring_.data + size_t{(prod_ + i) & (ring_.slots - 1)} * ring_.slot_size;
}

void Producer::set(uint32_t i, Desc desc) { ring_.descs[(prod_ + i) & (ring_.slots - 1)] = desc; }

void Producer::publish(uint32_t n) {
  prod_ += n;
  ring_.control->prod.value.store(prod_, std::memory_order_release);
}

const std::byte* Producer::slot_at(uint32_t index) const {
  return ring_.data + size_t{index & (ring_.slots - 1)} * ring_.slot_size;
}

Desc Producer::desc_at(uint32_t index) const { return load_once(ring_.descs[index & (ring_.slots - 1)]); }

Consumer::Consumer(RingRef ring)
    : ring_(ring),
      cons_(ring.control->cons.value.load(std::memory_order_relaxed)),
      done_(ring.control->done.value.load(std::memory_order_relaxed)),
      prod_(ring.control->prod.value.load(std::memory_order_acquire)) {}

Result<uint32_t> Consumer::available() {
  uint32_t ready = prod_ - cons_;
  if (ready != 0) return ready;
  uint32_t seen = ring_.control->prod.value.load(std::memory_order_acquire);
  // Valid: from what was taken (cons) to what was finished plus the ring
  // (done + slots). Measured from cons, so that an index moved back behind
  // frames taken but not finished wraps to a huge distance and is refused.
  if (seen - cons_ > done_ + ring_.slots - cons_) {
    return fail("peer moved its producer index to {}: it must stay from {} (taken) to {} (finished "
                "plus the {} slots)",
                seen, cons_, done_ + ring_.slots, ring_.slots);
  }
  prod_ = seen;
  return prod_ - cons_;
}

Result<Frame> Consumer::frame(uint32_t i) const {
  const Desc d = load_once(ring_.descs[(cons_ + i) & (ring_.slots - 1)]);
  if (d.len == 0 || d.offset >= ring_.slot_size || d.len > ring_.slot_size - d.offset) {
    return fail("malformed descriptor: offset {} length {} in a {}-byte slot", d.offset, d.len,
                ring_.slot_size);
  }
  const std::byte* base = ring_.data + size_t{(cons_ + i) & (ring_.slots - 1)} * ring_.slot_size;
  return Frame{base + d.offset, d.len};
}

void Consumer::take(uint32_t n) {
  cons_ += n;
  ring_.control->cons.value.store(cons_, std::memory_order_release);
}

void Consumer::finish(uint32_t n) {
  done_ += n;
  ring_.control->done.value.store(done_, std::memory_order_release);
}

Status make_doorbell(UniqueFd& mine, UniqueFd& theirs) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
    return fail_errno("creating a doorbell socketpair");
  }
  mine.reset(sv[0]);
  theirs.reset(sv[1]);
  return {};
}

}  // namespace ng::ring

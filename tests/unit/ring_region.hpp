#pragma once
// A ring region in ordinary memory for the ring's unit tests: the ring logic
// does not care where it lives.
#include <cstddef>
#include <cstdint>
#include <new>

#include "ring/ring.hpp"

namespace ng::test {

struct Region {
  explicit Region(uint32_t slots = 16, uint32_t slot_size = 2048)
      : layout(*ring::compute_layout(slots, slots, slot_size)),
        mem(new (std::align_val_t{4096}) std::byte[layout.region_size]()) {
    ring::init_region(mem, layout);
  }
  ~Region() { ::operator delete[](mem, std::align_val_t{4096}); }
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;
  ring::RegionHeader* header() const { return reinterpret_cast<ring::RegionHeader*>(mem); }
  ring::Desc* rx_descs() const { return reinterpret_cast<ring::Desc*>(mem + layout.rx_desc_off); }
  ring::Desc* tx_descs() const { return reinterpret_cast<ring::Desc*>(mem + layout.tx_desc_off); }
  ring::Layout layout;
  std::byte* mem;
};

}  // namespace ng::test

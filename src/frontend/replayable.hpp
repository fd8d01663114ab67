#pragma once
// Which of a failed domain's unfinished TX frames the frontend holds or
// re-posts elsewhere (frontend.cpp: hold(), replay()).
#include <cstdint>

#include "ring/ring.hpp"

namespace ng::frontend {

// The descriptor is read back from the region, which the failed domain can
// have rewritten: only one inside its slot and not empty is a frame. An
// empty one was held as an empty buffer (whose null data() then went to
// memcpy) and re-posted to the next domain as a malformed descriptor
// charged to this app. Found by tests/fuzz/ring_fuzz.cpp.
inline bool replayable(const ring::Desc& d, uint32_t slot_size) {
  return d.len != 0 && d.offset < slot_size && d.len <= slot_size - d.offset;
}

}  // namespace ng::frontend

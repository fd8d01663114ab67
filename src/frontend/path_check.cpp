#include "frontend/path_check.hpp"

#include <fmt/format.h>

#include <cstdint>

namespace ng::frontend {

void PathCheck::reset() {
  to_active_ = {};
  to_spare_ = {};
  asking_ = false;
  answer_ = false;
}

PathCheck::Loss PathCheck::judge(Direction& d, const PathSide& from, const PathSide& to) {
  bool fresh = !d.primed || to.seen != d.last_seen || to.overruns != d.overruns || from.sent < d.base_sent;
  if (fresh) {
    d.ever_seen = d.ever_seen || (d.primed && to.seen != d.last_seen);
    d.primed = true;
    d.last_seen = to.seen;
    d.overruns = to.overruns;
    d.base_sent = from.sent;
    d.counting = false;
    return {};
  }
  if (!d.ever_seen) return {};
  d.missing = from.sent - d.base_sent;
  Loss l;
  l.suspect = d.missing + 1 >= c_.lost_probes;
  if (d.missing < c_.lost_probes) return l;
  if (!d.counting) {
    d.counting = true;
    d.counted_pass = to.passes;
  }
  l.lost = to.drained >= d.counted_pass + 2;
  return l;
}

// The question goes out one probe before the loss is sure, so that its
// wait overlaps the drained passes the loss still needs; an answer counts
// against the spare only once the loss is sure.
PathVerdict PathCheck::check(uint64_t now, const PathSide& active, const PathSide& spare) {
  Loss a = judge(to_active_, spare, active);
  Loss s = judge(to_spare_, active, spare);
  bool lost = a.lost || s.lost;
  bool suspect = a.suspect || s.suspect;
  // Probes crossing again where they were lost end a hold-off: the
  // spare's path is mended, and the next loss is a new question.
  if (quiet_until_ns_ != 0 && active.seen != held_seen_.first && spare.seen != held_seen_.second) {
    quiet_until_ns_ = 0;
  }
  if (!asking_) return suspect && now >= quiet_until_ns_ ? PathVerdict::ask : PathVerdict::ok;
  if (!suspect) {  // probes crossing again: whatever it was, it is over
    asking_ = false;
    return PathVerdict::ok;
  }
  if (!lost) return PathVerdict::ok;
  if (answer_) {
    asking_ = false;
    quiet_until_ns_ = now + c_.hold_off_ns;
    // A direction that still carried probes stays out of the test above.
    held_seen_ = {a.lost ? active.seen : UINT64_MAX, s.lost ? spare.seen : UINT64_MAX};
    to_active_.counting = to_spare_.counting = false;
    to_active_.base_sent = spare.sent;
    to_spare_.base_sent = active.sent;
    return PathVerdict::spare_broken;
  }
  bool waited = now - asked_ns_ >= c_.answer_timeout_ns && active.drained >= asked_pass_ + 2;
  return waited ? PathVerdict::active_broken : PathVerdict::ok;
}

void PathCheck::asked(uint64_t now, uint64_t active_passes) {
  asking_ = true;
  answer_ = false;
  asked_ns_ = now;
  asked_pass_ = active_passes;
}

void PathCheck::answered() {
  if (asking_) answer_ = true;
}

std::string PathCheck::detail() const {
  std::string lost;
  if (to_active_.counting) lost += fmt::format("{} path probes from the spare not seen by the active", to_active_.missing);
  if (to_spare_.counting) {
    if (!lost.empty()) lost += ", ";
    lost += fmt::format("{} path probes from the active not seen by the spare", to_spare_.missing);
  }
  return lost;
}

}  // namespace ng::frontend

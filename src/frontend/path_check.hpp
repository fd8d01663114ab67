#pragma once
// The path check: fast evidence that the active domain's way to the wire
// is broken (its NIC stopped receiving, it drops every frame, its cable is
// pulled on the switch side), from the path probes the two driver domains
// send each other every interval (driver/path_probe.hpp).
//
// Two domains alone cannot say whose side broke when a probe stops
// arriving: the spare's probes lost at the active mean the active's receive
// path or the spare's transmit path. So loss only raises the question; the
// answer comes from a third party on the wire: one ARP question through the
// active domain to the receive-path check's neighbour (rx_probe.hpp).
// Answered, the active's path works and the spare's is the broken one (an
// event; nothing fails over). Unanswered, the active's path is broken.
//
// Loss is judged on the domains' own evidence, never on time alone: at
// least `lost_probes` sent since the receiver last saw one, and the receiver
// read its NIC dry in two passes that began after that was seen (the
// question goes out one probe earlier, so the waits overlap); a
// receiver whose NIC overran (an overloaded domain) is not judged. A
// direction is judged only once a probe has crossed it, and the question
// must also go unanswered while the active read its NIC dry twice more.
#include <cstdint>
#include <string>
#include <utility>

namespace ng::frontend {

struct PathSide {
  uint64_t sent = 0;      // its probes sent to the other domain
  uint64_t seen = 0;      // the other domain's probes it saw
  uint64_t passes = 0;    // its packet loop's passes
  uint64_t drained = 0;   // the last pass that read its NIC dry
  uint64_t overruns = 0;  // its NIC's overruns
};

enum class PathVerdict {
  ok,
  ask,            // probes are lost: ask the neighbour through the active, then asked()
  active_broken,  // the question went unanswered too
  spare_broken,   // it was answered: the spare's side is the broken one
};

struct PathCheckConfig {
  uint32_t lost_probes = 3;
  uint64_t answer_timeout_ns = 2'000'000;  // in watched time, besides the drained passes
  // After a spare_broken verdict, no new question until probes cross both
  // ways again or this long has passed.
  uint64_t hold_off_ns = 10'000'000'000;
};

class PathCheck {
 public:
  PathCheck() = default;
  explicit PathCheck(const PathCheckConfig& c) : c_(c) {}

  // A new pair of domains (a switch, a reconnection): nothing carries over.
  void reset();
  PathVerdict check(uint64_t now, const PathSide& active, const PathSide& spare);
  void asked(uint64_t now, uint64_t active_passes);
  void answered();
  bool asking() const { return asking_; }
  std::string detail() const;

 private:
  struct Direction {
    // The receiver's count is cumulative and may hold probes of the spare
    // before this one: the first look only takes it as the base.
    bool primed = false;
    bool ever_seen = false;
    uint64_t last_seen = 0;
    uint64_t base_sent = 0;  // the sender's count when the receiver last saw one
    uint64_t overruns = 0;
    bool counting = false;   // lost_probes reached; waiting for the receiver to drain
    uint64_t counted_pass = 0;
    uint64_t missing = 0;
  };
  struct Loss {
    bool suspect = false;  // one probe short of lost
    bool lost = false;
  };
  Loss judge(Direction& d, const PathSide& from, const PathSide& to);

  PathCheckConfig c_;
  Direction to_active_;
  Direction to_spare_;
  bool asking_ = false;
  bool answer_ = false;
  uint64_t asked_ns_ = 0;
  uint64_t asked_pass_ = 0;
  uint64_t quiet_until_ns_ = 0;
  std::pair<uint64_t, uint64_t> held_seen_{};  // the receivers' counts at a spare_broken verdict
};

}  // namespace ng::frontend

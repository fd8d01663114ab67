#pragma once
// The spin-then-sleep policy both ends of a ring follow: after work, keep
// polling (yielding the core) for spin_us in case the peer answers at once;
// after that, sleep on the eventfd. A sleep that ended in a timeout means
// nothing is coming, so the next idle pass sleeps again without spinning.
#include <sched.h>

#include <cstdint>

namespace ng::ring {

class Idler {
 public:
  explicit Idler(uint32_t spin_us) : spin_ns_(uint64_t{spin_us} * 1000) {}

  // After each pass: true to poll again, false when it is time to sleep.
  bool keep_polling(unsigned work, uint64_t now) {
    if (work != 0) {
      idle_since_ = 0;
      return true;
    }
    if (idle_since_ == 0) idle_since_ = now;
    if (now - idle_since_ >= spin_ns_) return false;
    // On a small host the peer we wait for may need this very core.
    ::sched_yield();
    return true;
  }

  void slept(bool woken_by_event, uint64_t now) {
    idle_since_ = woken_by_event ? 0 : now - spin_ns_;
  }

 private:
  uint64_t spin_ns_;
  uint64_t idle_since_ = 0;
};

}  // namespace ng::ring

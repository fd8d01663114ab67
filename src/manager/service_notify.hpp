#pragma once
// The manager as a systemd service (Type=notify): READY=1 once every app
// domain has an active driver domain, WATCHDOG=1 from the manager's own
// loop (so a manager whose loop hangs is restarted), STATUS= with the
// health line, STOPPING=1 when it shuts down. Outside systemd
// (no NOTIFY_SOCKET) every call does nothing.
#include <cstdint>
#include <string>

namespace ng::manager {

class ServiceNotifier {
 public:
  ServiceNotifier();  // reads NOTIFY_SOCKET and WATCHDOG_USEC through libsystemd
  bool enabled() const { return enabled_; }
  bool ready_sent() const { return ready_sent_; }

  void ready(const std::string& status);
  void status(const std::string& status);
  void stopping();
  // Around a reload: RELOADING=1, then READY=1 with the health line again.
  void reloading();
  void reloaded(const std::string& status);
  // Pets the watchdog when half its interval has passed since the last pet.
  void watchdog(uint64_t now_ns);
  // When watchdog() must next be called; UINT64_MAX without a watchdog.
  uint64_t next_watchdog_ns() const;

 private:
  bool enabled_ = false;
  bool ready_sent_ = false;
  uint64_t pet_every_ns_ = 0;  // half of WATCHDOG_USEC; 0: no watchdog
  uint64_t last_pet_ns_ = 0;
};

}  // namespace ng::manager

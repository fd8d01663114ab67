#include "manager/service_notify.hpp"

#include <systemd/sd-daemon.h>

#include <cstdlib>

#include <spdlog/spdlog.h>

#include "common/clock.hpp"

namespace ng::manager {

ServiceNotifier::ServiceNotifier() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && *socket != '\0';
  uint64_t usec = 0;
  if (enabled_ && sd_watchdog_enabled(0, &usec) > 0) pet_every_ns_ = usec * 1000 / 2;
  last_pet_ns_ = mono_ns();
}

void ServiceNotifier::ready(const std::string& status) {
  if (!enabled_ || ready_sent_) return;
  ready_sent_ = true;
  if (sd_notifyf(0, "READY=1\nSTATUS=%s", status.c_str()) <= 0) {
    spdlog::warn("manager: could not tell systemd it is ready (NOTIFY_SOCKET)");
  }
}

void ServiceNotifier::status(const std::string& status) {
  if (enabled_) sd_notifyf(0, "STATUS=%s", status.c_str());
}

void ServiceNotifier::stopping() {
  if (enabled_) sd_notify(0, "STOPPING=1");
}

void ServiceNotifier::reloading() {
  if (enabled_ && ready_sent_) sd_notify(0, "RELOADING=1");
}

void ServiceNotifier::reloaded(const std::string& status) {
  if (enabled_ && ready_sent_) sd_notifyf(0, "READY=1\nSTATUS=%s", status.c_str());
}

void ServiceNotifier::watchdog(uint64_t now_ns) {
  if (pet_every_ns_ == 0 || now_ns - last_pet_ns_ < pet_every_ns_) return;
  last_pet_ns_ = now_ns;
  sd_notify(0, "WATCHDOG=1");
}

uint64_t ServiceNotifier::next_watchdog_ns() const {
  return pet_every_ns_ == 0 ? UINT64_MAX : last_pet_ns_ + pet_every_ns_;
}

}  // namespace ng::manager

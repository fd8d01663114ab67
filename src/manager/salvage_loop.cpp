// The manager's side of the salvage (salvage.hpp): holding every driver
// instance's packet socket, and draining it from the domain's death until
// its next instance takes over.
#include <sys/epoll.h>

#include <spdlog/spdlog.h>

#include "common/clock.hpp"
#include "manager/child_stats.hpp"
#include "manager/manager.hpp"

namespace ng::manager {

// Tried on every pass of the loop until each running driver instance's
// socket is held; one that cannot be taken is given up on, with a warning.
void Manager::grab_salvage() {
  for (auto& c : children_) {
    if (c.kind != ChildKind::driver || c.pid == 0 || c.salvage_grabbed) continue;
    std::string error;
    auto& s = mapped(c.driver_stats, config_.path(c.domain() + ".stats"), stats::kDriverMagic, c, error);
    if (!s || (*s)->pid.load() != static_cast<uint64_t>(c.pid)) continue;
    uint64_t fd = (*s)->nic_fd.load();
    if (fd == 0) continue;
    // The instance that took over ends the salvage of the one before it:
    // from now on its own socket gets the NIC's frames.
    if (c.salvage.draining()) end_salvage(c, "next instance up");
    c.salvage_grabbed = true;
    if (auto g = c.salvage.grab(c.pidfd.get(), static_cast<int>(fd - 1)); !g) {
      spdlog::warn("{}: {}: frames its NIC holds when it fails will be lost", c.domain(), g.error().message);
    }
  }
}

void Manager::start_salvage(Child& c) {
  if (!c.salvage.holding() || c.salvage.draining()) return;
  if (auto s = c.salvage.begin(mono_ns(), kSalvageWindowNs); !s) {
    spdlog::warn("{}: salvage: {}", c.domain(), s.error().message);
    c.salvage.end();
    return;
  }
  auto key = kSalvageKey + static_cast<uint64_t>(&c - children_.data());
  if (auto s = watch_fd(c.salvage.fd(), key); !s) spdlog::warn("{}: salvage: {}", c.domain(), s.error().message);
  c.salvage.drain(salvage_targets_);
}

void Manager::end_salvage(Child& c, const char* why) {
  if (!c.salvage.holding()) return;
  bool was_draining = c.salvage.draining();
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.salvage.fd(), nullptr);
  uint64_t started = c.salvage.started_ns();
  SalvageCounts n = c.salvage.end();
  if (!was_draining && n.read == 0) return;
  salvaged_ += n.delivered;
  event("salvage", &c, {{"read", n.read}, {"delivered", n.delivered}, {"unclaimed", n.unclaimed},
                        {"dropped", n.dropped}, {"ms", (mono_ns() - started) / 1'000'000}, {"end", why}});
}

void Manager::salvage_due() {
  uint64_t now = mono_ns();
  for (auto& c : children_) {
    if (c.salvage.draining() && now >= c.salvage.deadline_ns()) end_salvage(c, "window over");
  }
}

}  // namespace ng::manager

#pragma once
// The frontend: owns the app domain's TAP device and the shared-memory rings
// to every driver domain serving it. It carries frames between the TAP and the
// active driver domain's rings, keeps the other connected as a warm spare,
// and is the part that must survive: it validates everything a driver domain
// writes, and switches to the spare on its own the moment the active one
// hangs up or breaks the protocol.
#include <cstdint>
#include <string>
#include <vector>

#include "common/addr.hpp"
#include "common/priority.hpp"

namespace ng::frontend {

struct BackendAddress {
  std::string name;
  std::string socket;
};

struct FrontendOptions {
  std::string name;
  std::string netns;  // path of the app domain's namespace; empty: stay put
  std::string tap = "eth0";
  Mac mac{};
  uint32_t mtu = 1500;
  std::vector<Cidr> addresses;
  std::vector<BackendAddress> backends;  // preference order; the first is active when up
  std::string stats;
  uint32_t tx_slots = 256;
  uint32_t rx_slots = 256;
  uint32_t slot_size = 65600;
  uint32_t spin_us = 50;
  uint32_t reconnect_ms = 20;
  uint32_t handshake_timeout_ms = 1000;  // each handshake step; see watch_handshake
  uint32_t hang_timeout_ms = 6;    // see frontend/watchdog.hpp
  uint32_t stall_timeout_ms = 100;
  bool fence = true;   // SIGKILL a domain found hung, stalled or corrupt
  std::string events;  // event log (JSON lines); empty: none
  uint32_t hold_frames = 256;  // frames kept while no driver domain is up
  std::string salvage;  // socket the manager sends salvaged frames to; empty: none
  std::string rx_probe_target;  // IPv4 neighbour asked through the active domain; empty: no check
  uint32_t rx_probe_interval_ms = 100;
  uint32_t rx_probe_timeout_ms = 300;  // unanswered this long (and twice): the receive path is broken
  // The four timeouts above from a file instead (frontend/settings.hpp),
  // reread on SIGHUP; empty: the command line's, for good.
  std::string settings;
  // The path check's question through the active, in watched time. A
  // driver VM under TCG queues frames inside its guest for tens of
  // milliseconds when it forwards at full rate, where a process domain's
  // queue is its NIC's, which the check sees drained.
  uint32_t path_answer_timeout_ms = 2;
  ServePriority serve;  // scheduling once serving
};

// Runs until SIGTERM/SIGINT (SIGHUP rereads the settings file); returns the exit status.
int run_frontend(const FrontendOptions& options);

}  // namespace ng::frontend

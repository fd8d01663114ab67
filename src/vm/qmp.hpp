#pragma once
// A QMP (QEMU Machine Protocol) client for one command at a time: the
// manager's way to act on a driver VM (stop its vCPUs, panic its guest,
// pull its NIC's link) for fault injection. Events that arrive meanwhile
// are skipped.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace ng::vm {

// Connects to the socket, negotiates, runs `command` with `arguments` and
// returns its "return" value. Bounded by timeout_ms in all.
Result<nlohmann::json> qmp_command(const std::string& socket, const std::string& command,
                                   const nlohmann::json& arguments = nlohmann::json::object(),
                                   int timeout_ms = 2000);

// A negotiated QMP connection kept open for the events QEMU sends on its
// own. Connect before the sandbox; reading needs nothing it forbids.
class QmpEvents {
 public:
  static Result<QmpEvents> connect(const std::string& socket, int timeout_ms = 2000);
  int fd() const { return fd_.get(); }
  // Reads what is waiting; returns the names of the complete events in it
  // (GUEST_PANICKED, STOP, SHUTDOWN, ...). An error once QEMU hung up.
  Result<std::vector<std::string>> read();

 private:
  UniqueFd fd_;
  std::string buf_;
};

}  // namespace ng::vm

#pragma once
// A client for QEMU's gdbstub (the GDB remote serial protocol on a Unix
// socket): just what fault injection into a guest needs. QEMU stops the
// vCPUs when a client connects and resumes them on detach.
#include <cstdint>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace ng::vm {

class GdbStub {
 public:
  static Result<GdbStub> connect(const std::string& socket);
  // Sends one packet and returns the reply's payload.
  Result<std::string> request(const std::string& payload, int timeout_ms = 2000);
  // Sends the packets in one write and returns their replies in order: a
  // stopped guest waits for each round trip, so many breakpoints are set
  // or cleared at once.
  Result<std::vector<std::string>> requests(const std::vector<std::string>& payloads, int timeout_ms = 2000);
  // Sends a packet that resumes the guest (c, s); the reply comes at the next stop.
  Status resume(const std::string& payload);
  // Waits for a stop reply ("T05..."); an empty string on timeout.
  Result<std::string> wait_stop(int timeout_ms);
  // Stops a running guest (the 0x03 byte) and returns the stop reply.
  Result<std::string> interrupt();

  // General-purpose registers and rip, in the order of regflip_registers(),
  // from the `g` packet (little-endian hex, 16 digits each).
  Result<std::vector<uint64_t>> registers(std::string* raw);
  // Writes them back into raw (the whole `g` reply) and sends it with `G`.
  Status set_registers(std::string raw, const std::vector<uint64_t>& regs);

 private:
  Status send(const std::string& payload);
  Result<std::string> receive(int timeout_ms);
  UniqueFd fd_;
  std::string buf_;
};

// "$payload#cs", the protocol's framing; exposed for tests.
std::string gdb_frame(const std::string& payload);

}  // namespace ng::vm

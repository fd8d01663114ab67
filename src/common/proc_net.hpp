#pragma once
// Whether a process's network namespace has a socket bound to a port, read
// from /proc/PID/net (the namespace of that process, not the caller's).
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>

#include <fmt/format.h>

#include "common/text.hpp"

namespace ng {

// A listening TCP socket (tcp) or any UDP socket on `port`.
inline bool port_bound(pid_t pid, bool tcp, uint16_t port) {
  for (const char* file : tcp ? std::array{"tcp", "tcp6"} : std::array{"udp", "udp6"}) {
    std::istringstream lines(read_text(fmt::format("/proc/{}/net/{}", pid, file)));
    std::string line;
    std::getline(lines, line);  // header
    while (std::getline(lines, line)) {
      std::istringstream f(line);
      std::string sl, local, remote, state;
      if (!(f >> sl >> local >> remote >> state)) continue;
      auto colon = local.rfind(':');
      if (colon == std::string::npos) continue;
      unsigned long p = std::strtoul(local.c_str() + colon + 1, nullptr, 16);
      if (p == port && (!tcp || state == "0A")) return true;
    }
  }
  return false;
}

}  // namespace ng

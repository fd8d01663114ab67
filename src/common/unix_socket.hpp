#pragma once
// A Unix socket bound at a path that only root may reach (0600), replacing
// whatever a previous run left there.
#include <string>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace ng {

// type: SOCK_SEQPACKET, SOCK_DGRAM, ...; `what` names it in errors.
Result<UniqueFd> bind_unix(int type, const std::string& path, const char* what);
// A blocking connection to a socket someone else listens on (QEMU's QMP and
// gdbstub sockets, say).
Result<UniqueFd> connect_unix(int type, const std::string& path, const char* what);

}  // namespace ng

#pragma once
// The namespaces step of sandbox::apply() (sandbox.hpp): an unprivileged
// identity, a user namespace of its own, new mount, IPC, UTS and cgroup
// namespaces, and an empty read-only root.
#include <cstdint>

#include "common/error.hpp"

namespace ng::sandbox {

// Takes uid and gid `id` (no supplementary groups), then a user namespace in
// which `id` maps to itself and nothing else is mapped, with new mount, IPC,
// UTS and cgroup namespaces owned by it; pivots into an empty tmpfs mounted
// on /tmp, read-only, and names the host "nicguard-driver". Needs root
// (CAP_SETUID, CAP_SETGID, CAP_SYS_ADMIN) on entry. On return the process has
// no capability outside its user namespace and every capability inside it;
// the caller drops those next.
Status isolate(uint32_t id);

}  // namespace ng::sandbox

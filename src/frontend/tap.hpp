#pragma once
// The app domain's only interface: a TAP device with a virtio-net header in
// front of every frame, so GSO super-frames and partial checksums pass
// between the apps' stack and the rings without being cut or computed here.
#include <string>
#include <vector>

#include "common/addr.hpp"
#include "common/error.hpp"
#include "common/fd.hpp"

namespace ng::frontend {

struct TapConfig {
  std::string name = "eth0";
  Mac mac{};
  uint32_t mtu = 1500;
  std::vector<Cidr> addresses;
};

// Creates and configures the TAP in the caller's network namespace: MAC, MTU,
// offloads, no IPv6 DAD delay, addresses, up. Returns the non-blocking fd.
Result<UniqueFd> create_tap(const TapConfig& config);

}  // namespace ng::frontend

#pragma once
// Faults of the lab's switch rather than of a driver domain: the campaign
// injects and repairs them itself, on the lab's switch namespace (the
// manager knows nothing of the switch, and on a real host it is hardware).
//   cable-pull  the switch's end of the domain's link goes down: the NIC
//               loses its carrier, as when a cable is pulled at the switch;
//   port-block  the switch stops forwarding to and from the domain's port
//               while the link stays up (a failed or blocked switch port):
//               no carrier change, only the traffic says it.
#include <cstdint>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "lab/lab.hpp"

namespace ng::campaign {

bool is_switch_fault(std::string_view kind);
std::string switch_fault_list();  // "cable-pull, port-block"

// Returns the moment the fault took effect (CLOCK_MONOTONIC ns).
Result<uint64_t> inject_switch_fault(const lab::Lab& lab, const std::string& domain, std::string_view kind);
Status repair_switch_fault(const lab::Lab& lab, const std::string& domain, std::string_view kind);

}  // namespace ng::campaign

#pragma once
// Where a run's frames were dropped inside nicguard: the counters of every
// frontend and driver domain that count a dropped frame, read from the
// manager's status before and after the run. A lost probe frame that no
// counter took was lost outside nicguard (the switch, a dead domain's
// socket, the kernel).
#include <string>

#include <nlohmann/json.hpp>

namespace ng::campaign {

// The counters that rose between two status answers, as
// "app1 rx_drops 3; driver-b nic_rx_overruns 312"; "" when none rose. A
// driver domain that was replaced meanwhile counts from zero.
std::string drops_between(const nlohmann::json& before, const nlohmann::json& after);

}  // namespace ng::campaign

#pragma once
// The low-rate UDP streams that tell whether every app, not only app1, rode
// out a failure. Every app but app1 gets app_stream_pps() echoed packets a
// second.
// Two processes serve them all whatever the number of apps, each waking
// about once per tick rather than once per packet: one echo that holds a
// socket in each app's namespace (a socket stays in the namespace it was made
// in) and answers a tick's burst together, and one sender in the external
// host that sends a packet to every app per tick and reads the echoes'
// kernel arrival stamps at the next.
#include <cstdint>
#include <string>
#include <vector>

#include "campaign/netns_child.hpp"
#include "lab/lab.hpp"

namespace ng::campaign {

inline constexpr uint16_t kAppPort = 7779;
// Each packet costs a wake-up of its app's frontend and of the driver domain
// in each direction, so the data path's cost follows the packets of all
// streams together: 3200 a second cost about a quarter of a core on the
// 2-core VM (docs/campaign.md). Up to 17 apps get 200 a second (5 ms between
// echoes); more share the 3200, down to 50 each (20 ms) at 64 apps.
inline constexpr uint32_t kAppPpsMax = 200;
inline constexpr uint32_t kAppPpsMin = 50;
inline constexpr uint32_t kAppPpsTotal = 3200;
// The rate of each stream when `others` apps besides app1 have one.
uint32_t app_stream_pps(size_t others);

// One echo for every app in `apps`, alive as long as the lab (at most an hour).
Result<NetnsChild> start_app_echoes(const std::vector<lab::App>& apps, uint16_t port);

// Sends to every app in `apps` for `seconds` and collects the echoes' receive
// times; collect with app_receive_times(child.result()).
Result<NetnsChild> start_app_streams(const std::string& ext_netns, const std::vector<lab::App>& apps,
                                     uint16_t port, uint32_t pps, double seconds);

// Per app, in the order given to start_app_streams, the receive times (ns,
// CLOCK_MONOTONIC) of its echoes; an error when the child reported one.
Result<std::vector<std::vector<uint64_t>>> app_receive_times(const nlohmann::json& result, size_t apps);

}  // namespace ng::campaign

#pragma once
// The traffic every campaign run measures: the UDP probe stream from the
// external host to the app and back, and a TCP stream beside it, each in a
// child process inside its namespace, for exactly one run.
#include <cstdint>
#include <string>
#include <vector>

#include "campaign/campaign.hpp"
#include "campaign/netns_child.hpp"
#include "lab/lab.hpp"
#include "probe/probe.hpp"

namespace ng::campaign {

inline constexpr uint16_t kUdpPort = 7777;
inline constexpr uint16_t kTcpPort = 7778;

// The echo end in the app's namespace; lives as long as the lab.
Result<NetnsChild> start_udp_echo(const lab::App& app, uint16_t port);

class RunTraffic {
 public:
  // Starts the streams; they run for duration_ns and stop on their own.
  static Result<RunTraffic> start(const lab::Lab& lab, const CampaignOptions& o, uint64_t duration_ns);
  // Waits for the streams and collects what they saw.
  Status finish();

  const std::vector<probe::Arrival>& series() const { return series_; }
  std::vector<uint64_t> receive_times() const;
  std::vector<uint32_t> received_seqs() const;
  uint64_t start_ns() const { return start_ns_; }  // when the stream sent its first packet
  // True when there was no TCP stream, or its connection lived through the
  // run and every byte sent arrived.
  bool tcp_survived() const { return tcp_survived_; }

 private:
  Status start_tcp(const lab::Lab& lab, const CampaignOptions& o, double seconds);
  void finish_tcp();

  NetnsChild udp_;
  NetnsChild tcp_sink_;
  NetnsChild tcp_send_;
  std::vector<probe::Arrival> series_;
  uint64_t start_ns_ = 0;
  bool tcp_survived_ = true;
  std::string tcp_error_;
};

}  // namespace ng::campaign

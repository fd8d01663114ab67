#pragma once
// The traffic every campaign run measures: the UDP probe stream from the
// external host to app1 and back, a TCP stream beside it, every other app's
// low-rate stream (app_streams.hpp) and, with --http, a few HTTP clients of
// app1's nginx; each in a child process inside its namespace, for exactly
// one run.
#include <cstdint>
#include <string>
#include <vector>

#include "campaign/campaign.hpp"
#include "campaign/netns_child.hpp"
#include "lab/lab.hpp"
#include "probe/http.hpp"
#include "probe/probe.hpp"

namespace ng::campaign {

inline constexpr uint16_t kUdpPort = 7777;
inline constexpr uint16_t kTcpPort = 7778;
inline constexpr uint16_t kHttpPort = 8080;
// Each client keeps one connection: a few connections, a request per
// connection every 10 ms, so a failover's silence shows in every client.
inline constexpr int kHttpClients = 4;
inline constexpr double kHttpRate = 100;  // requests per second per client
inline constexpr double kHttpTimeoutS = 1;

// The echo end in the app's namespace; lives as long as the lab.
Result<NetnsChild> start_udp_echo(const lab::App& app, uint16_t port);

// The HTTP client's records as they travel back from its process: start
// (absolute, CLOCK_MONOTONIC), latency, ok; three numbers per request.
nlohmann::json http_records_json(const std::vector<probe::RequestRecord>& records, uint64_t origin_ns);
std::vector<HttpRequest> http_requests_from(const nlohmann::json& flat);

class RunTraffic {
 public:
  // Starts the streams; they run for duration_ns and stop on their own.
  // http_url: app1's nginx, "" for no HTTP clients.
  static Result<RunTraffic> start(const lab::Lab& lab, const CampaignOptions& o, uint64_t duration_ns,
                                  const std::string& http_url);
  // Waits for the streams and collects what they saw.
  Status finish();

  const std::vector<probe::Arrival>& series() const { return series_; }
  std::vector<uint64_t> receive_times() const;
  std::vector<uint32_t> received_seqs() const;
  uint64_t start_ns() const { return start_ns_; }  // when the stream sent its first packet
  // True when there was no TCP stream, or its connection lived through the
  // run and every byte sent arrived.
  bool tcp_survived() const { return tcp_survived_; }
  const std::string& tcp_error() const { return tcp_error_; }  // why it did not survive
  // Per app after app1 (app2 first), the receive times of its stream's echoes.
  const std::vector<std::vector<uint64_t>>& app_receive_times() const { return app_recv_; }
  // Every HTTP request of every client, in no particular order.
  const std::vector<HttpRequest>& http_requests() const { return http_; }
  bool measured_http() const { return !http_clients_.empty(); }

 private:
  Status start_tcp(const lab::Lab& lab, const CampaignOptions& o, double seconds);
  Status start_http(const lab::Lab& lab, const std::string& url, double seconds);
  void finish_tcp();
  Status finish_http();

  NetnsChild udp_;
  NetnsChild tcp_sink_;
  NetnsChild tcp_send_;
  NetnsChild apps_;
  size_t app_count_ = 0;  // apps after app1
  std::vector<NetnsChild> http_clients_;
  std::vector<probe::Arrival> series_;
  std::vector<std::vector<uint64_t>> app_recv_;
  std::vector<HttpRequest> http_;
  uint64_t start_ns_ = 0;
  bool tcp_survived_ = true;
  std::string tcp_error_;
};

}  // namespace ng::campaign

#include "campaign/traffic.hpp"

#include <fmt/format.h>

#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "campaign/app_streams.hpp"
#include "common/clock.hpp"
#include "probe/tcp.hpp"

namespace ng::campaign {

using nlohmann::json;

namespace {

constexpr double kEchoSeconds = 3600;  // restarted by the session if it ends first

// The series travels back as one flat array: seq, sent, received, ...
json series_json(const std::vector<probe::Arrival>& series) {
  json flat = json::array();
  flat.get_ref<json::array_t&>().reserve(series.size() * 3);
  for (const auto& a : series) {
    flat.push_back(a.seq);
    flat.push_back(a.sent_ns);
    flat.push_back(a.recv_ns);
  }
  return flat;
}

std::vector<probe::Arrival> series_from(const json& flat) {
  std::vector<probe::Arrival> out;
  if (!flat.is_array()) return out;
  out.reserve(flat.size() / 3);
  for (size_t i = 0; i + 2 < flat.size(); i += 3) {
    out.push_back({flat[i].get<uint32_t>(), flat[i + 1].get<uint64_t>(), flat[i + 2].get<uint64_t>()});
  }
  return out;
}

// Whether a socket of process `pid`'s network namespace listens on TCP
// `port`: /proc/PID/net/tcp6 and tcp, columns "sl local remote st ...",
// LISTEN being state 0A.
bool tcp_listening(pid_t pid, uint16_t port) {
  std::string suffix = fmt::format(":{:04X}", port);
  for (const char* table : {"tcp6", "tcp"}) {
    std::ifstream in(fmt::format("/proc/{}/net/{}", pid, table));
    std::string line, sl, local, remote, state;
    std::getline(in, line);  // the column names
    while (std::getline(in, line)) {
      std::istringstream cols(line);
      cols >> sl >> local >> remote >> state;
      if (state == "0A" && local.size() > suffix.size() &&
          local.compare(local.size() - suffix.size(), suffix.size(), suffix) == 0) {
        return true;
      }
    }
  }
  return false;
}

}  // namespace

Result<NetnsChild> start_udp_echo(const lab::App& app, uint16_t port) {
  auto echo = NetnsChild::start(app.netns, [port] {
    (void)probe::use_realtime_priority();
    auto s = probe::run_echo(port, kEchoSeconds);
    return s ? json{{"ok", true}} : json{{"error", s.error().message}};
  });
  if (!echo) return tl::unexpected(echo.error());
  // The stream's first packets must find the echo's socket bound.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  return echo;
}

// The TCP stream of one run: a sink in the app that takes one connection, and
// a paced sender in the external host that opens it.
Status RunTraffic::start_tcp(const lab::Lab& lab, const CampaignOptions& o, double seconds) {
  probe::SinkOptions sink;
  sink.port = kTcpPort;
  sink.duration_s = seconds + 10;
  sink.once = true;
  auto s = NetnsChild::start(lab.apps().front().netns, [sink] {
    auto r = probe::run_tcp_sink(sink);
    return r ? probe::to_json(*r) : json{{"error", r.error().message}};
  });
  if (!s) return tl::unexpected(s.error());
  tcp_sink_ = std::move(*s);
  // The sender must find the sink listening: on a loaded host with 64 apps
  // a fixed 50 ms was once too short, and the refused connection counted
  // as a TCP stream lost.
  for (int i = 0; i < 300 && !tcp_listening(tcp_sink_.pid(), kTcpPort); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  probe::TcpSendOptions send;
  send.address = lab.apps().front().ipv4_address();
  send.port = kTcpPort;
  send.duration_s = seconds;
  send.rate_mbyte_s = o.tcp_mbytes_per_s;
  auto c = NetnsChild::start(lab.ext().netns, [send] {
    auto r = probe::run_tcp_send(send);
    return r ? probe::to_json(*r) : json{{"error", r.error().message}};
  });
  if (!c) return tl::unexpected(c.error());
  tcp_send_ = std::move(*c);
  return {};
}

// The connection survived when the sender saw no error, every byte it sent
// arrived, and the sink saw exactly that one connection end cleanly.
void RunTraffic::finish_tcp() {
  json sender = tcp_send_.result();
  json sink = tcp_sink_.result();
  auto first_error = [](const json& j) {
    if (!j.is_object()) return std::string("no report");
    if (j.contains("error")) return j["error"].get<std::string>();
    const auto& errors = j.value("errors", json::array());
    return errors.is_array() && !errors.empty() ? errors[0].value("error", std::string("error")) : std::string();
  };
  tcp_error_ = first_error(sender);
  if (tcp_error_.empty() && sink.is_object() && sink.value("errors", 0) != 0) tcp_error_ = "the sink saw a socket error";
  uint64_t sent = sender.is_object() ? sender.value("bytes_sent", uint64_t{0}) : 0;
  uint64_t got = sink.is_object() ? sink.value("bytes", uint64_t{0}) : 0;
  if (tcp_error_.empty() && sink.is_object() && sink.contains("error")) tcp_error_ = sink["error"].get<std::string>();
  if (tcp_error_.empty() && got != sent) tcp_error_ = fmt::format("{} bytes sent, {} received", sent, got);
  tcp_survived_ = tcp_error_.empty() && sender.value("survived", false) && sink.value("connections", 0) == 1;
  if (!tcp_survived_ && tcp_error_.empty()) tcp_error_ = "the connection did not survive";
}

json http_records_json(const std::vector<probe::RequestRecord>& records, uint64_t origin_ns) {
  json flat = json::array();
  flat.get_ref<json::array_t&>().reserve(records.size() * 3);
  for (const auto& q : records) {
    flat.push_back(origin_ns + q.start_ns);
    flat.push_back(q.latency_ns);
    flat.push_back(q.ok);
  }
  return flat;
}

std::vector<HttpRequest> http_requests_from(const json& flat) {
  std::vector<HttpRequest> out;
  if (!flat.is_array()) return out;
  for (size_t i = 0; i + 2 < flat.size(); i += 3) {
    out.push_back({flat[i].get<uint64_t>(), flat[i + 1].get<uint64_t>(), flat[i + 2].get<bool>()});
  }
  return out;
}

// kHttpClients clients, each on its own connection to app1's nginx.
Status RunTraffic::start_http(const lab::Lab& lab, const std::string& url, double seconds) {
  probe::HttpClientOptions client;
  client.url = url;
  client.rate = kHttpRate;
  client.duration_s = seconds;
  client.timeout_s = kHttpTimeoutS;
  for (int i = 0; i < kHttpClients; ++i) {
    auto c = NetnsChild::start(lab.ext().netns, [client] {
      std::vector<probe::RequestRecord> records;
      auto r = probe::run_http_client(client, &records);
      const uint64_t end = mono_ns();
      if (!r) return json{{"error", r.error().message}};
      // The records count from the client's own start, which it does not
      // return; it ended duration_ms after it, a few microseconds ago.
      const uint64_t origin = end - static_cast<uint64_t>(r->duration_ms * 1e6);
      return json{{"records", http_records_json(records, origin)}};
    });
    if (!c) return tl::unexpected(c.error());
    http_clients_.push_back(std::move(*c));
  }
  return {};
}

Status RunTraffic::finish_http() {
  for (auto& c : http_clients_) {
    json r = c.result();
    if (!r.is_object()) return fail("an HTTP client ended without a report");
    if (r.contains("error")) return fail("HTTP client: {}", r["error"].get<std::string>());
    auto got = http_requests_from(r["records"]);
    http_.insert(http_.end(), got.begin(), got.end());
  }
  return {};
}

Result<RunTraffic> RunTraffic::start(const lab::Lab& lab, const CampaignOptions& o, uint64_t duration_ns,
                                     const std::string& http_url) {
  RunTraffic t;
  const double seconds = static_cast<double>(duration_ns) / 1e9;
  if (o.tcp_mbytes_per_s > 0) {
    if (auto s = t.start_tcp(lab, o, seconds); !s) return tl::unexpected(s.error());
  }
  if (!http_url.empty()) {
    if (auto s = t.start_http(lab, http_url, seconds); !s) return tl::unexpected(s.error());
  }
  if (lab.apps().size() > 1) {
    std::vector<lab::App> others(lab.apps().begin() + 1, lab.apps().end());
    auto a = start_app_streams(lab.ext().netns, others, kAppPort, app_stream_pps(others.size()), seconds);
    if (!a) return tl::unexpected(a.error());
    t.apps_ = std::move(*a);
    t.app_count_ = others.size();
  }
  probe::StreamOptions so;
  so.address = lab.apps().front().ipv4_address();
  so.port = kUdpPort;
  so.pps = o.pps;
  so.duration_s = static_cast<double>(duration_ns) / 1e9;
  auto udp = NetnsChild::start(lab.ext().netns, [so] {
    (void)probe::use_realtime_priority();
    std::vector<probe::Arrival> series;
    auto r = probe::run_stream(so, &series);
    if (!r) return json{{"error", r.error().message}};
    return json{{"start_mono_ns", r->start_mono_ns}, {"series", series_json(series)}};
  });
  if (!udp) return tl::unexpected(udp.error());
  t.udp_ = std::move(*udp);
  return t;
}

Status RunTraffic::finish() {
  json udp = udp_.result();
  if (!udp.is_object()) return fail("the UDP probe stream ended without a report");
  if (udp.contains("error")) return fail("UDP probe stream: {}", udp["error"].get<std::string>());
  start_ns_ = udp.value("start_mono_ns", uint64_t{0});
  series_ = series_from(udp["series"]);
  if (tcp_send_.running()) finish_tcp();
  if (apps_.running()) {
    auto recv = campaign::app_receive_times(apps_.result(), app_count_);
    if (!recv) return tl::unexpected(recv.error());
    app_recv_ = std::move(*recv);
  }
  return finish_http();
}

std::vector<uint32_t> RunTraffic::received_seqs() const {
  std::vector<uint32_t> out;
  out.reserve(series_.size());
  for (const auto& a : series_) out.push_back(a.seq);
  return out;
}

std::vector<uint64_t> RunTraffic::receive_times() const {
  std::vector<uint64_t> out;
  out.reserve(series_.size());
  for (const auto& a : series_) out.push_back(a.recv_ns);
  return out;
}

}  // namespace ng::campaign

#include "manager/metrics.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/clock.hpp"

using ng::manager::check_metrics_listen;
using ng::manager::format_metrics;
using ng::manager::MetricsServer;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

const json kStatus = json::parse(R"({
  "ok": true, "policy": "warm-spare",
  "manager": {"pid": 10, "config": "/etc/nicguard.toml", "state_dir": "/run/ng", "uptime_ms": 1500},
  "drivers": [
    {"name": "a", "pid": 11, "role": "active", "state": "running", "restarts": 2, "uptime_ms": 250,
     "counters": {"nic_rx_frames": 18446744073709551615, "nic_tx_frames": 5, "heartbeat": 9},
     "connections": [{"app": "web", "role": "active", "rx_frames": 3, "malformed": 0}]},
    {"name": "b\"q\\z\nn", "pid": null, "role": "down", "state": "restarting", "restarts": 0,
     "counters": {}, "connections": []}
  ],
  "apps": [
    {"name": "web", "pid": 12, "state": "running", "restarts": 0, "uptime_ms": 2000,
     "active_driver": "a",
     "counters": {"tap_rx_frames": 7, "failovers": 1, "last_detect_us": 1500, "custom_thing": 4},
     "backends": [{"name": "a", "state": "active", "tx_frames": 8, "connects": 1},
                  {"name": "b", "state": "spare", "tx_frames": 0, "connects": 1}]}
  ]})");

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// The family a sample or comment line belongs to.
std::string family_of(const std::string& line) {
  if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
    std::string rest = line.substr(7);
    return rest.substr(0, rest.find(' '));
  }
  return line.substr(0, line.find_first_of("{ "));
}

TEST(Metrics, FamiliesAreContiguousWithOneHelpAndTypeEach) {
  auto lines = lines_of(format_metrics(kStatus));
  ASSERT_FALSE(lines.empty());
  std::map<std::string, int> help, type;
  std::vector<std::string> order;
  for (const auto& line : lines) {
    std::string f = family_of(line);
    if (order.empty() || order.back() != f) {
      EXPECT_EQ(std::count(order.begin(), order.end(), f), 0) << f << " is split";
      order.push_back(f);
    }
    if (line.starts_with("# HELP ")) ++help[f];
    if (line.starts_with("# TYPE ")) ++type[f];
  }
  for (const auto& f : order) {
    EXPECT_EQ(help[f], 1) << f;
    EXPECT_EQ(type[f], 1) << f;
  }
}

TEST(Metrics, CountersGaugesAndValues) {
  std::string m = format_metrics(kStatus);
  EXPECT_THAT(m, HasSubstr("# TYPE nicguard_driver_nic_rx_frames_total counter\n"));
  EXPECT_THAT(
      m, HasSubstr("nicguard_driver_nic_rx_frames_total{driver=\"a\"} 18446744073709551615\n"));
  EXPECT_THAT(
      m, HasSubstr("# HELP nicguard_driver_nic_rx_frames_total Frames received from the NIC\n"));
  EXPECT_THAT(
      m, HasSubstr("nicguard_driver_connection_rx_frames_total{driver=\"a\",app=\"web\"} 3\n"));
  EXPECT_THAT(m, HasSubstr("# TYPE nicguard_driver_up gauge\n"));
  EXPECT_THAT(m, HasSubstr("nicguard_driver_up{driver=\"a\"} 1\n"));
  EXPECT_THAT(m, HasSubstr("nicguard_driver_active{driver=\"a\"} 1\n"));
  EXPECT_THAT(m, HasSubstr("# TYPE nicguard_driver_restarts_total counter\n"));
  EXPECT_THAT(m, HasSubstr("nicguard_driver_restarts_total{driver=\"a\"} 2\n"));
  EXPECT_THAT(m, HasSubstr("nicguard_driver_uptime_seconds{driver=\"a\"} 0.25\n"));
  EXPECT_THAT(m, HasSubstr("nicguard_manager_uptime_seconds 1.5\n"));
  EXPECT_THAT(m, HasSubstr("# TYPE nicguard_manager_pid gauge\n"));
  EXPECT_THAT(m, HasSubstr("nicguard_manager_info{policy=\"warm-spare\"} 1\n"));
  EXPECT_THAT(m, HasSubstr("nicguard_app_up{app=\"web\"} 1\n"));
  EXPECT_THAT(m, HasSubstr("nicguard_app_failovers_total{app=\"web\"} 1\n"));
  // Times become gauges in seconds, without _total.
  EXPECT_THAT(m, HasSubstr("# TYPE nicguard_app_last_detect_seconds gauge\n"));
  EXPECT_THAT(m, HasSubstr("nicguard_app_last_detect_seconds{app=\"web\"} 0.0015\n"));
  // Unknown counters still come out, with a generic help line.
  EXPECT_THAT(m,
              HasSubstr("# HELP nicguard_app_custom_thing_total nicguard counter custom_thing\n"));
  EXPECT_THAT(m, HasSubstr("nicguard_app_backend_tx_frames_total{app=\"web\",backend=\"a\"} 8\n"));
  // Strings (config path, roles) are never samples.
  EXPECT_THAT(m, Not(HasSubstr("state_dir")));
  EXPECT_THAT(m, Not(HasSubstr("_role")));
}

TEST(Metrics, BackendStateIsOneHot) {
  std::string m = format_metrics(kStatus);
  EXPECT_THAT(
      m, HasSubstr("nicguard_app_backend_state{app=\"web\",backend=\"a\",state=\"active\"} 1\n"));
  EXPECT_THAT(
      m, HasSubstr("nicguard_app_backend_state{app=\"web\",backend=\"a\",state=\"spare\"} 0\n"));
  EXPECT_THAT(
      m, HasSubstr("nicguard_app_backend_state{app=\"web\",backend=\"b\",state=\"spare\"} 1\n"));
  EXPECT_THAT(
      m, HasSubstr("nicguard_app_backend_state{app=\"web\",backend=\"b\",state=\"down\"} 0\n"));
}

TEST(Metrics, LabelValuesAreEscaped) {
  std::string m = format_metrics(kStatus);
  EXPECT_THAT(m, HasSubstr("nicguard_driver_up{driver=\"b\\\"q\\\\z\\nn\"} 0\n"));
  EXPECT_THAT(m, HasSubstr("nicguard_driver_active{driver=\"b\\\"q\\\\z\\nn\"} 0\n"));
}

TEST(Metrics, OddShapesDoNotThrow) {
  EXPECT_NO_THROW(format_metrics(json::object()));
  EXPECT_NO_THROW(format_metrics(json::array()));
  EXPECT_NO_THROW(format_metrics(json::parse(R"({"drivers":[1,{"counters":5}],"apps":"x"})")));
  std::string m = format_metrics(json::parse(R"({"drivers":[{"name":"a","counters":{"x.y":1}}]})"));
  EXPECT_THAT(m, HasSubstr("nicguard_driver_x_y_total{driver=\"a\"} 1\n"));
}

TEST(Metrics, ListenAddresses) {
  for (const char* good : {"unix:/x", "unix:/run/nicguard/metrics.sock", "127.0.0.1:9100",
                           "127.0.0.2:1", "[::1]:9100", "localhost:65535"}) {
    auto s = check_metrics_listen(good);
    EXPECT_TRUE(s.has_value()) << good << ": " << s.error().message;
  }
  auto refused = [](const std::string& where) {
    auto s = check_metrics_listen(where);
    EXPECT_FALSE(s.has_value()) << where;
    return s ? std::string() : s.error().message;
  };
  EXPECT_THAT(refused("0.0.0.0:9100"), HasSubstr("not a loopback address"));
  EXPECT_THAT(refused("0.0.0.0:9100"), HasSubstr("reverse proxy"));
  EXPECT_THAT(refused("10.0.0.1:80"), HasSubstr("not a loopback address"));
  EXPECT_THAT(refused("[::]:9100"), HasSubstr("not a loopback address"));
  EXPECT_THAT(refused("[2001:db8::1]:9100"), HasSubstr("not a loopback address"));
  EXPECT_THAT(refused("::1:9100"), HasSubstr("brackets"));
  EXPECT_THAT(refused("example.com:9100"), HasSubstr("not an IP address"));
  for (const char* port : {"127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:", "127.0.0.1:x",
                           "127.0.0.1:-1", "127.0.0.1:91 00"}) {
    EXPECT_THAT(refused(port), HasSubstr("1 to 65535")) << port;
  }
  EXPECT_THAT(refused("127.0.0.1"),
              HasSubstr("no port; expected unix:/ABSOLUTE/PATH or HOST:PORT"));
  EXPECT_THAT(refused("unix:relative.sock"), HasSubstr("absolute"));
  EXPECT_THAT(refused("unix:/" + std::string(200, 'x')), HasSubstr("at most"));
}

TEST(Metrics, ServerRefusesWhatTheCheckRefuses) {
  auto s = MetricsServer::listen("0.0.0.0:9520", [] { return std::string(); });
  ASSERT_FALSE(s.has_value());
  EXPECT_THAT(s.error().message,
              HasSubstr("metrics listen address '0.0.0.0:9520': 0.0.0.0 is not a loopback"));
}

class MetricsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ng-metrics-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/metrics.sock";
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  MetricsServer& listen(const std::string& where) {
    auto s = MetricsServer::listen(where, [this] {
      ++calls_;
      return std::string("nicguard_up 1\n");
    });
    if (!s) {
      ADD_FAILURE() << s.error().message;
      std::abort();
    }
    server_ = std::move(s).value();
    return *server_;
  }

  ng::UniqueFd connect_unix() {
    ng::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path_.copy(addr.sun_path, path_.size());
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    return fd;
  }

  // Sends the request, then serves and reads until the server closes.
  std::string exchange(ng::UniqueFd fd, const std::string& request) {
    EXPECT_EQ(::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(request.size()));
    std::string answer;
    uint64_t deadline = ng::mono_ns() + 3'000'000'000ULL;
    while (ng::mono_ns() < deadline) {
      pollfd p{server_->fd(), POLLIN, 0};
      if (::poll(&p, 1, 5) > 0) server_->process();
      char buf[4096];
      ssize_t n = ::recv(fd.get(), buf, sizeof(buf), MSG_DONTWAIT);
      if (n == 0) return answer;
      if (n > 0) answer.append(buf, static_cast<size_t>(n));
    }
    ADD_FAILURE() << "the server did not close the connection";
    return answer;
  }

  std::string dir_;
  std::string path_;
  int calls_ = 0;
  std::optional<MetricsServer> server_;
};

TEST_F(MetricsServerTest, AnswersGetMetrics) {
  listen("unix:" + path_);
  std::string a = exchange(connect_unix(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(a, HasSubstr("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(a, HasSubstr("Content-Type: text/plain; version=0.0.4"));
  EXPECT_THAT(a, HasSubstr("Content-Length: 14\r\n"));
  EXPECT_TRUE(a.ends_with("\r\n\r\nnicguard_up 1\n")) << a;
  EXPECT_EQ(calls_, 1);
  // Query strings are ignored; HEAD gets the headers only.
  EXPECT_THAT(exchange(connect_unix(), "GET /metrics?x=1 HTTP/1.0\r\n\r\n"), HasSubstr("200 OK"));
  std::string head = exchange(connect_unix(), "HEAD /metrics HTTP/1.1\r\n\r\n");
  EXPECT_THAT(head, HasSubstr("200 OK"));
  EXPECT_TRUE(head.ends_with("\r\n\r\n")) << head;
}

TEST_F(MetricsServerTest, OtherRequestsAreRefused) {
  listen("unix:" + path_);
  EXPECT_THAT(exchange(connect_unix(), "GET / HTTP/1.1\r\n\r\n"), HasSubstr("404 Not Found"));
  EXPECT_THAT(exchange(connect_unix(), "GET /metricsx HTTP/1.1\r\n\r\n"), HasSubstr("404"));
  EXPECT_THAT(exchange(connect_unix(), "POST /metrics HTTP/1.1\r\n\r\n"), HasSubstr("405"));
  EXPECT_THAT(exchange(connect_unix(), "nonsense\r\n\r\n"), HasSubstr("400"));
  EXPECT_THAT(exchange(connect_unix(), std::string(20000, 'x')), HasSubstr("431"));
  EXPECT_EQ(calls_, 0);
}

TEST_F(MetricsServerTest, SilentClientDoesNotBlock) {
  auto& server = listen("unix:" + path_);
  auto idle = connect_unix();  // connects, never sends
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) server.process();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(50));
  // Others are still served meanwhile.
  EXPECT_THAT(exchange(connect_unix(), "GET /metrics HTTP/1.1\r\n\r\n"), HasSubstr("200 OK"));
}

TEST_F(MetricsServerTest, SocketFileIsReplacedWhenStaleAndRemovedAfter) {
  listen("unix:" + path_);
  server_.reset();
  ASSERT_FALSE(std::filesystem::exists(path_));
  {
    // A stale socket (its server gone without cleaning up) is taken over.
    ng::UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path_.copy(addr.sun_path, path_.size());
    ASSERT_EQ(::bind(stale.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  }
  listen("unix:" + path_);
  EXPECT_THAT(exchange(connect_unix(), "GET /metrics HTTP/1.1\r\n\r\n"), HasSubstr("200 OK"));
  // A live one is not.
  auto second = MetricsServer::listen("unix:" + path_, [] { return std::string(); });
  ASSERT_FALSE(second.has_value());
  EXPECT_THAT(second.error().message, HasSubstr("another running process"));
}

TEST_F(MetricsServerTest, OtherFileAtThePathIsRefused) {
  { std::ofstream(path_) << "precious"; }
  auto s = MetricsServer::listen("unix:" + path_, [] { return std::string(); });
  ASSERT_FALSE(s.has_value());
  EXPECT_THAT(s.error().message, HasSubstr("is not a socket"));
  EXPECT_TRUE(std::filesystem::exists(path_));
}

TEST_F(MetricsServerTest, ServesOnLoopbackTcp) {
  // A free port: bind to 0, read it back, release it.
  uint16_t port = 0;
  {
    ng::UniqueFd probe(::socket(AF_INET, SOCK_STREAM, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    ASSERT_EQ(::bind(probe.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    ASSERT_EQ(::getsockname(probe.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
    port = ntohs(a.sin_port);
  }
  listen("127.0.0.1:" + std::to_string(port));
  ng::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_THAT(exchange(std::move(fd), "GET /metrics HTTP/1.1\r\n\r\n"), HasSubstr("nicguard_up 1"));
}

}  // namespace

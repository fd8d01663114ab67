#include "manager/control.hpp"
#include "manager/locate.hpp"
#include "manager/manager.hpp"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <optional>
#include <filesystem>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

using ng::manager::control_request;
using ng::manager::ControlServer;
using ::testing::HasSubstr;
using nlohmann::json;

namespace {

class ControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ng-control-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/control.sock";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  ControlServer& listen() {
    auto s = ControlServer::listen(path_, [](const json& req) {
      if (req.value("cmd", "") == "fail") return json{{"ok", false}, {"error", "as asked"}};
      return json{{"ok", true}, {"echo", req}};
    });
    if (!s) {
      ADD_FAILURE() << s.error().message;
      std::abort();
    }
    server_ = std::move(s).value();
    return *server_;
  }

  // Serves the server on this thread while fn runs on another.
  template <typename Fn>
  void serve_while(ControlServer& server, Fn fn) {
    std::atomic<bool> done{false};
    std::thread client([&] {
      fn();
      done = true;
    });
    while (!done) {
      pollfd p{server.fd(), POLLIN, 0};
      if (::poll(&p, 1, 10) > 0) server.process();
    }
    client.join();
  }

  std::string dir_;
  std::string path_;
  std::optional<ControlServer> server_;
};

TEST_F(ControlTest, AnswersOneJsonLinePerRequest) {
  auto& server = listen();
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  serve_while(server, [&] {
    auto r = control_request(path_, {{"cmd", "status"}, {"n", 7}}, 2000);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ((*r)["echo"]["n"], 7);
    auto again = control_request(path_, {{"cmd", "status"}}, 2000);
    EXPECT_TRUE(again.has_value());
  });
}

TEST_F(ControlTest, RefusalBecomesAnError) {
  auto& server = listen();
  serve_while(server, [&] {
    auto r = control_request(path_, {{"cmd", "fail"}}, 2000);
    ASSERT_FALSE(r.has_value());
    EXPECT_THAT(r.error().message, HasSubstr("as asked"));
  });
}

TEST_F(ControlTest, HandlerExceptionCostsOneAnswer) {
  auto& server = listen();
  serve_while(server, [&] {
    auto r = control_request(path_, {{"cmd", 5}}, 2000);  // value("cmd", "") throws
    ASSERT_FALSE(r.has_value());
    EXPECT_THAT(r.error().message, HasSubstr("internal error"));
    EXPECT_TRUE(control_request(path_, {{"cmd", "status"}}, 2000).has_value());
  });
}

TEST_F(ControlTest, MissingSocketSaysHowToStartTheManager) {
  auto r = control_request(path_, {{"cmd", "status"}}, 500);
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().message, HasSubstr("is the manager running?"));
  EXPECT_THAT(r.error().message, HasSubstr("nicguard manager -c FILE"));
}

TEST_F(ControlTest, StaleSocketSaysNothingListens) {
  listen();
  server_.reset();  // closed, file left behind
  auto r = control_request(path_, {{"cmd", "status"}}, 500);
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().message, HasSubstr("nothing listens"));
}

TEST_F(ControlTest, NonRootPeerIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch to another uid";
  auto& server = listen();
  // Open the file system path so that only the peer-credential check stands.
  ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(path_.c_str(), 0666), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setresuid(65534, 65534, 65534) != 0) ::_exit(3);
    auto r = control_request(path_, {{"cmd", "status"}}, 2000);
    bool refused = !r && r.error().message.find("serves only root") != std::string::npos;
    ::_exit(refused ? 0 : 1);
  }
  ASSERT_GT(pid, 0);
  int status = 0;
  for (int i = 0; i < 300 && ::waitpid(pid, &status, WNOHANG) == 0; ++i) {
    pollfd p{server.fd(), POLLIN, 0};
    if (::poll(&p, 1, 10) > 0) server.process();
  }
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(ControlTest, GarbageLineIsAnsweredNotFatal) {
  auto& server = listen();
  serve_while(server, [&] {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path_.copy(addr.sun_path, path_.size());
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    std::string junk = "not json\n";
    ASSERT_EQ(::write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
    char buf[512] = {};
    ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
    ::close(fd);
    ASSERT_GT(n, 0);
    auto j = json::parse(std::string(buf, static_cast<size_t>(n)));
    EXPECT_EQ(j["ok"], false);
    EXPECT_THAT(j["error"].get<std::string>(), HasSubstr("not a JSON object"));
  });
}

TEST(StatusTable, ShowsEveryDomainAndCounter) {
  json status = json::parse(R"({
    "ok": true, "policy": "warm-spare",
    "manager": {"pid": 10, "config": "x.toml", "state_dir": "/run/x", "uptime_ms": 5000},
    "drivers": [
      {"name": "a", "pid": 11, "role": "active", "state": "running", "nic": "veth-a",
       "netns": "ng-drv-a", "restarts": 0, "frontends": ["web"],
       "counters": {"nic_rx_frames": 123456, "nic_rx_bytes": 1, "nic_tx_frames": 2,
                    "nic_tx_bytes": 3, "nic_tx_errors": 4, "rx_unclaimed": 5},
       "connections": [{"app": "web", "role": "active", "rx_frames": 6, "rx_bytes": 7,
                        "tx_frames": 8, "tx_bytes": 9, "rx_drops": 10, "malformed": 11}]},
      {"name": "b", "pid": null, "role": "down", "state": "restarting", "nic": "veth-b",
       "netns": "ng-drv-b", "restarts": 3, "frontends": [], "counters": {}, "connections": []}
    ],
    "apps": [
      {"name": "web", "pid": 12, "state": "running", "netns": "web", "mac": "02:00:00:00:01:01",
       "active_driver": "a", "restarts": 0,
       "counters": {"tap_rx_frames": 1, "tap_rx_bytes": 2, "tap_tx_frames": 3, "tap_tx_bytes": 4,
                    "tx_drops": 5, "rx_drops": 6, "malformed": 7, "failovers": 8, "replayed": 9},
       "backends": [{"name": "a", "state": "active", "tx_frames": 1, "tx_bytes": 2,
                     "rx_frames": 3, "rx_bytes": 4, "malformed": 0}]}
    ]})");
  std::string t = ng::manager::format_status_table(status);
  EXPECT_THAT(t, HasSubstr("policy warm-spare"));
  EXPECT_THAT(t, HasSubstr("123456"));
  EXPECT_THAT(t, HasSubstr("restarting"));
  EXPECT_THAT(t, HasSubstr("a/web"));
  EXPECT_THAT(t, HasSubstr("web/a"));
  EXPECT_THAT(t, HasSubstr("02:00:00:00:01:01"));
  EXPECT_THAT(t, HasSubstr("FAILOVERS"));
  // b is restarting: web has no spare, and the table says so first.
  EXPECT_EQ(t.rfind("health: DEGRADED, 1 of 1 apps served, no spare ready for 1, no failover yet\n", 0), 0u) << t;
}

TEST(StatusTable, HealthNamesWhatIsUnservedAndTheLastFailover) {
  json app = {{"name", "web"}, {"active_driver", "b"},
              {"backends", {{{"name", "a"}, {"state", "spare"}}, {{"name", "b"}, {"state", "active"}}}}};
  json status = {{"policy", "warm-spare"}, {"apps", {app}}};
  json failover = {{"event", "detect"}, {"ts_wall", "2026-12-02T19:54:42.831Z"}, {"source", "front-web"},
                   {"domain", "driver-a"}, {"detector", "stall"}, {"detail", "no answer to 2 ARP probes"}};
  EXPECT_EQ(ng::manager::health_line(status, failover),
            "health: OK, 1 of 1 apps served, a spare ready for every app; last failover "
            "2026-12-02T19:54:42.831Z from driver-a (web): stall: no answer to 2 ARP probes\n");
  status["apps"].push_back({{"name", "db"}, {"active_driver", nullptr}, {"backends", json::array()}});
  EXPECT_THAT(ng::manager::health_line(status, nullptr),
              HasSubstr("health: DEGRADED, 1 of 2 apps served (not db), no spare ready for 1"));
  status["policy"] = "restart";
  status["apps"].erase(1);
  status["apps"][0]["backends"] = {{{"name", "b"}, {"state", "active"}}};
  EXPECT_THAT(ng::manager::health_line(status, nullptr), HasSubstr("health: OK, 1 of 1 apps served, no spare (restart policy)"));
}

TEST(ControlRequest, AWrongTypeIsNamed) {
  using ng::manager::request_type_error;
  EXPECT_EQ(request_type_error(json{{"cmd", "status"}}), "");
  EXPECT_EQ(request_type_error(json{{"cmd", 123}}), "\"cmd\" must be a string, not number");
  EXPECT_EQ(request_type_error(json::object()), "the request has no \"cmd\"");
  EXPECT_EQ(request_type_error(json::array()), "a request is a JSON object, not array");
  EXPECT_EQ(request_type_error(json{{"cmd", "inject"}, {"domain", 1}}), "\"domain\" must be a string, not number");
  EXPECT_EQ(request_type_error(json{{"cmd", "inject"}, {"domain", "a"}, {"fault", "regflip"}, {"seed", -1}}),
            "\"seed\" must be an unsigned integer, not number");
  EXPECT_EQ(request_type_error(json{{"cmd", "inject"}, {"domain", "a"}, {"fault", "regflip"}, {"seed", 7u}}), "");
}

}  // namespace

namespace {

// A domain's log as the manager finds it when the domain ends: its own last
// error is the reason status shows, not "exited with status 1".
TEST(DomainLog, TheLastErrorIsTheReason) {
  using ng::manager::last_logged_error;
  EXPECT_EQ(last_logged_error(""), "");
  EXPECT_EQ(last_logged_error("[2026-12-02 19:54:24.499] [info] driver a: serving NIC x\n"), "");
  std::string log =
      "--- 2026-12-02T19:54:43Z nicguard manager starts driver-a\n"
      "[2026-12-02 19:54:43.111] [error] driver a: first\n"
      "[2026-12-02 19:54:43.112] [info] driver a: later\n"
      "[2026-12-02 19:54:43.113] [error] driver a: NIC 'x' is not in the driver domain's namespace\n";
  EXPECT_EQ(last_logged_error(log), "driver a: NIC 'x' is not in the driver domain's namespace");
  EXPECT_EQ(last_logged_error("error: --mac: not a MAC address"), "--mac: not a MAC address");
  EXPECT_EQ(last_logged_error("[t] [critical] " + std::string(1000, 'x')).size(), 400u);
}

}  // namespace

namespace {

// One root client pipelining thousands of requests without reading the
// answers must not hold up another client's request for more than a few
// turns (each answer here costs 100 us, as a status of many apps costs more).
TEST(ControlFairness, AGreedyClientDoesNotHoldUpAnother) {
  char tmpl[] = "/tmp/ng-control-fair-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string path = std::string(tmpl) + "/control.sock";
  auto server = ControlServer::listen(path, [](const json& req) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
    return json{{"ok", true}, {"echo", req}};
  });
  ASSERT_TRUE(server) << server.error().message;
  std::atomic<bool> done{false};
  std::thread serving([&] {
    while (!done) {
      pollfd p{server->fd(), POLLIN, 0};
      if (::poll(&p, 1, 10) > 0) server->process();
    }
  });
  int greedy = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  ASSERT_EQ(::connect(greedy, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  std::string flood;
  for (int i = 0; i < 20000; ++i) flood += "{\"cmd\":\"status\"}\n";  // 20000 x 100 us: 2 s unfair
  ASSERT_EQ(::fcntl(greedy, F_SETFL, O_NONBLOCK), 0);
  size_t sent = 0;
  while (sent < flood.size()) {
    ssize_t n = ::send(greedy, flood.data() + sent, flood.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // its buffer is full: the rest would wait for the server anyway
    sent += static_cast<size_t>(n);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the server is busy with it now
  auto t0 = std::chrono::steady_clock::now();
  auto r = control_request(path, {{"cmd", "status"}}, 2000);
  auto waited = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_LT(waited, std::chrono::milliseconds(300));
  done = true;
  serving.join();
  ::close(greedy);
  std::filesystem::remove_all(tmpl);
}

}  // namespace

namespace {

// A second manager must not take what a running one owns; the status of the
// running one says what that is.
TEST(SharedResources, ANicANamespaceOrAMacOfAnotherManagerIsNamed) {
  auto mine = ng::manager::parse_config(R"(
[manager]
state_dir = "/run/nicguard/two"
[[driver]]
name = "a"
nic = "eth1"
[[driver]]
name = "b"
nic = "eth2"
[[app]]
name = "web"
mac = "02:00:00:00:01:01"
ipv4 = ["10.0.0.2/24"]
)",
                                        "two.toml");
  ASSERT_TRUE(mine) << mine.error().message;
  json other = {{"drivers", {{{"nic", "eth9"}, {"netns", "ng-drv-x"}}}},
                {"apps", {{{"mac", "02:00:00:00:09:09"}, {"netns", "ng-app-db"}}}}};
  EXPECT_EQ(ng::manager::shared_resource(*mine, other), "");
  other["drivers"][0]["nic"] = "eth2";
  EXPECT_EQ(ng::manager::shared_resource(*mine, other), "NIC 'eth2' (driver b)");
  other["drivers"][0]["nic"] = "eth9";
  other["apps"][0]["mac"] = "02:00:00:00:01:01";
  EXPECT_EQ(ng::manager::shared_resource(*mine, other), "MAC 02:00:00:00:01:01 (app web)");
  other["apps"][0]["mac"] = "02:00:00:00:09:09";
  other["apps"][0]["netns"] = "ng-app-web";
  EXPECT_EQ(ng::manager::shared_resource(*mine, other), "network namespace 'ng-app-web' (app web)");
}

}  // namespace

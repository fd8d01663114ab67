// `nicguard probe tcp-sink`/`tcp` and `http-serve`/`http` end to end, across
// a real lab (runs as root): the sink and nginx in app1's namespace, the
// clients in ext's, traffic through the manager's driver domains. The probes
// enter the namespaces themselves (--netns); nothing runs in the root
// namespace but the shell around them, and every command has a deadline.
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support.hpp"

namespace ng::it {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr int kTcpPort = 7790;
constexpr int kHttpPort = 8090;

#define ASSERT_LAB(lab)                                                           \
  do {                                                                            \
    ASSERT_NE((lab), nullptr) << "the suite's lab was never created";             \
    ASSERT_TRUE((lab)->ok()) << "the suite's lab is not up:\n" << (lab)->error(); \
  } while (0)

json parse_report(const CmdResult& r) {
  auto j = json::parse(r.out, nullptr, false);
  return j.is_object() ? j : json();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Processes whose command line mentions `needle` (e.g. a probe's private directory).
std::vector<pid_t> processes_mentioning(const std::string& needle) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    auto name = e.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    pid_t pid = std::stoi(name);
    if (process_alive(pid) && process_cmdline(pid).find(needle) != std::string::npos) {
      out.push_back(pid);
    }
  }
  return out;
}

// One lab for the suite: the tests only send traffic through it.
class ProbeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { lab_ = std::make_unique<LabGuard>(LabOptions{.apps = 1}); }
  static void TearDownTestSuite() { lab_.reset(); }

  static std::unique_ptr<LabGuard> lab_;
};
std::unique_ptr<LabGuard> ProbeTest::lab_;

TEST_F(ProbeTest, TcpStreamSurvivesAndBothEndsAgree) {
  ASSERT_LAB(lab_);
  const auto& app = lab_->apps().at(0);
  TempDir dir("ng-it-probe-tcp");
  // --once: the sink reports as soon as the sender's connection ends.
  Background sink(
      fmt::format("timeout -k 2 20 {} probe tcp-sink --netns {} --port {} --duration 15 --once "
                  "--min-seconds 1.5 --json --csv {}",
                  quote(kNicguard), quote(app.netns), kTcpPort, quote(dir.file("sink.csv"))));
  ASSERT_TRUE(wait_listening(app.netns, kTcpPort, false, 10s)) << sink.err();

  auto send = run(fmt::format("timeout -k 2 15 {} probe tcp --netns {} --to {} --port {} "
                              "--duration 2 --rate 5 --json --csv {}",
                              quote(kNicguard), quote(lab_->ext_ns()), app.ipv4, kTcpPort,
                              quote(dir.file("send.csv"))),
                  20s);
  auto received = sink.finish(10s);
  ASSERT_TRUE(send.ok()) << send.describe() << lab_->logs();
  ASSERT_TRUE(received.ok()) << received.describe();
  auto s = parse_report(send);
  auto k = parse_report(received);
  ASSERT_TRUE(s.is_object()) << send.describe();
  ASSERT_TRUE(k.is_object()) << received.describe();

  EXPECT_EQ(s["survived"], true) << s.dump(2);
  EXPECT_TRUE(s["errors"].empty()) << s.dump(2);
  const auto sent = s["bytes_sent"].get<uint64_t>();
  EXPECT_GT(sent, 2'000'000u) << "5 MB/s for 2 s should move ~10 MB\n" << s.dump(2);
  EXPECT_LE(sent, 11'000'000u) << "the pacing let through more than 5 MB/s\n" << s.dump(2);

  EXPECT_EQ(k["connections"], 1) << k.dump(2);
  EXPECT_EQ(k["errors"], 0) << k.dump(2);
  EXPECT_EQ(k["closed_early"], 0) << k.dump(2);
  EXPECT_EQ(k["bytes"].get<uint64_t>(), sent) << "sender:\n"
                                              << s.dump(2) << "\nsink:\n"
                                              << k.dump(2);
  ASSERT_EQ(k["per_connection"].size(), 1u) << k.dump(2);
  const auto& c = k["per_connection"][0];
  EXPECT_EQ(c["ended"], "eof") << k.dump(2);
  EXPECT_GE(c["duration_ms"].get<double>(), 1900) << k.dump(2);
  EXPECT_LT(c["longest_stall_ms"].get<double>(), 1000) << k.dump(2);

  for (const char* file : {"sink.csv", "send.csv"}) {
    auto rows = lines_of(read_file(dir.file(file)));
    ASSERT_FALSE(rows.empty()) << file;
    EXPECT_EQ(rows[0], "interval_start_ms,bytes,mbit_s") << file;
    EXPECT_GE(rows.size(), 150u) << file << ": 2 s in 10 ms intervals";
  }
}

TEST_F(ProbeTest, HttpAgainstNginxHasNoFailures) {
  ASSERT_LAB(lab_);
  const auto& app = lab_->apps().at(0);
  TempDir dir("ng-it-probe-http");
  const std::string www = dir.file("nginx");
  Background serve(
      fmt::format("timeout -k 2 20 {} probe http-serve --netns {} --listen {} --port {} --dir {} "
                  "--duration 6",
                  quote(kNicguard), quote(app.netns), app.ipv4, kHttpPort, quote(www)));
  ASSERT_TRUE(wait_listening(app.netns, kHttpPort, false, 10s))
      << serve.err() << read_file(www + "/error.log");

  auto client = run(fmt::format("timeout -k 2 15 {} probe http --netns {} --url "
                                "http://{}:{}/probe --rate 50 --duration 2 --json --csv {}",
                                quote(kNicguard), quote(lab_->ext_ns()), app.ipv4, kHttpPort,
                                quote(dir.file("http.csv"))),
                    20s);
  ASSERT_TRUE(client.ok()) << client.describe() << lab_->logs();
  auto h = parse_report(client);
  ASSERT_TRUE(h.is_object()) << client.describe();

  const auto requests = h["requests"].get<uint64_t>();
  EXPECT_GE(requests, 90u) << h.dump(2);
  EXPECT_LE(requests, 100u) << h.dump(2);
  EXPECT_EQ(h["failed"], 0) << h.dump(2);
  EXPECT_EQ(h["ok"].get<uint64_t>(), requests) << h.dump(2);
  const double p50 = h["latency_ms_p50"], p90 = h["latency_ms_p90"], p99 = h["latency_ms_p99"],
               max = h["latency_ms_max"];
  EXPECT_GT(p50, 0) << h.dump(2);
  EXPECT_LE(p50, p90) << h.dump(2);
  EXPECT_LE(p90, p99) << h.dump(2);
  EXPECT_LE(p99, max) << h.dump(2);
  EXPECT_LT(max, 1000) << "no request may reach the 1 s timeout\n" << h.dump(2);
  EXPECT_LT(h["longest_no_success_ms"].get<double>(), 500) << h.dump(2);

  auto rows = lines_of(read_file(dir.file("http.csv")));
  ASSERT_EQ(rows.size(), requests + 1) << "a header and one row per request";
  EXPECT_EQ(rows[0], "start_ms,ok,status,latency_ms");
  EXPECT_NE(rows[1].find(",1,200,"), std::string::npos) << rows[1];

  // http-serve ends by itself after --duration and takes nginx with it.
  auto served = serve.finish(15s);
  EXPECT_TRUE(served.ok()) << served.describe() << read_file(www + "/error.log");
  EXPECT_TRUE(wait_until([&] { return processes_mentioning(www).empty(); }, 5s))
      << "nginx outlived `probe http-serve`";
}

}  // namespace
}  // namespace ng::it

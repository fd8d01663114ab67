// `nicguard bench` end to end (root, iperf3 and sockperf needed), and the
// parsers of the tools' output it relies on.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "bench/bench.hpp"
#include "netlink/netlink.hpp"

namespace ng::bench {
namespace {

// ---------------------------------------------------------------- parsers

TEST(BenchParse, Iperf3SumReceived) {
  auto f = parse_iperf3(R"({"start":{},"intervals":[],"end":{
      "sum_sent":{"bytes":1000,"bits_per_second":8000,"seconds":1.0},
      "sum_received":{"start":0,"end":1.009,"seconds":1.009,"bytes":228327424,
                      "bits_per_second":1810301335.76,"sender":true}}})");
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_DOUBLE_EQ(f->bits_per_second, 1810301335.76);
  EXPECT_DOUBLE_EQ(f->bytes, 228327424);
  EXPECT_DOUBLE_EQ(f->seconds, 1.009);
}

TEST(BenchParse, Iperf3ErrorIsTheError) {
  auto f = parse_iperf3(R"({"start":{},"intervals":[],"end":{},
      "error":"unable to connect to server: Connection refused"})");
  ASSERT_FALSE(f);
  EXPECT_NE(f.error().message.find("Connection refused"), std::string::npos);
  EXPECT_FALSE(parse_iperf3("iperf3: error - no JSON here\n"));
  EXPECT_FALSE(parse_iperf3(R"({"end":{}})"));
}

TEST(BenchParse, SockperfFullRttPercentiles) {
  const char* out =
      "sockperf: \x1b[2;35m====> avg-rtt=45.695 (std-dev=276.503)\x1b[0m\n"
      "sockperf: \x1b[2;35mTotal 12054 observations\x1b[0m; each percentile contains 120.54 "
      "observations\n"
      "sockperf: ---> <MAX> observation = 16662.272\n"
      "sockperf: ---> percentile 99.999 = 16662.272\n"
      "sockperf: ---> percentile 99.990 = 6995.491\n"
      "sockperf: ---> percentile 99.900 = 3159.317\n"
      "sockperf: ---> percentile 99.000 = 1157.811\n"
      "sockperf: ---> percentile 90.000 =   21.350\n"
      "sockperf: ---> percentile 50.000 =   19.256\n"
      "sockperf: ---> <MIN> observation =   18.575\n";
  auto r = parse_sockperf(out);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_DOUBLE_EQ(r->p50_us, 19.256);
  EXPECT_DOUBLE_EQ(r->p99_us, 1157.811);
  EXPECT_EQ(r->observations, 12054u);
  EXPECT_FALSE(parse_sockperf("sockperf: ERROR: connection refused\n"));
}

TEST(BenchParse, ProcStatCpuTicks) {
  // A comm with spaces and parentheses must not shift the fields.
  auto t = parse_stat_cpu_ticks(
      "1234 (we ird) (x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 100 0 0\n");
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(*t, 325u);
  EXPECT_FALSE(parse_stat_cpu_ticks("garbage"));
  auto self = process_cpu_s(::getpid());
  ASSERT_TRUE(self) << self.error().message;
  EXPECT_GE(*self, 0.0);
}

// ---------------------------------------------------------------- end to end

struct Ran {
  int status = -1;
  std::string output;
};

Ran run(const std::string& cmd) {
  Ran r;
  if (FILE* p = ::popen((cmd + " 2>&1").c_str(), "r")) {
    char buf[4096];
    while (size_t n = std::fread(buf, 1, sizeof(buf), p)) r.output.append(buf, n);
    r.status = ::pclose(p);
  }
  return r;
}

TEST(Bench, JsonHasEveryFigureAndTheLabIsRemoved) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (builds network namespaces)";
  for (const char* tool : {"iperf3", "sockperf"}) {
    if (!find_in_path(tool)) GTEST_SKIP() << tool << " is not installed";
  }
  // `timeout` bounds the whole run; the bench bounds each of its tools itself.
  auto r = run(fmt::format("timeout -s INT -k 30 300 {} bench --json --duration 1 -q",
                           NICGUARD_BINARY));
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.output;

  // The JSON object is the one line on stdout that starts with '{'.
  nlohmann::json j;
  size_t objects = 0;
  size_t pos = 0;
  while (pos < r.output.size()) {
    size_t end = r.output.find('\n', pos);
    if (end == std::string::npos) end = r.output.size();
    auto line = r.output.substr(pos, end - pos);
    if (!line.empty() && line[0] == '{') {
      j = nlohmann::json::parse(line, nullptr, false);
      ++objects;
    }
    pos = end + 1;
  }
  ASSERT_EQ(objects, 1u) << r.output;
  ASSERT_TRUE(j.is_object()) << r.output;

  const char* keys[] = {"tcp_gbps_1", "tcp_gbps_4", "tcp_gbps_1_rev", "tcp_gbps_4_rev",
                        "udp64_pps",  "rtt_us_p50", "rtt_us_p99",     "cpu_s_per_gb"};
  for (const char* path : {"direct", "nicguard", "ratio"}) {
    ASSERT_TRUE(j.contains(path) && j[path].is_object()) << path << " missing in " << j.dump();
    for (const char* key : keys) {
      ASSERT_TRUE(j[path].contains(key)) << path << "." << key << " missing in " << j.dump();
      ASSERT_TRUE(j[path][key].is_number()) << path << "." << key << " in " << j.dump();
      EXPECT_GT(j[path][key].get<double>(), 0.0) << path << "." << key << " in " << j.dump();
    }
  }
  // Full-speed TCP and a UDP flood are load, not a failure: no domain was
  // fenced or restarted during the run (the bench warns when one was).
  EXPECT_TRUE(j.value("warnings", nlohmann::json::array()).empty()) << j.dump();
  ASSERT_TRUE(j.contains("spare_cpu_percent") && j["spare_cpu_percent"].is_number()) << j.dump();
  EXPECT_GT(j["spare_cpu_percent"].get<double>(), 0.0) << j.dump();
  ASSERT_TRUE(j.contains("duration_s") && j["duration_s"].is_number()) << j.dump();
  EXPECT_EQ(j["duration_s"].get<int>(), 1);
  ASSERT_TRUE(j.contains("host") && j["host"].is_object()) << j.dump();
  EXPECT_GT(j["host"].value("cpus", 0), 0) << j.dump();
  EXPECT_FALSE(j["host"].value("kernel", std::string()).empty()) << j.dump();

  // Nothing of the run is left: no namespace named after its suffix, no lab directory.
  auto sfx = j.value("lab", std::string());
  ASSERT_FALSE(sfx.empty()) << j.dump();
  for (const auto& ns : netlink::list_netns()) {
    EXPECT_FALSE(ns.starts_with("ng-" + sfx + "-")) << "namespace " << ns << " was left behind";
  }
  std::error_code ec;
  EXPECT_FALSE(std::filesystem::exists("/run/nicguard/lab-" + sfx, ec))
      << "/run/nicguard/lab-" << sfx << " was left behind";
}

}  // namespace
}  // namespace ng::bench

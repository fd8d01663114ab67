// The pure halves of the TCP and HTTP probes and their CSV output, fed with
// synthetic series: binning, stalls, percentiles, spans without success.
#include <gtest/gtest.h>

#include "probe/csv.hpp"
#include "probe/http.hpp"
#include "probe/probe.hpp"
#include "probe/tcp.hpp"

namespace ng::probe {
namespace {

constexpr uint64_t kMs = 1'000'000;

// A steady stream: `bytes` every `step` from `from` (inclusive) to `to` (exclusive).
void feed(StallTracker& s, IntervalBins* bins, uint64_t from, uint64_t to, uint64_t step,
          uint64_t bytes = 1000) {
  for (uint64_t t = from; t < to; t += step) {
    s.add(t);
    if (bins != nullptr) bins->add(t, bytes);
  }
}

// ------------------------------------------------------------ binning

TEST(TcpIntervalBins, BytesLandInTheirTenMillisecondInterval) {
  const uint64_t origin = 5 * kMs;
  IntervalBins bins(origin, 100 * kMs);
  bins.add(origin, 100);           // first bin, at its start
  bins.add(origin + 9 * kMs, 50);  // still the first
  bins.add(origin + 10 * kMs, 7);  // second bin, at its start
  bins.add(origin + 35 * kMs, 3);  // fourth
  auto s = bins.series(origin + 40 * kMs);
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0].start_ns, 0u);
  EXPECT_EQ(s[0].bytes, 150u);
  EXPECT_EQ(s[1].start_ns, 10 * kMs);
  EXPECT_EQ(s[1].bytes, 7u);
  EXPECT_EQ(s[2].bytes, 0u);
  EXPECT_EQ(s[3].bytes, 3u);
}

TEST(TcpIntervalBins, PartialLastIntervalIsIncluded) {
  IntervalBins bins(0, 100 * kMs);
  bins.add(41 * kMs, 9);
  auto s = bins.series(41 * kMs + 1);
  ASSERT_EQ(s.size(), 5u);
  EXPECT_EQ(s[4].bytes, 9u);
}

TEST(TcpIntervalBins, SamplesOutsideThePlanCountInTheNearestBin) {
  IntervalBins bins(10 * kMs, 30 * kMs);  // bins at 0, 10, 20, 30 ms
  bins.add(1 * kMs, 1);                   // before the origin
  bins.add(500 * kMs, 2);                 // far past the plan
  auto s = bins.series(1000 * kMs);       // clipped to what was allocated
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s.front().bytes, 1u);
  EXPECT_EQ(s.back().bytes, 2u);
}

TEST(TcpIntervalBins, EmptySeriesHasOneEmptyInterval) {
  IntervalBins bins(0, 50 * kMs);
  auto s = bins.series(0);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].bytes, 0u);
}

TEST(TcpIntervalBins, MbitPerSecond) {
  // 12500 bytes in 10 ms = 1.25 MB/s = 10 Mbit/s.
  EXPECT_DOUBLE_EQ(mbit_s(12500, kIntervalNs), 10.0);
  EXPECT_DOUBLE_EQ(mbit_s(0, kIntervalNs), 0.0);
}

// ------------------------------------------------------------ stalls

TEST(TcpStall, SteadyStreamStallsOnlyForItsPeriod) {
  StallTracker s;
  feed(s, nullptr, 0, 100 * kMs, kMs);
  s.finish(100 * kMs);
  EXPECT_EQ(s.longest_ns(), kMs);
}

TEST(TcpStall, StallAtTheStartAfterTheFirstByte) {
  StallTracker s;
  s.add(0);
  feed(s, nullptr, 50 * kMs, 100 * kMs, kMs);
  s.finish(100 * kMs);
  EXPECT_EQ(s.longest_ns(), 50 * kMs);
  EXPECT_EQ(s.longest_begin_ns(), 0u);
}

TEST(TcpStall, WaitForTheFirstByteIsNoStall) {
  StallTracker s;
  feed(s, nullptr, 80 * kMs, 100 * kMs, kMs);
  s.finish(100 * kMs);
  EXPECT_EQ(s.first_ns(), 80 * kMs);
  EXPECT_EQ(s.longest_ns(), kMs);
}

TEST(TcpStall, StallInTheMiddleAndWhere) {
  StallTracker s;
  IntervalBins bins(0, 200 * kMs);
  feed(s, &bins, 0, 40 * kMs, kMs);  // last byte at 39 ms
  feed(s, &bins, 112 * kMs, 200 * kMs, kMs);
  s.finish(200 * kMs);
  EXPECT_EQ(s.longest_ns(), 73 * kMs);
  EXPECT_EQ(s.longest_begin_ns(), 39 * kMs);
  auto series = bins.series(200 * kMs);
  ASSERT_EQ(series.size(), 20u);
  EXPECT_EQ(series[3].bytes, 10'000u);
  for (int i = 4; i < 11; ++i) EXPECT_EQ(series[i].bytes, 0u) << "interval " << i;
  EXPECT_EQ(series[11].bytes, 8'000u);  // 112..119 ms
}

TEST(TcpStall, StallAtTheEndRunsToTheEnd) {
  StallTracker s;
  feed(s, nullptr, 0, 50 * kMs, kMs);  // last byte at 49 ms
  s.finish(300 * kMs);
  EXPECT_EQ(s.longest_ns(), 251 * kMs);
  EXPECT_EQ(s.longest_begin_ns(), 49 * kMs);
  EXPECT_EQ(s.last_ns(), 49 * kMs);
}

TEST(TcpStall, EmptyStreamHasNoStall) {
  StallTracker s;
  s.finish(1000 * kMs);
  EXPECT_FALSE(s.started());
  EXPECT_EQ(s.longest_ns(), 0u);
}

TEST(TcpStall, ReportsCarryTheirKeys) {
  SinkReport sink;
  sink.connections = 1;
  sink.per_connection.push_back(SinkConnection{});
  auto j = to_json(sink);
  for (const char* key : {"connections", "errors", "closed_early", "bytes", "longest_stall_ms",
                          "per_connection", "duration_ms", "intervals"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["per_connection"][0]["ended"], "open");
  TcpSendReport send;
  send.errors.push_back({12.5, "Connection reset by peer"});
  send.survived = false;
  auto k = to_json(send);
  EXPECT_EQ(k["survived"], false);
  EXPECT_EQ(k["errors"][0]["at_ms"], 12.5);
  EXPECT_TRUE(k.contains("bytes_sent"));
  EXPECT_TRUE(k.contains("longest_block_ms"));
}

// ------------------------------------------------------------ http

RequestRecord ok_at(uint64_t start_ms, double latency_ms) {
  return {start_ms * kMs, static_cast<uint64_t>(latency_ms * 1e6), 200, true};
}
RequestRecord failed_at(uint64_t start_ms, double latency_ms) {
  return {start_ms * kMs, static_cast<uint64_t>(latency_ms * 1e6), 0, false};
}

TEST(HttpAnalyse, PercentilesOfTheSuccessfulRequests) {
  std::vector<RequestRecord> v;
  for (uint64_t i = 0; i < 100; ++i) v.push_back(ok_at(i * 10, static_cast<double>(i + 1)));
  v.push_back(failed_at(1000, 1000));  // a timeout is a failure, not a latency
  auto r = analyse_requests(v, 2000 * kMs);
  EXPECT_EQ(r.requests, 101u);
  EXPECT_EQ(r.ok, 100u);
  EXPECT_EQ(r.failed, 1u);
  EXPECT_NEAR(r.latency_ms_p50, 51, 1e-6);
  EXPECT_NEAR(r.latency_ms_p90, 91, 1e-6);
  EXPECT_NEAR(r.latency_ms_p99, 100, 1e-6);
  EXPECT_NEAR(r.latency_ms_max, 100, 1e-6);
}

TEST(HttpAnalyse, LongestSpanWithoutSuccessInTheMiddle) {
  std::vector<RequestRecord> v;
  for (uint64_t t = 0; t < 100; t += 10) v.push_back(ok_at(t, 1));           // last done at 91
  for (uint64_t t = 100; t < 400; t += 100) v.push_back(failed_at(t, 100));  // timeouts
  for (uint64_t t = 400; t < 500; t += 10) v.push_back(ok_at(t, 1));         // first done at 401
  auto r = analyse_requests(v, 500 * kMs);
  EXPECT_EQ(r.failed, 3u);
  EXPECT_NEAR(r.longest_no_success_ms, 310, 1e-6);
  EXPECT_NEAR(r.longest_no_success_at_ms, 91, 1e-6);
}

TEST(HttpAnalyse, SpanRunsFromTheStartAndToTheEnd) {
  std::vector<RequestRecord> late = {failed_at(0, 100), ok_at(300, 2)};
  auto a = analyse_requests(late, 310 * kMs);
  EXPECT_NEAR(a.longest_no_success_ms, 302, 1e-6);
  EXPECT_NEAR(a.longest_no_success_at_ms, 0, 1e-6);

  std::vector<RequestRecord> early = {ok_at(0, 2), failed_at(10, 1000)};
  auto b = analyse_requests(early, 1010 * kMs);
  EXPECT_NEAR(b.longest_no_success_ms, 1008, 1e-6);
  EXPECT_NEAR(b.longest_no_success_at_ms, 2, 1e-6);
}

TEST(HttpAnalyse, NoRequestsAtAll) {
  auto r = analyse_requests({}, 2000 * kMs);
  EXPECT_EQ(r.requests, 0u);
  EXPECT_EQ(r.latency_ms_p50, 0);
  EXPECT_NEAR(r.longest_no_success_ms, 2000, 1e-6);
  auto j = to_json(r);
  for (const char* key : {"requests", "ok", "failed", "errors", "latency_ms_p50", "latency_ms_p90",
                          "latency_ms_p99", "latency_ms_max", "longest_no_success_ms"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
}

TEST(HttpNginx, ConfigKeepsEverythingInItsDirectory) {
  auto c = nginx_config("/tmp/ng-x", "fd99::11", 8080);
  EXPECT_NE(c.find("daemon off;"), std::string::npos);
  EXPECT_NE(c.find("master_process off;"), std::string::npos);
  EXPECT_NE(c.find("listen [fd99::11]:8080;"), std::string::npos);
  EXPECT_NE(c.find("pid /tmp/ng-x/nginx.pid;"), std::string::npos);
  EXPECT_NE(c.find("access_log off;"), std::string::npos);
  EXPECT_NE(nginx_config("/d", "10.0.0.1", 80).find("listen 10.0.0.1:80;"), std::string::npos);
  EXPECT_EQ(c.find("/var/"), std::string::npos);
}

TEST(HttpNginx, MissingBinaryNamesThePackage) {
  auto n = start_nginx("", "127.0.0.1", 8080, "/tmp/ng-unused", "/nonexistent/nginx");
  ASSERT_FALSE(n.has_value());
  EXPECT_NE(n.error().message.find("nginx-light"), std::string::npos) << n.error().message;
}

// ------------------------------------------------------------ csv

TEST(ProbeCsv, HeaderThenRows) {
  Csv csv{"a", "b", "c", "d"};
  csv.row(1, 2.5, true, "x");
  csv.row(uint64_t{18446744073709551615ULL}, -0.0004, false, std::string("y"));
  EXPECT_EQ(csv.text(), "a,b,c,d\n1,2.500,1,x\n18446744073709551615,-0.000,0,y\n");
}

TEST(ProbeCsv, TextIsQuotedOnlyWhenItMustBe) {
  Csv csv{"plain", "with,comma"};
  csv.row("say \"hi\"", "line\nbreak");
  EXPECT_EQ(csv.text(), "plain,\"with,comma\"\n\"say \"\"hi\"\"\",\"line\nbreak\"\n");
}

TEST(ProbeCsv, UdpArrivalsRelativeToTheStart) {
  std::vector<Arrival> v = {{0, 1'000'000, 1'050'000}, {1, 1'100'000, 1'160'500}};
  EXPECT_EQ(arrivals_csv(v, 1'000'000),
            "seq,sent_us,recv_us,rtt_us\n0,0.000,50.000,50.000\n1,100.000,160.500,60.500\n");
  EXPECT_EQ(arrivals_csv({}, 0), "seq,sent_us,recv_us,rtt_us\n");
}

TEST(ProbeCsv, TcpIntervals) {
  std::vector<Interval> s = {{0, 12500}, {10 * kMs, 0}};
  EXPECT_EQ(intervals_csv(s, kIntervalNs),
            "interval_start_ms,bytes,mbit_s\n0.000,12500,10.000\n10.000,0,0.000\n");
}

TEST(ProbeCsv, HttpRequests) {
  std::vector<RequestRecord> v = {ok_at(0, 1.25), {10 * kMs, 1000 * kMs, 0, false}};
  EXPECT_EQ(requests_csv(v),
            "start_ms,ok,status,latency_ms\n0.000,1,200,1.250\n10.000,0,0,1000.000\n");
}

TEST(ProbeCsv, WriteFileNamesTheFileOnFailure) {
  auto s = write_text_file("/nonexistent-dir/x.csv", "a\n");
  ASSERT_FALSE(s.has_value());
  EXPECT_NE(s.error().message.find("/nonexistent-dir/x.csv"), std::string::npos);
}

}  // namespace
}  // namespace ng::probe

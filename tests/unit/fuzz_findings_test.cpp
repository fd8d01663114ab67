// What the fuzz targets (tests/fuzz) found, one test per finding, and the
// pure parsers they drive, taken out of their servers for them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <new>
#include <string>

#include "frontend/replayable.hpp"
#include "manager/config.hpp"
#include "manager/control.hpp"
#include "manager/metrics.hpp"
#include "protocol/protocol.hpp"
#include "ring/ring.hpp"

namespace manager = ng::manager;
namespace ring = ng::ring;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

constexpr const char* kConfig = R"(
[manager]
state_dir = "/run/nicguard/fuzz"

[[driver]]
name = "a"
nic = "eth1"

[[driver]]
name = "b"
nic = "eth2"

[[app]]
name = "web"
mac = "02:00:00:00:01:01"
ipv4 = ["192.0.2.10/24"]
)";

std::string config_with(const std::string& from, const std::string& to) {
  std::string s = kConfig;
  s.replace(s.find(from), from.size(), to);
  return s;
}

std::string refusal(const std::string& toml) {
  auto c = manager::parse_config(toml, "fuzz.toml");
  EXPECT_FALSE(c.has_value()) << "accepted:\n" << toml;
  return c ? std::string() : c.error().message;
}

}  // namespace

// config_fuzz: TOML's \u0000 put a NUL byte into a path, which the kernel
// ends at: every socket of this state_dir would have been /run/nicguard.
TEST(FuzzFindings, ConfigRefusesNulInStrings) {
  ASSERT_TRUE(manager::parse_config(kConfig, "fuzz.toml").has_value());
  EXPECT_THAT(refusal(config_with("/run/nicguard/fuzz\"", "/run/nicguard\\u0000/fuzz\"")),
              HasSubstr("fuzz.toml:3: manager.state_dir = "));
  EXPECT_THAT(refusal(config_with("/run/nicguard/fuzz\"", "/run/nicguard\\u0000/fuzz\"")),
              HasSubstr("NUL byte"));
  EXPECT_THAT(refusal(config_with("\"192.0.2.10/24\"", "\"192.0.2.10\\u0000/24\"")),
              HasSubstr("app[0].ipv4[0]"));
  EXPECT_THAT(refusal(config_with("name = \"a\"", "name = \"a\"\nnetns = \"x\\u0000\"")),
              HasSubstr("driver[0].netns"));
}

// config_fuzz: toml++ 3.3.0 tests bytes for whitespace where the check
// before it took them for string content, and its whitespace test hits
// __builtin_unreachable on U+00A7 (and all of U+00A1..U+0499): after a
// quote inside a bare value (which opens no string), and after a backslash
// in a multi-line string.
TEST(FuzzFindings, ConfigRefusesNonAsciiWhereTomlTestsForWhitespace) {
  const std::string sect = "\xC2\xA7";
  for (const std::string& bad : {"a = 1\"" + sect + "\"\n", "a = 1'" + sect + "'\n", "a = [1\"" + sect + "\"]\n",
                                 "s = \"\"\"\\\n" + sect + "\"\"\"\n", "s = \"\"\"\\  \r\n\t" + sect + "\"\"\"\n",
                                 "s = \"\"\"a\\" + sect + "\"\"\"\n", "s = +{='" + sect + "'\n",
                                 "s = 1979-05-27 0=\"" + sect + "\"\n"}) {
    EXPECT_THAT(refusal(bad + kConfig), HasSubstr("byte 0xc2")) << bad;
  }
  // Where toml++ only copies them, they stay allowed.
  auto fine = manager::parse_config(
      config_with("/run/nicguard/fuzz\"", "/run/nicguard/f" + sect + "\"\n# " + sect + "\n") +
          "[[app]]\nname = \"db\"\nmac = \"02:00:00:00:01:02\"\nnetns = \"\"\"\\\n  db" + sect + "\"\"\"\n",
      "fuzz.toml");
  ASSERT_FALSE(fine);
  EXPECT_THAT(fine.error().message, HasSubstr("app[1].netns"));  // refused later, for the name
  EXPECT_THAT(fine.error().message, Not(HasSubstr("byte 0x")));
  EXPECT_TRUE(manager::parse_config(config_with("/run/nicguard/fuzz\"", "/run/nicguard/f" + sect + "\""),
                                    "fuzz.toml"));
  EXPECT_TRUE(manager::parse_config(
      config_with("state_dir = \"/run/nicguard/fuzz\"", "state_dir=\"/run/nicguard/f" + sect + "\""), "fuzz.toml"));
}

// metrics_fuzz: "unix:/run/\0.../metrics.sock" was accepted, and the server
// would have bound (or refused) /run/ instead.
TEST(FuzzFindings, MetricsListenRefusesNul) {
  std::string unix_path("unix:/run/\0nicguard/metrics.sock", 32);
  auto ep = manager::parse_metrics_listen(unix_path);
  ASSERT_FALSE(ep);
  EXPECT_THAT(ep.error().message, HasSubstr("NUL byte"));
  EXPECT_FALSE(manager::parse_metrics_listen(std::string("127.0.0.1\0x:9520", 16)));
  EXPECT_FALSE(manager::check_metrics_listen(std::string("[::1]\0:9520", 11)));
  EXPECT_TRUE(manager::parse_metrics_listen("unix:/run/nicguard/metrics.sock"));
  EXPECT_TRUE(manager::parse_metrics_listen("127.0.0.1:9520"));
  EXPECT_THAT(refusal(config_with("[[driver]]", "[metrics]\nlisten = \"unix:/run/m\\u0000.sock\"\n\n[[driver]]")),
              HasSubstr("metrics.listen"));
}

// ring_fuzz: a failed domain rewrote an unfinished TX descriptor to length
// 0; hold() kept it as an empty buffer and resume_held() passed its null
// data() to memcpy (replay() posted it to the next domain, which counts it
// as the app's malformed descriptor).
TEST(FuzzFindings, EmptyUnfinishedFrameIsNotReplayed) {
  auto layout = *ring::compute_layout(8, 8, 2048);
  auto* mem = new (std::align_val_t{4096}) std::byte[layout.region_size]();
  ring::init_region(mem, layout);
  ring::Producer tx(ring::tx_ring(mem, layout), ring::kFresh);
  for (uint32_t i = 0; i < 3; ++i) {
    std::memset(tx.slot(i), 0x42, 64);
    tx.set(i, ring::Desc{0, 64});
  }
  tx.publish(3);
  // The peer's writes, straight into the region.
  auto* descs = reinterpret_cast<ring::Desc*>(mem + layout.tx_desc_off);
  descs[0] = ring::Desc{0, 0};
  descs[1] = ring::Desc{2000, 100};
  ASSERT_TRUE(tx.refresh());
  EXPECT_FALSE(ng::frontend::replayable(tx.desc_at(0), tx.slot_size()));
  EXPECT_FALSE(ng::frontend::replayable(tx.desc_at(1), tx.slot_size()));
  EXPECT_TRUE(ng::frontend::replayable(tx.desc_at(2), tx.slot_size()));
  EXPECT_TRUE(ng::frontend::replayable(ring::Desc{0, 2048}, 2048));
  EXPECT_TRUE(ng::frontend::replayable(ring::Desc{2047, 1}, 2048));
  EXPECT_FALSE(ng::frontend::replayable(ring::Desc{2048, 0}, 2048));
  EXPECT_FALSE(ng::frontend::replayable(ring::Desc{1, 2048}, 2048));
  ::operator delete[](mem, std::align_val_t{4096});
}

// protocol_recv_fuzz: recvmsg() returns 0 for an empty SOCK_SEQPACKET
// packet too, and a live domain that sent one was reported as hung up (the
// crash detector) instead of as a protocol violation.
TEST(FuzzFindings, EmptyPacketIsNotAHangUp) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  ng::UniqueFd mine(sv[0]), peer(sv[1]);
  ASSERT_EQ(::send(peer.get(), "", 0, 0), 0);
  auto r = ng::protocol::recv_message(mine.get(), 1000);
  ASSERT_FALSE(r);
  EXPECT_FALSE(r.error().peer_gone) << r.error().message;
  EXPECT_THAT(r.error().message, HasSubstr("truncated"));
  peer.reset();
  r = ng::protocol::recv_message(mine.get(), 1000);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().peer_gone) << r.error().message;
}

// The HTTP parsing MetricsServer::answer() now calls.
TEST(FuzzSeams, MetricsRequest) {
  using manager::MetricsRequest;
  EXPECT_EQ(manager::parse_metrics_request("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), MetricsRequest::get);
  EXPECT_EQ(manager::parse_metrics_request("HEAD /metrics?a=b HTTP/1.0\n\n"), MetricsRequest::head);
  EXPECT_EQ(manager::parse_metrics_request("GET /metrics HTTP/1.1\r\n"), MetricsRequest::too_large);
  EXPECT_EQ(manager::parse_metrics_request("GET /metrics\r\n\r\n"), MetricsRequest::malformed);
  EXPECT_EQ(manager::parse_metrics_request("GET  /metrics HTTP/1.1\r\n\r\n"), MetricsRequest::malformed);
  EXPECT_EQ(manager::parse_metrics_request("GET / HTTP/1.1\r\n\r\n"), MetricsRequest::not_found);
  EXPECT_EQ(manager::parse_metrics_request("POST /metrics HTTP/1.1\r\n\r\n"), MetricsRequest::not_allowed);
  EXPECT_EQ(manager::parse_metrics_request("POST /other HTTP/1.1\r\n\r\n"), MetricsRequest::not_found);
}

// The line parsing ControlServer::answer_lines() now calls.
TEST(FuzzSeams, ControlRequest) {
  auto ok = manager::parse_request(R"({"cmd":"status"})");
  ASSERT_TRUE(ok);
  EXPECT_EQ(manager::request_type_error(*ok), "");
  for (const char* bad : {"", "[1]", "\"status\"", "{\"cmd\":", "{} {}"}) {
    auto r = manager::parse_request(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().message, R"(the request is not a JSON object on one line, e.g. {"cmd":"status"})");
  }
}

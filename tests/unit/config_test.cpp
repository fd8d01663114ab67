#include "manager/config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

using ng::manager::parse_config;
using ng::manager::Policy;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

const char* kGood = R"(
[manager]
state_dir = "/run/nicguard/test/"
policy = "warm-spare"

[ring]
tx_slots = 512
rx_slots = 128
slot_size = 4096

[[driver]]
name = "a"
nic = "eth1"
netns = "nicguard-drv-a"
memory_limit_mb = 128

[[driver]]
name = "b"
nic = "eth2"

[[app]]
name = "web"
netns = "web"
mac = "02:00:00:00:01:01"
ipv4 = ["192.0.2.10/24"]
ipv6 = ["2001:db8::10/64"]
mtu = 9000

[[app]]
name = "db-1"
mac = "02:00:00:00:01:02"
)";

std::string errors_of(const std::string& toml) {
  auto c = parse_config(toml, "test.toml");
  EXPECT_FALSE(c.has_value()) << "accepted:\n" << toml;
  return c ? std::string() : c.error().message;
}

// The good config with one line replaced.
std::string with(const std::string& from, const std::string& to) {
  std::string s = kGood;
  auto pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  return s.replace(pos, from.size(), to);
}

}  // namespace

TEST(Config, GoodConfigParsesWithDefaults) {
  auto c = parse_config(kGood, "test.toml");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->state_dir, "/run/nicguard/test");
  EXPECT_EQ(c->control_socket, "/run/nicguard/test/control.sock");
  EXPECT_EQ(c->policy, Policy::warm_spare);
  EXPECT_EQ(c->ring.tx_slots, 512u);
  EXPECT_EQ(c->ring.rx_slots, 128u);
  EXPECT_EQ(c->ring.slot_size, 4096u);
  ASSERT_EQ(c->drivers.size(), 2u);
  EXPECT_EQ(c->drivers[0].netns, "nicguard-drv-a");
  EXPECT_EQ(c->drivers[0].memory_limit_mb, 128u);
  EXPECT_EQ(c->drivers[1].netns, "ng-drv-b");
  EXPECT_EQ(c->drivers[1].memory_limit_mb, 256u);
  ASSERT_EQ(c->apps.size(), 2u);
  EXPECT_EQ(ng::format_mac(c->apps[0].mac), "02:00:00:00:01:01");
  ASSERT_EQ(c->apps[0].ipv4.size(), 1u);
  EXPECT_EQ(c->apps[0].ipv4[0].text, "192.0.2.10/24");
  ASSERT_EQ(c->apps[0].ipv6.size(), 1u);
  EXPECT_EQ(c->apps[1].netns, "ng-app-db-1");
  EXPECT_EQ(c->apps[1].mtu, 1500u);
  EXPECT_EQ(c->max_app_mtu(), 9000u);
  EXPECT_EQ(c->driver_socket("a"), "/run/nicguard/test/driver-a.sock");
}

TEST(Config, RoundTripKeepsEveryValue) {
  auto c = parse_config(kGood, "test.toml");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  std::string text = ng::manager::to_toml(*c);
  auto again = parse_config(text, "roundtrip.toml");
  ASSERT_TRUE(again.has_value()) << again.error().message << "\n" << text;
  EXPECT_EQ(ng::manager::to_toml(*again), text);
  EXPECT_EQ(again->drivers[1].netns, "ng-drv-b");
  EXPECT_EQ(again->apps[0].ipv6[0].text, "2001:db8::10/64");
  EXPECT_EQ(again->apps[0].mtu, 9000u);
  EXPECT_EQ(again->ring.tx_slots, 512u);
}

TEST(Config, RestartPolicyWithOneDriver) {
  auto c = parse_config(R"(
[manager]
state_dir = "/run/ng"
policy = "restart"
[[driver]]
name = "only"
nic = "eth1"
)",
                        "t.toml");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->policy, Policy::restart);
  EXPECT_TRUE(c->apps.empty());
}

TEST(Config, MissingKeys) {
  auto e = errors_of(R"(
[manager]
policy = "restart"
[[driver]]
name = "a"
[[app]]
name = "web"
)");
  EXPECT_THAT(e, HasSubstr("driver[0].nic: missing"));
  EXPECT_THAT(e, HasSubstr("app[0].mac: missing"));
  EXPECT_THAT(e, HasSubstr("2 errors"));
}

// The host's manager needs no [manager] table: its state and control socket
// are where `status`, `events` and `inject` look first.
TEST(Config, WithoutAStateDirTheManagerIsTheHostsOne) {
  auto c = parse_config(R"(
[[driver]]
name = "a"
nic = "eth1"
[[driver]]
name = "b"
nic = "eth2"
)",
                        "t.toml");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->state_dir, "/run/nicguard");
  EXPECT_EQ(c->control_socket, "/run/nicguard/control.sock");
}

TEST(Config, MissingTables) {
  auto e = errors_of("");
  EXPECT_THAT(e, HasSubstr("driver: missing"));
  EXPECT_THAT(e, Not(HasSubstr("manager")));  // [manager] is optional
}

TEST(Config, BadMac) {
  auto e = errors_of(with("\"02:00:00:00:01:02\"", "\"01:00:5e:00:00:01\""));
  EXPECT_THAT(e, HasSubstr("app[1].mac = \"01:00:5e:00:00:01\""));
  EXPECT_THAT(e, HasSubstr("multicast"));
  e = errors_of(with("\"02:00:00:00:01:02\"", "\"zz:00:00:00:01:02\""));
  EXPECT_THAT(e, HasSubstr("app[1].mac"));
  EXPECT_THAT(e, HasSubstr("test.toml:31"));
}

TEST(Config, DuplicateMac) {
  auto e = errors_of(with("\"02:00:00:00:01:02\"", "\"02:00:00:00:01:01\""));
  EXPECT_THAT(e, HasSubstr("app[1].mac"));
  EXPECT_THAT(e, HasSubstr("duplicate MAC address: app[0].mac already uses it"));
}

TEST(Config, BadCidr) {
  auto e = errors_of(with("\"192.0.2.10/24\"", "\"192.0.2.10\""));
  EXPECT_THAT(e, HasSubstr("app[0].ipv4[0] = \"192.0.2.10\""));
  EXPECT_THAT(e, HasSubstr("prefix"));
  e = errors_of(with("\"192.0.2.10/24\"", "\"192.0.2.10/33\""));
  EXPECT_THAT(e, HasSubstr("app[0].ipv4[0]"));
  e = errors_of(with("\"192.0.2.10/24\"", "\"2001:db8::11/64\""));
  EXPECT_THAT(e, HasSubstr("app[0].ipv4[0] = \"2001:db8::11/64\": not an IPv4 address"));
  e = errors_of(with("\"2001:db8::10/64\"", "\"10.0.0.1/8\""));
  EXPECT_THAT(e, HasSubstr("app[0].ipv6[0] = \"10.0.0.1/8\": not an IPv6 address"));
  e = errors_of(with("ipv4 = [\"192.0.2.10/24\"]", "ipv4 = \"192.0.2.10/24\""));
  EXPECT_THAT(e, HasSubstr("app[0].ipv4 = \"192.0.2.10/24\": wrong type; expected an array"));
}

TEST(Config, DuplicateAddress) {
  auto e = errors_of(
      with("mac = \"02:00:00:00:01:02\"", "mac = \"02:00:00:00:01:02\"\nipv4 = [\"192.0.2.10/16\"]"));
  EXPECT_THAT(e, HasSubstr("app[1].ipv4[0]"));
  EXPECT_THAT(e, HasSubstr("duplicate address: app[0].ipv4[0] already uses it"));
}

TEST(Config, DuplicateNames) {
  auto e = errors_of(with("name = \"b\"", "name = \"a\""));
  EXPECT_THAT(e, HasSubstr("driver[1].name = \"a\": duplicate driver name: driver[0].name"));
  e = errors_of(with("name = \"db-1\"", "name = \"web\"\nnetns = \"other\""));
  EXPECT_THAT(e, HasSubstr("app[1].name = \"web\": duplicate app name"));
  e = errors_of(with("nic = \"eth2\"", "nic = \"eth1\""));
  EXPECT_THAT(e, HasSubstr("driver[1].nic = \"eth1\": duplicate NIC"));
}

TEST(Config, DuplicateNetns) {
  auto e = errors_of(with("netns = \"web\"", "netns = \"nicguard-drv-a\""));
  EXPECT_THAT(e, HasSubstr("app[0].netns = \"nicguard-drv-a\": duplicate network namespace"));
}

TEST(Config, BadNames) {
  auto e = errors_of(with("name = \"web\"", "name = \"Web_Server\""));
  EXPECT_THAT(e, HasSubstr("app[0].name = \"Web_Server\""));
  EXPECT_THAT(e, HasSubstr("lower-case"));
  e = errors_of(with("name = \"web\"", "name = \"a-very-long-name-x\""));
  EXPECT_THAT(e, HasSubstr("app[0].name"));
  e = errors_of(with("nic = \"eth1\"", "nic = \"eth/1\""));
  EXPECT_THAT(e, HasSubstr("driver[0].nic"));
  e = errors_of(with("netns = \"web\"", "netns = \"../etc\""));
  EXPECT_THAT(e, HasSubstr("app[0].netns"));
}

TEST(Config, UnknownKeysAndTables) {
  auto e = errors_of(with("memory_limit_mb = 128", "memory_limit_mb = 128\nmemory = 1"));
  EXPECT_THAT(e, HasSubstr("driver[0].memory = 1: unknown key"));
  EXPECT_THAT(e, HasSubstr("name, kind, nic, netns, memory_limit_mb, vm"));
  e = errors_of(std::string(kGood) + "\n[extra]\nx = 1\n");
  EXPECT_THAT(e, HasSubstr("extra = a table: unknown key"));
  EXPECT_THAT(e, HasSubstr("manager, ring, detect, metrics, driver, app"));
  e = errors_of(with("policy = \"warm-spare\"", "policy = \"warm-spare\"\nstatedir = \"/x\""));
  EXPECT_THAT(e, HasSubstr("manager.statedir"));
}

TEST(Config, WrongTypes) {
  auto e = errors_of(with("mtu = 9000", "mtu = \"9000\""));
  EXPECT_THAT(e, HasSubstr("app[0].mtu = \"9000\": wrong type; expected an integer"));
  e = errors_of(with("name = \"a\"", "name = 1"));
  EXPECT_THAT(e, HasSubstr("driver[0].name = 1: wrong type; expected a string"));
  e = errors_of(R"(
[manager]
state_dir = "/run/ng"
policy = "restart"
[driver]
name = "a"
nic = "eth1"
)");
  EXPECT_THAT(e, HasSubstr("[[driver]]"));
}

TEST(Config, PolicyNeedsMatchingDriverCount) {
  auto e = errors_of(with("policy = \"warm-spare\"", "policy = \"restart\""));
  EXPECT_THAT(e, HasSubstr("manager.policy = \"restart\": policy restart needs exactly 1"));
  e = errors_of(with("policy = \"warm-spare\"", "policy = \"hot\""));
  EXPECT_THAT(e, HasSubstr("manager.policy = \"hot\": expected \"warm-spare\" or \"restart\""));
  e = errors_of(R"(
[manager]
state_dir = "/run/ng"
[[driver]]
name = "a"
nic = "eth1"
)");
  EXPECT_THAT(e, HasSubstr("policy warm-spare needs exactly 2"));
  EXPECT_THAT(e, HasSubstr("defaults to warm-spare"));
}

TEST(Config, RangesAndRings) {
  auto e = errors_of(with("mtu = 9000", "mtu = 9001"));
  EXPECT_THAT(e, HasSubstr("app[0].mtu = 9001: out of range: expected 68 to 9000"));
  e = errors_of(with("mtu = 9000", "mtu = 1000"));
  EXPECT_THAT(e, HasSubstr("IPv6 needs an MTU of at least 1280"));
  e = errors_of(with("memory_limit_mb = 128", "memory_limit_mb = 16"));
  EXPECT_THAT(e, HasSubstr("driver[0].memory_limit_mb = 16: out of range"));
  e = errors_of(with("tx_slots = 512", "tx_slots = 500"));
  EXPECT_THAT(e, HasSubstr("ring"));
  EXPECT_THAT(e, HasSubstr("tx_slots"));
  e = errors_of(with("slot_size = 4096", "slot_size = 4000"));
  EXPECT_THAT(e, HasSubstr("slot_size"));
}

TEST(Config, StateDir) {
  auto e = errors_of(with("\"/run/nicguard/test/\"", "\"relative/dir\""));
  EXPECT_THAT(e, HasSubstr("manager.state_dir = \"relative/dir\": expected an absolute"));
  e = errors_of(with("\"/run/nicguard/test/\"", "\"/" + std::string(100, 'x') + "\""));
  EXPECT_THAT(e, HasSubstr("Unix socket paths hold at most 107"));
}

TEST(Config, ReportsAllErrorsAtOnce) {
  std::string s = with("nic = \"eth2\"", "nic = \"eth1\"");
  auto pos = s.find("\"02:00:00:00:01:02\"");
  s.replace(pos, 19, "\"bad\"");
  auto e = errors_of(s);
  EXPECT_THAT(e, HasSubstr("2 errors"));
  EXPECT_THAT(e, HasSubstr("driver[1].nic"));
  EXPECT_THAT(e, HasSubstr("app[1].mac"));
}

TEST(Config, NotToml) {
  auto e = errors_of("[manager\nstate_dir=");
  EXPECT_THAT(e, HasSubstr("test.toml:1"));
  EXPECT_THAT(e, HasSubstr("not valid TOML"));
}

TEST(Config, LoadMissingFile) {
  auto c = ng::manager::load_config("/nonexistent/nicguard.toml");
  ASSERT_FALSE(c.has_value());
  EXPECT_THAT(c.error().message, HasSubstr("/nonexistent/nicguard.toml"));
}

TEST(ConfigMemory, DriverLimitMustHoldEveryRingRegion) {
  std::string apps;
  for (int i = 1; i <= 12; ++i) {
    apps += fmt::format("[[app]]\nname = \"app{}\"\nmac = \"02:00:00:00:01:{:02x}\"\n", i, i);
  }
  const std::string base =
      "[manager]\nstate_dir = \"/run/nicguard/t\"\npolicy = \"restart\"\n"
      "[[driver]]\nname = \"a\"\nnic = \"eth1\"\n";
  auto automatic = ng::manager::parse_config(base + apps, "t.toml");
  ASSERT_TRUE(automatic) << automatic.error().message;
  // 12 apps x ~33 MiB regions do not fit the 256 MiB default: it grows.
  EXPECT_GT(automatic->drivers[0].memory_limit_mb, 256u);
  auto too_small = ng::manager::parse_config(
      base + "memory_limit_mb = 256\n" + apps, "t.toml");
  ASSERT_FALSE(too_small);
  EXPECT_NE(too_small.error().message.find("driver[0].memory_limit_mb"), std::string::npos)
      << too_small.error().message;
}

TEST(Config, RealtimePriorityIsOffByDefaultAndCanBeTurnedOn) {
  auto on = parse_config(with("policy = \"warm-spare\"\n", "policy = \"warm-spare\"\nrealtime_priority = 10\n"),
                         "test.toml");
  ASSERT_TRUE(on) << on.error().message;
  EXPECT_EQ(on->realtime_priority, 10u);
  auto again = parse_config(to_toml(*on), "roundtrip.toml");
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->realtime_priority, 10u);
  auto bad = errors_of(with("policy = \"warm-spare\"\n", "policy = \"warm-spare\"\nrealtime_priority = -1\n"));
  EXPECT_THAT(bad, HasSubstr("manager.realtime_priority"));
}

TEST(Config, DetectionAndRecoveryKeys) {
  auto c = parse_config(with("policy = \"warm-spare\"\n",
                             "policy = \"warm-spare\"\nspare_restart_delay_ms = 40\n\n"
                             "[detect]\nhang_timeout_ms = 9\nstall_timeout_ms = 70\ncarrier = false\n"
                             "heartbeat_ms = 5\n\n[metrics]\nlisten = \"127.0.0.1:9520\"\n"),
                        "test.toml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->spare_restart_delay_ms, 40u);
  EXPECT_EQ(c->detect.hang_timeout_ms, 9u);
  EXPECT_EQ(c->detect.stall_timeout_ms, 70u);
  EXPECT_EQ(c->detect.heartbeat_ms, 5u);
  EXPECT_FALSE(c->detect.carrier);
  EXPECT_EQ(c->metrics.listen, "127.0.0.1:9520");
  EXPECT_EQ(c->realtime_priority, 0u);  // off unless asked for
  auto again = parse_config(to_toml(*c), "roundtrip.toml");
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->detect.hang_timeout_ms, 9u);
  EXPECT_EQ(again->spare_restart_delay_ms, 40u);

  auto e = errors_of(with("policy = \"warm-spare\"\n",
                          "policy = \"warm-spare\"\nspare_restart_delay_ms = 70000\nrealtime_priority = 99\n\n"
                          "[detect]\nhang_timeout_ms = 1\ncarrier = 3\n\n"
                          "[metrics]\nlisten = \"0.0.0.0:9520\"\n"));
  EXPECT_THAT(e, HasSubstr("manager.spare_restart_delay_ms"));
  EXPECT_THAT(e, HasSubstr("manager.realtime_priority"));
  EXPECT_THAT(e, HasSubstr("detect.hang_timeout_ms"));
  EXPECT_THAT(e, HasSubstr("detect.carrier"));
  EXPECT_THAT(e, HasSubstr("metrics.listen"));
}

TEST(Config, ReceivePathCheckKeys) {
  auto c = parse_config(with("mtu = 9000\n", "mtu = 9000\nrx_probe_target = \"192.0.2.1\"\n") +
                            "\n[detect]\nrx_probe_interval_ms = 50\nrx_probe_timeout_ms = 200\n",
                        "test.toml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->apps[0].rx_probe_target, "192.0.2.1");
  EXPECT_TRUE(c->apps[1].rx_probe_target.empty());  // off unless given
  EXPECT_EQ(c->detect.rx_probe_interval_ms, 50u);
  EXPECT_EQ(c->detect.rx_probe_timeout_ms, 200u);
  auto again = parse_config(to_toml(*c), "roundtrip.toml");
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->apps[0].rx_probe_target, "192.0.2.1");
  EXPECT_EQ(again->detect.rx_probe_timeout_ms, 200u);

  EXPECT_THAT(errors_of(with("mtu = 9000\n", "mtu = 9000\nrx_probe_target = \"gateway\"\n")),
              HasSubstr("app[0].rx_probe_target"));
  EXPECT_THAT(errors_of(with("mac = \"02:00:00:00:01:02\"\n",
                             "mac = \"02:00:00:00:01:02\"\nrx_probe_target = \"192.0.2.1\"\n")),
              HasSubstr("needs an IPv4 address of the app"));
  EXPECT_THAT(errors_of(kGood + std::string("\n[detect]\nrx_probe_interval_ms = 100\nrx_probe_timeout_ms = 150\n")),
              HasSubstr("at least twice"));
}

TEST(Config, DriverVmParsesAndRoundTrips) {
  auto toml = with("name = \"b\"\nnic = \"eth2\"",
                   "name = \"b\"\nkind = \"vm\"\nnic = \"eth2\"\nvm = { nic_model = \"e1000\", memory_mb = 96, accel = \"tcg\" }");
  auto c = parse_config(toml, "test.toml");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->drivers[0].kind, ng::manager::DriverKind::process);
  ASSERT_EQ(c->drivers[1].kind, ng::manager::DriverKind::vm);
  EXPECT_EQ(c->drivers[1].vm.nic_model, "e1000");
  EXPECT_EQ(c->drivers[1].vm.memory_mb, 96u);
  EXPECT_EQ(c->drivers[1].vm.accel, "tcg");
  auto again = parse_config(ng::manager::to_toml(*c), "again.toml");
  ASSERT_TRUE(again.has_value()) << again.error().message;
  EXPECT_EQ(again->drivers[1].vm.nic_model, "e1000");
}

TEST(Config, BadDriverVmSettingsAreNamed) {
  EXPECT_THAT(errors_of(with("nic = \"eth2\"", "nic = \"eth2\"\nkind = \"container\"")),
              HasSubstr("driver[1].kind = \"container\": expected \"process\" or \"vm\""));
  EXPECT_THAT(errors_of(with("nic = \"eth2\"", "nic = \"eth2\"\nvm = { memory_mb = 96 }")),
              HasSubstr("only a driver of kind = \"vm\" has a vm table"));
  auto e = errors_of(with("nic = \"eth2\"", "nic = \"eth2\"\nkind = \"vm\"\n"
                          "vm = { nic_model = \"rtl8139\", memory_mb = 8, accel = \"hvf\", image_dir = \"rel\", colour = 1 }"));
  EXPECT_THAT(e, HasSubstr("driver[1].vm.nic_model"));
  EXPECT_THAT(e, HasSubstr("e1000e, e1000, virtio-net-pci"));
  EXPECT_THAT(e, HasSubstr("driver[1].vm.memory_mb"));
  EXPECT_THAT(e, HasSubstr("driver[1].vm.accel"));
  EXPECT_THAT(e, HasSubstr("driver[1].vm.image_dir"));
  EXPECT_THAT(e, HasSubstr("driver[1].vm.colour"));
}

// toml++ 3.3.0 reaches undefined behaviour on some non-ASCII bytes outside
// strings; they are refused before it parses, with where they are.
TEST(Config, NonAsciiOutsideStringsAndCommentsIsRefusedFirst) {
  const std::string good = "[manager]\nstate_dir = \"/run/ng\"\n[[driver]]\nname = \"a\"\nnic = \"eth1\"\n"
                           "[[driver]]\nname = \"b\"\nnic = \"eth2\"\n";
  auto bad = parse_config("\xEF\xBB\xAF" + good, "bom.toml");
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, HasSubstr("bom.toml:1:1: byte 0xef outside a string or a comment"));
  auto later = parse_config(good + "x = 1 \xC3\xA9\n", "later.toml");
  ASSERT_FALSE(later);
  EXPECT_THAT(later.error().message, HasSubstr("later.toml:9:7: byte 0xc3"));
  // Inside strings and comments, and a real byte-order mark: fine.
  EXPECT_TRUE(parse_config("\xEF\xBB\xBF" + good, "ok.toml")) << "a UTF-8 byte-order mark";
  auto commented = parse_config("# caf\xC3\xA9\n" + good, "c.toml");
  EXPECT_TRUE(commented) << commented.error().message;
  std::string in_string = good;
  in_string.replace(in_string.find("\"eth1\""), 6, "\"\xC3\xA9th1\\\"x\"");
  auto s = parse_config(in_string, "s.toml");
  ASSERT_FALSE(s);  // a valid parse, refused later for the odd NIC name, not for the byte
  EXPECT_THAT(s.error().message, Not(HasSubstr("outside a string")));
  auto ml = parse_config("a = '''\n\xC3\xA9'''\nb = \"\"\"\xC3\xA9\"\"\"\n" + good, "ml.toml");
  EXPECT_THAT(ml ? std::string() : ml.error().message, Not(HasSubstr("outside a string")));
}

namespace {

std::vector<std::string> blockers(const std::string& next_toml, const std::string& now_toml = kGood) {
  auto now = parse_config(now_toml, "test.toml");
  auto next = parse_config(next_toml, "test.toml");
  EXPECT_TRUE(now && next) << (next ? "" : next.error().message);
  return now && next ? ng::manager::reload_blockers(*now, *next) : std::vector<std::string>{"unparsed"};
}

}  // namespace

TEST(Config, AReloadMayChangeAppsTimeoutsAndMemoryLimits) {
  EXPECT_THAT(blockers(kGood), ::testing::IsEmpty());
  // An app gone, one added, one changed; detector timeouts; a memory limit.
  std::string next = with("name = \"db-1\"\nmac = \"02:00:00:00:01:02\"", "name = \"db-2\"\nmac = \"02:00:00:00:01:03\"");
  next += "\n[detect]\nhang_timeout_ms = 9\nstall_timeout_ms = 200\ncarrier = false\n";
  next.replace(next.find("memory_limit_mb = 128"), 21, "memory_limit_mb = 512");
  EXPECT_THAT(blockers(next), ::testing::IsEmpty());
  EXPECT_THAT(blockers(with("mtu = 9000", "mtu = 1500")), ::testing::IsEmpty());
}

TEST(Config, AReloadRefusesWhatOnlyARestartCanChangeAndSaysWhat) {
  EXPECT_THAT(blockers(with("slot_size = 4096", "slot_size = 8192")),
              ::testing::ElementsAre("ring.slot_size changed (4096 -> 8192)"));
  EXPECT_THAT(blockers(with("nic = \"eth2\"", "nic = \"eth3\"")),
              ::testing::ElementsAre("driver[1] (b).nic changed (eth2 -> eth3)"));
  EXPECT_THAT(blockers(with("name = \"b\"", "name = \"c\"")),
              ::testing::ElementsAre("the driver domains changed (a, b -> a, c)"));
  EXPECT_THAT(blockers(with("state_dir = \"/run/nicguard/test/\"", "state_dir = \"/run/nicguard/other\"")),
              ::testing::Contains("manager.state_dir changed (/run/nicguard/test -> /run/nicguard/other)"));
  EXPECT_THAT(blockers(kGood, with("mtu = 9000", "mtu = 1500")),
              ::testing::ElementsAre(HasSubstr("the largest app mtu grew (1500 -> 9000)")));
}

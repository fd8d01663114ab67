// The data path end to end, with real parts only: the `nicguard` binary under
// test builds a lab (`nicguard lab up`), its manager runs real driver domains
// and frontends, and Debian's own tools (ping, nc, iperf3, tcpdump) send and
// watch traffic inside the lab's namespaces. Nothing is configured in the
// root namespace and nothing is sent outside the lab.
//
// One lab serves a whole suite (SetUpTestSuite/TearDownTestSuite) where the
// tests only observe it; tests that could disturb a lab get a suite of their
// own. Every lab is owned by a LabGuard, so it is removed also when a test
// fails or throws.
#include <algorithm>
#include <map>
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

constexpr uint64_t kGiB = 1ULL << 30;
constexpr uint64_t kMiB = 1ULL << 20;

// Every traffic command is bounded twice: by `timeout` inside the namespace
// and by the harness deadline around it.
CmdResult ping(const std::string& ns, const std::string& address, int size = 56,
               bool dont_fragment = false, int count = 3) {
  // -w: give up after 10 s; with -c, success needs `count` replies by then.
  return run_in(ns,
                fmt::format("timeout -k 2 15 ping -n -c {} -i 0.2 -w 10 -s {} {} {}", count, size,
                            dont_fragment ? "-M do" : "", address),
                25s);
}

// A ping that must get no reply: one try, short deadline.
CmdResult ping_once(const std::string& ns, const std::string& address, int size,
                    bool dont_fragment) {
  return run_in(ns,
                fmt::format("timeout -k 2 10 ping -n -c 2 -i 0.2 -W 1 -w 3 -s {} {} {}", size,
                            dont_fragment ? "-M do" : "", address),
                20s);
}

bool got_reply(const CmdResult& r) { return r.out.find("bytes from") != std::string::npos; }

#define ASSERT_LAB(lab)                                                     \
  do {                                                                      \
    ASSERT_NE((lab), nullptr) << "the suite's lab was never created";      \
    ASSERT_TRUE((lab)->ok()) << "the suite's lab is not up:\n" << (lab)->error(); \
  } while (0)

// ------------------------------------------------------------------------
// One app domain, MTU 1500, shared by every test of the suite.

class DatapathTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { lab_ = std::make_unique<LabGuard>(LabOptions{.apps = 1}); }
  static void TearDownTestSuite() { lab_.reset(); }

  static std::unique_ptr<LabGuard> lab_;
};
std::unique_ptr<LabGuard> DatapathTest::lab_;

TEST_F(DatapathTest, PingIpv4BothDirections) {
  ASSERT_LAB(lab_);
  const auto& app = lab_->apps().at(0);
  auto there = ping(lab_->ext_ns(), app.ipv4);
  EXPECT_TRUE(there.ok()) << "ext -> app over IPv4\n" << there.describe() << lab_->logs();
  auto back = ping(app.netns, lab_->ext_ipv4());
  EXPECT_TRUE(back.ok()) << "app -> ext over IPv4\n" << back.describe() << lab_->logs();
}

TEST_F(DatapathTest, PingIpv6BothDirections) {
  ASSERT_LAB(lab_);
  const auto& app = lab_->apps().at(0);
  auto there = ping(lab_->ext_ns(), app.ipv6);
  EXPECT_TRUE(there.ok()) << "ext -> app over IPv6\n" << there.describe() << lab_->logs();
  auto back = ping(app.netns, lab_->ext_ipv6());
  EXPECT_TRUE(back.ok()) << "app -> ext over IPv6\n" << back.describe() << lab_->logs();
}

// ARP (IPv4) and neighbour discovery (IPv6) resolve through the driver
// domains in both directions: each side learns the other's real MAC.
TEST_F(DatapathTest, ArpAndNeighbourDiscoveryResolveBothSides) {
  ASSERT_LAB(lab_);
  const auto& app = lab_->apps().at(0);
  std::string ext_mac = link_mac(lab_->ext_ns(), "eth0");
  ASSERT_FALSE(ext_mac.empty()) << "cannot read the MAC of eth0 in " << lab_->ext_ns();
  EXPECT_EQ(link_mac(app.netns, app.link), app.mac)
      << "the app's TAP does not carry the configured MAC";

  // Fresh resolutions, not entries left by earlier tests or the lab's own wait.
  for (const auto& [ns, link] : {std::pair{lab_->ext_ns(), std::string("eth0")},
                                 std::pair{app.netns, app.link}}) {
    auto flush = run(fmt::format("timeout 10 ip netns exec {} ip neigh flush dev {}", quote(ns),
                                 quote(link)),
                     15s);
    ASSERT_TRUE(flush.ok()) << flush.describe();
  }
  for (const auto& [ns, addr] : {std::pair{lab_->ext_ns(), app.ipv4},
                                 std::pair{lab_->ext_ns(), app.ipv6},
                                 std::pair{app.netns, lab_->ext_ipv4()},
                                 std::pair{app.netns, lab_->ext_ipv6()}}) {
    auto r = ping(ns, addr);
    EXPECT_TRUE(r.ok()) << r.describe();
  }
  EXPECT_EQ(neighbour_mac(lab_->ext_ns(), app.ipv4), app.mac)
      << "ARP: ext host's entry for " << app.ipv4 << "\n"
      << run(fmt::format("ip -n {} neigh", quote(lab_->ext_ns())), 10s).out;
  EXPECT_EQ(neighbour_mac(lab_->ext_ns(), app.ipv6), app.mac)
      << "ND: ext host's entry for " << app.ipv6 << "\n"
      << run(fmt::format("ip -n {} neigh", quote(lab_->ext_ns())), 10s).out;
  EXPECT_EQ(neighbour_mac(app.netns, lab_->ext_ipv4()), ext_mac)
      << "ARP: app's entry for " << lab_->ext_ipv4() << "\n"
      << run(fmt::format("ip -n {} neigh", quote(app.netns)), 10s).out;
  EXPECT_EQ(neighbour_mac(app.netns, lab_->ext_ipv6()), ext_mac)
      << "ND: app's entry for " << lab_->ext_ipv6() << "\n"
      << run(fmt::format("ip -n {} neigh", quote(app.netns)), 10s).out;
}

// 1 GiB each way over TCP; the receiver hashes what arrives and must get
// exactly the sender's bytes.
TEST_F(DatapathTest, TcpOneGiBEachWayWithMatchingChecksums) {
  ASSERT_LAB(lab_);
  const auto& app = lab_->apps().at(0);
  TempDir dir("ng-it-blob");
  ASSERT_FALSE(dir.path().empty());
  std::string why;
  auto blob = make_random_file(dir.path(), kGiB, &why);
  ASSERT_TRUE(blob) << why;

  auto in = tcp_transfer(lab_->ext_ns(), app.netns, app.ipv4, 5201, *blob, 180s);
  EXPECT_TRUE(in.ok) << "ext -> app\n" << in.detail << lab_->logs();
  EXPECT_EQ(in.received_bytes, kGiB);
  EXPECT_EQ(in.received_sha256, blob->sha256);
  RecordProperty("ext_to_app_seconds", fmt::format("{:.1f}", in.seconds));

  auto out = tcp_transfer(app.netns, lab_->ext_ns(), lab_->ext_ipv4(), 5202, *blob, 180s);
  EXPECT_TRUE(out.ok) << "app -> ext\n" << out.detail << lab_->logs();
  EXPECT_EQ(out.received_bytes, kGiB);
  EXPECT_EQ(out.received_sha256, blob->sha256);
  RecordProperty("app_to_ext_seconds", fmt::format("{:.1f}", out.seconds));
  std::printf("[   INFO   ] 1 GiB ext->app %.1f s, app->ext %.1f s\n", in.seconds, out.seconds);
}

struct UdpResult {
  bool ok = false;
  int64_t packets = 0;
  int64_t lost = 0;
  double lost_percent = 100;
  int64_t receiver_rcvbuf_errors = 0;  // datagrams the receiving socket had no room for
  std::string detail;
};

// One number from the Udp lines of /proc/net/snmp inside ns; -1 if unknown.
int64_t udp_snmp(const std::string& ns, const std::string& field) {
  auto r = run_in(ns, "timeout 5 cat /proc/net/snmp", 10s);
  std::istringstream lines(r.out);
  std::string names, values, line;
  while (std::getline(lines, line)) {
    if (!line.starts_with("Udp: ")) continue;
    if (names.empty()) {
      names = line;
    } else {
      values = line;
      break;
    }
  }
  std::istringstream n(names), v(values);
  std::string name, value;
  while (n >> name && v >> value) {
    if (name == field) return std::stoll(value);
  }
  return -1;
}

// The largest socket buffer (up to 4 MiB) both namespaces allow; 0 if unknown.
int64_t socket_buffer(const std::string& from_ns, const std::string& to_ns) {
  int64_t best = 4 << 20;
  for (const auto& [ns, key] : {std::pair{from_ns, "wmem_max"}, std::pair{to_ns, "rmem_max"}}) {
    auto r = run_in(ns, fmt::format("timeout 5 cat /proc/sys/net/core/{}", key), 10s);
    try {
      best = std::min<int64_t>(best, std::stoll(r.out));
    } catch (const std::exception&) {
      return 0;
    }
  }
  return best;
}

// iperf3 UDP at 200 Mbit/s for 3 s; the server runs where the data goes.
// The sockets get the largest buffer the namespaces allow, so that a
// receiver descheduled on a busy 2-core machine does not count as loss on
// the data path; the receiver's RcvbufErrors are reported either way.
UdpResult udp_stream(const std::string& from_ns, const std::string& to_ns,
                     const std::string& to_address, int port) {
  UdpResult u;
  auto buffer = socket_buffer(from_ns, to_ns);
  std::string window = buffer > 0 ? fmt::format("-w {}", buffer) : "";
  Background server(in_ns(to_ns, fmt::format("timeout -k 5 40 iperf3 -s -1 -p {}", port)));
  if (!wait_listening(to_ns, port, false, 10s)) {
    u.detail = "iperf3 server never listened:\n" + server.stop().describe();
    return u;
  }
  auto rcvbuf_before = udp_snmp(to_ns, "RcvbufErrors");
  auto client = run_in(from_ns,
                       fmt::format("timeout -k 5 30 iperf3 -c {} -p {} -u -b 200M -t 3 {} -J",
                                   to_address, port, window),
                       40s);
  auto srv = server.finish(15s);
  u.receiver_rcvbuf_errors = udp_snmp(to_ns, "RcvbufErrors") - rcvbuf_before;
  u.detail = fmt::format("receiver RcvbufErrors during the run: {}\n== client ==\n{}== server ==\n{}",
                         u.receiver_rcvbuf_errors, client.describe(), srv.describe());
  auto j = json::parse(client.out, nullptr, false);
  if (!client.ok() || j.is_discarded()) return u;
  try {
    const auto& sum = j.at("end").at("sum");
    u.packets = sum.at("packets").get<int64_t>();
    u.lost = sum.at("lost_packets").get<int64_t>();
    u.lost_percent = sum.at("lost_percent").get<double>();
    u.ok = true;
  } catch (const json::exception& e) {
    u.detail += std::string("\nno end.sum in iperf3's JSON: ") + e.what();
  }
  return u;
}

TEST_F(DatapathTest, UdpExtToApp) {
  ASSERT_LAB(lab_);
  const auto& app = lab_->apps().at(0);
  auto u = udp_stream(lab_->ext_ns(), app.netns, app.ipv4, 5211);
  ASSERT_TRUE(u.ok) << u.detail << lab_->logs();
  EXPECT_GT(u.packets, 1000) << u.detail;
  EXPECT_LT(u.lost_percent, 5.0) << u.lost << " of " << u.packets << " lost\n"
                                 << u.detail << lab_->status_table();
  std::printf("[   INFO   ] UDP ext->app: %lld packets, %.2f%% lost, receiver RcvbufErrors %lld\n",
              static_cast<long long>(u.packets), u.lost_percent,
              static_cast<long long>(u.receiver_rcvbuf_errors));
}

TEST_F(DatapathTest, UdpAppToExt) {
  ASSERT_LAB(lab_);
  const auto& app = lab_->apps().at(0);
  auto u = udp_stream(app.netns, lab_->ext_ns(), lab_->ext_ipv4(), 5212);
  ASSERT_TRUE(u.ok) << u.detail << lab_->logs();
  EXPECT_GT(u.packets, 1000) << u.detail;
  EXPECT_LT(u.lost_percent, 5.0) << u.lost << " of " << u.packets << " lost\n"
                                 << u.detail << lab_->status_table();
  std::printf("[   INFO   ] UDP app->ext: %lld packets, %.2f%% lost, receiver RcvbufErrors %lld\n",
              static_cast<long long>(u.packets), u.lost_percent,
              static_cast<long long>(u.receiver_rcvbuf_errors));
}

// At MTU 1500 the largest unfragmented ICMP echo (1472 + 28 bytes IPv4,
// 1452 + 48 bytes IPv6) passes; one byte more gets no reply.
TEST_F(DatapathTest, Mtu1500FullSizeFramesPassAndLargerGetNoReply) {
  ASSERT_LAB(lab_);
  const auto& app = lab_->apps().at(0);
  auto v4 = ping(lab_->ext_ns(), app.ipv4, 1472, true);
  EXPECT_TRUE(v4.ok()) << v4.describe() << lab_->logs();
  auto v4back = ping(app.netns, lab_->ext_ipv4(), 1472, true);
  EXPECT_TRUE(v4back.ok()) << v4back.describe() << lab_->logs();
  auto v6 = ping(lab_->ext_ns(), app.ipv6, 1452, true);
  EXPECT_TRUE(v6.ok()) << v6.describe() << lab_->logs();

  auto over = ping_once(lab_->ext_ns(), app.ipv4, 1473, true);
  EXPECT_NE(over.exit_code, 0) << over.describe();
  EXPECT_FALSE(got_reply(over)) << over.describe();
}

// The warm spare is connected to every frontend but carries nothing while
// the primary is healthy: all traffic goes through the active driver domain.
TEST_F(DatapathTest, SpareDriverCarriesNothingWhileActiveCarriesTraffic) {
  ASSERT_LAB(lab_);
  const auto& app = lab_->apps().at(0);
  ASSERT_EQ(lab_->drivers().size(), 2u);
  // The config's first driver starts as the active one (docs/config.md).
  const std::string first = lab_->drivers()[0].name;   // "a"
  const std::string second = lab_->drivers()[1].name;  // "b"
  for (const auto& [ns, addr] : {std::pair{lab_->ext_ns(), app.ipv4},
                                 std::pair{lab_->ext_ns(), app.ipv6},
                                 std::pair{app.netns, lab_->ext_ipv4()}}) {
    auto r = ping(ns, addr, 56, false, 5);
    ASSERT_TRUE(r.ok()) << r.describe() << lab_->logs();
  }
  std::string why;
  auto status = lab_->status(&why);
  ASSERT_TRUE(status) << why << lab_->logs();
  SCOPED_TRACE("nicguard status --json:\n" + status->dump(2));

  // Pointers into *status itself: value() would return a copy.
  auto find = [&](const char* list, const std::string& name) -> const json* {
    if (!status->contains(list) || !(*status)[list].is_array()) return nullptr;
    for (const auto& e : (*status)[list]) {
      if (e.value("name", "") == name) return &e;
    }
    return nullptr;
  };
  const json* a = find("drivers", first);
  const json* b = find("drivers", second);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->value("role", ""), "active") << "driver " << first << " must start as the active one";
  EXPECT_EQ(b->value("role", ""), "spare") << "driver " << second << " must start as the warm spare";

  // The traffic checks follow the roles the manager reports, so that a wrong
  // initial choice above and a spare carrying traffic below show apart.
  const json* active = a->value("role", "") == "active" ? a : b;
  const json* spare = active == a ? b : a;
  ASSERT_EQ(active->value("role", ""), "active") << "no driver domain is active";
  ASSERT_EQ(spare->value("role", ""), "spare") << "the other driver domain is not the spare";
  const std::string active_name = active->value("name", "");
  const std::string spare_name = spare->value("name", "");

  auto connection = [&](const json* d, const std::string& app_name) -> const json* {
    if (!d->contains("connections") || !(*d)["connections"].is_array()) return nullptr;
    for (const auto& k : (*d)["connections"]) {
      if (k.value("app", "") == app_name) return &k;
    }
    return nullptr;
  };
  for (const auto& ap : lab_->apps()) {
    SCOPED_TRACE("app " + ap.name + ", active driver " + active_name + ", spare " + spare_name);
    const json* ka = connection(active, ap.name);
    const json* ks = connection(spare, ap.name);
    ASSERT_NE(ka, nullptr) << "the active driver has no connection for " << ap.name;
    ASSERT_NE(ks, nullptr) << "the spare driver has no connection for " << ap.name
                           << " (frontends must be connected to both)";
    EXPECT_GT(ka->value("rx_frames", 0ULL), 0u);
    EXPECT_GT(ka->value("tx_frames", 0ULL), 0u);
    EXPECT_EQ(ks->value("rx_frames", 1ULL), 0u) << "the spare delivered frames";
    EXPECT_EQ(ks->value("tx_frames", 1ULL), 0u) << "the spare sent frames";

    // The frontend's own view agrees: it posts to and takes from the active one only.
    const json* f = find("apps", ap.name);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->value("active_driver", json()).dump(), json(active_name).dump());
    for (const auto& be : f->value("backends", json::array())) {
      if (be.value("name", "") != spare_name) continue;
      EXPECT_EQ(be.value("tx_frames", 1ULL), 0u) << "frames posted to the spare";
      EXPECT_EQ(be.value("rx_frames", 1ULL), 0u) << "frames taken from the spare";
    }
  }
}

// ------------------------------------------------------------------------
// Two app domains on the same pair of driver domains.

class TwoAppsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { lab_ = std::make_unique<LabGuard>(LabOptions{.apps = 2}); }
  static void TearDownTestSuite() { lab_.reset(); }

  static std::unique_ptr<LabGuard> lab_;
};
std::unique_ptr<LabGuard> TwoAppsTest::lab_;

// tcpdump in ns, started in the background; waits until it really captures.
std::unique_ptr<Background> start_capture(const std::string& ns, const std::string& link,
                                          int count, const std::string& filter,
                                          std::string* why) {
  // SIGINT at the deadline so that tcpdump prints its summary.
  auto cap = std::make_unique<Background>(
      in_ns(ns, fmt::format("timeout -s INT -k 5 30 tcpdump -i {} -nn -l -e -c {} {}", link, count,
                            quote(filter))));
  bool ready = wait_until(
      [&] { return cap->err().find("listening on") != std::string::npos || !cap->running(); },
      10s, 50ms);
  if (!ready || !cap->running()) {
    *why = "tcpdump did not start in " + ns + ":\n" + cap->stop().describe();
    return nullptr;
  }
  return cap;
}

TEST_F(TwoAppsTest, UnicastToOneAppIsNotSeenByTheOther) {
  ASSERT_LAB(lab_);
  const auto& app1 = lab_->apps().at(0);
  const auto& app2 = lab_->apps().at(1);
  std::string why;
  auto filter = "ether dst " + app1.mac;
  auto spy = start_capture(app2.netns, app2.link, 1, filter, &why);
  ASSERT_TRUE(spy) << why;
  // Positive control: the same filter in app1 does see the frames.
  auto control = start_capture(app1.netns, app1.link, 5, filter, &why);
  ASSERT_TRUE(control) << why;

  // Unicast to app1: ICMP over both families, a UDP stream and a TCP transfer.
  auto p4 = ping(lab_->ext_ns(), app1.ipv4, 56, false, 10);
  EXPECT_TRUE(p4.ok()) << p4.describe();
  auto p6 = ping(lab_->ext_ns(), app1.ipv6, 56, false, 10);
  EXPECT_TRUE(p6.ok()) << p6.describe();
  auto u = run_in(lab_->ext_ns(),
                  fmt::format("head -c 2000000 /dev/zero | timeout -k 2 10 nc -u -w 1 {} 9",
                              app1.ipv4),
                  20s);
  TempDir dir("ng-it-uni");
  auto small = make_random_file(dir.path(), 8 * kMiB, &why);
  ASSERT_TRUE(small) << why;
  auto t = tcp_transfer(lab_->ext_ns(), app1.netns, app1.ipv4, 5221, *small, 60s);
  EXPECT_TRUE(t.ok) << t.detail;

  auto ctl = control->finish(3s);
  auto seen = spy->stop();
  EXPECT_NE(ctl.out.find(app1.mac), std::string::npos)
      << "control capture in app1 saw no frame for app1's MAC:\n" << ctl.describe();
  // tcpdump prints one packet per line; a bare newline on exit is no packet.
  EXPECT_EQ(seen.out.find_first_not_of(" \n"), std::string::npos)
      << "app2 captured frames addressed to app1:\n" << seen.describe();
  EXPECT_NE(seen.err.find("0 packets captured"), std::string::npos) << seen.describe();
}

TEST_F(TwoAppsTest, BroadcastReachesEveryApp) {
  ASSERT_LAB(lab_);
  constexpr int kPort = 9999;
  std::vector<std::unique_ptr<Background>> caps;
  for (const auto& app : lab_->apps()) {
    std::string why;
    auto cap = start_capture(app.netns, app.link, 1,
                             fmt::format("ether broadcast and udp port {}", kPort), &why);
    ASSERT_TRUE(cap) << why;
    caps.push_back(std::move(cap));
  }
  // A UDP broadcast to the lab subnet's broadcast address, from the ext host.
  auto send = run_in(lab_->ext_ns(),
                     fmt::format("timeout -k 2 10 /usr/bin/python3 -c {}",
                                 quote(fmt::format(
                                     "import socket, time\n"
                                     "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                                     "s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)\n"
                                     "for i in range(10):\n"
                                     "    s.sendto(b'nicguard broadcast', ('10.99.0.255', {}))\n"
                                     "    time.sleep(0.1)\n",
                                     kPort))),
                     20s);
  ASSERT_TRUE(send.ok()) << send.describe();
  for (size_t i = 0; i < caps.size(); ++i) {
    auto r = caps[i]->finish(5s);
    EXPECT_TRUE(r.ok()) << "no broadcast reached " << lab_->apps()[i].name << "\n"
                        << r.describe() << lab_->logs();
    EXPECT_NE(r.out.find("ff:ff:ff:ff:ff:ff"), std::string::npos) << r.describe();
    EXPECT_NE(r.out.find(lab_->ext_ipv4()), std::string::npos) << r.describe();
  }
}

// ------------------------------------------------------------------------
// Jumbo frames: every lab link and the app at MTU 9000.

class JumboTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    lab_ = std::make_unique<LabGuard>(LabOptions{.apps = 1, .mtu = 9000});
  }
  static void TearDownTestSuite() { lab_.reset(); }

  static std::unique_ptr<LabGuard> lab_;
};
std::unique_ptr<LabGuard> JumboTest::lab_;

TEST_F(JumboTest, FullSizeJumboPingPassesBothWays) {
  ASSERT_LAB(lab_);
  const auto& app = lab_->apps().at(0);
  auto there = ping(lab_->ext_ns(), app.ipv4, 8972, true);
  EXPECT_TRUE(there.ok()) << there.describe() << lab_->logs();
  auto back = ping(app.netns, lab_->ext_ipv4(), 8972, true);
  EXPECT_TRUE(back.ok()) << back.describe() << lab_->logs();
  auto v6 = ping(lab_->ext_ns(), app.ipv6, 8952, true);
  EXPECT_TRUE(v6.ok()) << v6.describe() << lab_->logs();
}

TEST_F(JumboTest, TcpTransferAtMtu9000) {
  ASSERT_LAB(lab_);
  const auto& app = lab_->apps().at(0);
  TempDir dir("ng-it-jumbo");
  std::string why;
  auto blob = make_random_file(dir.path(), 256 * kMiB, &why);
  ASSERT_TRUE(blob) << why;
  auto in = tcp_transfer(lab_->ext_ns(), app.netns, app.ipv4, 5231, *blob, 120s);
  EXPECT_TRUE(in.ok) << "ext -> app\n" << in.detail << lab_->logs();
  auto out = tcp_transfer(app.netns, lab_->ext_ns(), lab_->ext_ipv4(), 5232, *blob, 120s);
  EXPECT_TRUE(out.ok) << "app -> ext\n" << out.detail << lab_->logs();
  std::printf("[   INFO   ] 256 MiB at MTU 9000: ext->app %.1f s, app->ext %.1f s\n", in.seconds,
              out.seconds);
}

// ------------------------------------------------------------------------
// Configs run against a live lab's state directory: every one is refused
// before anything is created or torn down.

class BadConfigTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { lab_ = std::make_unique<LabGuard>(LabOptions{.apps = 1}); }
  static void TearDownTestSuite() { lab_.reset(); }

  // What must not change: the manager, its children, the namespaces.
  struct Snapshot {
    json status;
    std::vector<std::string> namespaces;
  };
  static Snapshot snapshot() {
    Snapshot s;
    std::string why;
    if (auto st = lab_->status(&why)) s.status = *st;
    s.namespaces = lab_->live_namespaces();
    std::sort(s.namespaces.begin(), s.namespaces.end());
    return s;
  }
  static std::map<std::string, json> child_pids(const json& status) {
    std::map<std::string, json> out;
    for (const char* list : {"drivers", "apps"}) {
      for (const auto& e : status.value(list, json::array())) {
        out[std::string(list) + "/" + e.value("name", "?")] = e.value("pid", json());
      }
    }
    return out;
  }

  // The running lab is exactly as it was, and traffic still flows.
  static void expect_untouched(const Snapshot& before, const std::string& after_what) {
    SCOPED_TRACE("after " + after_what);
    pid_t m = lab_->manager_pid();
    EXPECT_TRUE(process_alive(m)) << "the running manager (pid " << m << ") is gone\n"
                                  << lab_->logs();
    EXPECT_NE(process_cmdline(m).find("manager"), std::string::npos) << process_cmdline(m);
    auto pidfile = read_file(lab_->state_dir() + "/manager.pid");
    EXPECT_EQ(pidfile.substr(0, pidfile.find('\n')), std::to_string(m))
        << "manager.pid in " << lab_->state_dir() << " was changed or removed";
    auto now = snapshot();
    EXPECT_EQ(now.namespaces, before.namespaces);
    ASSERT_FALSE(now.status.is_null()) << "the running manager no longer answers status";
    EXPECT_EQ(now.status["manager"].value("pid", 0), m);
    EXPECT_EQ(child_pids(now.status), child_pids(before.status))
        << "driver domains or frontends were restarted";
    const auto& app = lab_->apps().at(0);
    auto v4 = ping(lab_->ext_ns(), app.ipv4);
    EXPECT_TRUE(v4.ok()) << "traffic to the app stopped\n" << v4.describe() << lab_->logs();
    auto v6 = ping(lab_->ext_ns(), app.ipv6);
    EXPECT_TRUE(v6.ok()) << "traffic to the app stopped\n" << v6.describe() << lab_->logs();
  }

  static CmdResult run_manager(const std::string& config) {
    return run(fmt::format("timeout -k 5 30 {} manager -c {}", quote(kNicguard), quote(config)),
               45s);
  }

  static std::unique_ptr<LabGuard> lab_;
};
std::unique_ptr<LabGuard> BadConfigTest::lab_;

std::string replace_once(std::string s, const std::string& from, const std::string& to) {
  auto pos = s.find(from);
  if (pos != std::string::npos) s.replace(pos, from.size(), to);
  return s;
}

TEST_F(BadConfigTest, InvalidConfigsAreRefusedAndTheRunningLabKeepsWorking) {
  ASSERT_LAB(lab_);
  const auto& app = lab_->apps().at(0);
  const std::string good = read_file(lab_->config());
  ASSERT_NE(good.find("[manager]"), std::string::npos) << good;
  ASSERT_NE(good.find(lab_->state_dir()), std::string::npos)
      << "the lab's config does not name its state_dir:\n" << good;
  const std::string mac_line = fmt::format("mac = \"{}\"", app.mac);
  const std::string v4_text = fmt::format("\"{}/24\"", app.ipv4);
  ASSERT_NE(good.find(mac_line), std::string::npos) << good;
  ASSERT_NE(good.find(v4_text), std::string::npos) << good;

  auto before = snapshot();
  ASSERT_FALSE(before.status.is_null()) << "the lab's manager does not answer status\n"
                                        << lab_->logs();

  const std::string state_line = fmt::format("state_dir = \"{}\"", lab_->state_dir());
  ASSERT_NE(good.find(state_line), std::string::npos) << good;
  struct Case {
    std::string what;
    std::string toml;
    std::vector<std::string> must_name;  // the offending key, as the message must show it
  };
  std::vector<Case> cases = {
      {"unknown key", replace_once(good, "[manager]\n", "[manager]\nbogus_key = 1\n"),
       {"manager.bogus_key"}},
      {"bad MAC", replace_once(good, mac_line, "mac = \"02:00:00:00:01:zz\""), {"app[0].mac"}},
      {"bad CIDR", replace_once(good, v4_text, fmt::format("\"{}/33\"", app.ipv4)),
       {"app[0].ipv4[0]"}},
      {"duplicate app names",
       good + fmt::format("\n[[app]]\nname = \"{}\"\nnetns = \"ng-{}-dup\"\n"
                          "mac = \"02:00:00:00:01:3f\"\nipv4 = [\"10.99.0.73/24\"]\n",
                          app.name, lab_->suffix()),
       {"app[1].name", "duplicate"}},
      {"relative state_dir", replace_once(good, state_line, "state_dir = \"run/nicguard\""),
       {"manager.state_dir", "absolute"}},
  };

  TempDir dir("ng-it-cfg");
  ASSERT_FALSE(dir.path().empty());
  int n = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    ASSERT_NE(c.toml, good) << "the test did not manage to break the config";
    auto path = dir.file(fmt::format("bad-{}.toml", ++n));
    write_file(path, c.toml);
    auto r = run_manager(path);
    EXPECT_FALSE(r.timed_out) << "a second manager kept running on a bad config\n"
                              << r.describe() << "config:\n" << c.toml;
    EXPECT_EQ(r.exit_code, 2) << r.describe() << "config:\n" << c.toml;
    for (const auto& key : c.must_name) {
      EXPECT_NE(r.err.find(key), std::string::npos)
          << "the message does not name " << key << "\n" << r.describe();
    }
    // Checked after every attempt, so that a failure points at its config.
    expect_untouched(before, c.what);
  }
}

TEST_F(BadConfigTest, ValidConfigOnTheRunningStateDirIsRefused) {
  ASSERT_LAB(lab_);
  auto before = snapshot();
  ASSERT_FALSE(before.status.is_null()) << "the lab's manager does not answer status\n"
                                        << lab_->logs();
  // The lab's own config: valid, and its state_dir belongs to the running manager.
  auto r = run_manager(lab_->config());
  EXPECT_FALSE(r.timed_out) << "a second manager started on a state_dir that is in use\n"
                            << r.describe();
  EXPECT_NE(r.exit_code, 0) << r.describe();
  const std::string pid = std::to_string(lab_->manager_pid());
  // spdlog writes the manager's start-up errors to stdout, so both are read.
  const std::string said = r.out + r.err;
  EXPECT_TRUE(said.find(pid) != std::string::npos ||
              said.find(lab_->state_dir()) != std::string::npos)
      << "the refusal names neither the running manager (pid " << pid << ") nor its state_dir\n"
      << r.describe();
  expect_untouched(before, "a second manager on the same state_dir");
}

}  // namespace
}  // namespace ng::it

// rtnetlink and namespace helpers against the real kernel (runs as root).
// Every namespace a test makes is owned by a guard that deletes it, so a
// failing assertion leaves nothing behind.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "netlink/netlink.hpp"

namespace ng::netlink {
namespace {

std::string random_hex(int digits) {
  std::random_device rd;
  std::string s;
  for (int i = 0; i < digits; ++i) s += "0123456789abcdef"[rd() % 16];
  return s;
}

std::string shell(const std::string& cmd) {
  std::string out;
  if (FILE* p = ::popen((cmd + " 2>&1").c_str(), "r")) {
    char buf[512];
    while (size_t n = std::fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
    ::pclose(p);
  }
  return out;
}

bool listed(const std::string& name) {
  auto all = list_netns();
  return std::find(all.begin(), all.end(), name) != all.end();
}

// Owns one test namespace: created on construction, deleted on destruction.
class TestNetns {
 public:
  explicit TestNetns(const std::string& tag) : name_("ng-t" + random_hex(4) + "-" + tag) {
    auto fd = create_netns(name_);
    if (fd) fd_ = std::move(*fd);
    error_ = fd ? "" : fd.error().message;
  }
  ~TestNetns() {
    fd_.reset();
    if (listed(name_)) (void)delete_netns(name_);
  }
  TestNetns(const TestNetns&) = delete;
  TestNetns& operator=(const TestNetns&) = delete;

  const std::string& name() const { return name_; }
  int fd() const { return fd_.get(); }
  const std::string& error() const { return error_; }

 private:
  std::string name_;
  UniqueFd fd_;
  std::string error_;
};

ino_t thread_netns_inode() {
  struct stat st {};
  ::stat("/proc/thread-self/ns/net", &st);
  return st.st_ino;
}

TEST(Netns, CreateListDelete) {
  std::string name;
  {
    TestNetns ns("life");
    ASSERT_TRUE(ns.fd() >= 0) << ns.error();
    name = ns.name();
    EXPECT_TRUE(listed(name));
    EXPECT_NE(shell("ip netns list").find(name), std::string::npos);

    auto session = Session::open(ns.fd());
    ASSERT_TRUE(session) << session.error().message;
    EXPECT_EQ(session->where(), "netns " + name);
    auto up = session->is_up("lo");
    ASSERT_TRUE(up) << up.error().message;
    EXPECT_TRUE(*up) << "loopback should be up in a new namespace";

    auto again = create_netns(name);
    ASSERT_FALSE(again);
    EXPECT_NE(again.error().message.find(name), std::string::npos) << again.error().message;

    auto opened = open_netns(name);
    ASSERT_TRUE(opened) << opened.error().message;
    struct stat a {}, b {};
    ::fstat(opened->get(), &a);
    ::fstat(ns.fd(), &b);
    EXPECT_EQ(a.st_ino, b.st_ino);

    auto del = delete_netns(name);
    ASSERT_TRUE(del) << del.error().message;
    EXPECT_FALSE(listed(name));
  }
  auto gone = delete_netns(name);
  ASSERT_FALSE(gone);
  EXPECT_NE(gone.error().message.find(name), std::string::npos);
  auto missing = open_netns(name);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("does not exist"), std::string::npos);
}

TEST(Netns, InNetnsReturnsToCallerNamespace) {
  TestNetns ns("enter");
  ASSERT_TRUE(ns.fd() >= 0) << ns.error();
  struct stat target {};
  ::fstat(ns.fd(), &target);
  auto before = thread_netns_inode();
  ino_t inside = 0;
  auto st = in_netns(ns.fd(), [&]() -> Status {
    inside = thread_netns_inode();
    return fail("deliberate");
  });
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message, "deliberate");
  EXPECT_EQ(inside, target.st_ino);
  EXPECT_EQ(thread_netns_inode(), before);
}

TEST(Netns, WriteSysctlInsideNamespace) {
  TestNetns ns("sysctl");
  ASSERT_TRUE(ns.fd() >= 0) << ns.error();
  auto st = write_sysctl(ns.fd(), "net/ipv6/conf/default/accept_dad", "0");
  ASSERT_TRUE(st) << st.error().message;
  auto value = shell(fmt::format("ip netns exec {} cat /proc/sys/net/ipv6/conf/default/accept_dad",
                                 ns.name()));
  EXPECT_EQ(value, "0\n");
  auto bad = write_sysctl(ns.fd(), "net/ipv6/conf/nosuchlink/accept_dad", "0");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("nosuchlink"), std::string::npos) << bad.error().message;
}

TEST(Link, VethAcrossNamespaces) {
  TestNetns left("left"), right("right");
  ASSERT_TRUE(left.fd() >= 0 && right.fd() >= 0) << left.error() << right.error();
  auto l = Session::open(left.fd());
  auto r = Session::open(right.fd());
  ASSERT_TRUE(l && r);
  auto st = l->create_veth("v-left", "v-right", right.fd());
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_TRUE(l->exists("v-left"));
  EXPECT_FALSE(l->exists("v-right"));
  EXPECT_TRUE(r->exists("v-right"));
  EXPECT_FALSE(r->exists("v-left"));
  EXPECT_NE(shell("ip -n " + right.name() + " link show v-right").find("v-right"),
            std::string::npos);
  auto names = r->links();
  EXPECT_NE(std::find(names.begin(), names.end(), "lo"), names.end());

  auto dup = l->create_veth("v-left", "v-other");
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().message.find("v-left"), std::string::npos) << dup.error().message;

  ASSERT_TRUE(l->create_veth("v-move", "v-move-peer"));
  auto moved = l->move_to_netns("v-move", right.fd());
  ASSERT_TRUE(moved) << moved.error().message;
  EXPECT_TRUE(r->exists("v-move"));
  EXPECT_FALSE(l->exists("v-move"));

  ASSERT_TRUE(l->delete_link("v-left"));
  EXPECT_FALSE(l->exists("v-left"));
  EXPECT_FALSE(r->exists("v-right")) << "deleting one end of a veth deletes its peer";
}

TEST(Link, BridgeEnslaveAndState) {
  TestNetns ns("bridge");
  ASSERT_TRUE(ns.fd() >= 0) << ns.error();
  auto s = Session::open(ns.fd());
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->create_bridge("br0"));
  ASSERT_TRUE(s->create_veth("port0", "host0"));
  auto st = s->set_master("port0", "br0");
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_EQ(s->master("port0").value_or("?"), "br0");
  EXPECT_EQ(s->master("host0").value_or("?"), "");
  EXPECT_NE(shell("ip -n " + ns.name() + " link show port0").find("master br0"),
            std::string::npos);

  EXPECT_FALSE(s->is_up("port0").value_or(true));
  ASSERT_TRUE(s->set_up("br0"));
  ASSERT_TRUE(s->set_up("port0"));
  ASSERT_TRUE(s->set_up("host0"));
  EXPECT_TRUE(s->is_up("port0").value_or(false));
  // veth carrier follows the peer; give the kernel a moment to report it.
  bool carrier = false;
  for (int i = 0; i < 100 && !carrier; ++i) {
    carrier = s->carrier("port0").value_or(false);
    if (!carrier) ::usleep(10'000);
  }
  EXPECT_TRUE(carrier);
  ASSERT_TRUE(s->set_up("host0", false));
  EXPECT_FALSE(s->is_up("host0").value_or(true));
}

TEST(Link, MtuMacAndAddresses) {
  TestNetns ns("attrs");
  ASSERT_TRUE(ns.fd() >= 0) << ns.error();
  auto s = Session::open(ns.fd());
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->create_veth("a0", "b0"));

  ASSERT_TRUE(s->set_mtu("a0", 9000));
  EXPECT_EQ(s->mtu("a0").value_or(0), 9000u);
  auto too_big = s->set_mtu("a0", 70000);
  ASSERT_FALSE(too_big);
  EXPECT_NE(too_big.error().message.find("a0"), std::string::npos);

  auto mac = parse_mac("02:00:00:00:01:2a");
  ASSERT_TRUE(mac);
  auto st = s->set_mac("a0", *mac);
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_EQ(format_mac(s->mac("a0").value_or(Mac{})), "02:00:00:00:01:2a");

  ASSERT_TRUE(write_sysctl(ns.fd(), "net/ipv6/conf/a0/accept_dad", "0"));
  for (const char* text : {"10.99.7.5/24", "fd99:7::5/64"}) {
    auto cidr = parse_cidr(text);
    ASSERT_TRUE(cidr);
    auto added = s->add_address("a0", *cidr);
    ASSERT_TRUE(added) << added.error().message;
  }
  auto dup = s->add_address("a0", *parse_cidr("10.99.7.5/24"));
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().message.find("10.99.7.5"), std::string::npos) << dup.error().message;

  auto addrs = s->addresses("a0");
  ASSERT_TRUE(addrs) << addrs.error().message;
  std::vector<std::string> texts;
  for (const auto& a : *addrs) texts.push_back(a.text);
  EXPECT_NE(std::find(texts.begin(), texts.end(), "10.99.7.5/24"), texts.end());
  EXPECT_NE(std::find(texts.begin(), texts.end(), "fd99:7::5/64"), texts.end());
  auto shown = shell("ip -n " + ns.name() + " addr show dev a0");
  EXPECT_NE(shown.find("inet 10.99.7.5/24"), std::string::npos) << shown;
  EXPECT_NE(shown.find("inet6 fd99:7::5/64"), std::string::npos) << shown;
}

TEST(Link, ErrorsNameTheMissingLinkAndNamespace) {
  TestNetns ns("missing");
  ASSERT_TRUE(ns.fd() >= 0) << ns.error();
  auto s = Session::open(ns.fd());
  ASSERT_TRUE(s);
  auto check = [&](const auto& result, const char* op) {
    ASSERT_FALSE(result) << op;
    EXPECT_NE(result.error().message.find("nosuch0"), std::string::npos)
        << op << ": " << result.error().message;
    EXPECT_NE(result.error().message.find(ns.name()), std::string::npos)
        << op << ": " << result.error().message;
  };
  check(s->ifindex("nosuch0"), "ifindex");
  check(s->set_up("nosuch0"), "set_up");
  check(s->set_mtu("nosuch0", 1500), "set_mtu");
  check(s->mac("nosuch0"), "mac");
  check(s->mtu("nosuch0"), "mtu");
  check(s->carrier("nosuch0"), "carrier");
  check(s->delete_link("nosuch0"), "delete_link");
  check(s->add_address("nosuch0", *parse_cidr("10.0.0.1/8")), "add_address");
  check(s->move_to_netns("nosuch0", ns.fd()), "move_to_netns");
  ASSERT_TRUE(s->create_veth("x0", "y0"));
  auto enslave = s->set_master("x0", "nosuch0");
  check(enslave, "set_master");
  EXPECT_FALSE(s->exists("nosuch0"));
}

}  // namespace
}  // namespace ng::netlink

#include "protocol/protocol.hpp"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

namespace proto = ng::protocol;

namespace {

proto::Message round_trip(const proto::Message& m) {
  auto bytes = proto::encode(m);
  auto back = proto::decode(bytes);
  EXPECT_TRUE(back) << (back ? "" : back.error().message);
  return back ? *back : proto::Message{};
}

std::vector<proto::Message> every_message() {
  proto::Hello h{1, 1, proto::kFeatureVnetHdr, "web"};
  proto::HelloAck ha{1, proto::kFeatureVnetHdr, "a", {2, 0, 0, 0, 0, 9}, 9000};
  proto::Setup s{{2, 0, 0, 0, 1, 1}, 1500, proto::Role::active, 256, 128, 65600, 123456};
  return {h,
          ha,
          s,
          proto::SetupAck{7},
          proto::Activate{proto::Role::active},
          proto::ActivateAck{proto::Role::spare},
          proto::Refuse{3, "no"},
          proto::Fault{proto::FaultKind::hang, std::string(200, 'x')}};
}

}  // namespace

TEST(Protocol, EveryMessageRoundTrips) {
  for (const auto& m : every_message()) {
    auto back = round_trip(m);
    EXPECT_EQ(back.index(), m.index()) << proto::type_name(m);
    EXPECT_EQ(proto::encode(back), proto::encode(m)) << proto::type_name(m);
  }
  auto s = std::get<proto::Setup>(round_trip(every_message()[2]));
  EXPECT_EQ(s.mtu, 1500u);
  EXPECT_EQ(s.role, proto::Role::active);
  EXPECT_EQ(s.region_size, 123456u);
  auto h = std::get<proto::Hello>(round_trip(every_message()[0]));
  EXPECT_EQ(h.app_name, "web");
}

TEST(Protocol, EveryTruncationIsRefused) {
  for (const auto& m : every_message()) {
    auto bytes = proto::encode(m);
    for (size_t n = 0; n < bytes.size(); ++n) {
      EXPECT_FALSE(proto::decode(std::span(bytes.data(), n))) << proto::type_name(m) << " " << n;
    }
  }
}

TEST(Protocol, TrailingBytesAndOversizeAreRefused) {
  auto bytes = proto::encode(proto::SetupAck{1});
  bytes.push_back(0);
  EXPECT_FALSE(proto::decode(bytes));  // length field disagrees
  bytes[8] += 1;                       // length now matches, payload has a trailing byte
  EXPECT_FALSE(proto::decode(bytes));
  std::vector<uint8_t> big(proto::kMaxMessage + 1, 0);
  auto r = proto::decode(big);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("oversized"), std::string::npos);
}

TEST(Protocol, WrongVersionMagicTypeRoleAreRefused) {
  auto good = proto::encode(proto::Activate{proto::Role::active});
  auto v = good;
  v[4] = 99;
  auto r = proto::decode(v);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("version 99"), std::string::npos);
  auto m = good;
  m[0] ^= 1;
  EXPECT_FALSE(proto::decode(m));
  auto t = good;
  t[6] = 99;
  EXPECT_FALSE(proto::decode(t));
  auto role = good;
  role.back() = 7;
  EXPECT_FALSE(proto::decode(role));
}

TEST(Protocol, OverlongNameIsRefused) {
  auto bytes = proto::encode(proto::Refuse{1, "x"});
  // Claim a 65-byte name: longer than any name may be.
  bytes[proto::kHeaderSize + 4] = proto::kMaxName + 1;
  bytes.resize(proto::kHeaderSize + 4 + 2 + proto::kMaxName + 1, 'x');
  bytes[8] = static_cast<uint8_t>(bytes.size() - proto::kHeaderSize);
  EXPECT_FALSE(proto::decode(bytes));
}

TEST(Protocol, SocketCarriesMessageAndDescriptors) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  ng::UniqueFd a(sv[0]), b(sv[1]);
  ng::UniqueFd e1(::eventfd(0, EFD_CLOEXEC)), e2(::eventfd(0, EFD_CLOEXEC));
  int fds[2] = {e1.get(), e2.get()};
  ASSERT_TRUE(proto::send_message(a.get(), proto::SetupAck{42}, fds));
  auto got = proto::recv_message(b.get(), 1000);
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(std::get<proto::SetupAck>(got->message).connection_id, 42u);
  ASSERT_EQ(got->fds.size(), 2u);
  EXPECT_TRUE(got->fds[0].valid());
  a.reset();
  auto closed = proto::recv_message(b.get(), 1000);
  ASSERT_FALSE(closed);
  EXPECT_NE(closed.error().message.find("closed"), std::string::npos);
}

TEST(Protocol, RecvTimesOut) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  ng::UniqueFd a(sv[0]), b(sv[1]);
  EXPECT_FALSE(proto::recv_message(b.get(), 10));
}

TEST(Protocol, FaultCarriesItsKindAndAReasonLongerThanAName) {
  auto f = std::get<proto::Fault>(round_trip(proto::Fault{proto::FaultKind::crash, std::string(250, 'r')}));
  EXPECT_EQ(f.kind, proto::FaultKind::crash);
  EXPECT_EQ(f.reason.size(), 250u);
  auto bytes = proto::encode(proto::Fault{proto::FaultKind::stall, "x"});
  bytes[proto::kHeaderSize] = 9;  // no such kind
  EXPECT_FALSE(proto::decode(bytes));
}

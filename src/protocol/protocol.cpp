#include "protocol/protocol.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cstring>

namespace ng::protocol {
namespace {

class Writer {
 public:
  void u8(uint8_t v) { out_.push_back(v); }
  void u16(uint16_t v) {
    for (int i = 0; i < 2; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void mac(const Mac& m) { out_.insert(out_.end(), m.begin(), m.end()); }
  void str(const std::string& s, size_t max = kMaxName) {
    size_t n = std::min(s.size(), max);
    u16(static_cast<uint16_t>(n));
    out_.insert(out_.end(), s.begin(), s.begin() + static_cast<long>(n));
  }
  std::vector<uint8_t>& bytes() { return out_; }

 private:
  std::vector<uint8_t> out_;
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == in_.size(); }
  uint64_t uint(int bytes) {
    if (!need(static_cast<size_t>(bytes))) return 0;
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= uint64_t{in_[pos_ + static_cast<size_t>(i)]} << (8 * i);
    pos_ += static_cast<size_t>(bytes);
    return v;
  }
  uint8_t u8() { return static_cast<uint8_t>(uint(1)); }
  uint16_t u16() { return static_cast<uint16_t>(uint(2)); }
  uint32_t u32() { return static_cast<uint32_t>(uint(4)); }
  uint64_t u64() { return uint(8); }
  Mac mac() {
    Mac m{};
    if (!need(m.size())) return m;
    std::memcpy(m.data(), in_.data() + pos_, m.size());
    pos_ += m.size();
    return m;
  }
  std::string str(size_t max = kMaxName) {
    size_t n = u16();
    if (n > max) ok_ = false;
    if (!need(n)) return {};
    std::string s(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  void fail() { ok_ = false; }
  Role role() {
    uint8_t r = u8();
    if (r > 1) ok_ = false;
    return static_cast<Role>(r);
  }

 private:
  bool need(size_t n) {
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    return true;
  }
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

void body(Writer& w, const Hello& m) {
  w.u16(m.min_version);
  w.u16(m.max_version);
  w.u64(m.features);
  w.str(m.app_name);
}
void body(Writer& w, const HelloAck& m) {
  w.u16(m.version);
  w.u64(m.features);
  w.str(m.driver_name);
  w.mac(m.nic_mac);
  w.u32(m.nic_mtu);
}
void body(Writer& w, const Setup& m) {
  w.mac(m.mac);
  w.u32(m.mtu);
  w.u8(static_cast<uint8_t>(m.role));
  w.u32(m.tx_slots);
  w.u32(m.rx_slots);
  w.u32(m.slot_size);
  w.u64(m.region_size);
}
void body(Writer& w, const SetupAck& m) { w.u32(m.connection_id); }
void body(Writer& w, const Activate& m) { w.u8(static_cast<uint8_t>(m.role)); }
void body(Writer& w, const ActivateAck& m) { w.u8(static_cast<uint8_t>(m.role)); }
void body(Writer& w, const Refuse& m) {
  w.u32(m.code);
  w.str(m.reason);
}

void body(Writer& w, const Fault& m) {
  w.u8(static_cast<uint8_t>(m.kind));
  w.str(m.reason, kMaxReason);
}

Type type_of(const Message& m) { return static_cast<Type>(m.index() + 1); }

Message parse(Type t, Reader& r) {
  switch (t) {
    case Type::hello: {
      Hello m;
      m.min_version = r.u16();
      m.max_version = r.u16();
      m.features = r.u64();
      m.app_name = r.str();
      return m;
    }
    case Type::hello_ack: {
      HelloAck m;
      m.version = r.u16();
      m.features = r.u64();
      m.driver_name = r.str();
      m.nic_mac = r.mac();
      m.nic_mtu = r.u32();
      return m;
    }
    case Type::setup: {
      Setup m;
      m.mac = r.mac();
      m.mtu = r.u32();
      m.role = r.role();
      m.tx_slots = r.u32();
      m.rx_slots = r.u32();
      m.slot_size = r.u32();
      m.region_size = r.u64();
      return m;
    }
    case Type::setup_ack:
      return SetupAck{r.u32()};
    case Type::activate:
      return Activate{r.role()};
    case Type::activate_ack:
      return ActivateAck{r.role()};
    case Type::refuse: {
      Refuse m;
      m.code = r.u32();
      m.reason = r.str();
      return m;
    }
    case Type::fault: {
      Fault m;
      uint8_t k = r.u8();
      if (k > static_cast<uint8_t>(FaultKind::carrier)) r.fail();
      m.kind = static_cast<FaultKind>(k);
      m.reason = r.str(kMaxReason);
      return m;
    }
  }
  return Refuse{};
}

// recvmsg() returns 0 for an empty SOCK_SEQPACKET packet as for the end of
// the connection: only the socket can tell them apart. An empty packet from
// a live peer is malformed (decode() says so), not a crash, which is what
// the frontend would have reported it as. Found by
// tests/fuzz/protocol_recv_fuzz.cpp.
bool hung_up(int sock) {
  pollfd p{sock, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP)) != 0;
}

}  // namespace

const char* role_name(Role r) { return r == Role::active ? "active" : "spare"; }

const char* type_name(const Message& m) {
  static constexpr const char* kNames[] = {"hello",    "hello_ack",    "setup", "setup_ack",
                                           "activate", "activate_ack", "refuse", "fault"};
  return kNames[m.index()];
}

std::vector<uint8_t> encode(const Message& m) {
  Writer payload;
  std::visit([&](const auto& v) { body(payload, v); }, m);
  Writer w;
  w.u32(kMagic);
  w.u16(kVersion);
  w.u16(static_cast<uint16_t>(type_of(m)));
  w.u32(static_cast<uint32_t>(payload.bytes().size()));
  auto& out = w.bytes();
  out.insert(out.end(), payload.bytes().begin(), payload.bytes().end());
  return out;
}

Result<Message> decode(std::span<const uint8_t> bytes) {
  if (bytes.size() < kHeaderSize) {
    return fail("truncated control message: {} bytes, the header alone is {}", bytes.size(),
                kHeaderSize);
  }
  if (bytes.size() > kMaxMessage) {
    return fail("oversized control message: {} bytes, at most {} allowed", bytes.size(),
                kMaxMessage);
  }
  Reader r(bytes);
  uint32_t magic = r.u32();
  uint16_t version = r.u16();
  uint16_t type = r.u16();
  uint32_t length = r.u32();
  if (magic != kMagic) return fail("control message has bad magic {:#x}", magic);
  if (version != kVersion) {
    return fail("control message version {} is not supported (this build speaks {})", version,
                kVersion);
  }
  if (type < 1 || type > static_cast<uint16_t>(Type::fault)) {
    return fail("control message has unknown type {}", type);
  }
  if (length != bytes.size() - kHeaderSize) {
    return fail("control message says {} payload bytes but carries {}", length,
                bytes.size() - kHeaderSize);
  }
  Reader pr(bytes.subspan(kHeaderSize));
  Message m = parse(static_cast<Type>(type), pr);
  if (!pr.ok()) return fail("truncated or malformed {} message", type_name(m));
  if (!pr.at_end()) return fail("{} message carries trailing bytes", type_name(m));
  return m;
}

Status send_message(int sock, const Message& m, std::span<const int> fds) {
  std::vector<uint8_t> bytes = encode(m);
  iovec iov{bytes.data(), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)]{};
  if (!fds.empty()) {
    if (fds.size() > 4) return fail("at most 4 descriptors per control message");
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    bool gone = errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN;
    auto e = fail_errno("sending {} on the control socket", type_name(m));
    e.value().peer_gone = gone;
    return e;
  }
  return {};
}

Result<Received> recv_message(int sock, int timeout_ms) {
  pollfd p{sock, POLLIN, 0};
  int r;
  do {
    r = ::poll(&p, 1, timeout_ms);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return fail_errno("waiting on the control socket");
  if (r == 0) return fail("no control message within {} ms", timeout_ms);
  uint8_t buf[kMaxMessage + 1];
  iovec iov{buf, sizeof(buf)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)]{};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    bool gone = errno == ECONNRESET || errno == EPIPE || errno == ENOTCONN;
    auto e = fail_errno("reading the control socket");
    e.value().peer_gone = gone;
    return e;
  }
  Received out;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        out.fds.emplace_back(fd);
      }
    }
  }
  if (n == 0 && hung_up(sock)) {
    auto e = fail("the peer closed the control socket");
    e.value().peer_gone = true;
    return e;
  }
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    return fail("control message truncated in transit (oversized or too many descriptors)");
  }
  auto m = decode(std::span<const uint8_t>(buf, static_cast<size_t>(n)));
  if (!m) return tl::unexpected(m.error());
  out.message = std::move(*m);
  return out;
}

}  // namespace ng::protocol

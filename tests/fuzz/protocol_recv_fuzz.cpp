// protocol::recv_message on a SOCK_SEQPACKET socketpair (what the control
// connection between a frontend and a driver domain is), with a peer that
// the input drives: which packets it sends (raw bytes, or a message the
// project's own encoder made), how many descriptors of which kind ride with
// each in SCM_RIGHTS (more than the receiver has room for, too), and when it
// hangs up. Whatever comes back, no descriptor may stay open once the
// Received is gone, and none may be open without close-on-exec meanwhile.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "common/fd.hpp"
#include "fuzz_support.hpp"
#include "protocol/protocol.hpp"

namespace proto = ng::protocol;
using ng::UniqueFd;

namespace {

// The receiver keeps room for 4 (protocol.cpp); past that the kernel
// truncates. Far past it only makes each run slower.
constexpr size_t kMaxFds = 9;
constexpr size_t kMaxPayload = proto::kMaxMessage + 64;
constexpr int kMaxSteps = 8;

UniqueFd make_fd(uint8_t kind, int own_socket) {
  switch (kind % 6) {
    case 0: return UniqueFd(::memfd_create("fuzz", MFD_CLOEXEC));
    case 1: return UniqueFd(::eventfd(0, EFD_CLOEXEC));
    case 2:
    case 3: {
      int p[2];
      if (::pipe2(p, O_CLOEXEC) != 0) return UniqueFd();
      UniqueFd keep(p[kind % 2]);
      ::close(p[1 - kind % 2]);
      return keep;
    }
    case 4: return UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    default: return UniqueFd(::fcntl(own_socket, F_DUPFD_CLOEXEC, 0));  // the socket itself in flight
  }
}

proto::Role role(FuzzedDataProvider& in) {
  return in.ConsumeBool() ? proto::Role::active : proto::Role::spare;
}

proto::Mac mac(FuzzedDataProvider& in) {
  proto::Mac m{};
  for (auto& b : m) b = in.ConsumeIntegral<uint8_t>();
  return m;
}

// A message the encoder accepts, from the input's fields.
proto::Message message(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 0:
      return proto::Hello{in.ConsumeIntegral<uint16_t>(), in.ConsumeIntegral<uint16_t>(),
                          in.ConsumeIntegral<uint64_t>(), in.ConsumeRandomLengthString(70)};
    case 1:
      return proto::HelloAck{in.ConsumeIntegral<uint16_t>(), in.ConsumeIntegral<uint64_t>(),
                             in.ConsumeRandomLengthString(70), mac(in), in.ConsumeIntegral<uint32_t>()};
    case 2: {
      proto::Setup s;
      s.mac = mac(in);
      s.mtu = in.ConsumeIntegral<uint32_t>();
      s.role = role(in);
      s.tx_slots = in.ConsumeIntegral<uint32_t>();
      s.rx_slots = in.ConsumeIntegral<uint32_t>();
      s.slot_size = in.ConsumeIntegral<uint32_t>();
      s.region_size = in.ConsumeIntegral<uint64_t>();
      return s;
    }
    case 3: return proto::SetupAck{in.ConsumeIntegral<uint32_t>()};
    case 4: return proto::Activate{role(in)};
    case 5: return proto::ActivateAck{role(in)};
    case 6: return proto::Refuse{in.ConsumeIntegral<uint32_t>(), in.ConsumeRandomLengthString(70)};
    default:
      return proto::Fault{static_cast<proto::FaultKind>(in.ConsumeIntegralInRange<int>(0, 3)),
                          in.ConsumeRandomLengthString(300)};
  }
}

// Sends one packet with its own sendmsg: send_message() refuses more than 4
// descriptors, and a hostile peer is not so polite.
void send_packet(int sock, FuzzedDataProvider& in, int peer_socket) {
  std::vector<uint8_t> bytes;
  if (in.ConsumeBool()) {
    bytes = proto::encode(message(in));
  } else {
    bytes = in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange<size_t>(0, kMaxPayload));
  }
  size_t nfds = in.ConsumeIntegralInRange<size_t>(0, kMaxFds);
  std::vector<UniqueFd> owned;
  std::vector<int> fds;
  for (size_t i = 0; i < nfds; ++i) {
    owned.push_back(make_fd(in.ConsumeIntegral<uint8_t>(), peer_socket));
    if (owned.back()) fds.push_back(owned.back().get());
  }
  iovec iov{bytes.data(), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)]{};
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  // A full socket refuses; that is the peer's problem, not the receiver's.
  [[maybe_unused]] ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

// One recv_message(); every descriptor it hands out must be open and
// close-on-exec, and closed again once the result is gone. A hang-up is
// reported only once the peer did hang up: the frontend takes it for a
// crash, and anything else a live peer sends for a protocol violation.
void receive(int sock, bool peer_open) {
  std::vector<int> seen;
  {
    auto r = proto::recv_message(sock, 0);
    if (!r) {
      FUZZ_CHECK(!r.error().message.empty());
      FUZZ_CHECK(!(r.error().peer_gone && peer_open));
      return;
    }
    FUZZ_CHECK(r->fds.size() <= 4);
    for (const auto& fd : r->fds) {
      FUZZ_CHECK(fd.valid());
      int flags = ::fcntl(fd.get(), F_GETFD);
      FUZZ_CHECK(flags >= 0 && (flags & FD_CLOEXEC));
      seen.push_back(fd.get());
    }
    FUZZ_CHECK(!proto::encode(r->message).empty());
  }
  for (int fd : seen) FUZZ_CHECK(::fcntl(fd, F_GETFD) == -1 && errno == EBADF);
}

void run(FuzzedDataProvider& in) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
  UniqueFd receiver(sv[0]), sender(sv[1]);
  for (int step = 0; step < kMaxSteps && in.remaining_bytes() > 0; ++step) {
    switch (in.ConsumeIntegralInRange<int>(0, 3)) {
      case 0:
      case 1:
        if (sender) send_packet(sender.get(), in, receiver.get());
        break;
      case 2: receive(receiver.get(), sender.valid()); break;
      default: sender.reset(); break;  // the peer hangs up (or dies)
    }
  }
  // Whatever was sent and not asked for yet.
  for (int i = 0; i < kMaxSteps; ++i) receive(receiver.get(), sender.valid());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int before = ng::fuzz::open_fds();
  {
    FuzzedDataProvider in(data, size);
    run(in);
  }
  // Descriptors still in flight in a closed socket's queue are the
  // kernel's, never this process's: the table must be back as it was.
  FUZZ_CHECK(ng::fuzz::open_fds() == before);
  return 0;
}

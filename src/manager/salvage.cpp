#include "manager/salvage.hpp"

#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace ng::manager {
namespace {

constexpr unsigned kBatch = kSalvageBatch;
constexpr size_t kFrameRoom = kSalvageFrameRoom;
constexpr size_t kVnetHdrLen = 10;
// One failure's salvage is bounded: a switch that never learns the new port
// must not keep the manager forwarding forever.
constexpr uint64_t kMaxFrames = 65536;
// Batches per call: the manager's loop (epoll, level-triggered) comes back
// for the rest, so control requests are not kept waiting.
constexpr unsigned kBatchesPerDrain = 8;

bool same_mac(const std::byte* frame, const Mac& mac) { return std::memcmp(frame, mac.data(), mac.size()) == 0; }

}  // namespace

Status Salvage::grab(int pidfd, int fd_number) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, fd_number, 0));
  if (fd < 0) return fail_errno("taking a duplicate of the domain's packet socket (pidfd_getfd)");
  UniqueFd dup(fd);
  int domain = 0;
  socklen_t len = sizeof(domain);
  if (::getsockopt(dup.get(), SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 || domain != AF_PACKET) {
    return fail("descriptor {} of the domain is not a packet socket; no salvage for it", fd_number);
  }
  sock_ = std::move(dup);
  draining_ = false;
  return {};
}

Status Salvage::begin(uint64_t now_ns, uint64_t window_ns) {
  if (!out_) {
    out_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!out_) return fail_errno("creating the salvage's datagram socket");
    // Room for one batch of GSO frames in one datagram, several in flight.
    int buf = static_cast<int>(4 * kBatch * kFrameRoom);
    if (::setsockopt(out_.get(), SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf)) != 0) {
      ::setsockopt(out_.get(), SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    }
  }
  if (buf_.empty()) buf_.resize(kBatch * kFrameRoom);
  draining_ = true;
  started_ns_ = now_ns;
  deadline_ns_ = now_ns + window_ns;
  counts_ = {};
  return {};
}

void Salvage::drain(const std::vector<SalvageTarget>& targets) {
  if (!draining_) return;
  mmsghdr in[kBatch]{};
  iovec iov[kBatch];
  for (unsigned i = 0; i < kBatch; ++i) iov[i] = {buf_.data() + i * kFrameRoom, kFrameRoom};
  for (unsigned batch = 0; batch < kBatchesPerDrain; ++batch) {
    if (counts_.read >= kMaxFrames) {
      draining_ = false;  // what is left stays for the kernel to drop
      return;
    }
    for (unsigned i = 0; i < kBatch; ++i) {
      in[i] = {};
      in[i].msg_hdr.msg_iov = &iov[i];
      in[i].msg_hdr.msg_iovlen = 1;
    }
    int got = ::recvmmsg(sock_.get(), in, kBatch, MSG_DONTWAIT, nullptr);
    if (got <= 0) return;
    counts_.read += static_cast<uint64_t>(got);
    hand_over(in, static_cast<unsigned>(got), targets);
  }
}

// Each app's frames of one batch go in one datagram of records (see
// salvage_record.hpp): a frontend's socket queues only a few datagrams
// (net.unix.max_dgram_qlen), not a few frames.
void Salvage::hand_over(const mmsghdr* in, unsigned got, const std::vector<SalvageTarget>& targets) {
  uint32_t lens[kBatch];
  size_t owner[kBatch];
  for (unsigned i = 0; i < got; ++i) {
    lens[i] = in[i].msg_len;
    const std::byte* frame = buf_.data() + size_t{i} * kFrameRoom;
    owner[i] = targets.size();
    if (lens[i] > kVnetHdrLen + 14 && !(in[i].msg_hdr.msg_flags & MSG_TRUNC)) {
      for (owner[i] = 0; owner[i] < targets.size() && !same_mac(frame + kVnetHdrLen, targets[owner[i]].mac);
           ++owner[i]) {
      }
    }
    if (owner[i] == targets.size()) ++counts_.unclaimed;
  }
  bool done[kBatch] = {};
  for (unsigned first = 0; first < got; ++first) {
    if (done[first] || owner[first] == targets.size()) continue;
    iovec parts[2 * kBatch];
    unsigned n = 0, frames = 0;
    for (unsigned i = first; i < got; ++i) {
      if (done[i] || owner[i] != owner[first]) continue;
      done[i] = true;
      parts[n++] = {&lens[i], sizeof(uint32_t)};
      parts[n++] = {buf_.data() + size_t{i} * kFrameRoom, lens[i]};
      ++frames;
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, targets[owner[first]].socket.c_str(), sizeof(addr.sun_path) - 1);
    msghdr m{};
    m.msg_name = &addr;
    m.msg_namelen = sizeof(addr);
    m.msg_iov = parts;
    m.msg_iovlen = n;
    // A frontend whose queue is full (or that is gone) loses them.
    if (::sendmsg(out_.get(), &m, MSG_DONTWAIT) >= 0) {
      counts_.delivered += frames;
    } else {
      counts_.dropped += frames;
    }
  }
}

SalvageCounts Salvage::end() {
  sock_.reset();
  draining_ = false;
  return counts_;
}

}  // namespace ng::manager

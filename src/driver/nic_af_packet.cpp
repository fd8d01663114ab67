#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstring>
#include <vector>

#include "common/fd.hpp"
#include "driver/nic.hpp"

namespace ng::driver {
namespace {

constexpr unsigned kMaxBatch = 64;

Status set_int(int fd, int level, int opt, int value, const char* what) {
  if (::setsockopt(fd, level, opt, &value, sizeof(value)) != 0) {
    return fail_errno("setting {} on the NIC's packet socket", what);
  }
  return {};
}

class AfPacketNic final : public Nic {
 public:
  AfPacketNic(UniqueFd fd, std::string name, Mac mac, uint32_t mtu)
      : fd_(std::move(fd)), name_(std::move(name)), mac_(mac), mtu_(mtu) {}

  int fd() const override { return fd_.get(); }
  bool vnet_hdr() const override { return true; }
  const std::string& name() const override { return name_; }
  Mac mac() const override { return mac_; }
  uint32_t mtu() const override { return mtu_; }

  Result<unsigned> receive(std::span<iovec> bufs, std::span<uint32_t> lens) override {
    unsigned n = std::min<unsigned>(static_cast<unsigned>(bufs.size()), kMaxBatch);
    for (unsigned i = 0; i < n; ++i) {
      msgs_[i] = {};
      msgs_[i].msg_hdr.msg_iov = &bufs[i];
      msgs_[i].msg_hdr.msg_iovlen = 1;
    }
    int got = ::recvmmsg(fd_.get(), msgs_, n, MSG_DONTWAIT, nullptr);
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) return 0u;
      return fail_errno("receiving from NIC {}", name_);
    }
    for (int i = 0; i < got; ++i) {
      bool truncated = msgs_[i].msg_hdr.msg_flags & MSG_TRUNC;
      lens[static_cast<size_t>(i)] = truncated ? 0 : msgs_[i].msg_len;
    }
    return static_cast<unsigned>(got);
  }

  Result<unsigned> send(std::span<const iovec> frames, unsigned* refused) override {
    unsigned total = std::min<unsigned>(static_cast<unsigned>(frames.size()), kMaxBatch);
    unsigned done = 0;
    while (done < total) {
      unsigned n = total - done;
      for (unsigned i = 0; i < n; ++i) {
        msgs_[i] = {};
        msgs_[i].msg_hdr.msg_iov = const_cast<iovec*>(&frames[done + i]);
        msgs_[i].msg_hdr.msg_iovlen = 1;
      }
      int sent = ::sendmmsg(fd_.get(), msgs_, n, MSG_DONTWAIT);
      if (sent > 0) {
        done += static_cast<unsigned>(sent);
        continue;
      }
      if (errno == EAGAIN || errno == ENOBUFS || errno == EINTR) break;
      if (errno == ENETDOWN || errno == ENXIO) return fail_errno("sending on NIC {}", name_);
      // The kernel refused this frame (bad virtio header, oversized): skip it.
      ++*refused;
      ++done;
    }
    return done;
  }

  // PACKET_STATISTICS counts since the last read; kept as a running total.
  uint64_t rx_overruns() override {
    tpacket_stats st{};
    socklen_t len = sizeof(st);
    if (::getsockopt(fd_.get(), SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0) overruns_ += st.tp_drops;
    return overruns_;
  }

 private:
  uint64_t overruns_ = 0;
  UniqueFd fd_;
  std::string name_;
  Mac mac_;
  uint32_t mtu_;
  mmsghdr msgs_[kMaxBatch]{};
};

Result<std::pair<Mac, uint32_t>> link_params(int fd, const std::string& ifname) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  if (::ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) return fail_errno("reading the MAC of {}", ifname);
  Mac mac{};
  std::memcpy(mac.data(), ifr.ifr_hwaddr.sa_data, mac.size());
  if (::ioctl(fd, SIOCGIFMTU, &ifr) != 0) return fail_errno("reading the MTU of {}", ifname);
  return std::make_pair(mac, static_cast<uint32_t>(ifr.ifr_mtu));
}

}  // namespace

Result<std::unique_ptr<Nic>> open_af_packet(const std::string& ifname) {
  unsigned index = ::if_nametoindex(ifname.c_str());
  if (index == 0) {
    return fail_errno("NIC '{}' is not in the driver domain's namespace", ifname);
  }
  UniqueFd fd(::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL)));
  if (!fd) return fail_errno("opening a packet socket for {} (needs CAP_NET_RAW)", ifname);
  // Opened before any frontend connects, this socket holds the lowest
  // descriptor, and a dying process releases its files in the reverse order
  // of their numbers: the frontends' sockets hang up first, before this
  // one's release waits out an RCU grace period.
  // Order matters: the virtio header must be on before the socket is bound.
  if (auto s = set_int(fd.get(), SOL_PACKET, PACKET_VNET_HDR, 1, "PACKET_VNET_HDR"); !s) {
    return tl::unexpected(s.error());
  }
  if (auto s = set_int(fd.get(), SOL_PACKET, PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING");
      !s) {
    return tl::unexpected(s.error());
  }
  if (auto s = set_int(fd.get(), SOL_PACKET, PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS"); !s) {
    return tl::unexpected(s.error());
  }
  // Bursts of GSO frames need room; FORCE needs CAP_NET_ADMIN, the plain one
  // is the fallback when the caller lacks it.
  int buf = 16 << 20;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf)) != 0) {
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
  }
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf)) != 0) {
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
  }
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons(ETH_P_ALL);
  addr.sll_ifindex = static_cast<int>(index);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return fail_errno("binding the packet socket to {}", ifname);
  }
  packet_mreq mreq{};
  mreq.mr_ifindex = static_cast<int>(index);
  mreq.mr_type = PACKET_MR_PROMISC;
  if (::setsockopt(fd.get(), SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof(mreq)) != 0) {
    return fail_errno("making {} promiscuous (app MACs differ from the NIC's own)", ifname);
  }
  auto params = link_params(fd.get(), ifname);
  if (!params) return tl::unexpected(params.error());
  return std::unique_ptr<Nic>(
      new AfPacketNic(std::move(fd), ifname, params->first, params->second));
}

}  // namespace ng::driver

#pragma once
// The driver domain's view of its NIC: batched receive and send of whole
// frames. AF_PACKET is the implementation in use; it carries GSO super-frames
// and checksum offload through a virtio_net_hdr in front of every frame, which
// is what keeps TCP near line rate (about 1 -> 8 Gbit/s in an early prototype).
// AF_XDP would fit behind the same interface but carries no GSO on veth; it
// is not implemented yet.
#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "common/addr.hpp"
#include "common/error.hpp"

namespace ng::driver {

inline constexpr uint32_t kVnetHdrLen = 10;  // struct virtio_net_hdr

class Nic {
 public:
  virtual ~Nic() = default;
  virtual int fd() const = 0;  // readable when frames wait
  virtual bool vnet_hdr() const = 0;
  virtual const std::string& name() const = 0;
  virtual Mac mac() const = 0;
  virtual uint32_t mtu() const = 0;
  // Receives up to bufs.size() frames into bufs; lens gets each frame's
  // length (0 for a frame that did not fit and was dropped). Returns the
  // number of entries filled; 0 when nothing is waiting.
  virtual Result<unsigned> receive(std::span<iovec> bufs, std::span<uint32_t> lens) = 0;
  // Sends frames in order; returns how many were consumed (sent, or refused
  // as malformed: counted in *refused and skipped). A full queue stops
  // the batch early with the rest left to the caller.
  virtual Result<unsigned> send(std::span<const iovec> frames, unsigned* refused) = 0;
  // Frames the NIC had to drop because the driver did not read them in time
  // (its receive queue was full), since the NIC was opened.
  virtual uint64_t rx_overruns() = 0;
};

// Opens the interface (in the caller's network namespace) with an AF_PACKET
// socket: promiscuous, own transmissions ignored, qdisc bypassed.
Result<std::unique_ptr<Nic>> open_af_packet(const std::string& ifname);

}  // namespace ng::driver

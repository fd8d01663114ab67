#pragma once
// Control protocol between a frontend and a driver domain, on a Unix
// SOCK_SEQPACKET socket (one message per packet). Every message starts with a
// fixed header; integers are little-endian. The frontend opens with Hello,
// the driver answers HelloAck, the frontend sends Setup together with two
// descriptors (the region memfd and the driver's end of the doorbell
// socketpair, ring.hpp), the driver answers SetupAck once the rings are mapped.
// Activate switches the connection between the active and spare roles.
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace ng::protocol {

inline constexpr uint32_t kMagic = 0x3150474e;  // "NGP1"
inline constexpr uint16_t kVersion = 2;
inline constexpr size_t kHeaderSize = 12;
inline constexpr size_t kMaxMessage = 512;
inline constexpr size_t kMaxName = 64;
inline constexpr size_t kMaxReason = 256;

// Feature bits negotiated in Hello/HelloAck.
inline constexpr uint64_t kFeatureVnetHdr = 1u << 0;  // frames carry a virtio_net_hdr (GSO, csum)
inline constexpr uint64_t kFeatureHeartbeat = 1u << 1;

enum class Role : uint8_t { spare = 0, active = 1 };
const char* role_name(Role r);

using Mac = std::array<uint8_t, 6>;

struct Hello {
  uint16_t min_version = kVersion;
  uint16_t max_version = kVersion;
  uint64_t features = 0;
  std::string app_name;
};

struct HelloAck {
  uint16_t version = kVersion;
  uint64_t features = 0;
  std::string driver_name;
  Mac nic_mac{};
  uint32_t nic_mtu = 0;
};

// Accompanied by SCM_RIGHTS: [region memfd, the driver's end of the doorbell].
struct Setup {
  Mac mac{};
  uint32_t mtu = 0;
  Role role = Role::spare;
  uint32_t tx_slots = 0;
  uint32_t rx_slots = 0;
  uint32_t slot_size = 0;
  uint64_t region_size = 0;
};

struct SetupAck {
  uint32_t connection_id = 0;
};

struct Activate {
  Role role = Role::spare;
};

struct ActivateAck {
  Role role = Role::spare;
};

// Either side refuses something; the text is for the operator's log.
struct Refuse {
  uint32_t code = 0;
  std::string reason;
};

// The driver domain reports its own failure: a driver VM whose guest stopped
// answering, say. Believed at once: a domain that lies about it can only
// lose its own traffic. The frontend fails over and fences it.
// carrier: the NIC lost its carrier where only the domain sees it (a driver VM's guest).
enum class FaultKind : uint8_t { crash = 0, hang = 1, stall = 2, carrier = 3 };
struct Fault {
  FaultKind kind = FaultKind::hang;
  std::string reason;
};

using Message = std::variant<Hello, HelloAck, Setup, SetupAck, Activate, ActivateAck, Refuse, Fault>;

enum class Type : uint16_t {
  hello = 1,
  hello_ack = 2,
  setup = 3,
  setup_ack = 4,
  activate = 5,
  activate_ack = 6,
  refuse = 7,
  fault = 8,
};

std::vector<uint8_t> encode(const Message& m);
// Rejects truncated, oversized, unknown-type, wrong-magic and wrong-version input.
Result<Message> decode(std::span<const uint8_t> bytes);
const char* type_name(const Message& m);

// Socket helpers: one message per SOCK_SEQPACKET packet, optional descriptors.
Status send_message(int sock, const Message& m, std::span<const int> fds = {});
struct Received {
  Message message;
  std::vector<UniqueFd> fds;
};
// Blocks up to timeout_ms (-1: forever). A closed peer is an error that says so.
Result<Received> recv_message(int sock, int timeout_ms);

}  // namespace ng::protocol

#pragma once
// The host's question to a driver VM's guest kernel: a unicast ARP request
// to the guest bridge's own address. It never leaves the guest (the bridge
// delivers it locally), needs no code of ours in the guest, and its answer
// proves that the guest runs, that the link's virtio driver moves frames
// both ways, and, before the first answer, that the NIC has carrier (the
// guest's init takes the address only then).
#include <array>
#include <cstddef>
#include <cstdint>

#include "common/addr.hpp"

namespace ng::vm {

inline constexpr size_t kArpFrameLen = 42;
// The host end's address in the question; never on the wire outside.
inline constexpr std::array<uint8_t, 4> kHostLinkIp{169, 254, 0, 1};

std::array<std::byte, kArpFrameLen> guest_question(const Mac& host, const Mac& bridge,
                                                   const std::array<uint8_t, 4>& guest_ip);
// Whether the frame is the guest's answer to it.
bool is_guest_answer(const std::byte* frame, size_t len, const Mac& host, const Mac& bridge,
                     const std::array<uint8_t, 4>& guest_ip);

}  // namespace ng::vm

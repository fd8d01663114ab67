// protocol::decode on any bytes: refused with an error or decoded; whatever
// decodes encodes back to exactly the same bytes (every field has one
// encoding), so nothing the peer sends is silently reinterpreted.
#include <cstdint>
#include <span>
#include <vector>

#include "fuzz_support.hpp"
#include "protocol/protocol.hpp"

namespace proto = ng::protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto m = proto::decode(std::span<const uint8_t>(data, size));
  if (!m) {
    FUZZ_CHECK(!m.error().message.empty());
    return 0;
  }
  FUZZ_CHECK(size >= proto::kHeaderSize && size <= proto::kMaxMessage);
  FUZZ_CHECK(proto::type_name(*m) != nullptr);
  std::vector<uint8_t> again = proto::encode(*m);
  FUZZ_CHECK(again == std::vector<uint8_t>(data, data + size));
  return 0;
}

// Writes the seed corpora of the targets whose input is not text:
// protocol_decode (messages from the project's own encoder) and the two
// scripted targets, protocol_recv and ring, whose inputs are laid out the
// way FuzzedDataProvider reads them. Run by hand after changing a message
// or a script's steps:
//   build/fuzz/make_seeds tests/fuzz/corpus
// The text targets' seeds (config, control, metrics) are plain files.
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "protocol/protocol.hpp"

namespace proto = ng::protocol;

namespace {

// Builds an input for FuzzedDataProvider: integers are taken from the end
// (most significant byte first, as many bytes as the range needs), bytes
// and strings from the front.
class Script {
 public:
  template <typename T>
  Script& range(T min, T max, T value) {
    uint64_t span = static_cast<uint64_t>(max) - static_cast<uint64_t>(min);
    uint64_t v = static_cast<uint64_t>(value) - static_cast<uint64_t>(min);
    int bytes = 0;
    for (size_t off = 0; off < sizeof(T) * 8 && (span >> off) > 0; off += 8) ++bytes;
    for (int i = bytes - 1; i >= 0; --i) tail_.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  template <typename T>
  Script& integral(T value) {
    return range<T>(std::numeric_limits<T>::min(), std::numeric_limits<T>::max(), value);
  }
  Script& boolean(bool b) { return integral<uint8_t>(b ? 1 : 0); }
  Script& bytes(const std::vector<uint8_t>& b) {
    head_.insert(head_.end(), b.begin(), b.end());
    return *this;
  }
  // ConsumeRandomLengthString(): a backslash doubles, "\x" ends the string.
  Script& str(const std::string& s) {
    for (char c : s) {
      head_.push_back(static_cast<uint8_t>(c));
      if (c == '\\') head_.push_back('\\');
    }
    head_.push_back('\\');
    head_.push_back('x');
    return *this;
  }
  std::vector<uint8_t> data() const {
    std::vector<uint8_t> out = head_;
    out.insert(out.end(), tail_.rbegin(), tail_.rend());
    return out;
  }

 private:
  std::vector<uint8_t> head_;
  std::vector<uint8_t> tail_;
};

std::string g_root;

void write(const std::string& target, const std::string& name, const std::vector<uint8_t>& bytes) {
  std::string dir = g_root + "/" + target;
  ::mkdir(g_root.c_str(), 0755);
  ::mkdir(dir.c_str(), 0755);
  std::string path = dir + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
}

std::vector<std::pair<std::string, proto::Message>> messages() {
  proto::Setup s{{2, 0, 0, 0, 1, 1}, 1500, proto::Role::active, 256, 256, 65600, 33632256};
  return {
      {"hello", proto::Hello{2, 2, proto::kFeatureVnetHdr | proto::kFeatureHeartbeat, "web"}},
      {"hello_ack", proto::HelloAck{2, proto::kFeatureVnetHdr, "a", {2, 0, 0, 0, 0, 9}, 9000}},
      {"setup", s},
      {"setup_ack", proto::SetupAck{7}},
      {"activate", proto::Activate{proto::Role::active}},
      {"activate_ack", proto::ActivateAck{proto::Role::spare}},
      {"refuse", proto::Refuse{3, "MAC 02:00:00:00:01:01 is already served for web"}},
      {"fault", proto::Fault{proto::FaultKind::carrier, std::string(200, 'x')}},
  };
}

void protocol_decode() {
  for (const auto& [name, m] : messages()) write("protocol_decode", name, proto::encode(m));
}

// ---- protocol_recv: steps of protocol_recv_fuzz.cpp --------------------------

enum RecvOp { send_op = 0, receive_op = 2, hang_up_op = 3 };
constexpr size_t kMaxPayload = proto::kMaxMessage + 64;

void recv_step(Script& s, RecvOp op) { s.range<int>(0, 3, op); }

void fds(Script& s, std::vector<uint8_t> kinds) {
  s.range<size_t>(0, 9, kinds.size());
  for (uint8_t k : kinds) s.integral<uint8_t>(k);
}

void send_raw(Script& s, const std::vector<uint8_t>& bytes, std::vector<uint8_t> kinds) {
  recv_step(s, send_op);
  s.boolean(false);
  s.range<size_t>(0, kMaxPayload, bytes.size()).bytes(bytes);
  fds(s, kinds);
}

void send_hello(Script& s, std::vector<uint8_t> kinds) {
  recv_step(s, send_op);
  s.boolean(true).range<int>(0, 7, 0);
  s.integral<uint16_t>(2).integral<uint16_t>(2).integral<uint64_t>(3).str("web");
  fds(s, kinds);
}

void send_setup(Script& s, std::vector<uint8_t> kinds) {
  recv_step(s, send_op);
  s.boolean(true).range<int>(0, 7, 2);
  for (uint8_t b : {2, 0, 0, 0, 1, 1}) s.integral<uint8_t>(b);
  s.integral<uint32_t>(1500).boolean(true).integral<uint32_t>(256).integral<uint32_t>(256);
  s.integral<uint32_t>(65600).integral<uint64_t>(33632256);
  fds(s, kinds);
}

void send_fault(Script& s, std::vector<uint8_t> kinds) {
  recv_step(s, send_op);
  s.boolean(true).range<int>(0, 7, 7).range<int>(0, 3, 1).str("guest stopped answering");
  fds(s, kinds);
}

void protocol_recv() {
  // fd kinds: 0 memfd, 1 eventfd, 2 and 3 pipe ends, 4 /dev/null, 5 the receiving socket.
  {
    Script s;
    send_hello(s, {});
    recv_step(s, receive_op);
    write("protocol_recv", "hello", s.data());
  }
  {
    Script s;
    send_setup(s, {0, 1});  // the region memfd and (here) an eventfd for the doorbell
    recv_step(s, receive_op);
    write("protocol_recv", "setup_two_fds", s.data());
  }
  {
    Script s;
    send_setup(s, {0, 1, 2, 3, 4, 5});  // more than the receiver has room for
    recv_step(s, receive_op);
    send_hello(s, {5});
    recv_step(s, receive_op);
    write("protocol_recv", "too_many_fds", s.data());
  }
  {
    Script s;
    send_raw(s, std::vector<uint8_t>(proto::kMaxMessage + 1, 0x4e), {0});  // truncated in transit
    send_raw(s, {}, {1, 1});  // an empty packet with descriptors
    send_fault(s, {2, 3, 4, 0});
    recv_step(s, hang_up_op);
    recv_step(s, receive_op);
    write("protocol_recv", "raw_then_hang_up", s.data());
  }
}

// ---- ring: steps of ring_fuzz.cpp --------------------------------------------

enum RingOp {
  tap_to_ring = 0, ring_to_tap, before_sleep, watch, hold, resume_held, replay, setup,
  peer_bytes, peer_index, peer_desc, peer_drive, peer_attach
};
constexpr uint32_t kMinFrame = 24;

struct Ring {
  Script s;
  uint32_t slot_size;
  explicit Ring(uint8_t shape) : slot_size(2048u << ((shape >> 4) & 1)) { s.integral<uint8_t>(shape); }

  Ring& op(int backend, RingOp o) {
    s.boolean(backend == 1).range<int>(0, 12, o);
    return *this;
  }
  // n: the frames the ring has room for (min of its free slots and 32).
  Ring& tap(int backend, unsigned n, std::vector<uint32_t> lens) {
    op(backend, tap_to_ring);
    s.range<unsigned>(0, n + 1, static_cast<unsigned>(lens.size()));
    for (uint32_t len : lens) s.range<uint32_t>(0, slot_size, len);
    return *this;
  }
  // n: the frames available to the driver's consumer.
  Ring& drive_tx(int backend, unsigned n, unsigned released) {
    op(backend, peer_drive);
    s.boolean(true).range<unsigned>(0, n, released);
    return *this;
  }
  Ring& drive_rx(int backend, std::vector<uint32_t> lens) {
    op(backend, peer_drive);
    s.boolean(false).range<unsigned>(0, 8, static_cast<unsigned>(lens.size()));
    for (uint32_t len : lens) s.range<uint32_t>(kMinFrame, slot_size, len);
    return *this;
  }
  Ring& index(int backend, bool tx, size_t which, uint32_t value) {
    op(backend, peer_index);
    s.boolean(tx).range<size_t>(0, 2, which).boolean(false).boolean(false).integral<uint32_t>(value);
    return *this;
  }
  Ring& desc(int backend, bool tx, uint32_t i, uint32_t offset, uint32_t len) {
    op(backend, peer_desc);
    s.boolean(tx).integral<uint32_t>(i).boolean(false).integral<uint32_t>(offset);
    s.boolean(false).integral<uint32_t>(len);
    return *this;
  }
};

void ring() {
  {
    Ring r(0x00);  // 8 TX and 8 RX slots of 2048 bytes
    r.tap(0, 8, {60, 1514, 2048});
    r.drive_tx(0, 3, 3);
    r.op(0, watch);
    r.drive_rx(0, {64, 1514});
    r.op(0, ring_to_tap).op(0, before_sleep);
    write("ring", "round_trip", r.s.data());
  }
  {
    Ring r(0x00);
    r.tap(0, 8, {100, 200, 300, 400});
    r.drive_tx(0, 4, 1);
    r.op(0, replay);  // onto backend 1
    r.drive_tx(1, 3, 3);
    r.op(1, watch);
    write("ring", "failover_replay", r.s.data());
  }
  {
    Ring r(0x05);  // 16 and 16
    r.tap(0, 16, {64, 64, 64, 64, 64});
    r.op(0, hold).op(1, resume_held).op(1, watch);
    r.op(0, setup).tap(0, 16, {1000});
    write("ring", "hold_resume", r.s.data());
  }
  {
    Ring r(0x00);
    r.index(0, false, 0, 1000);  // the RX producer index far ahead
    r.op(0, ring_to_tap).op(0, setup);
    r.index(0, true, 2, 5);  // the TX done index past what was posted
    r.op(0, watch);
    write("ring", "bad_indices", r.s.data());
  }
  {
    Ring r(0x00);
    r.drive_rx(0, {64, 64});
    r.desc(0, false, 0, 2000, 100);  // runs past its slot
    r.op(0, ring_to_tap);
    write("ring", "bad_descriptor", r.s.data());
  }
  {
    Ring r(0x3f);  // 64 and 64 slots of 4096 bytes
    std::vector<uint32_t> lens(32, 4096);
    r.tap(1, 32, lens);
    r.drive_tx(1, 32, 16);
    r.tap(1, 32, {24, 25, 26});
    r.op(1, peer_attach).drive_tx(1, 19, 19);
    r.op(1, hold);
    write("ring", "large_batches", r.s.data());
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  protocol_decode();
  protocol_recv();
  ring();
  return 0;
}

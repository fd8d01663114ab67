#include "vm/gdbstub.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cstring>

#include "common/clock.hpp"
#include "common/unix_socket.hpp"

namespace ng::vm {
namespace {

constexpr size_t kRegisters = 17;  // rax..r15, rip
constexpr size_t kHexPerRegister = 16;

uint64_t le_hex_to_u64(std::string_view h) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) {
    v |= std::stoull(std::string(h.substr(i * 2, 2)), nullptr, 16) << (8 * i);
  }
  return v;
}

std::string u64_to_le_hex(uint64_t v) {
  std::string s;
  for (int i = 0; i < 8; ++i) s += fmt::format("{:02x}", (v >> (8 * i)) & 0xff);
  return s;
}

}  // namespace

std::string gdb_frame(const std::string& payload) {
  unsigned sum = 0;
  for (unsigned char c : payload) sum += c;
  return fmt::format("${}#{:02x}", payload, sum & 0xff);
}

Result<GdbStub> GdbStub::connect(const std::string& socket) {
  auto fd = connect_unix(SOCK_STREAM, socket, "driver VM's gdbstub");
  if (!fd) return tl::unexpected(fd.error());
  GdbStub g;
  g.fd_ = std::move(*fd);
  return g;
}

Status GdbStub::send(const std::string& payload) {
  std::string f = gdb_frame(payload);
  if (::send(fd_.get(), f.data(), f.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(f.size())) {
    return fail_errno("writing to the gdbstub");
  }
  return {};
}

// One packet's payload; acks ('+') are skipped and every packet is acked.
Result<std::string> GdbStub::receive(int timeout_ms) {
  uint64_t deadline = mono_ns() + uint64_t(timeout_ms) * 1'000'000;
  for (;;) {
    while (!buf_.empty() && (buf_[0] == '+' || buf_[0] == '-')) buf_.erase(0, 1);
    auto start = buf_.find('$');
    auto hash = start == std::string::npos ? std::string::npos : buf_.find('#', start);
    if (hash != std::string::npos && buf_.size() >= hash + 3) {
      std::string payload = buf_.substr(start + 1, hash - start - 1);
      buf_.erase(0, hash + 3);
      if (::send(fd_.get(), "+", 1, MSG_NOSIGNAL) != 1) return fail_errno("acking the gdbstub");
      return payload;
    }
    uint64_t now = mono_ns();
    if (now >= deadline) return std::string();
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>((deadline - now) / 1'000'000) + 1) <= 0) continue;
    char chunk[4096];
    ssize_t n = ::read(fd_.get(), chunk, sizeof(chunk));
    if (n <= 0) {
      auto e = fail("the gdbstub closed the connection");
      e.value().peer_gone = true;
      return e;
    }
    buf_.append(chunk, static_cast<size_t>(n));
    if (buf_.size() > (1u << 20)) return fail("the gdbstub sent more than 1 MiB without a packet");
  }
}

Result<std::string> GdbStub::request(const std::string& payload, int timeout_ms) {
  if (auto s = send(payload); !s) return tl::unexpected(s.error());
  auto r = receive(timeout_ms);
  // QEMU reports the stop it makes when a client connects ("T02...") on
  // its own; no request here but `?` asks for one.
  while (r && !r->empty() && ((*r)[0] == 'T' || (*r)[0] == 'S') && payload != "?") r = receive(timeout_ms);
  if (r && r->empty()) return fail("the gdbstub did not answer '{}' in {} ms", payload.substr(0, 8), timeout_ms);
  return r;
}

Result<std::vector<std::string>> GdbStub::requests(const std::vector<std::string>& payloads, int timeout_ms) {
  std::string frames;
  for (const auto& p : payloads) frames += gdb_frame(p);
  if (::send(fd_.get(), frames.data(), frames.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(frames.size())) {
    return fail_errno("writing to the gdbstub");
  }
  std::vector<std::string> replies;
  while (replies.size() < payloads.size()) {
    auto r = receive(timeout_ms);
    if (!r) return tl::unexpected(r.error());
    if (r->empty()) return fail("the gdbstub answered {} of {} packets in {} ms", replies.size(), payloads.size(), timeout_ms);
    if ((*r)[0] == 'T' || (*r)[0] == 'S') continue;  // the stop of a connect, as in request()
    replies.push_back(std::move(*r));
  }
  return replies;
}

Status GdbStub::resume(const std::string& payload) { return send(payload); }

Result<std::string> GdbStub::wait_stop(int timeout_ms) { return receive(timeout_ms); }

Result<std::string> GdbStub::interrupt() {
  if (::send(fd_.get(), "\x03", 1, MSG_NOSIGNAL) != 1) return fail_errno("interrupting through the gdbstub");
  auto r = receive(2000);
  if (r && r->empty()) return fail("the gdbstub did not stop the guest in 2 s");
  return r;
}

Result<std::vector<uint64_t>> GdbStub::registers(std::string* raw) {
  auto g = request("g");
  if (!g) return tl::unexpected(g.error());
  if (g->size() < kRegisters * kHexPerRegister || (*g)[0] == 'E') {
    return fail("the gdbstub's register dump is {} characters, too short ('{}')", g->size(), g->substr(0, 8));
  }
  std::vector<uint64_t> regs;
  for (size_t i = 0; i < kRegisters; ++i) {
    regs.push_back(le_hex_to_u64(std::string_view(*g).substr(i * kHexPerRegister, kHexPerRegister)));
  }
  *raw = *g;
  return regs;
}

Status GdbStub::set_registers(std::string raw, const std::vector<uint64_t>& regs) {
  for (size_t i = 0; i < kRegisters && i < regs.size(); ++i) {
    raw.replace(i * kHexPerRegister, kHexPerRegister, u64_to_le_hex(regs[i]));
  }
  auto r = request("G" + raw);
  if (!r) return tl::unexpected(r.error());
  if (*r != "OK") return fail("the gdbstub refused the registers: '{}'", r->substr(0, 8));
  return {};
}

}  // namespace ng::vm

#include "vm/guest_regflip.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <sstream>

#include "common/clock.hpp"
#include "inject/regflip.hpp"
#include "vm/gdbstub.hpp"

namespace ng::vm {

std::vector<GuestSymbol> guest_symbols(const std::string& console) {
  std::vector<GuestSymbol> syms;
  std::istringstream in(console);
  for (std::string line; std::getline(in, line);) {
    if (line.find("ng-guest: init") != std::string::npos) syms.clear();  // a later boot
    auto at = line.find("ng-guest: sym ");
    if (at == std::string::npos) continue;
    std::istringstream f(line.substr(at + 14));
    std::string addr, name;
    if (!(f >> addr >> name)) continue;
    syms.push_back({std::strtoull(addr.c_str(), nullptr, 16), name});
  }
  return syms;
}

std::string GuestFlipPlan::describe() const {
  return fmt::format("{} +{} steps {} bit {}", function, steps, inject::regflip_registers()[static_cast<size_t>(reg)], bit);
}

GuestFlipPlan plan_guest_regflip(uint64_t seed, std::vector<std::string> functions) {
  std::sort(functions.begin(), functions.end());
  // Fixed draw order, every draw taken, plain modulo: a seed names the same
  // fault on every machine.
  uint64_t state = seed;
  uint64_t f = inject::splitmix64(state), s = inject::splitmix64(state);
  uint64_t r = inject::splitmix64(state), b = inject::splitmix64(state);
  GuestFlipPlan p;
  if (!functions.empty()) p.function = functions[f % functions.size()];
  p.steps = static_cast<uint32_t>(s % kMaxSteps);
  p.reg = static_cast<int>(r % inject::regflip_registers().size());
  p.bit = static_cast<int>(b % 64);
  return p;
}

namespace {

// The rip field of a stop: read back through `g` rather than parsed from
// the T packet, whose register numbering depends on the target description.
Result<uint64_t> rip_now(GdbStub& g) {
  std::string raw;
  auto regs = g.registers(&raw);
  if (!regs) return tl::unexpected(regs.error());
  return (*regs)[16];
}

struct Detach {
  GdbStub& g;
  ~Detach() { (void)g.request("D", 1000); }
};

std::string breakpoint(char op, char type, uint64_t address) { return fmt::format("{}{},{:x},1", op, type, address); }

Status expect_ok(const std::vector<std::string>& replies, const char* what) {
  for (const auto& r : replies) {
    if (r != "OK") return fail("the gdbstub refused to {} a breakpoint: '{}'", what, r.substr(0, 8));
  }
  return {};
}

// The functions whose entry the guest reached within window_ms, each
// breakpoint cleared at its first hit so that a hot function costs one stop.
// Leaves the guest stopped with no breakpoint set.
Result<std::vector<std::string>> running_functions(GdbStub& g, const std::vector<GuestSymbol>& symbols, int window_ms) {
  std::vector<std::string> set;
  for (const auto& s : symbols) set.push_back(breakpoint('Z', '0', s.address));
  auto r = g.requests(set);
  if (!r) return tl::unexpected(r.error());
  if (auto s = expect_ok(*r, "set"); !s) return tl::unexpected(s.error());
  std::vector<bool> armed(symbols.size(), true);
  std::vector<std::string> ran;
  const uint64_t end = mono_ns() + uint64_t(window_ms) * 1'000'000;
  for (uint64_t now = mono_ns(); now < end; now = mono_ns()) {
    if (auto s = g.resume("c"); !s) return tl::unexpected(s.error());
    auto stop = g.wait_stop(static_cast<int>((end - now) / 1'000'000) + 1);
    if (!stop) return tl::unexpected(stop.error());
    if (stop->empty()) {
      if (auto i = g.interrupt(); !i) return tl::unexpected(i.error());
      break;
    }
    auto rip = rip_now(g);
    if (!rip) return tl::unexpected(rip.error());
    for (size_t i = 0; i < symbols.size(); ++i) {
      if (symbols[i].address != *rip || !armed[i]) continue;
      armed[i] = false;
      ran.push_back(symbols[i].name);
      auto cleared = g.request(breakpoint('z', '0', symbols[i].address));
      if (!cleared) return tl::unexpected(cleared.error());
    }
  }
  std::vector<std::string> clear;
  for (size_t i = 0; i < symbols.size(); ++i) {
    if (armed[i]) clear.push_back(breakpoint('z', '0', symbols[i].address));
  }
  if (clear.empty()) return ran;
  auto c = g.requests(clear);
  if (!c) return tl::unexpected(c.error());
  if (auto s = expect_ok(*c, "clear"); !s) return tl::unexpected(s.error());
  return ran;
}

// From the function's entry, plan.steps single steps, staying inside the
// module: a step that left it (a call out) ends them.
void step_on(GdbStub& g, uint32_t steps, uint64_t lo, uint64_t hi) {
  for (uint32_t i = 0; i < steps; ++i) {
    auto rip = rip_now(g);
    if (!rip || *rip < lo || *rip > hi + 0x10000) return;
    if (auto s = g.resume("s"); !s) return;
    auto st = g.wait_stop(1000);
    if (!st || st->empty()) return;
  }
}

}  // namespace

Result<std::vector<std::string>> profile_guest(const std::string& gdb_socket, const std::vector<GuestSymbol>& symbols,
                                               int window_ms) {
  auto g = GdbStub::connect(gdb_socket);
  if (!g) return tl::unexpected(g.error());
  Detach detach{*g};
  return running_functions(*g, symbols, window_ms);
}

Result<GuestFlipResult> apply_guest_regflip(const std::string& gdb_socket, const std::vector<GuestSymbol>& symbols,
                                            const GuestFlipPlan& plan, int wait_ms) {
  auto sym = std::find_if(symbols.begin(), symbols.end(), [&](const GuestSymbol& s) { return s.name == plan.function; });
  if (sym == symbols.end()) return fail("the driver has no function '{}' in this boot's symbols", plan.function);
  auto g = GdbStub::connect(gdb_socket);
  if (!g) return tl::unexpected(g.error());
  Detach detach{*g};
  GuestFlipResult out;
  out.plan = plan;
  uint64_t lo = symbols.front().address, hi = lo;
  for (const auto& s : symbols) {
    lo = std::min(lo, s.address);
    hi = std::max(hi, s.address);
  }
  const std::string set_bp = breakpoint('Z', '1', sym->address), clear_bp = breakpoint('z', '1', sym->address);
  auto set = g->request(set_bp);
  if (!set) return tl::unexpected(set.error());
  if (*set != "OK") return fail("the gdbstub refused the breakpoint at {:#x}: '{}'", sym->address, *set);
  if (auto s = g->resume("c"); !s) return tl::unexpected(s.error());
  auto stop = g->wait_stop(wait_ms);
  if (!stop) return tl::unexpected(stop.error());
  if (stop->empty()) {
    if (auto i = g->interrupt(); !i) return tl::unexpected(i.error());
    (void)g->request(clear_bp);
    return out;  // not reached: nothing flipped
  }
  (void)g->request(clear_bp);
  out.reached = true;
  step_on(*g, plan.steps, lo, hi);
  std::string raw;
  auto regs = g->registers(&raw);
  if (!regs) return tl::unexpected(regs.error());
  out.rip = (*regs)[16];
  out.offset = out.rip - sym->address;
  auto& v = (*regs)[static_cast<size_t>(plan.reg)];
  out.before = v;
  v ^= uint64_t{1} << plan.bit;
  out.after = v;
  if (auto s = g->set_registers(raw, *regs); !s) return tl::unexpected(s.error());
  out.flipped_mono_ns = mono_ns();
  return out;
}

}  // namespace ng::vm

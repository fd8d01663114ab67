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

}  // namespace

Result<GuestFlipResult> apply_guest_regflip(const std::string& gdb_socket, const std::vector<GuestSymbol>& symbols,
                                            const GuestFlipPlan& plan, int wait_ms) {
  auto sym = std::find_if(symbols.begin(), symbols.end(), [&](const GuestSymbol& s) { return s.name == plan.function; });
  if (sym == symbols.end()) return fail("the driver has no function '{}' in this boot's symbols", plan.function);
  uint64_t lo = symbols.front().address, hi = lo;
  for (const auto& s : symbols) {
    lo = std::min(lo, s.address);
    hi = std::max(hi, s.address);
  }
  auto g = GdbStub::connect(gdb_socket);
  if (!g) return tl::unexpected(g.error());
  Detach detach{*g};
  std::string bp = fmt::format("1,{:x},1", sym->address);
  auto set = g->request("Z" + bp);
  if (!set) return tl::unexpected(set.error());
  if (*set != "OK") return fail("the gdbstub refused the breakpoint at {:#x}: '{}'", sym->address, *set);
  GuestFlipResult out;
  out.plan = plan;
  if (auto s = g->resume("c"); !s) return tl::unexpected(s.error());
  auto stop = g->wait_stop(wait_ms);
  if (!stop) return tl::unexpected(stop.error());
  if (stop->empty()) {
    if (auto i = g->interrupt(); !i) return tl::unexpected(i.error());
    (void)g->request("z" + bp);
    return out;  // not reached: nothing flipped
  }
  (void)g->request("z" + bp);
  out.reached = true;
  // Steps stay inside the module: a step that left it (a call out) ends them.
  for (uint32_t i = 0; i < plan.steps; ++i) {
    auto rip = rip_now(*g);
    if (!rip || *rip < lo || *rip > hi + 0x10000) break;
    if (auto s = g->resume("s"); !s) return tl::unexpected(s.error());
    auto st = g->wait_stop(1000);
    if (!st || st->empty()) break;
  }
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

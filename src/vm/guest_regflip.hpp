#pragma once
// regflip into a driver VM's NIC driver, the fault injection of the paper's
// evaluation: a hardware breakpoint on a function of the driver module
// (the guest's init prints the module's functions and their addresses at
// every boot: KASLR moves them), a few single steps on from there so the
// fault lands on any instruction, not only on an entry, then one bit of
// one general-purpose register (or rip) flipped, and the guest resumed.
// The function is one that runs: most of a NIC driver's code (probe,
// ethtool, power management, other chips' variants) never does under
// traffic, and a fault there would never be activated. A short profile, a
// software breakpoint on every function's entry, finds the ones that do;
// the seed chooses among those, sorted by name. The profile slows a TCG
// guest down for a while (every breakpoint set or cleared retranslates all
// its code), so it is taken on a guest that carries no traffic: the warm
// spare, whose driver moves the path probes.
#include <cstdint>
#include <string>
#include <vector>

#include "common/error.hpp"

namespace ng::vm {

struct GuestSymbol {
  uint64_t address = 0;
  std::string name;
};

// The module's functions as the guest printed them on its console
// ("ng-guest: sym ADDR NAME"), from the last boot in the file.
std::vector<GuestSymbol> guest_symbols(const std::string& console_text);

struct GuestFlipPlan {
  std::string function;  // from the symbols sorted by name: the same on every boot
  uint32_t steps = 0;    // single steps after the breakpoint, [0, kMaxSteps)
  int reg = 0;           // index into inject::regflip_registers()
  int bit = 0;           // 0..63
  std::string describe() const;  // "e1000_xmit_frame +5 steps rsi bit 3"
};
inline constexpr uint32_t kMaxSteps = 16;

// Pure: the same seed and the same function names give the same plan.
GuestFlipPlan plan_guest_regflip(uint64_t seed, std::vector<std::string> functions);

// The names of the functions whose entry the guest reached within
// window_ms, through the gdbstub socket. Detaches on every path.
Result<std::vector<std::string>> profile_guest(const std::string& gdb_socket, const std::vector<GuestSymbol>& symbols,
                                               int window_ms);

struct GuestFlipResult {
  GuestFlipPlan plan;
  bool reached = false;  // the breakpoint was hit within the wait; else nothing was flipped
  uint64_t rip = 0;      // where the flip happened
  uint64_t offset = 0;   // rip - the function's address
  uint64_t before = 0, after = 0;
  uint64_t flipped_mono_ns = 0;
};

// Carries the plan out through the gdbstub socket, waiting at most wait_ms
// for the breakpoint. Every path detaches, so the guest runs on.
Result<GuestFlipResult> apply_guest_regflip(const std::string& gdb_socket, const std::vector<GuestSymbol>& symbols,
                                            const GuestFlipPlan& plan, int wait_ms);

}  // namespace ng::vm

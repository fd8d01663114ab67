// parse_config() on any text, the byte check before the TOML parser
// included. A config it accepts must keep what config.hpp promises, write
// itself out (to_toml) as a config that parses to the same thing, and have
// nothing to block a reload onto itself.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "manager/config.hpp"

namespace manager = ng::manager;

namespace {

bool has_nul(const std::string& s) { return s.find('\0') != std::string::npos; }

// Names, paths and addresses reach the kernel as C strings: one with a NUL
// byte would name something other than what the config says.
bool any_nul(const manager::Config& c) {
  bool nul = has_nul(c.state_dir) || has_nul(c.control_socket) || has_nul(c.metrics.listen);
  for (const auto& d : c.drivers) {
    nul = nul || has_nul(d.name) || has_nul(d.nic) || has_nul(d.netns) || has_nul(d.vm.image_dir) ||
          has_nul(d.vm.nic_model) || has_nul(d.vm.accel);
  }
  for (const auto& a : c.apps) {
    nul = nul || has_nul(a.name) || has_nul(a.netns) || has_nul(a.rx_probe_target);
    for (const auto& v : {a.ipv4, a.ipv6}) {
      for (const auto& x : v) nul = nul || has_nul(x.text);
    }
  }
  return nul;
}

void check_accepted(const manager::Config& c) {
  FUZZ_CHECK(!any_nul(c));
  FUZZ_CHECK(!c.state_dir.empty() && c.state_dir.front() == '/');
  FUZZ_CHECK(c.state_dir == "/" || c.state_dir.back() != '/');
  FUZZ_CHECK(!c.control_socket.empty() && c.control_socket.front() == '/');
  FUZZ_CHECK(!c.drivers.empty());
  FUZZ_CHECK(c.drivers.size() == (c.policy == manager::Policy::warm_spare ? 2u : 1u));
  FUZZ_CHECK(manager::reload_blockers(c, c).empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto c = manager::parse_config(text, "fuzz.toml");
  if (!c) {
    FUZZ_CHECK(!c.error().message.empty());
    return 0;
  }
  check_accepted(*c);
  std::string written = manager::to_toml(*c);
  auto again = manager::parse_config(written, "written.toml");
  if (!again) {
    std::fprintf(stderr, "to_toml() wrote a config parse_config() refuses:\n%s\n%s\n",
                 written.c_str(), again.error().message.c_str());
    FUZZ_CHECK(false);
  }
  check_accepted(*again);
  FUZZ_CHECK(manager::to_toml(*again) == written);
  FUZZ_CHECK(manager::reload_blockers(*c, *again).empty());
  return 0;
}

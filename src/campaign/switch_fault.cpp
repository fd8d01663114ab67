#include "campaign/switch_fault.hpp"

#include "common/clock.hpp"
#include "netlink/netlink.hpp"

namespace ng::campaign {
namespace {

constexpr std::string_view kCablePull = "cable-pull";
constexpr std::string_view kPortBlock = "port-block";

Result<std::string> switch_port(const lab::Lab& lab, const std::string& domain) {
  for (const auto& d : lab.drivers()) {
    if (d.name == domain || "driver-" + d.name == domain) return d.switch_port;
  }
  return fail("lab {} has no driver domain '{}'", lab.suffix(), domain);
}

template <typename F>
Status on_switch(const lab::Lab& lab, F&& act) {
  auto ns = netlink::open_netns(lab.info().switch_netns);
  if (!ns) return tl::unexpected(ns.error());
  auto nl = netlink::Session::open(ns->get());
  if (!nl) return tl::unexpected(nl.error());
  return act(*nl);
}

}  // namespace

bool is_switch_fault(std::string_view kind) { return kind == kCablePull || kind == kPortBlock; }

std::string switch_fault_list() { return fmt::format("{}, {}", kCablePull, kPortBlock); }

Result<uint64_t> inject_switch_fault(const lab::Lab& lab, const std::string& domain, std::string_view kind) {
  auto port = switch_port(lab, domain);
  if (!port) return tl::unexpected(port.error());
  auto done = on_switch(lab, [&](netlink::Session& nl) {
    return kind == kCablePull ? nl.set_up(*port, false) : nl.release(*port);
  });
  if (!done) return tl::unexpected(done.error());
  return mono_ns();
}

Status repair_switch_fault(const lab::Lab& lab, const std::string& domain, std::string_view kind) {
  auto port = switch_port(lab, domain);
  if (!port) return tl::unexpected(port.error());
  return on_switch(lab, [&](netlink::Session& nl) -> Status {
    if (kind == kPortBlock) {
      if (auto s = nl.set_master(*port, lab.info().bridge); !s) return s;
    }
    return nl.set_up(*port, true);
  });
}

}  // namespace ng::campaign

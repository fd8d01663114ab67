#include "manager/config.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <sstream>

#include <fmt/ranges.h>
#include <toml++/toml.h>

#include "common/hash.hpp"
#include "common/text.hpp"
#include "manager/metrics.hpp"
#include "ring/ring.hpp"
#include "vm/vm.hpp"

namespace ng::manager {

const char* policy_name(Policy p) { return p == Policy::restart ? "restart" : "warm-spare"; }

uint32_t Config::max_app_mtu() const {
  uint32_t m = 0;
  for (const auto& a : apps) m = std::max(m, a.mtu);
  return m;
}

namespace {

constexpr size_t kMaxSocketPath = sizeof(sockaddr_un{}.sun_path) - 1;

std::string describe(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return fmt::format("\"{}\"", n.as_string()->get());
    case toml::node_type::integer: return std::to_string(n.as_integer()->get());
    case toml::node_type::floating_point: return fmt::format("{}", n.as_floating_point()->get());
    case toml::node_type::boolean: return n.as_boolean()->get() ? "true" : "false";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    default: return "a date/time";
  }
}

// Collects every problem; the config is refused once all were found.
class Errors {
 public:
  explicit Errors(std::string_view origin) : origin_(origin) {}

  void at(const toml::node* n, std::string_view path, std::string_view what) {
    std::string where(origin_);
    if (n != nullptr && n->source().begin.line > 0) where += fmt::format(":{}", n->source().begin.line);
    std::string value = n != nullptr ? " = " + describe(*n) : "";
    list_.push_back(fmt::format("{}: {}{}: {}", where, path, value, what));
  }
  bool empty() const { return list_.empty(); }
  Error error() const {
    return Error{fmt::format("{} has {} error{}:\n  {}", origin_, list_.size(),
                             list_.size() == 1 ? "" : "s", fmt::join(list_, "\n  "))};
  }

 private:
  std::string origin_;
  std::vector<std::string> list_;
};

// Typed access to one table; refuses keys it does not know on construction.
class TableReader {
 public:
  TableReader(const toml::table& t, std::string path, std::vector<std::string_view> allowed,
              Errors& errors)
      : t_(t), path_(std::move(path)), errors_(errors) {
    for (auto&& [key, node] : t_) {
      if (std::find(allowed.begin(), allowed.end(), key.str()) == allowed.end()) {
        errors_.at(&node, key_path(key.str()),
                   fmt::format("unknown key; {} allows: {}", path_.empty() ? "the top level" : path_,
                               fmt::join(allowed, ", ")));
      }
    }
  }

  std::string key_path(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }
  const toml::node* node(std::string_view key) const { return t_.get(key); }

  std::optional<std::string> string(std::string_view key, bool required) {
    const toml::node* n = present(key, required, "a string");
    if (n == nullptr) return std::nullopt;
    if (!n->is_string()) return type_error(n, key, "a string");
    if (nul_error(n, key_path(key))) return std::nullopt;
    return n->as_string()->get();
  }

  std::optional<int64_t> integer(std::string_view key, bool required, int64_t min, int64_t max) {
    const toml::node* n = present(key, required, "an integer");
    if (n == nullptr) return std::nullopt;
    if (!n->is_integer()) return type_error(n, key, "an integer");
    int64_t v = n->as_integer()->get();
    if (v < min || v > max) {
      errors_.at(n, key_path(key), fmt::format("out of range: expected {} to {}", min, max));
      return std::nullopt;
    }
    return v;
  }

  // An optional integer in [min, max] stored into a uint32_t field, left as is when absent.
  void u32(std::string_view key, int64_t min, int64_t max, uint32_t& field) {
    if (auto v = integer(key, false, min, max)) field = static_cast<uint32_t>(*v);
  }

  std::vector<std::pair<const toml::node*, std::string>> strings(std::string_view key) {
    std::vector<std::pair<const toml::node*, std::string>> out;
    const toml::node* n = t_.get(key);
    if (n == nullptr) return out;
    if (!n->is_array()) {
      type_error(n, key, "an array of strings");
      return out;
    }
    const auto& arr = *n->as_array();
    for (size_t i = 0; i < arr.size(); ++i) {
      std::string p = fmt::format("{}[{}]", key_path(key), i);
      if (!arr[i].is_string()) {
        errors_.at(&arr[i], p, "expected a string");
        continue;
      }
      if (nul_error(&arr[i], p)) continue;
      out.emplace_back(&arr[i], arr[i].as_string()->get());
    }
    return out;
  }

 private:
  const toml::node* present(std::string_view key, bool required, std::string_view type) {
    const toml::node* n = t_.get(key);
    if (n == nullptr && required) {
      errors_.at(nullptr, key_path(key), fmt::format("missing; expected {}", type));
    }
    return n;
  }
  // Every string here is a name, a path or an address, and reaches the
  // kernel as a C string that ends at a NUL byte (TOML writes one as
  // \u0000): state_dir "/run/a\u0000b" would put every socket of the
  // manager at the one path /run/a. Found by tests/fuzz/config_fuzz.cpp.
  bool nul_error(const toml::node* n, const std::string& path) {
    if (n->as_string()->get().find('\0') == std::string::npos) return false;
    errors_.at(n, path, "a NUL byte (\\u0000) is not allowed in a name, path or address");
    return true;
  }
  std::nullopt_t type_error(const toml::node* n, std::string_view key, std::string_view type) {
    errors_.at(n, key_path(key), fmt::format("wrong type; expected {}", type));
    return std::nullopt;
  }

  const toml::table& t_;
  std::string path_;
  Errors& errors_;
};

bool valid_domain_name(const std::string& s) {
  static const std::regex re("[a-z0-9-]{1,15}");
  return std::regex_match(s, re);
}

// Interface names: what the kernel accepts minus characters that make shell
// and path use awkward.
bool valid_ifname(const std::string& s) {
  static const std::regex re("[A-Za-z0-9_.-]{1,15}");
  return std::regex_match(s, re) && s != "." && s != "..";
}

// Namespace names become file names under /run/netns.
bool valid_netns_name(const std::string& s) {
  static const std::regex re("[A-Za-z0-9_.-]{1,64}");
  return std::regex_match(s, re) && s != "." && s != "..";
}

// Remembers first uses of a value so later duplicates can name the first.
class Unique {
 public:
  explicit Unique(std::string what) : what_(std::move(what)) {}
  void check(Errors& e, const toml::node* n, const std::string& path, const std::string& value) {
    auto [it, inserted] = seen_.emplace(value, path);
    if (!inserted) e.at(n, path, fmt::format("duplicate {}: {} already uses it", what_, it->second));
  }

 private:
  std::string what_;
  std::map<std::string, std::string> seen_;
};

struct Parser {
  Errors errors;
  Config config;
  Unique netns{"network namespace"};

  explicit Parser(std::string_view origin) : errors(origin) { config.origin = origin; }

  void parse_root(const toml::table& root) {
    TableReader r(root, "", {"manager", "ring", "detect", "metrics", "driver", "app"}, errors);
    parse_manager(root);
    parse_ring(root);
    parse_detect(root);
    parse_metrics(root);
    parse_drivers(root);
    parse_apps(root);
    check_policy(root);
    size_driver_memory(root);
    check_socket_paths(root);
  }

  const toml::table* table(const toml::table& root, std::string_view key, bool required) {
    const toml::node* n = root.get(key);
    if (n == nullptr) {
      if (required) errors.at(nullptr, key, fmt::format("missing; expected a [{}] table", key));
      return nullptr;
    }
    if (!n->is_table()) {
      errors.at(n, key, fmt::format("wrong type; expected a [{}] table", key));
      return nullptr;
    }
    return n->as_table();
  }

  void parse_manager(const toml::table& root) {
    // Without a state_dir (or a [manager] table at all) the manager is the
    // host's one: /run/nicguard, whose control.sock the commands find.
    config.state_dir = kDefaultStateDir;
    config.control_socket = config.path("control.sock");
    const toml::table* t = table(root, "manager", false);
    if (t == nullptr) return;
    TableReader r(*t, "manager",
                  {"state_dir", "policy", "control_socket", "spare_restart_delay_ms", "realtime_priority"},
                  errors);
    r.u32("spare_restart_delay_ms", 0, 60000, config.spare_restart_delay_ms);
    r.u32("realtime_priority", 0, 98, config.realtime_priority);
    if (auto dir = r.string("state_dir", false)) {
      while (dir->size() > 1 && dir->back() == '/') dir->pop_back();
      if (dir->empty() || dir->front() != '/' || *dir == "/") {
        errors.at(r.node("state_dir"), "manager.state_dir",
                  "expected an absolute directory path other than /, e.g. /run/nicguard/main");
      }
      config.state_dir = *dir;
    }
    if (auto p = r.string("policy", false)) {
      if (*p == "warm-spare") {
        config.policy = Policy::warm_spare;
      } else if (*p == "restart") {
        config.policy = Policy::restart;
      } else {
        errors.at(r.node("policy"), "manager.policy", "expected \"warm-spare\" or \"restart\"");
      }
    }
    if (auto s = r.string("control_socket", false)) {
      if (s->empty() || s->front() != '/') {
        errors.at(r.node("control_socket"), "manager.control_socket", "expected an absolute path");
      }
      config.control_socket = *s;
    } else {
      config.control_socket = config.path("control.sock");
    }
  }

  void parse_detect(const toml::table& root) {
    const toml::table* t = table(root, "detect", false);
    if (t == nullptr) return;
    TableReader r(*t, "detect",
                  {"heartbeat_ms", "hang_timeout_ms", "stall_timeout_ms", "carrier", "rx_probe_interval_ms",
                   "rx_probe_timeout_ms", "path_probe_us"},
                  errors);
    auto& d = config.detect;
    r.u32("heartbeat_ms", 1, 1000, d.heartbeat_ms);
    r.u32("hang_timeout_ms", 2, 10000, d.hang_timeout_ms);
    r.u32("stall_timeout_ms", 5, 60000, d.stall_timeout_ms);
    r.u32("rx_probe_interval_ms", 10, 10000, d.rx_probe_interval_ms);
    r.u32("rx_probe_timeout_ms", 20, 60000, d.rx_probe_timeout_ms);
    r.u32("path_probe_us", 0, 100000, d.path_probe_us);
    if (d.path_probe_us != 0 && d.path_probe_us < 100) {
      errors.at(r.node("path_probe_us"), "detect.path_probe_us",
                fmt::format("{} us would flood the switch: use 100 or more, or 0 for no path probes",
                            d.path_probe_us));
    }
    if (d.rx_probe_timeout_ms < 2 * d.rx_probe_interval_ms) {
      errors.at(r.node("rx_probe_timeout_ms"), "detect.rx_probe_timeout_ms",
                fmt::format("{} ms leaves room for fewer than two probes every {} ms: make it at least twice "
                            "rx_probe_interval_ms",
                            d.rx_probe_timeout_ms, d.rx_probe_interval_ms));
    }
    if (const toml::node* n = r.node("carrier")) {
      if (n->is_boolean()) {
        d.carrier = n->as_boolean()->get();
      } else {
        errors.at(n, "detect.carrier", "wrong type; expected true or false");
      }
    }
  }

  void parse_metrics(const toml::table& root) {
    const toml::table* t = table(root, "metrics", false);
    if (t == nullptr) return;
    TableReader r(*t, "metrics", {"listen"}, errors);
    if (auto l = r.string("listen", false)) {
      if (auto s = check_metrics_listen(*l); !s) {
        errors.at(r.node("listen"), "metrics.listen", s.error().message);
      }
      config.metrics.listen = *l;
    }
  }

  void parse_ring(const toml::table& root) {
    const toml::table* t = table(root, "ring", false);
    if (t == nullptr) return;
    TableReader r(*t, "ring", {"tx_slots", "rx_slots", "slot_size"}, errors);
    auto& ring = config.ring;
    r.u32("tx_slots", 0, UINT32_MAX, ring.tx_slots);
    r.u32("rx_slots", 0, UINT32_MAX, ring.rx_slots);
    r.u32("slot_size", 0, UINT32_MAX, ring.slot_size);
    if (auto l = ring::compute_layout(ring.tx_slots, ring.rx_slots, ring.slot_size); !l) {
      errors.at(t, "ring", l.error().message);
    }
  }

  // Array of tables; a single [driver] table is the usual mistake.
  const toml::array* table_array(const toml::table& root, std::string_view key) {
    const toml::node* n = root.get(key);
    if (n == nullptr) return nullptr;
    const toml::array* a = n->as_array();
    if (a == nullptr || !a->is_array_of_tables()) {
      errors.at(n, key, fmt::format("wrong type; expected one [[{}]] table per entry", key));
      return nullptr;
    }
    return a;
  }

  void parse_drivers(const toml::table& root) {
    const toml::array* arr = table_array(root, "driver");
    if (arr == nullptr) {
      if (root.get("driver") == nullptr) {
        errors.at(nullptr, "driver", "missing; expected at least one [[driver]] table");
      }
      return;
    }
    Unique names("driver name"), nics("NIC");
    for (size_t i = 0; i < arr->size(); ++i) {
      std::string path = fmt::format("driver[{}]", i);
      TableReader r(*(*arr)[i].as_table(), path, {"name", "kind", "nic", "netns", "memory_limit_mb", "vm"},
                    errors);
      DriverConfig d;
      parse_kind(r, d);
      if (auto name = r.string("name", true)) {
        d.name = *name;
        check_name(r, "name", d.name);
        names.check(errors, r.node("name"), r.key_path("name"), d.name);
      }
      if (auto nic = r.string("nic", true)) {
        d.nic = *nic;
        if (!valid_ifname(d.nic)) {
          errors.at(r.node("nic"), r.key_path("nic"),
                    "expected an interface name: 1 to 15 of [A-Za-z0-9_.-]");
        }
        nics.check(errors, r.node("nic"), r.key_path("nic"), d.nic);
      }
      d.netns = r.string("netns", false).value_or("ng-drv-" + d.name);
      check_netns(r, d.netns);
      if (auto m = r.integer("memory_limit_mb", false, 32, 1 << 20)) {
        d.memory_limit_mb = static_cast<uint32_t>(*m);
        d.memory_limit_set = true;
      }
      config.drivers.push_back(std::move(d));
    }
  }

  void parse_kind(TableReader& r, DriverConfig& d) {
    if (auto k = r.string("kind", false)) {
      if (*k == "vm") {
        d.kind = DriverKind::vm;
      } else if (*k != "process") {
        errors.at(r.node("kind"), r.key_path("kind"), "expected \"process\" or \"vm\"");
      }
    }
    const toml::node* n = r.node("vm");
    if (n == nullptr) return;
    if (d.kind != DriverKind::vm) {
      errors.at(n, r.key_path("vm"), "only a driver of kind = \"vm\" has a vm table; add kind = \"vm\" or remove it");
      return;
    }
    if (!n->is_table()) {
      errors.at(n, r.key_path("vm"), "wrong type; expected a table");
      return;
    }
    parse_vm(TableReader(*n->as_table(), r.key_path("vm"),
                         {"nic_model", "memory_mb", "accel", "image_dir", "boot_timeout_ms"}, errors),
             d.vm);
  }

  void parse_vm(TableReader r, VmConfig& v) {
    if (auto m = r.string("nic_model", false)) {
      v.nic_model = *m;
      if (!vm::known_nic_model(v.nic_model)) {
        errors.at(r.node("nic_model"), r.key_path("nic_model"),
                  fmt::format("unknown NIC model; expected one of {}", fmt::join(vm::kNicModels, ", ")));
      }
    }
    // The guest image's kernel runs out of memory while booting in 80 MiB.
    r.u32("memory_mb", 96, 1 << 16, v.memory_mb);
    if (auto a = r.string("accel", false)) {
      v.accel = *a;
      if (v.accel != "auto" && v.accel != "tcg" && v.accel != "kvm") {
        errors.at(r.node("accel"), r.key_path("accel"), "expected \"auto\", \"tcg\" or \"kvm\"");
      }
    }
    if (auto d = r.string("image_dir", false)) {
      v.image_dir = *d;
      if (v.image_dir.empty() || v.image_dir[0] != '/') {
        errors.at(r.node("image_dir"), r.key_path("image_dir"), "expected an absolute path");
      }
    }
    r.u32("boot_timeout_ms", 1000, 3'600'000, v.boot_timeout_ms);
  }

  void parse_apps(const toml::table& root) {
    const toml::array* arr = table_array(root, "app");
    if (arr == nullptr) return;
    Unique names("app name"), macs("MAC address"), addrs("address");
    for (size_t i = 0; i < arr->size(); ++i) {
      std::string path = fmt::format("app[{}]", i);
      TableReader r(*(*arr)[i].as_table(), path,
                    {"name", "netns", "mac", "ipv4", "ipv6", "mtu", "rx_probe_target"}, errors);
      AppConfig a;
      if (auto name = r.string("name", true)) {
        a.name = *name;
        check_name(r, "name", a.name);
        names.check(errors, r.node("name"), r.key_path("name"), a.name);
      }
      a.netns = r.string("netns", false).value_or("ng-app-" + a.name);
      check_netns(r, a.netns);
      if (auto mac = r.string("mac", true)) {
        if (auto m = parse_mac(*mac)) {
          a.mac = *m;
          macs.check(errors, r.node("mac"), r.key_path("mac"), format_mac(*m));
        } else {
          errors.at(r.node("mac"), r.key_path("mac"), m.error().message);
        }
      }
      if (auto mtu = r.integer("mtu", false, 68, 9000)) a.mtu = static_cast<uint32_t>(*mtu);
      a.ipv4 = addresses(r, "ipv4", AF_INET, addrs);
      a.ipv6 = addresses(r, "ipv6", AF_INET6, addrs);
      if (auto target = r.string("rx_probe_target", false)) {
        a.rx_probe_target = *target;
        check_probe_target(r, a);
      }
      if (!a.ipv6.empty() && a.mtu < 1280) {
        errors.at(r.node("mtu"), r.key_path("mtu"), "IPv6 needs an MTU of at least 1280");
      }
      config.apps.push_back(std::move(a));
    }
  }

  // The target must be a plain IPv4 address the app can ask from one of its own.
  void check_probe_target(TableReader& r, const AppConfig& a) {
    auto c = parse_cidr(a.rx_probe_target + "/32");
    const char* why = nullptr;
    if (!c || c->family != AF_INET) {
      why = "is not an IPv4 address; give a neighbour on the NIC's segment, e.g. the gateway";
    } else if (a.ipv4.empty()) {
      why = "needs an IPv4 address of the app to ask from; add one to ipv4 or remove rx_probe_target";
    }
    if (why != nullptr) {
      errors.at(r.node("rx_probe_target"), r.key_path("rx_probe_target"),
                fmt::format("'{}' {}", a.rx_probe_target, why));
    }
  }

  std::vector<Cidr> addresses(TableReader& r, std::string_view key, int family, Unique& seen) {
    std::vector<Cidr> out;
    const char* want = family == AF_INET ? "IPv4" : "IPv6";
    auto list = r.strings(key);
    for (size_t i = 0; i < list.size(); ++i) {
      auto [node, text] = list[i];
      std::string path = fmt::format("{}[{}]", r.key_path(key), i);
      auto c = parse_cidr(text);
      if (!c) {
        errors.at(node, path, c.error().message);
      } else if (c->family != family) {
        errors.at(node, path, fmt::format("not an {0} address: {1} lists {0} address/prefix values",
                                          want, key));
      } else {
        seen.check(errors, node, path, address_text(*c));
        out.push_back(*c);
      }
    }
    return out;
  }

  void check_name(TableReader& r, std::string_view key, const std::string& name) {
    if (!valid_domain_name(name)) {
      errors.at(r.node(key), r.key_path(key),
                "expected 1 to 15 characters of lower-case letters, digits and '-'");
    }
  }

  void check_netns(TableReader& r, const std::string& name) {
    const toml::node* n = r.node("netns");
    if (!valid_netns_name(name)) {
      errors.at(n, r.key_path("netns"),
                fmt::format("'{}' is not a namespace name: expected 1 to 64 of [A-Za-z0-9_.-]", name));
      return;
    }
    // A shared namespace would let one domain see another's interfaces.
    netns.check(errors, n, r.key_path("netns"), name);
  }

  // Every app domain maps one ring region into each driver domain, and the
  // driver's address-space limit must hold them all, or the last app
  // domains would be refused at connect time instead of here.
  void size_driver_memory(const toml::table& root) {
    auto layout = ring::compute_layout(config.ring.tx_slots, config.ring.rx_slots,
                                       config.ring.slot_size);
    if (!layout) return;
    uint64_t region_mb = (layout->region_size + (1u << 20) - 1) >> 20;
    uint64_t needed = kDriverBaseMemoryMb + region_mb * config.apps.size();
    const toml::array* arr = root["driver"].as_array();
    for (size_t i = 0; i < config.drivers.size(); ++i) {
      auto& d = config.drivers[i];
      if (!d.memory_limit_set) {
        d.memory_limit_mb = static_cast<uint32_t>(std::max<uint64_t>(d.memory_limit_mb, needed));
        continue;
      }
      if (d.memory_limit_mb >= needed) continue;
      const toml::node* n = arr != nullptr && i < arr->size() && (*arr)[i].as_table() != nullptr
                                ? (*arr)[i].as_table()->get("memory_limit_mb")
                                : nullptr;
      errors.at(n, fmt::format("driver[{}].memory_limit_mb", i),
                fmt::format("too small for {} app domains: each maps a {} MiB ring region into "
                            "the driver domain; expected at least {} (or leave it out)",
                            config.apps.size(), region_mb, needed));
    }
  }

  void check_policy(const toml::table& root) {
    size_t want = config.policy == Policy::warm_spare ? 2 : 1;
    if (config.drivers.empty() || config.drivers.size() == want) return;
    const toml::node* p = nullptr;
    if (const toml::table* m = root.get_as<toml::table>("manager")) p = m->get("policy");
    errors.at(p, "manager.policy",
              fmt::format("policy {} needs exactly {} [[driver]] table{}, the file has {}{}",
                          policy_name(config.policy), want, want == 1 ? "" : "s",
                          config.drivers.size(),
                          p == nullptr ? " (policy defaults to warm-spare)" : ""));
  }

  void check_socket_paths(const toml::table& root) {
    if (config.state_dir.empty()) return;
    std::vector<std::string> paths{config.control_socket};
    for (const auto& d : config.drivers) paths.push_back(config.driver_socket(d.name));
    for (const auto& p : paths) {
      if (p.size() <= kMaxSocketPath) continue;
      const toml::node* n = nullptr;
      if (const toml::table* m = root.get_as<toml::table>("manager")) n = m->get("state_dir");
      errors.at(n, "manager.state_dir",
                fmt::format("socket path {} is {} bytes; Unix socket paths hold at most {}: "
                            "choose a shorter state_dir",
                            p, p.size(), kMaxSocketPath));
      return;
    }
  }
};

}  // namespace

namespace {

// Where a byte outside ASCII stands outside a string or a comment, as
// "LINE:COLUMN: byte 0xEF outside a string or a comment", or "". TOML allows
// such bytes only there, and the parser this build uses (toml++ 3.3.0)
// reaches undefined behaviour on some of them (EF BB AF at the start of a
// file, for one: its test for whitespace hits __builtin_unreachable on
// U+00A1..U+0499, among others), so they are refused before it sees them.
// A UTF-8 byte-order mark at the start is fine.
//
// Where a string starts is toml++'s to say, found by tests/fuzz/config_fuzz.cpp:
// a bare value (1"...", +{='...') runs to whitespace, ']', '}', ',' or '#'
// whatever quotes it holds, so only a quote where a key or a value starts
// opens a string. And inside a multi-line basic string toml++ tests for
// whitespace the byte after a backslash and what a line-ending backslash
// trims: a non-ASCII byte there is refused too.
std::string stray_non_ascii(std::string_view t) {
  const size_t begin = t.rfind("\xEF\xBB\xBF", 0) == 0 ? 3 : 0;
  size_t i = begin;
  size_t line = 1, column = 1;
  enum { code, comment, bare_key, bare, glued, basic, literal, ml_basic, ml_literal } in = code;
  enum { key, value, after } next = key;  // what toml++ expects at the next token
  std::string nest;                       // the arrays '[' and inline tables '{' open here
  char quote = 0;                         // what ends a glued quote
  auto starts = [&](std::string_view s) { return t.substr(i, s.size()) == s; };
  auto one_of = [](char ch, std::string_view set) { return set.find(ch) != std::string_view::npos; };
  auto at = [&](size_t j, const char* what) {
    size_t l = line, col = column;
    for (size_t k = i; k < j; ++k) t[k] == '\n' ? (++l, col = 1) : ++col;
    return fmt::format("{}:{}: byte {:#04x} {}", l, col, static_cast<unsigned char>(t[j]), what);
  };
  while (i < t.size()) {
    char ch = t[i];
    unsigned char c = static_cast<unsigned char>(ch);
    size_t step = 1;  // 0: the byte ends a state and is looked at again
    if (in == code) {
      if (c >= 0x80) return at(i, "outside a string or a comment");
      if (ch == '#') {
        in = comment;
      } else if (ch == '\n') {
        if (nest.empty()) next = key;
      } else if (one_of(ch, " \t\r")) {
        // spaces change nothing
      } else if (ch == '=') {
        next = value;
      } else if (ch == '.') {
        next = key;
      } else if (ch == '[' || ch == '{') {
        bool opens_value = next == value;  // else a table header's bracket
        if (opens_value) nest += ch;
        next = ch == '[' && opens_value ? value : key;
      } else if (ch == ']' || ch == '}') {
        if (!nest.empty()) nest.pop_back();
        next = after;
      } else if (ch == ',') {
        next = !nest.empty() && nest.back() == '{' ? key : value;
      } else if (ch == '"' || ch == '\'') {
        if (next == after) {
          in = glued, quote = ch;
        } else if (starts("\"\"\"") || starts("'''")) {
          in = ch == '"' ? ml_basic : ml_literal, step = 3;
        } else {
          in = ch == '"' ? basic : literal;
        }
        next = after;
      } else {
        // Bare where a key starts is a key, to the first byte no bare key
        // holds; bare anywhere else is a value to toml++, scanned on to a
        // value's end.
        in = next == key ? bare_key : bare;
        next = after;
      }
    } else if (in == bare_key) {
      bool key_byte = std::isalnum(c) || ch == '_' || ch == '-';
      if (!key_byte) in = code, step = 0;
    } else if (in == bare || in == glued) {
      if (in == bare && one_of(ch, " \t\r\n]},#")) {
        in = code, step = 0;
      } else if (in == glued && (ch == quote || ch == '\n')) {
        in = code, step = ch == '\n' ? 0 : 1;
      } else if (c >= 0x80) {
        return at(i, "outside a string or a comment (in a bare value, where a quote opens none)");
      }
    } else if (in == comment) {
      if (ch == '\n') in = code, step = 0;
    } else if (in == basic || in == ml_basic) {
      if (ch == '\\') {
        step = 2;  // an escape: the next byte cannot end the string
        size_t j = i + 1;
        while (in == ml_basic && j < t.size() && one_of(t[j], " \t\r\n")) ++j;
        if (in == ml_basic && j < t.size() && static_cast<unsigned char>(t[j]) >= 0x80) {
          return at(j, "after a backslash in a multi-line string (or the whitespace it trims)");
        }
      } else if (in == ml_basic && starts("\"\"\"")) {
        in = code, step = 3;
      } else if (in == basic && (ch == '"' || ch == '\n')) {
        in = code, step = ch == '\n' ? 0 : 1;
      }
    } else if (in == ml_literal ? starts("'''") : (ch == '\'' || ch == '\n')) {
      step = in == ml_literal ? 3 : (ch == '\n' ? 0 : 1);
      in = code;
    }
    for (size_t k = 0; k < step && i < t.size(); ++k, ++i) {
      if (t[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
  }
  return "";
}

}  // namespace

Result<Config> parse_config(std::string_view text, std::string_view origin) {
  if (auto where = stray_non_ascii(text); !where.empty()) {
    return fail("{}:{}: TOML allows non-ASCII bytes only inside strings and comments, and this "
                "build's parser not even everywhere there; remove it, or write it in a string as an "
                "escape (\\uXXXX) (an editor may have saved an odd byte-order mark)",
                origin, where);
  }
  toml::table root;
#if TOML_EXCEPTIONS
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    return fail("{}:{}:{}: not valid TOML: {}", origin, e.source().begin.line,
                e.source().begin.column, e.description());
  }
#else
  auto parsed = toml::parse(text, origin);
  if (!parsed) {
    const auto& e = parsed.error();
    return fail("{}:{}:{}: not valid TOML: {}", origin, e.source().begin.line,
                e.source().begin.column, e.description());
  }
  root = std::move(parsed).table();
#endif
  Parser p(origin);
  p.parse_root(root);
  if (!p.errors.empty()) return tl::unexpected(p.errors.error());
  return std::move(p.config);
}

Result<Config> load_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) return fail_errno("cannot read config file {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return fail_errno("reading config file {}", path);
  return parse_config(ss.str(), path);
}

const char* driver_kind_name(DriverKind k) { return k == DriverKind::vm ? "vm" : "process"; }

std::string to_toml(const Config& c) {
  toml::table root;
  root.insert("manager", toml::table{{"state_dir", c.state_dir},
                                     {"policy", policy_name(c.policy)},
                                     {"control_socket", c.control_socket},
                                     {"spare_restart_delay_ms", int64_t{c.spare_restart_delay_ms}},
                                     {"realtime_priority", int64_t{c.realtime_priority}}});
  root.insert("ring", toml::table{{"tx_slots", int64_t{c.ring.tx_slots}},
                                  {"rx_slots", int64_t{c.ring.rx_slots}},
                                  {"slot_size", int64_t{c.ring.slot_size}}});
  root.insert("detect", toml::table{{"heartbeat_ms", int64_t{c.detect.heartbeat_ms}},
                                    {"hang_timeout_ms", int64_t{c.detect.hang_timeout_ms}},
                                    {"stall_timeout_ms", int64_t{c.detect.stall_timeout_ms}},
                                    {"carrier", c.detect.carrier},
                                    {"rx_probe_interval_ms", int64_t{c.detect.rx_probe_interval_ms}},
                                    {"rx_probe_timeout_ms", int64_t{c.detect.rx_probe_timeout_ms}},
                                    {"path_probe_us", int64_t{c.detect.path_probe_us}}});
  if (!c.metrics.listen.empty()) root.insert("metrics", toml::table{{"listen", c.metrics.listen}});
  toml::array drivers;
  for (const auto& d : c.drivers) {
    toml::table t{{"name", d.name},
                  {"kind", driver_kind_name(d.kind)},
                  {"nic", d.nic},
                  {"netns", d.netns},
                  {"memory_limit_mb", int64_t{d.memory_limit_mb}}};
    if (d.kind == DriverKind::vm) {
      toml::table v{{"nic_model", d.vm.nic_model},
                    {"memory_mb", int64_t{d.vm.memory_mb}},
                    {"accel", d.vm.accel},
                    {"boot_timeout_ms", int64_t{d.vm.boot_timeout_ms}}};
      if (!d.vm.image_dir.empty()) v.insert("image_dir", d.vm.image_dir);
      t.insert("vm", std::move(v));
    }
    drivers.push_back(std::move(t));
  }
  root.insert("driver", std::move(drivers));
  toml::array apps;
  for (const auto& a : c.apps) {
    toml::array v4, v6;
    for (const auto& x : a.ipv4) v4.push_back(x.text);
    for (const auto& x : a.ipv6) v6.push_back(x.text);
    toml::table t{{"name", a.name},       {"netns", a.netns}, {"mac", format_mac(a.mac)},
                  {"ipv4", std::move(v4)}, {"ipv6", std::move(v6)}, {"mtu", int64_t{a.mtu}}};
    if (!a.rx_probe_target.empty()) t.insert("rx_probe_target", a.rx_probe_target);
    apps.push_back(std::move(t));
  }
  if (!apps.empty()) root.insert("app", std::move(apps));
  std::ostringstream out;
  out << root << "\n";
  return out.str();
}

namespace {

// Collects "KEY changed (OLD -> NEW)" lines for what needs a manager restart.
struct BlockerList {
  std::vector<std::string> lines;
  template <typename T>
  void same(const std::string& key, const T& was, const T& now) {
    if (was != now) lines.push_back(fmt::format("{} changed ({} -> {})", key, was, now));
  }
};

void compare_drivers(BlockerList& b, const Config& now, const Config& next) {
  auto names = [](const Config& c) {
    std::vector<std::string> v;
    for (const auto& d : c.drivers) v.push_back(d.name);
    return fmt::format("{}", fmt::join(v, ", "));
  };
  if (names(now) != names(next)) return b.same("the driver domains", names(now), names(next));
  for (size_t i = 0; i < now.drivers.size(); ++i) {
    const auto &was = now.drivers[i], &is = next.drivers[i];
    std::string key = fmt::format("driver[{}] ({})", i, was.name);
    b.same(key + ".kind", std::string(driver_kind_name(was.kind)), std::string(driver_kind_name(is.kind)));
    b.same(key + ".nic", was.nic, is.nic);
    b.same(key + ".netns", was.netns, is.netns);
    if (was.kind != DriverKind::vm || is.kind != DriverKind::vm) continue;
    b.same(key + ".vm.nic_model", was.vm.nic_model, is.vm.nic_model);
    b.same(key + ".vm.memory_mb", was.vm.memory_mb, is.vm.memory_mb);
    b.same(key + ".vm.accel", was.vm.accel, is.vm.accel);
    b.same(key + ".vm.image_dir", was.vm.image_dir, is.vm.image_dir);
    b.same(key + ".vm.boot_timeout_ms", was.vm.boot_timeout_ms, is.vm.boot_timeout_ms);
  }
}

}  // namespace

std::vector<std::string> reload_blockers(const Config& now, const Config& next) {
  BlockerList b;
  b.same("manager.state_dir", now.state_dir, next.state_dir);
  b.same("manager.control_socket", now.control_socket, next.control_socket);
  b.same("manager.policy", std::string(policy_name(now.policy)), std::string(policy_name(next.policy)));
  b.same("manager.realtime_priority", now.realtime_priority, next.realtime_priority);
  b.same("ring.tx_slots", now.ring.tx_slots, next.ring.tx_slots);
  b.same("ring.rx_slots", now.ring.rx_slots, next.ring.rx_slots);
  b.same("ring.slot_size", now.ring.slot_size, next.ring.slot_size);
  b.same("detect.heartbeat_ms", now.detect.heartbeat_ms, next.detect.heartbeat_ms);
  b.same("detect.path_probe_us", now.detect.path_probe_us, next.detect.path_probe_us);
  compare_drivers(b, now, next);
  // The NICs took the largest app MTU at start; raising a live NIC's MTU
  // under its driver domain is not something to do behind its back.
  if (next.max_app_mtu() > now.max_app_mtu()) {
    b.lines.push_back(fmt::format("the largest app mtu grew ({} -> {}): the NICs were set up for {}",
                                  now.max_app_mtu(), next.max_app_mtu(), now.max_app_mtu()));
  }
  return b.lines;
}

uint64_t pair_id(const std::string& state_dir) { return fnv1a64(read_text("/etc/machine-id") + state_dir); }

}  // namespace ng::manager

#include "lab/lab.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/addr.hpp"
#include "common/clock.hpp"
#include "common/fd.hpp"
#include "common/file.hpp"
#include "common/hash.hpp"
#include "manager/config.hpp"
#include "netlink/netlink.hpp"
#include "sandbox/cgroup.hpp"
#include "vm/vm.hpp"

// Status-returning steps read best as a flat sequence; this keeps them so.
#define NG_TRY(expr)                                            \
  do {                                                          \
    if (auto ng_try_status_ = (expr); !ng_try_status_) {        \
      return tl::unexpected(std::move(ng_try_status_).error()); \
    }                                                           \
  } while (0)

namespace ng::lab {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr auto kManagerStopWait = 5s;
constexpr auto kKillWait = 5s;
constexpr int kLogTailLines = 25;
constexpr std::chrono::milliseconds kVmTrafficTimeout = 180s;
constexpr int kVmPathProbeUs = 10'000;

std::string random_hex(int digits) {
  std::random_device rd;
  std::string s;
  for (int i = 0; i < digits; ++i) s += "0123456789abcdef"[rd() % 16];
  return s;
}

std::string netns_prefix(const std::string& sfx) { return "ng-" + sfx + "-"; }

// Root links of run SFX are exactly "ng" SFX "n" <driver letter>; an exact
// pattern keeps lab "ab" from touching the links of lab "abcd".
bool is_root_link_of(const std::string& link, const std::string& sfx) {
  auto prefix = "ng" + sfx + "n";
  return link.size() == prefix.size() + 1 && link.starts_with(prefix) &&
         std::islower(static_cast<unsigned char>(link.back()));
}

bool valid_suffix(const std::string& s) {
  return !s.empty() && s.size() <= 11 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  });
}

std::vector<std::string> netns_of(const std::string& sfx) {
  std::vector<std::string> out;
  for (auto& n : netlink::list_netns()) {
    if (n.starts_with(netns_prefix(sfx))) out.push_back(n);
  }
  return out;
}

std::vector<std::string> root_links_matching(const std::function<bool(const std::string&)>& pred) {
  std::vector<std::string> out;
  auto root = netlink::Session::open();
  if (!root) return out;
  for (auto& l : root->links()) {
    if (pred(l)) out.push_back(l);
  }
  return out;
}

Status write_file(const std::string& path, const std::string& content) {
  return write_file_atomic(path, content, 0644);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string tail_lines(const std::string& path, int lines) {
  auto text = read_file(path);
  if (text.size() > 65536) text.erase(0, text.size() - 65536);
  size_t start = text.size();
  if (start > 0 && text[start - 1] == '\n') --start;  // the last line's own newline
  for (int n = 0; start > 0;) {
    size_t nl = text.rfind('\n', start - 1);
    if (nl == std::string::npos) {
      start = 0;
    } else if (++n == lines) {
      start = nl + 1;
      break;
    } else {
      start = nl;
    }
  }
  return text.substr(start);
}

// The manager's log first, then the driver and frontend logs it keeps.
std::string log_tails(const std::string& state_dir) {
  std::vector<std::string> logs;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(state_dir, ec)) {
    if (e.path().extension() == ".log") logs.push_back(e.path().string());
  }
  std::sort(logs.begin(), logs.end(), [](const std::string& a, const std::string& b) {
    bool am = a.ends_with("/manager.log"), bm = b.ends_with("/manager.log");
    return am != bm ? am : a < b;
  });
  std::string out;
  for (const auto& log : logs) {
    auto tail = tail_lines(log, kLogTailLines);
    out += fmt::format("\n---- last lines of {} ----\n{}", log, tail.empty() ? "(empty)\n" : tail);
    if (!out.ends_with('\n')) out += '\n';
  }
  return logs.empty() ? fmt::format("\n(no logs in {})\n", state_dir) : out;
}

// glibc 2.36's <sys/pidfd.h> lacks C linkage for C++; the raw syscall is simpler.
int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// A zombie counts as gone: it holds no namespace any more, and an orphan may
// never be reaped where PID 1 does not reap (containers).
bool process_alive(pid_t pid) {
  if (pid <= 0) return false;
  auto stat = read_file(fmt::format("/proc/{}/stat", pid));
  auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  char state = stat[close + 2];
  return state != 'Z' && state != 'X';
}

// "nicguard driver" rather than comm, which is "exe" for a process started
// through /proc/self/exe.
std::string process_name(pid_t pid) {
  auto cmdline = read_file(fmt::format("/proc/{}/cmdline", pid));
  std::vector<std::string> args;
  for (size_t pos = 0; pos < cmdline.size() && args.size() < 2;) {
    auto end = cmdline.find('\0', pos);
    if (end == std::string::npos) end = cmdline.size();
    args.push_back(cmdline.substr(pos, end - pos));
    pos = end + 1;
  }
  if (args.empty()) return "?";
  args[0] = fs::path(args[0]).filename().string();
  return fmt::format("{}", fmt::join(args, " "));
}

bool is_nicguard(pid_t pid) {
  std::error_code ec;
  auto exe = fs::read_symlink(fmt::format("/proc/{}/exe", pid), ec).filename().string();
  return !ec && exe.starts_with("nicguard");
}

// Guards against pid reuse: a recorded pid is only killed if it still is a
// nicguard process or one started for this lab.
bool belongs_to_lab(pid_t pid, const std::string& sfx) {
  if (is_nicguard(pid)) return true;
  auto cmdline = read_file(fmt::format("/proc/{}/cmdline", pid));
  return cmdline.find(lab_dir(sfx) + "/") != std::string::npos;
}

// Live processes whose command line names a file of the lab.
std::vector<pid_t> processes_naming_lab(const std::string& sfx) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    auto name = e.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    auto pid = static_cast<pid_t>(std::stoi(name));
    if (read_file(e.path().string() + "/cmdline").find(lab_dir(sfx) + "/") != std::string::npos &&
        process_alive(pid)) {
      out.push_back(pid);
    }
  }
  return out;
}

// nicguard processes started for this lab whose pid nobody recorded (a
// child the manager started just before it was killed). Other programs that
// merely mention the lab's files (a `tail -f` of a log) are left alone.
std::vector<pid_t> unrecorded_lab_processes(const std::string& sfx) {
  auto out = processes_naming_lab(sfx);
  std::erase_if(out, [](pid_t pid) { return !is_nicguard(pid); });
  return out;
}

std::vector<pid_t> pids_in_netns(const std::vector<std::string>& names) {
  std::set<std::pair<dev_t, ino_t>> ids;
  for (const auto& n : names) {
    struct stat st {};
    if (::stat(netlink::netns_path(n).c_str(), &st) == 0) ids.insert({st.st_dev, st.st_ino});
  }
  std::vector<pid_t> out;
  if (ids.empty()) return out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    auto name = e.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    struct stat st {};
    if (::stat((e.path().string() + "/ns/net").c_str(), &st) != 0) continue;
    if (ids.count({st.st_dev, st.st_ino}) != 0) out.push_back(std::stoi(name));
  }
  return out;
}

std::vector<pid_t> recorded_pids(const std::string& state_dir) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(state_dir, ec)) {
    if (e.path().extension() != ".pid") continue;
    try {
      out.push_back(std::stoi(read_file(e.path().string())));
    } catch (const std::exception&) {
      // A half-written pid file names nobody.
    }
  }
  return out;
}

struct Report {
  std::vector<std::string> removed;
  std::vector<std::string> errors;
};

void kill_all(std::vector<pid_t> pids, Report& rep) {
  std::sort(pids.begin(), pids.end());
  pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
  std::erase_if(pids, [](pid_t p) { return p == ::getpid() || !process_alive(p); });
  std::vector<std::pair<pid_t, UniqueFd>> victims;
  for (pid_t pid : pids) {
    auto name = process_name(pid);
    UniqueFd fd(pidfd_open(pid));  // before the kill: the pid may be reused after
    if (::kill(pid, SIGKILL) != 0) continue;
    rep.removed.push_back(fmt::format("process {} ({})", pid, name));
    victims.emplace_back(pid, std::move(fd));
  }
  auto deadline = mono_ns() + std::chrono::nanoseconds(kKillWait).count();
  for (auto& [pid, fd] : victims) {
    auto left_ms = static_cast<int>((deadline - std::min(deadline, mono_ns())) / 1'000'000);
    if (fd) {
      pollfd p{fd.get(), POLLIN, 0};
      ::poll(&p, 1, left_ms);
    }
    ::waitpid(pid, nullptr, WNOHANG);
    if (process_alive(pid)) {
      rep.errors.push_back(fmt::format("process {} did not die within 5 s of SIGKILL", pid));
    }
  }
}

// Kills whatever lives in the namespaces (a namespace dies with its last
// process, not with its name), then removes the names.
void remove_namespaces(const std::vector<std::string>& names, std::vector<pid_t> extra,
                       Report& rep) {
  auto inside = pids_in_netns(names);
  extra.insert(extra.end(), inside.begin(), inside.end());
  kill_all(std::move(extra), rep);
  for (const auto& n : names) {
    if (auto st = netlink::delete_netns(n); st) {
      rep.removed.push_back("netns " + n);
    } else {
      rep.errors.push_back(st.error().message);
    }
  }
}

void remove_root_links(const std::vector<std::string>& links, Report& rep) {
  if (links.empty()) return;
  auto root = netlink::Session::open();
  if (!root) {
    rep.errors.push_back(root.error().message);
    return;
  }
  for (const auto& l : links) {
    // Deleting one end of a veth takes its peer along; it may already be gone.
    if (!root->exists(l)) continue;
    if (auto st = root->delete_link(l); st) {
      rep.removed.push_back("link " + l);
    } else {
      rep.errors.push_back(st.error().message);
    }
  }
}

void remove_dir(const std::string& dir, Report& rep) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return;
  fs::remove_all(dir, ec);
  if (ec) {
    rep.errors.push_back(fmt::format("cannot remove {}: {}", dir, ec.message()));
  } else {
    rep.removed.push_back("directory " + dir);
  }
}

// Everything named after SFX: processes, namespaces, root links, files.
// The lab's driver domain cgroups are named after its manager's pair id,
// which comes from the lab's state directory.
std::string lab_cgroup_prefix(const std::string& sfx) {
  auto info = load(sfx);
  return sandbox::domain_cgroup_name(manager::pair_id(info ? info->state_dir : lab_dir(sfx) + "/state"), "");
}

void remove_by_suffix(const std::string& sfx, bool kill_lab_process, Report& rep) {
  auto dir = lab_dir(sfx);
  auto info = load(sfx);
  std::vector<pid_t> pids = recorded_pids(info ? info->state_dir : dir + "/state");
  if (info) {
    pids.push_back(info->manager_pid);
    if (kill_lab_process) pids.push_back(info->lab_pid);
  }
  auto started = unrecorded_lab_processes(sfx);
  pids.insert(pids.end(), started.begin(), started.end());
  std::erase_if(pids, [&](pid_t p) { return p <= 0 || !belongs_to_lab(p, sfx); });
  remove_namespaces(netns_of(sfx), std::move(pids), rep);
  for (auto& g : sandbox::remove_cgroups_named(lab_cgroup_prefix(sfx), rep.errors)) rep.removed.push_back("cgroup " + g);
  remove_root_links(
      root_links_matching([&](const std::string& l) { return is_root_link_of(l, sfx); }), rep);
  remove_dir(dir, rep);
}

// SIGTERM first: the manager stops its driver domains and frontends itself.
void stop_manager(pid_t pid, const std::string& sfx) {
  if (!process_alive(pid) || !belongs_to_lab(pid, sfx)) {
    ::waitpid(pid, nullptr, WNOHANG);
    return;
  }
  UniqueFd fd(pidfd_open(pid));  // before the kill: the pid may be reused after
  if (::kill(pid, SIGTERM) != 0) return;
  if (fd) {
    pollfd p{fd.get(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kManagerStopWait).count()));
  }
  ::waitpid(pid, nullptr, WNOHANG);
}

// The state directory's *.log files, copied into `into` (made if missing).
Status copy_logs(const std::string& state_dir, const std::string& into) {
  std::error_code ec;
  fs::create_directories(into, ec);
  if (ec) return fail("cannot create {} for the lab's logs: {}", into, ec.message());
  for (const auto& e : fs::directory_iterator(state_dir, ec)) {
    if (e.path().extension() != ".log") continue;
    fs::copy_file(e.path(), fs::path(into) / e.path().filename(), fs::copy_options::overwrite_existing, ec);
    if (ec) return fail("cannot copy {} into {}: {}", e.path().string(), into, ec.message());
  }
  return {};
}

Status teardown(const std::string& sfx, pid_t manager, const std::string& keep_logs = "") {
  if (manager > 0) stop_manager(manager, sfx);
  Report rep;
  if (!keep_logs.empty()) {
    // A manager that stopped in time has seen every domain and frontend
    // exit, so their last words are in the logs by now.
    auto info = load(sfx);
    if (auto st = copy_logs(info ? info->state_dir : lab_dir(sfx) + "/state", keep_logs); !st) {
      rep.errors.push_back(st.error().message);
    }
  }
  remove_by_suffix(sfx, false, rep);
  if (manager > 0) ::waitpid(manager, nullptr, WNOHANG);
  if (!rep.errors.empty()) {
    return fail("lab {} was not removed completely:\n  {}", sfx, fmt::join(rep.errors, "\n  "));
  }
  return {};
}

bool lab_exists(const std::string& sfx) {
  std::error_code ec;
  return fs::exists(lab_dir(sfx), ec) || !netns_of(sfx).empty() ||
         !root_links_matching([&](const std::string& l) { return is_root_link_of(l, sfx); })
              .empty();
}

Status validate(const LabOptions& o) {
  if (o.apps < 1 || o.apps > 64) return fail("--apps {} is out of range: use 1 to 64", o.apps);
  if (o.policy != "warm-spare" && o.policy != "restart") {
    return fail("--policy '{}' is unknown: use warm-spare or restart", o.policy);
  }
  if (o.domain != "process" && o.domain != "vm") {
    return fail("--domain '{}' is unknown: use process or vm", o.domain);
  }
  if (!o.nic_model.empty() && (o.domain != "vm" || !vm::known_nic_model(o.nic_model))) {
    return fail("--nic-model '{}' is not usable: it needs --domain vm and one of e1000e, e1000, "
                "virtio-net-pci", o.nic_model);
  }
  if (o.mtu < 68 || o.mtu > 9000) return fail("--mtu {} is out of range: use 68 to 9000", o.mtu);
  if (!o.name.empty() && !valid_suffix(o.name)) {
    return fail("--name '{}' is not usable: use 1 to 11 lowercase letters or digits "
                "(interface names are limited to 15 characters)",
                o.name);
  }
  return {};
}

LabInfo plan(const LabOptions& o, const std::string& sfx) {
  LabInfo i;
  i.suffix = sfx;
  i.dir = lab_dir(sfx);
  i.config = i.dir + "/nicguard.toml";
  i.state_dir = i.dir + "/state";
  i.control_socket = i.state_dir + "/control.sock";
  i.manager_log = i.state_dir + "/manager.log";
  i.policy = o.policy;
  i.domain = o.domain;
  i.nic_model = o.nic_model;
  i.mtu = o.mtu;
  i.realtime_priority = o.realtime_priority;
  // Under TCG every frame a driver VM forwards costs it about half a
  // millisecond of CPU: probes every millisecond would keep two idle VMs at
  // 30 to 50 % of a core each. Every 10 ms costs about 10 %.
  i.path_probe_us = o.path_probe_us >= 0 || o.domain != "vm" ? o.path_probe_us : kVmPathProbeUs;
  i.switch_netns = netns_prefix(sfx) + "sw";
  i.ext = Endpoint{netns_prefix(sfx) + "ext", "eth0", "10.99.0.1/24", "fd99::1/64"};
  if (o.direct) {
    i.direct = Endpoint{netns_prefix(sfx) + "direct", "eth0", "10.99.0.200/24", "fd99::200/64"};
  }
  std::vector<std::string> drivers = {"a"};
  if (o.policy == "warm-spare") drivers.push_back("b");
  for (const auto& d : drivers) {
    i.drivers.push_back(Driver{d, "ng" + sfx + "n" + d, "ng" + sfx + "p" + d,
                               netns_prefix(sfx) + "drv-" + d});
  }
  // Each lab's app MACs are its own (its suffix picks bytes 2 and 3): a
  // manager refuses MACs another running manager owns, and labs run side
  // by side.
  uint64_t tag = fnv1a64(sfx);
  for (int n = 1; n <= o.apps; ++n) {
    App app;
    app.netns = netns_prefix(sfx) + fmt::format("app{}", n);
    app.ipv4 = fmt::format("10.99.0.{}/24", 10 + n);
    app.ipv6 = fmt::format("fd99::{}/64", 10 + n);
    app.name = fmt::format("app{}", n);
    app.mac = fmt::format("02:{:02x}:{:02x}:00:01:{:02x}", tag & 0xff, (tag >> 8) & 0xff, n);
    app.mtu = o.mtu;
    i.apps.push_back(std::move(app));
  }
  i.lab_pid = ::getpid();
  return i;
}

std::string to_toml(const LabInfo& i) {
  std::string t = fmt::format(
      "# Written by `nicguard lab up` for lab {}; removed by `nicguard lab down`.\n"
      "[manager]\nstate_dir = \"{}\"\npolicy = \"{}\"\n",
      i.suffix, i.state_dir, i.policy);
  if (i.realtime_priority >= 0) t += fmt::format("realtime_priority = {}\n", i.realtime_priority);
  if (i.path_probe_us >= 0) t += fmt::format("\n[detect]\npath_probe_us = {}\n", i.path_probe_us);
  for (const auto& d : i.drivers) {
    t += fmt::format("\n[[driver]]\nname = \"{}\"\nkind = \"{}\"\nnic = \"{}\"\nnetns = \"{}\"\n", d.name,
                     i.domain, d.nic, d.netns);
    if (!i.nic_model.empty()) t += fmt::format("[driver.vm]\nnic_model = \"{}\"\n", i.nic_model);
  }
  // The external host stands in for the gateway the receive-path check asks.
  for (const auto& a : i.apps) {
    t += fmt::format(
        "\n[[app]]\nname = \"{}\"\nnetns = \"{}\"\nmac = \"{}\"\nipv4 = [\"{}\"]\n"
        "ipv6 = [\"{}\"]\nmtu = {}\nrx_probe_target = \"{}\"\n",
        a.name, a.netns, a.mac, a.ipv4, a.ipv6, a.mtu, i.ext.ipv4_address());
  }
  return t;
}

// Claims the suffix by creating the lab directory (mkdir is the lock).
Result<std::string> claim_suffix(const std::string& wanted) {
  std::error_code ec;
  fs::create_directories(kRunDir, ec);
  if (ec) return fail("cannot create {}: {}", kRunDir, ec.message());
  for (int attempt = 0; attempt < 32; ++attempt) {
    auto sfx = wanted.empty() ? random_hex(4) : wanted;
    bool taken = lab_exists(sfx);
    if (!taken && ::mkdir(lab_dir(sfx).c_str(), 0755) == 0) return sfx;
    if (!taken && errno != EEXIST) return fail_errno("cannot create {}", lab_dir(sfx));
    if (!wanted.empty()) {
      return fail("a lab named '{}' already exists; remove it with `nicguard lab down --name {}` "
                  "or choose another --name",
                  sfx, sfx);
    }
  }
  return fail("found no free lab suffix after 32 tries; remove old labs with `nicguard lab cleanup`");
}

Status attach_port(netlink::Session& sw, const std::string& port, const std::string& bridge,
                   uint32_t mtu) {
  NG_TRY(sw.set_mtu(port, mtu));
  NG_TRY(sw.set_master(port, bridge));
  return sw.set_up(port);
}

// A host namespace (external host, direct host) with eth0 on the switch.
Status add_host(const LabInfo& info, const Endpoint& host, const std::string& port, int sw_fd,
                netlink::Session& sw) {
  auto fd = netlink::create_netns(host.netns);
  if (!fd) return tl::unexpected(fd.error());
  // DAD would hold the IPv6 address back for a second or more.
  for (const char* scope : {"all", "default"}) {
    NG_TRY(netlink::write_sysctl(fd->get(), fmt::format("net/ipv6/conf/{}/accept_dad", scope),
                                 "0"));
  }
  auto s = netlink::Session::open(fd->get());
  if (!s) return tl::unexpected(s.error());
  NG_TRY(s->create_veth(host.link, port, sw_fd));
  NG_TRY(netlink::write_sysctl(fd->get(), "net/ipv6/conf/" + host.link + "/accept_dad", "0"));
  NG_TRY(s->set_mtu(host.link, info.mtu));
  for (const auto& text : {host.ipv4, host.ipv6}) {
    auto cidr = parse_cidr(text);
    if (!cidr) return tl::unexpected(cidr.error());
    NG_TRY(s->add_address(host.link, *cidr));
  }
  NG_TRY(s->set_up(host.link));
  return attach_port(sw, port, info.bridge, info.mtu);
}

// The driver's NIC stays down and address-less in the root namespace; the
// manager moves it into the driver domain.
Status add_driver_nic(const LabInfo& info, const Driver& d, int sw_fd, netlink::Session& sw) {
  auto root = netlink::Session::open();
  if (!root) return tl::unexpected(root.error());
  NG_TRY(root->create_veth(d.nic, d.switch_port, sw_fd));
  NG_TRY(root->set_mtu(d.nic, info.mtu));
  return attach_port(sw, d.switch_port, info.bridge, info.mtu);
}

struct Target {
  std::string text;
  int family = 0;
  std::array<uint8_t, 16> addr{};
  bool answered = false;
};

uint16_t inet_checksum(const uint8_t* data, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += static_cast<uint32_t>(data[i] << 8 | data[i + 1]);
  if (len % 2) sum += static_cast<uint32_t>(data[len - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons(static_cast<uint16_t>(~sum));
}

void send_echo(int fd, const Target& t, uint16_t id, uint16_t seq) {
  std::array<uint8_t, 64> pkt{};
  for (size_t i = 8; i < pkt.size(); ++i) pkt[i] = static_cast<uint8_t>(i);
  pkt[0] = t.family == AF_INET ? ICMP_ECHO : ICMP6_ECHO_REQUEST;
  uint16_t nid = htons(id), nseq = htons(seq);
  std::memcpy(&pkt[4], &nid, 2);
  std::memcpy(&pkt[6], &nseq, 2);
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (t.family == AF_INET) {
    // The kernel computes the ICMPv6 checksum itself, but not ICMPv4's.
    uint16_t sum = inet_checksum(pkt.data(), pkt.size());
    std::memcpy(&pkt[2], &sum, 2);
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    std::memcpy(&sin->sin_addr, t.addr.data(), 4);
    len = sizeof(sockaddr_in);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    std::memcpy(&sin6->sin6_addr, t.addr.data(), 16);
    len = sizeof(sockaddr_in6);
  }
  // A lost request is retried on the next round; errors (no route yet) too.
  (void)::sendto(fd, pkt.data(), pkt.size(), 0, reinterpret_cast<sockaddr*>(&ss), len);
}

void receive_replies(int fd, int family, uint16_t id, std::vector<Target>& targets) {
  std::array<uint8_t, 2048> buf{};
  for (;;) {
    sockaddr_storage from{};
    socklen_t flen = sizeof(from);
    ssize_t n = ::recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from),
                           &flen);
    if (n <= 0) return;
    size_t off = 0;
    if (family == AF_INET) off = static_cast<size_t>(buf[0] & 0x0f) * 4;  // raw v4 has the IP header
    if (static_cast<size_t>(n) < off + 8) continue;
    uint8_t want = family == AF_INET ? ICMP_ECHOREPLY : ICMP6_ECHO_REPLY;
    uint16_t rid = 0;
    std::memcpy(&rid, &buf[off + 4], 2);
    if (buf[off] != want || ntohs(rid) != id) continue;
    const void* src = family == AF_INET
                          ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&from)->sin_addr)
                          : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&from)->sin6_addr);
    size_t alen = family == AF_INET ? 4 : 16;
    for (auto& t : targets) {
      if (t.family == family && std::memcmp(t.addr.data(), src, alen) == 0) t.answered = true;
    }
  }
}

}  // namespace

std::string lab_dir(const std::string& suffix) { return std::string(kRunDir) + "/lab-" + suffix; }

std::string Endpoint::ipv4_address() const { return ipv4.substr(0, ipv4.find('/')); }
std::string Endpoint::ipv6_address() const { return ipv6.substr(0, ipv6.find('/')); }

std::vector<std::string> LabInfo::namespaces() const {
  std::vector<std::string> out = {switch_netns, ext.netns};
  if (direct) out.push_back(direct->netns);
  for (const auto& d : drivers) out.push_back(d.netns);
  for (const auto& a : apps) out.push_back(a.netns);
  return out;
}

std::vector<std::string> LabInfo::root_links() const {
  std::vector<std::string> out;
  for (const auto& d : drivers) out.push_back(d.nic);
  return out;
}

namespace {

nlohmann::json endpoint_json(const Endpoint& e) {
  return {{"netns", e.netns}, {"link", e.link}, {"ipv4", e.ipv4}, {"ipv6", e.ipv6}};
}

Endpoint endpoint_from(const nlohmann::json& j) {
  return Endpoint{j.value("netns", ""), j.value("link", "eth0"), j.value("ipv4", ""),
                  j.value("ipv6", "")};
}

}  // namespace

nlohmann::json LabInfo::to_json() const {
  nlohmann::json j;
  j["suffix"] = suffix;
  j["dir"] = dir;
  j["config"] = config;
  j["state_dir"] = state_dir;
  j["control_socket"] = control_socket;
  j["manager_log"] = manager_log;
  j["policy"] = policy;
  j["mtu"] = mtu;
  j["lab_pid"] = lab_pid;
  j["manager_pid"] = manager_pid;
  j["namespaces"] = namespaces();
  j["links"] = root_links();
  std::vector<std::string> ports;
  for (const auto& d : drivers) ports.push_back(d.switch_port);
  ports.push_back("ng" + suffix + "pe");
  if (direct) ports.push_back("ng" + suffix + "pd");
  j["switch"] = {{"netns", switch_netns}, {"bridge", bridge}, {"ports", ports}};
  j["ext"] = endpoint_json(ext);
  j["direct"] = direct ? endpoint_json(*direct) : nlohmann::json(nullptr);
  j["domain"] = domain;
  j["nic_model"] = nic_model;
  j["drivers"] = nlohmann::json::array();
  for (const auto& d : drivers) {
    j["drivers"].push_back(
        {{"name", d.name}, {"nic", d.nic}, {"switch_port", d.switch_port}, {"netns", d.netns}});
  }
  j["apps"] = nlohmann::json::array();
  for (const auto& a : apps) {
    auto e = endpoint_json(a);
    e["name"] = a.name;
    e["mac"] = a.mac;
    e["mtu"] = a.mtu;
    j["apps"].push_back(e);
  }
  return j;
}

Result<LabInfo> LabInfo::from_json(const nlohmann::json& j) {
  try {
    LabInfo i;
    i.suffix = j.at("suffix").get<std::string>();
    i.dir = j.value("dir", lab_dir(i.suffix));
    i.config = j.value("config", i.dir + "/nicguard.toml");
    i.state_dir = j.value("state_dir", i.dir + "/state");
    i.control_socket = j.value("control_socket", i.state_dir + "/control.sock");
    i.manager_log = j.value("manager_log", i.state_dir + "/manager.log");
    i.policy = j.value("policy", "");
    i.mtu = j.value("mtu", 1500u);
    i.lab_pid = j.value("lab_pid", 0);
    i.manager_pid = j.value("manager_pid", 0);
    i.domain = j.value("domain", "process");
    i.nic_model = j.value("nic_model", "");
    if (j.contains("switch")) {
      i.switch_netns = j["switch"].value("netns", "");
      i.bridge = j["switch"].value("bridge", "br0");
    }
    if (j.contains("ext")) i.ext = endpoint_from(j["ext"]);
    if (j.contains("direct") && j["direct"].is_object()) i.direct = endpoint_from(j["direct"]);
    for (const auto& d : j.value("drivers", nlohmann::json::array())) {
      i.drivers.push_back(Driver{d.value("name", ""), d.value("nic", ""),
                                 d.value("switch_port", ""), d.value("netns", "")});
    }
    for (const auto& a : j.value("apps", nlohmann::json::array())) {
      App app;
      static_cast<Endpoint&>(app) = endpoint_from(a);
      app.name = a.value("name", "");
      app.mac = a.value("mac", "");
      app.mtu = a.value("mtu", 1500u);
      i.apps.push_back(std::move(app));
    }
    return i;
  } catch (const nlohmann::json::exception& e) {
    return fail("lab description is malformed: {}", e.what());
  }
}

Result<LabInfo> load(const std::string& suffix) {
  auto path = lab_dir(suffix) + "/lab.json";
  std::ifstream in(path);
  if (!in) return fail("no lab description at {}", path);
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) return fail("{} is not valid JSON", path);
  auto info = LabInfo::from_json(j);
  if (!info) return fail("{}: {}", path, info.error().message);
  return info;
}

std::vector<std::string> running_labs() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(kRunDir, ec)) {
    auto name = e.path().filename().string();
    if (e.is_directory() && name.starts_with("lab-")) out.push_back(name.substr(4));
  }
  std::sort(out.begin(), out.end());
  return out;
}

Lab::~Lab() {
  if (!active_) return;
  if (auto st = down(); !st) fmt::print(stderr, "warning: {}\n", st.error().message);
}

Lab::Lab(Lab&& other) noexcept
    : info_(std::move(other.info_)),
      active_(std::exchange(other.active_, false)),
      manager_is_child_(std::exchange(other.manager_is_child_, false)) {}

Lab& Lab::operator=(Lab&& other) noexcept {
  if (this != &other) {
    if (active_) {
      if (auto st = down(); !st) fmt::print(stderr, "warning: {}\n", st.error().message);
    }
    info_ = std::move(other.info_);
    active_ = std::exchange(other.active_, false);
    manager_is_child_ = std::exchange(other.manager_is_child_, false);
  }
  return *this;
}

Status Lab::save() const {
  NG_TRY(write_file(info_.config, to_toml(info_)));
  return write_file(info_.dir + "/lab.json", info_.to_json().dump(2) + "\n");
}

Status Lab::build(const LabOptions& o) {
  auto interrupted = [&]() -> Status {
    if (o.interrupted && o.interrupted()) return fail("interrupted by a signal");
    return {};
  };
  auto sw_fd = netlink::create_netns(info_.switch_netns);
  if (!sw_fd) return tl::unexpected(sw_fd.error());
  auto sw = netlink::Session::open(sw_fd->get());
  if (!sw) return tl::unexpected(sw.error());
  NG_TRY(sw->create_bridge(info_.bridge));
  NG_TRY(sw->set_up(info_.bridge));
  NG_TRY(interrupted());
  NG_TRY(add_host(info_, info_.ext, "ng" + info_.suffix + "pe", sw_fd->get(), *sw));
  for (const auto& d : info_.drivers) {
    NG_TRY(interrupted());
    NG_TRY(add_driver_nic(info_, d, sw_fd->get(), *sw));
  }
  if (info_.direct) {
    NG_TRY(interrupted());
    NG_TRY(add_host(info_, *info_.direct, "ng" + info_.suffix + "pd", sw_fd->get(), *sw));
  }
  for (const auto& a : info_.apps) {
    NG_TRY(interrupted());
    auto fd = netlink::create_netns(a.netns);
    if (!fd) return tl::unexpected(fd.error());
  }
  // Set last: a bridge takes the smallest MTU of its ports until told otherwise.
  return sw->set_mtu(info_.bridge, info_.mtu);
}

Status Lab::start_manager(const LabOptions& o) {
  // Everything the child needs is prepared before fork(): after it, only
  // async-signal-safe calls are allowed.
  std::error_code ec;
  auto self = fs::read_symlink(o.binary, ec);
  std::string argv0 = ec ? o.binary : self.string();
  std::vector<std::string> args = {argv0, "manager", "-c", info_.config};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const char* log = info_.manager_log.c_str();
  const char* binary = o.binary.c_str();

  pid_t pid = ::fork();
  if (pid < 0) return fail_errno("cannot start the manager (fork)");
  if (pid == 0) {
    ::setsid();
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in < 0 || out < 0) ::_exit(126);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::close_range(3, ~0U, 0);
    ::execv(binary, argv.data());
    static const char msg[] = "nicguard lab: cannot execute the nicguard binary\n";
    (void)!::write(2, msg, sizeof(msg) - 1);
    ::_exit(127);
  }
  info_.manager_pid = pid;
  manager_is_child_ = true;
  return save();
}

Status Lab::wait_for_traffic(const LabOptions& o) {
  std::vector<std::string> addresses;
  for (const auto& a : info_.apps) addresses.push_back(a.ipv4_address());
  int manager_status = 0;
  bool manager_exited = false, interrupted = false;
  auto give_up = [&] {
    if (o.interrupted && o.interrupted()) interrupted = true;
    if (manager_is_child_ && ::waitpid(info_.manager_pid, &manager_status, WNOHANG) > 0) {
      manager_exited = true;
      manager_is_child_ = false;
    }
    return interrupted || manager_exited;
  };
  // Driver VMs boot first: seconds each under TCG, both at once on the host.
  auto timeout = info_.domain == "vm" ? std::max(o.traffic_timeout, kVmTrafficTimeout) : o.traffic_timeout;
  auto silent = ping_all(info_.ext.netns, addresses, timeout, give_up);
  if (!silent) return tl::unexpected(silent.error());
  if (interrupted) return fail("interrupted by a signal while waiting for traffic");
  if (manager_exited) {
    auto how = WIFEXITED(manager_status)
                   ? fmt::format("exited with status {}", WEXITSTATUS(manager_status))
                   : fmt::format("was killed by signal {}", WTERMSIG(manager_status));
    return fail("the manager (pid {}) {} before traffic flowed{}", info_.manager_pid, how,
                log_tails(info_.state_dir));
  }
  if (!silent->empty()) {
    return fail("no ICMP echo reply from {} to {} within {} ms: traffic does not flow through "
                "the driver domains{}",
                fmt::join(*silent, ", "), info_.ext.netns, timeout.count(),
                log_tails(info_.state_dir));
  }
  return {};
}

Result<Lab> Lab::up(const LabOptions& options) {
  NG_TRY(validate(options));
  auto sfx = claim_suffix(options.name);
  if (!sfx) return tl::unexpected(sfx.error());
  // From here on the destructor removes whatever was made, on every path.
  Lab lab(plan(options, *sfx));
  if (::mkdir(lab.info_.state_dir.c_str(), 0755) != 0) {
    return fail_errno("cannot create {}", lab.info_.state_dir);
  }
  NG_TRY(lab.save());
  if (auto st = lab.build(options); !st) {
    return fail("cannot build lab {}: {}", *sfx, st.error().message);
  }
  if (options.start_manager) {
    NG_TRY(lab.start_manager(options));
    NG_TRY(lab.wait_for_traffic(options));
  }
  return Result<Lab>(std::move(lab));
}

Status Lab::down() {
  if (!active_) return {};
  active_ = false;
  auto st = teardown(info_.suffix, info_.manager_pid);
  if (manager_is_child_) {
    // SIGKILLed by the teardown at the latest; reap it so no zombie stays.
    for (int i = 0; i < 100 && ::waitpid(info_.manager_pid, nullptr, WNOHANG) == 0; ++i) {
      std::this_thread::sleep_for(10ms);
    }
    manager_is_child_ = false;
  }
  return st;
}

Status down(const std::string& suffix, const std::string& keep_logs) {
  if (!valid_suffix(suffix)) return fail("'{}' is not a lab name", suffix);
  if (!lab_exists(suffix)) {
    auto labs = running_labs();
    return fail("no lab named '{}' exists (running: {})", suffix,
                labs.empty() ? "none" : fmt::format("{}", fmt::join(labs, ", ")));
  }
  auto info = load(suffix);
  return teardown(suffix, info ? info->manager_pid : 0, keep_logs);
}

std::vector<std::string> leftovers(const std::string& suffix) {
  std::vector<std::string> out;
  for (const auto& n : netns_of(suffix)) out.push_back("netns " + n);
  for (const auto& l : root_links_matching([&](const std::string& l) { return is_root_link_of(l, suffix); })) {
    out.push_back("link " + l);
  }
  std::error_code ec;
  if (fs::exists(lab_dir(suffix), ec)) out.push_back("directory " + lab_dir(suffix));
  for (pid_t pid : processes_naming_lab(suffix)) {
    out.push_back(fmt::format("process {} ({})", pid, process_name(pid)));
  }
  for (const auto& g : sandbox::cgroups_named(lab_cgroup_prefix(suffix))) out.push_back("cgroup " + g);
  return out;
}

std::vector<std::string> cleanup(const std::string& only_suffix,
                                 std::vector<std::string>& errors) {
  Report rep;
  std::set<std::string> suffixes;
  if (!only_suffix.empty()) {
    suffixes.insert(only_suffix);
  } else {
    for (auto& s : running_labs()) suffixes.insert(s);
    for (auto& n : netlink::list_netns()) {
      auto dash = n.find('-', 3);
      if (n.starts_with("ng-") && dash != std::string::npos && dash > 3) {
        suffixes.insert(n.substr(3, dash - 3));
      }
    }
  }
  for (const auto& s : suffixes) remove_by_suffix(s, true, rep);
  if (only_suffix.empty()) {
    std::vector<std::string> rest;
    for (auto& n : netlink::list_netns()) {
      if (n.starts_with("ng-")) rest.push_back(n);
    }
    remove_namespaces(rest, {}, rep);
    static const std::regex lab_link("ng[0-9a-f]{4}.*");
    remove_root_links(
        root_links_matching([](const std::string& l) { return std::regex_match(l, lab_link); }),
        rep);
  }
  errors = std::move(rep.errors);
  return rep.removed;
}

Result<std::vector<std::string>> ping_all(const std::string& netns,
                                          const std::vector<std::string>& addresses,
                                          std::chrono::milliseconds timeout,
                                          const std::function<bool()>& give_up) {
  std::vector<Target> targets;
  for (const auto& a : addresses) {
    Target t{a};
    if (::inet_pton(AF_INET, a.c_str(), t.addr.data()) == 1) {
      t.family = AF_INET;
    } else if (::inet_pton(AF_INET6, a.c_str(), t.addr.data()) == 1) {
      t.family = AF_INET6;
    } else {
      return fail("'{}' is not an IPv4 or IPv6 address", a);
    }
    targets.push_back(t);
  }
  auto ns = netlink::open_netns(netns);
  if (!ns) return tl::unexpected(ns.error());
  UniqueFd s4, s6;
  // Raw sockets stay in the namespace they were opened in.
  NG_TRY(netlink::in_netns(ns->get(), [&]() -> Status {
    s4.reset(::socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP));
    s6.reset(::socket(AF_INET6, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMPV6));
    if (!s4 || !s6) return fail_errno("cannot open a raw ICMP socket in netns {}", netns);
    return {};
  }));
  auto id = static_cast<uint16_t>(std::random_device{}());
  uint16_t seq = 0;
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto deadline = now() + timeout;
  auto next_send = now();
  auto pending = [&] {
    return std::any_of(targets.begin(), targets.end(), [](const Target& t) { return !t.answered; });
  };
  while (pending() && now() < deadline) {
    if (give_up && give_up()) break;
    if (now() >= next_send) {
      ++seq;
      for (const auto& t : targets) {
        if (!t.answered) send_echo(t.family == AF_INET ? s4.get() : s6.get(), t, id, seq);
      }
      next_send = now() + 200ms;
    }
    auto wait = std::min({next_send, deadline, now() + 100ms}) - now();
    pollfd fds[2] = {{s4.get(), POLLIN, 0}, {s6.get(), POLLIN, 0}};
    ::poll(fds, 2,
           static_cast<int>(std::max<int64_t>(
               0, std::chrono::duration_cast<std::chrono::milliseconds>(wait).count())));
    receive_replies(s4.get(), AF_INET, id, targets);
    receive_replies(s6.get(), AF_INET6, id, targets);
  }
  std::vector<std::string> silent;
  for (const auto& t : targets) {
    if (!t.answered) silent.push_back(t.text);
  }
  return silent;
}

Status ping(const std::string& netns, const std::string& address,
            std::chrono::milliseconds timeout) {
  auto silent = ping_all(netns, {address}, timeout);
  if (!silent) return tl::unexpected(silent.error());
  if (!silent->empty()) {
    return fail("no ICMP echo reply from {} to netns {} within {} ms", address, netns,
                timeout.count());
  }
  return {};
}

}  // namespace ng::lab

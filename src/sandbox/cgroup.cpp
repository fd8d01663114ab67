#include "sandbox/cgroup.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <set>
#include <map>
#include <sstream>

#include <fmt/ranges.h>

#include "common/text.hpp"

namespace ng::sandbox {
namespace {

constexpr const char* kControllers[] = {"memory", "pids"};

// Where the hierarchies are mounted, from /proc/self/mountinfo.
struct Mounts {
  std::string v2;                             // cgroup2; "" if none
  std::map<std::string, std::string> v1;      // controller -> its v1 mount
};

// Which cgroup a process is in, from /proc/PID/cgroup.
struct Membership {
  std::optional<std::string> v2;              // the "0::" line
  std::map<std::string, std::string> v1;      // controller -> path
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string part;
  std::istringstream in(s);
  while (std::getline(in, part, sep)) out.push_back(part);
  return out;
}

// In a comma-separated mount option list or a space-separated controller list.
bool has_word(const std::string& list, const std::string& word) {
  std::string words = list;
  for (char& ch : words) ch = ch == ',' || ch == '\n' ? ' ' : ch;
  std::istringstream in(words);
  for (std::string w; in >> w;) {
    if (w == word) return true;
  }
  return false;
}

Mounts read_mounts() {
  Mounts m;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream before(line.substr(0, dash)), after(line.substr(dash + 3));
    std::string id, parent, dev, root, point, type, source, options;
    before >> id >> parent >> dev >> root >> point;
    after >> type >> source >> options;
    if (type == "cgroup2" && m.v2.empty()) m.v2 = point;
    if (type != "cgroup") continue;
    for (const char* c : kControllers) {
      if (has_word(options, c) && !m.v1.count(c)) m.v1[c] = point;
    }
  }
  return m;
}

Membership read_membership(pid_t pid) {
  Membership m;
  std::ifstream in(pid == 0 ? std::string("/proc/self/cgroup") : fmt::format("/proc/{}/cgroup", pid));
  std::string line;
  while (std::getline(in, line)) {
    auto first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    std::string controllers = line.substr(first + 1, second - first - 1), path = line.substr(second + 1);
    if (line.compare(0, first, "0") == 0 && controllers.empty()) m.v2 = path;
    for (const char* c : kControllers) {
      if (has_word(controllers, c)) m.v1[c] = path;
    }
  }
  return m;
}

std::string join_path(const std::string& mount, const std::string& path) {
  return path == "/" ? mount : mount + path;
}

constexpr std::string_view kManagerLeaf = "/manager";

// The cgroup directory that holds controller `c` for a member: its v1
// hierarchy's, else its v2 cgroup. A manager that delegate_v2() moved into
// its leaf still counts as the cgroup above it, where its domains go.
std::optional<std::string> dir_of(const Mounts& mounts, const Membership& m, const char* c) {
  if (mounts.v1.count(c) && m.v1.count(c)) return join_path(mounts.v1.at(c), m.v1.at(c));
  if (mounts.v2.empty() || !m.v2) return std::nullopt;
  std::string path = *m.v2;
  if (path.size() > kManagerLeaf.size() && path.ends_with(kManagerLeaf)) path.resize(path.size() - kManagerLeaf.size());
  return join_path(mounts.v2, path);
}

// As the shell's `echo TEXT > FILE` opens it (O_CREAT|O_TRUNC is harmless
// on cgroupfs, and makes a fake tree of plain files behave for the tests).
Status write_text(const std::string& path, const std::string& text) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd || ::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    return fail_errno("cannot write '{}' to {}", text, path);
  return {};
}

// The pids in a cgroup's own cgroup.procs: on v2 only the processes in that
// cgroup itself, not those in its children (the adopted domains).
std::vector<std::string> procs_in(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& p : split(read_text(dir + "/cgroup.procs"), '\n')) {
    if (!p.empty()) out.push_back(p);
  }
  return out;
}

// Our controllers that `dir`'s cgroup.subtree_control does (or does not) hold.
std::vector<std::string> enabled_in(const std::string& dir, bool enabled) {
  std::string have = read_text(dir + "/cgroup.subtree_control");
  std::vector<std::string> out;
  for (const char* c : kControllers) {
    if (has_word(have, c) == enabled) out.emplace_back(c);
  }
  return out;
}

std::string change_text(const std::vector<std::string>& controllers, char sign) {
  std::string text;
  for (const auto& c : controllers) text += fmt::format("{}{}{}", text.empty() ? "" : " ", sign, c);
  return text;
}

}  // namespace

// On cgroup v2 `parent` must hand the controllers down: possible only while
// it holds no process (the no-internal-processes rule), so a manager alone
// there (a fresh service, or the next manager that systemd put back into
// the service's cgroup after a restart) moves into its leaf first. Only the
// processes in parent's own cgroup.procs count: domains a previous manager
// left serving sit in child cgroups and are no obstacle.
Status delegate_v2(const std::string& parent, bool is_root, pid_t self) {
  std::vector<std::string> want = enabled_in(parent, false);
  std::vector<std::string> inside = is_root ? std::vector<std::string>{} : procs_in(parent);
  if (want.empty() && inside.empty()) return {};
  if (!inside.empty()) {
    std::string me = std::to_string(self);
    if (inside.size() != 1 || inside[0] != me) {
      std::erase(inside, me);
      return fail(
          "cgroup {} cannot give its children the memory and pids controllers: it holds other processes "
          "({}); run the manager alone in its cgroup, e.g. as nicguard.service, which has Delegate=memory pids",
          parent, fmt::join(inside, ", "));
    }
    std::string leaf = parent + std::string(kManagerLeaf);
    if (::mkdir(leaf.c_str(), 0755) != 0 && errno != EEXIST) return fail_errno("cannot create {}", leaf);
    if (auto s = write_text(leaf + "/cgroup.procs", "0"); !s) return s;
  }
  if (want.empty()) return {};
  return write_text(parent + "/cgroup.subtree_control", change_text(want, '+'));
}

Result<std::vector<std::string>> release_controllers_v2(const std::string& parent) {
  std::vector<std::string> on = enabled_in(parent, true);
  if (on.empty()) return on;
  if (auto s = write_text(parent + "/cgroup.subtree_control", change_text(on, '-')); !s)
    return tl::unexpected(s.error());
  return on;
}

namespace {

std::string memory_text(uint64_t bytes, bool v2) {
  if (bytes == 0) return v2 ? "max" : "-1";
  return std::to_string(bytes);
}

std::string format_mib(uint64_t bytes) {
  return bytes == 0 ? std::string("no limit") : fmt::format("{} MiB", bytes >> 20);
}

}  // namespace

Result<DomainCgroup> DomainCgroup::create(const std::string& name, uint64_t memory_max_bytes, uint64_t pids_max) {
  Mounts mounts = read_mounts();
  Membership self = read_membership(0);
  std::map<std::string, CgroupParent> parents;
  for (const char* c : kControllers) {
    auto parent = dir_of(mounts, self, c);
    if (!parent) return fail("no cgroup hierarchy on this host has the {} controller (mount cgroup2 on /sys/fs/cgroup)", c);
    bool v1 = mounts.v1.count(c) && self.v1.count(c);
    parents[c] = CgroupParent{*parent, !v1, !v1 && *parent == mounts.v2};
  }
  return create_under(parents, name, memory_max_bytes, pids_max, ::getpid());
}

Result<DomainCgroup> DomainCgroup::create_under(const std::map<std::string, CgroupParent>& parents,
                                                const std::string& name, uint64_t memory_max_bytes,
                                                uint64_t pids_max, pid_t self) {
  DomainCgroup g;
  g.memory_max_ = memory_max_bytes;
  g.pids_max_ = pids_max;
  std::map<std::string, std::string> where;  // controller -> its cgroup directory
  for (const char* c : kControllers) {
    auto it = parents.find(c);
    if (it == parents.end()) return fail("no cgroup directory given for the {} controller", c);
    const CgroupParent& parent = it->second;
    if (parent.v2) {
      if (!has_word(read_text(parent.dir + "/cgroup.controllers"), c))
        return fail("cgroup {} has no {} controller: enable it in its parent's cgroup.subtree_control", parent.dir, c);
      if (auto s = delegate_v2(parent.dir, parent.is_root, self); !s) return tl::unexpected(s.error());
      g.v2_ = true;
    }
    where[c] = parent.dir + "/" + name;
  }
  for (const char* c : kControllers) {
    const std::string& dir = where[c];
    bool fresh = std::find(g.dirs_.begin(), g.dirs_.end(), dir) == g.dirs_.end();
    if (!fresh) continue;
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return fail_errno("cannot create cgroup {}", dir);
    g.dirs_.push_back(dir);
  }
  // Written again over what a cgroup taken over holds: a previous manager
  // may have left other limits, or none (its controllers given back).
  g.memory_file_ = where["memory"] + (g.v2_ ? "/memory.max" : "/memory.limit_in_bytes");
  if (auto s = g.set_memory_max(memory_max_bytes); !s) return tl::unexpected(s.error());
  if (auto s = write_text(where["pids"] + "/pids.max", std::to_string(pids_max)); !s) return tl::unexpected(s.error());
  for (const auto& dir : g.dirs_) {
    std::string procs = dir + "/cgroup.procs";
    UniqueFd fd(::open(procs.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    if (!fd) return fail_errno("cannot open {}", procs);
    g.procs_raw_.push_back(fd.get());
    g.procs_.push_back(std::move(fd));
  }
  return g;
}

Status DomainCgroup::set_memory_max(uint64_t bytes) {
  if (auto s = write_text(memory_file_, memory_text(bytes, v2_)); !s) return s;
  memory_max_ = bytes;
  return {};
}

Status DomainCgroup::remove() {
  procs_.clear();
  procs_raw_.clear();
  for (const auto& dir : dirs_) {
    if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) return fail_errno("cannot remove cgroup {}", dir);
  }
  dirs_.clear();
  return {};
}

std::string DomainCgroup::describe() const {
  std::string where;
  for (const auto& d : dirs_) where += (where.empty() ? "" : ", ") + d;
  return fmt::format("memory {}, at most {} processes (cgroup {}: {})", format_mib(memory_max_), pids_max_,
                     v2_ ? "v2" : "v1", where);
}

std::string domain_cgroup_name(uint64_t pair_id, const std::string& domain) {
  return fmt::format("nicguard-{:016x}-{}", pair_id, domain);
}

std::vector<std::string> cgroups_named(const std::string& prefix) {
  Mounts mounts = read_mounts();
  Membership self = read_membership(0);
  std::set<std::string> parents;
  for (const char* c : kControllers) {
    if (auto dir = dir_of(mounts, self, c)) parents.insert(*dir);
  }
  std::vector<std::string> found;
  for (const auto& parent : parents) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(parent, ec)) {
      if (entry.is_directory(ec) && entry.path().filename().string().rfind(prefix, 0) == 0)
        found.push_back(entry.path().string());
    }
  }
  return found;
}

std::vector<std::string> remove_cgroups_named(const std::string& prefix, std::vector<std::string>& errors) {
  std::vector<std::string> removed;
  for (const auto& dir : cgroups_named(prefix)) {
    // A killed domain's cgroup empties a moment after the kill.
    bool gone = false;
    int error = 0;
    for (int i = 0; i < 50 && !gone; ++i) {
      gone = ::rmdir(dir.c_str()) == 0 || (error = errno) == ENOENT;
      if (!gone && error != EBUSY) break;
      if (!gone) ::usleep(10'000);
    }
    if (gone) removed.push_back(dir);
    else errors.push_back(fmt::format("cannot remove cgroup {}: {}", dir, std::strerror(error)));
  }
  return removed;
}

std::optional<std::string> delegated_v2_dir() {
  Mounts mounts = read_mounts();
  Membership self = read_membership(0);
  if (mounts.v2.empty() || !self.v2) return std::nullopt;
  for (const char* c : kControllers) {
    if (mounts.v1.count(c) && self.v1.count(c)) return std::nullopt;  // a v1 controller: nothing to give back
  }
  const std::string& path = *self.v2;
  if (path.size() <= kManagerLeaf.size() || !path.ends_with(kManagerLeaf)) return std::nullopt;
  return join_path(mounts.v2, path.substr(0, path.size() - kManagerLeaf.size()));
}

bool join_cgroups(const std::vector<int>& fds) {
  for (int fd : fds) {
    if (::write(fd, "0", 1) != 1) return false;
  }
  return true;
}

CgroupLimits cgroup_limits_of(pid_t pid) {
  Mounts mounts = read_mounts();
  Membership m = read_membership(pid);
  CgroupLimits out;
  auto number = [](const std::string& text) -> std::optional<uint64_t> {
    if (text.empty() || text.compare(0, 3, "max") == 0 || text[0] == '-') return std::nullopt;
    uint64_t v = std::strtoull(text.c_str(), nullptr, 10);
    // cgroup v1 reports "no limit" as the largest page-aligned number.
    return v >= (uint64_t{1} << 62) ? std::nullopt : std::optional<uint64_t>(v);
  };
  for (const char* c : kControllers) {
    bool v1 = mounts.v1.count(c) && m.v1.count(c);
    if (!v1 && (mounts.v2.empty() || !m.v2)) continue;
    std::string dir = v1 ? join_path(mounts.v1[c], m.v1[c]) : join_path(mounts.v2, *m.v2);
    bool memory = std::string_view(c) == "memory";
    auto value = number(read_text(dir + (memory ? (v1 ? "/memory.limit_in_bytes" : "/memory.max") : "/pids.max")));
    (memory ? out.memory_dir : out.pids_dir) = dir;
    (memory ? out.memory_max : out.pids_max) = value;
  }
  return out;
}

}  // namespace ng::sandbox

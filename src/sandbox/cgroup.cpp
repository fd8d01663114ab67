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

Status write_text(const std::string& path, const std::string& text) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd || ::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    return fail_errno("cannot write '{}' to {}", text, path);
  return {};
}

bool only_self_in(const std::string& dir) {
  auto procs = split(read_text(dir + "/cgroup.procs"), '\n');
  return procs.size() == 1 && procs[0] == std::to_string(::getpid());
}

// On cgroup v2 `parent` must hand the controllers down: possible only while
// it holds no process, so a manager alone there moves into a leaf first.
Status delegate_v2(const std::string& parent, bool is_root) {
  auto missing = [&] {
    std::string want, have = read_text(parent + "/cgroup.subtree_control");
    for (const char* c : kControllers) {
      if (!has_word(have, c)) want += fmt::format("{}+{}", want.empty() ? "" : " ", c);
    }
    return want;
  };
  std::string want = missing();
  if (want.empty()) return {};
  int error = 0;
  {
    UniqueFd fd(::open((parent + "/cgroup.subtree_control").c_str(), O_WRONLY | O_CLOEXEC));
    if (fd && ::write(fd.get(), want.data(), want.size()) == static_cast<ssize_t>(want.size())) return {};
    error = errno;
  }
  if (error != EBUSY || is_root || !only_self_in(parent))
    return fail(
        "cgroup {} cannot give its children the memory and pids controllers (it holds other "
        "processes; run the manager alone in its cgroup, e.g. as nicguard.service, which has Delegate=yes): {}",
        parent, std::strerror(error));
  std::string leaf = parent + std::string(kManagerLeaf);
  if (::mkdir(leaf.c_str(), 0755) != 0 && errno != EEXIST) return fail_errno("cannot create {}", leaf);
  if (auto s = write_text(leaf + "/cgroup.procs", "0"); !s) return s;
  return write_text(parent + "/cgroup.subtree_control", missing());
}

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
  DomainCgroup g;
  g.memory_max_ = memory_max_bytes;
  g.pids_max_ = pids_max;
  std::map<std::string, std::string> where;  // controller -> its cgroup directory
  for (const char* c : kControllers) {
    auto parent = dir_of(mounts, self, c);
    if (!parent) return fail("no cgroup hierarchy on this host has the {} controller (mount cgroup2 on /sys/fs/cgroup)", c);
    bool v1 = mounts.v1.count(c) && self.v1.count(c);
    if (!v1) {
      if (!has_word(read_text(*parent + "/cgroup.controllers"), c))
        return fail("cgroup {} has no {} controller: enable it in its parent's cgroup.subtree_control", *parent, c);
      if (auto s = delegate_v2(*parent, *parent == mounts.v2); !s) return tl::unexpected(s.error());
      g.v2_ = true;
    }
    where[c] = *parent + "/" + name;
  }
  for (const char* c : kControllers) {
    const std::string& dir = where[c];
    bool fresh = std::find(g.dirs_.begin(), g.dirs_.end(), dir) == g.dirs_.end();
    if (!fresh) continue;
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return fail_errno("cannot create cgroup {}", dir);
    g.dirs_.push_back(dir);
  }
  g.memory_file_ = where["memory"] + (g.v2_ ? "/memory.max" : "/memory.limit_in_bytes");
  if (auto s = g.set_memory_max(memory_max_bytes); !s) return tl::unexpected(s.error());
  if (auto s = write_text(where["pids"] + "/pids.max", std::to_string(pids_max)); !s) return tl::unexpected(s.error());
  for (const auto& dir : g.dirs_) {
    std::string procs = dir + "/cgroup.procs";
    UniqueFd fd(::open(procs.c_str(), O_WRONLY | O_CLOEXEC));
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

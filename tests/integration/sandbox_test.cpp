// The driver-domain sandbox in depth, read from the outside: a running
// domain of a real lab, started by the real manager, is looked at through
// /proc as an operator would (status, namespace links, mounts, id maps,
// limits, cgroup), and each wall the sandbox promises is checked there.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <sstream>
#include <string>

#include "sandbox/cgroup.hpp"
#include "sandbox/sandbox.hpp"
#include "support.hpp"

namespace ng::it {
namespace {

using Json = nlohmann::json;

// The value of "Key:" in /proc/PID/status, whitespace collapsed to one space.
std::string status_field(pid_t pid, const std::string& key) {
  std::istringstream in(read_file(fmt::format("/proc/{}/status", pid)));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + ":", 0) != 0) continue;
    std::istringstream words(line.substr(key.size() + 1));
    std::string out, w;
    while (words >> w) out += (out.empty() ? "" : " ") + w;
    return out;
  }
  return "";
}

std::string ns_link(const std::string& proc_dir, const std::string& ns) {
  char buf[64] = {};
  ssize_t n = ::readlink((proc_dir + "/ns/" + ns).c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

// The soft limit on the line of /proc/PID/limits that starts with `name`.
std::string limit(pid_t pid, const std::string& name) {
  std::istringstream in(read_file(fmt::format("/proc/{}/limits", pid)));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name, 0) != 0) continue;
    std::istringstream words(line.substr(name.size()));
    std::string soft;
    words >> soft;
    return soft;
  }
  return "";
}

std::set<std::string> lines_of(const std::string& text) {
  std::set<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.insert(line);
  return out;
}

class DriverSandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    lab_ = std::make_unique<LabGuard>();
    ASSERT_TRUE(lab_->ok()) << lab_->error();
    auto s = lab_->status();
    ASSERT_TRUE(s.has_value());
    for (const auto& d : s->at("drivers")) {
      ASSERT_TRUE(d.at("pid").is_number()) << d.dump();
      drivers_.push_back(d);
    }
    ASSERT_EQ(drivers_.size(), 2u);
  }

  // The memory and pids cgroup directories of both domains.
  std::vector<std::string> cgroup_dirs() const {
    std::vector<std::string> dirs;
    for (const auto& d : drivers_) {
      auto cg = sandbox::cgroup_limits_of(d.at("pid").get<pid_t>());
      dirs.push_back(cg.memory_dir);
      dirs.push_back(cg.pids_dir);
    }
    return dirs;
  }

  std::unique_ptr<LabGuard> lab_;
  std::vector<Json> drivers_;
};

TEST_F(DriverSandboxTest, ProcessStatusShowsAnUnprivilegedConfinedProcess) {
  std::set<std::string> uids;
  for (const auto& d : drivers_) {
    pid_t pid = d.at("pid").get<pid_t>();
    SCOPED_TRACE(fmt::format("driver {} pid {}", d.value("name", ""), pid));
    std::string uid = status_field(pid, "Uid");
    std::istringstream words(uid);
    std::string real;
    words >> real;
    ASSERT_FALSE(real.empty());
    EXPECT_NE(real, "0");
    EXPECT_EQ(uid, fmt::format("{0} {0} {0} {0}", real)) << "real, effective, saved and fs uid";
    EXPECT_EQ(status_field(pid, "Gid"), uid);
    EXPECT_EQ(status_field(pid, "Groups"), "");
    EXPECT_EQ(d.at("sandbox").value("uid", 0u), std::stoul(real)) << d.dump();
    uids.insert(real);
    for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"})
      EXPECT_EQ(status_field(pid, set), "0000000000000000") << set;
    EXPECT_EQ(status_field(pid, "NoNewPrivs"), "1");
    EXPECT_EQ(status_field(pid, "Seccomp"), "2");
    // pid 1 of a pid namespace of its own.
    EXPECT_EQ(status_field(pid, "NSpid"), fmt::format("{} 1", pid));
    // Only its own uid is mapped, to itself.
    EXPECT_EQ(lines_of(read_file(fmt::format("/proc/{}/uid_map", pid))).size(), 1u);
    std::string map = read_file(fmt::format("/proc/{}/uid_map", pid));
    std::istringstream m(map);
    std::string inside, outside, count;
    m >> inside >> outside >> count;
    EXPECT_EQ(inside, real);
    EXPECT_EQ(outside, real);
    EXPECT_EQ(count, "1");
  }
  EXPECT_EQ(uids.size(), 2u) << "each domain has a uid of its own";
}

TEST_F(DriverSandboxTest, NamespacesAreItsOwnButTheNetworkIsItsNic) {
  for (size_t i = 0; i < drivers_.size(); ++i) {
    pid_t pid = drivers_[i].at("pid").get<pid_t>();
    std::string proc = fmt::format("/proc/{}", pid);
    SCOPED_TRACE(proc);
    for (const char* ns : {"user", "pid", "mnt", "ipc", "uts", "cgroup"}) {
      std::string theirs = ns_link(proc, ns);
      ASSERT_FALSE(theirs.empty()) << ns;
      EXPECT_NE(theirs, ns_link("/proc/self", ns)) << ns << " namespace is the host's";
      EXPECT_NE(theirs, ns_link(fmt::format("/proc/{}", lab_->manager_pid()), ns)) << ns;
      pid_t other = drivers_[1 - i].at("pid").get<pid_t>();
      EXPECT_NE(theirs, ns_link(fmt::format("/proc/{}", other), ns)) << ns << " shared with the other domain";
    }
    struct stat netns {};
    std::string named = "/run/netns/" + drivers_[i].value("netns", "");
    ASSERT_EQ(::stat(named.c_str(), &netns), 0) << named;
    EXPECT_EQ(ns_link(proc, "net"), fmt::format("net:[{}]", netns.st_ino));
  }
}

TEST_F(DriverSandboxTest, RootIsEmptyAndReadOnly) {
  for (const auto& d : drivers_) {
    pid_t pid = d.at("pid").get<pid_t>();
    auto mounts = lines_of(read_file(fmt::format("/proc/{}/mountinfo", pid)));
    ASSERT_EQ(mounts.size(), 1u) << read_file(fmt::format("/proc/{}/mountinfo", pid));
    std::istringstream f(*mounts.begin());
    std::string id, parent, dev, root, point, options;
    f >> id >> parent >> dev >> root >> point >> options;
    EXPECT_EQ(point, "/");
    EXPECT_NE((options + ",").find("ro,"), std::string::npos) << options;
    EXPECT_NE(mounts.begin()->find(" - tmpfs "), std::string::npos) << *mounts.begin();
  }
}

TEST_F(DriverSandboxTest, LimitsAndCgroupHoldIt) {
  for (const auto& d : drivers_) {
    pid_t pid = d.at("pid").get<pid_t>();
    SCOPED_TRACE(fmt::format("pid {}", pid));
    EXPECT_EQ(limit(pid, "Max processes"), "0");
    EXPECT_EQ(limit(pid, "Max open files"), "4096");
    EXPECT_EQ(limit(pid, "Max file size"), std::to_string(16u << 20));
    EXPECT_EQ(limit(pid, "Max core file size"), "0");
    auto cg = sandbox::cgroup_limits_of(pid);
    ASSERT_TRUE(d.at("sandbox").at("cgroup").is_string()) << d.dump();
    ASSERT_TRUE(cg.pids_max.has_value()) << cg.pids_dir;
    EXPECT_EQ(*cg.pids_max, 1u) << cg.pids_dir;
    ASSERT_TRUE(cg.memory_max.has_value()) << cg.memory_dir;
    EXPECT_GE(*cg.memory_max, uint64_t{32} << 20);
    EXPECT_LE(*cg.memory_max, uint64_t{1} << 30);
    EXPECT_NE(cg.memory_dir.find("nicguard-"), std::string::npos) << cg.memory_dir;
  }
}

TEST_F(DriverSandboxTest, ShutdownRemovesTheCgroups) {
  auto dirs = cgroup_dirs();
  auto r = lab_->down();
  ASSERT_TRUE(r.ok()) << r.describe();
  for (const auto& dir : dirs) {
    ASSERT_FALSE(dir.empty());
    EXPECT_NE(::access(dir.c_str(), F_OK), 0) << dir << " is left behind";
  }
}

TEST_F(DriverSandboxTest, CleanupRemovesWhatAKilledManagerLeft) {
  auto dirs = cgroup_dirs();
  ASSERT_EQ(::kill(lab_->manager_pid(), SIGKILL), 0);
  ASSERT_TRUE(wait_until([&] { return !process_alive(lab_->manager_pid()); }, 5s));
  for (const auto& dir : dirs) EXPECT_EQ(::access(dir.c_str(), F_OK), 0) << dir;
  auto r = run(fmt::format("{} lab cleanup --name {}", quote(kNicguard), lab_->suffix()), 60s);
  ASSERT_TRUE(r.ok()) << r.describe();
  for (const auto& dir : dirs) EXPECT_NE(::access(dir.c_str(), F_OK), 0) << dir << " is left behind";
}

TEST_F(DriverSandboxTest, ARestartedDomainIsConfinedTheSameWay) {
  std::string socket = lab_->control_socket();
  pid_t before = drivers_[0].at("pid").get<pid_t>();
  std::string name = drivers_[0].value("name", "");
  auto r = run(fmt::format("{} inject {} crash -s {}", quote(kNicguard), name, quote(socket)), 10s);
  ASSERT_TRUE(r.ok()) << r.describe();
  pid_t after = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = lab_->status();
        if (!s) return false;
        for (const auto& d : s->at("drivers")) {
          if (d.value("name", "") == name && d.at("pid").is_number() && d.value("state", "") == "running")
            after = d.at("pid").get<pid_t>();
        }
        return after != 0 && after != before;
      },
      15s))
      << lab_->status_table();
  EXPECT_EQ(status_field(after, "NSpid"), fmt::format("{} 1", after));
  // Running, it may still be opening its NIC and socket: confined once set up.
  EXPECT_TRUE(wait_until([&] { return status_field(after, "Seccomp") == "2"; }, 10s))
      << read_file(fmt::format("/proc/{}/status", after));
  EXPECT_NE(status_field(after, "Uid").substr(0, 2), "0 ");
  EXPECT_EQ(sandbox::cgroup_limits_of(after).pids_max.value_or(0), 1u);
  auto ping = run_in(lab_->ext_ns(), "ping -c 3 -i 0.2 -W 1 " + lab_->apps()[0].ipv4, 10s);
  EXPECT_TRUE(ping.ok()) << ping.describe();
}

}  // namespace
}  // namespace ng::it

// `nicguard lab` end to end (runs as root): the topology, traffic through the
// manager's driver domains, and removal on every path, killed runs included.
// Each test names its lab with a random suffix and holds a guard that removes
// that lab (and only that lab) whatever happens, so tests never touch labs
// other people run on the same host.
#include <fcntl.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/hash.hpp"
#include "lab/lab.hpp"
#include "netlink/netlink.hpp"

namespace ng::lab {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string random_suffix() {
  std::random_device rd;
  std::string s;
  for (int i = 0; i < 4; ++i) s += "0123456789abcdef"[rd() % 16];
  return s;
}

// Removes lab SFX on scope exit, however the test ended.
class LabGuard {
 public:
  explicit LabGuard(std::string sfx) : sfx_(std::move(sfx)) {}
  ~LabGuard() {
    std::vector<std::string> errors;
    cleanup(sfx_, errors);
    for (const auto& e : errors) ADD_FAILURE() << "cleanup of lab " << sfx_ << ": " << e;
  }
  LabGuard(const LabGuard&) = delete;
  LabGuard& operator=(const LabGuard&) = delete;

 private:
  std::string sfx_;
};

// Everything of lab SFX still visible: namespaces, root links, its directory.
std::vector<std::string> leftovers(const std::string& sfx) {
  std::vector<std::string> out;
  for (const auto& n : netlink::list_netns()) {
    if (n.starts_with("ng-" + sfx + "-")) out.push_back("netns " + n);
  }
  if (auto root = netlink::Session::open()) {
    for (const auto& l : root->links()) {
      if (l.starts_with("ng" + sfx)) out.push_back("link " + l);
    }
  }
  if (fs::exists(lab_dir(sfx))) out.push_back("dir " + lab_dir(sfx));
  return out;
}

bool alive(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

// A nicguard child process, killed and reaped if still running at scope exit.
class Child {
 public:
  explicit Child(const std::vector<std::string>& args) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) return;
    std::vector<std::string> full = {NICGUARD_BINARY};
    full.insert(full.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : full) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    out_ = out[0];
    err_ = err[0];
  }
  ~Child() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) ::close(out_);
    if (err_ >= 0) ::close(err_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }

  // Exit status, or -1 if it did not end within `limit` (then it is killed).
  int wait(std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        reaped_ = true;
        return -1;
      }
      std::this_thread::sleep_for(10ms);
    }
    reaped_ = true;
    stdout_ = drain(out_);
    stderr_ = drain(err_);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  void kill_now() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    reaped_ = true;
  }
  const std::string& out() const { return stdout_; }
  const std::string& err() const { return stderr_; }

 private:
  static std::string drain(int fd) {
    std::string s;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof(buf))) > 0) s.append(buf, static_cast<size_t>(n));
    return s;
  }
  pid_t pid_ = -1;
  int out_ = -1, err_ = -1;
  bool reaped_ = false;
  std::string stdout_, stderr_;
};

// Runs nicguard to completion (bounded) and returns its exit status.
int run(Child& c, std::chrono::milliseconds limit = 60s) { return c.wait(limit); }

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

pid_t read_pid(const std::string& path) {
  std::ifstream in(path);
  pid_t pid = 0;
  in >> pid;
  return pid;
}

TEST(Lab, UpJsonPingAndDown) {
  auto sfx = random_suffix();
  LabGuard guard(sfx);
  Child up({"lab", "up", "--name", sfx, "--apps", "2", "--json"});
  ASSERT_EQ(run(up), 0) << up.err();
  auto j = nlohmann::json::parse(up.out(), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << up.out();
  EXPECT_EQ(j["suffix"], sfx);
  EXPECT_EQ(j["config"], lab_dir(sfx) + "/nicguard.toml");
  EXPECT_EQ(j["control_socket"], lab_dir(sfx) + "/state/control.sock");
  EXPECT_TRUE(fs::exists(j["config"].get<std::string>()));

  auto listed = netlink::list_netns();
  for (const auto& ns : j["namespaces"]) {
    EXPECT_NE(std::find(listed.begin(), listed.end(), ns.get<std::string>()), listed.end())
        << ns << " is not in `ip netns list`";
  }
  ASSERT_EQ(j["apps"].size(), 2u);
  pid_t manager = j["manager_pid"].get<pid_t>();
  EXPECT_TRUE(alive(manager));

  auto ext = j["ext"]["netns"].get<std::string>();
  for (const auto& app : j["apps"]) {
    for (const auto& key : {"ipv4", "ipv6"}) {
      auto cidr = app[key].get<std::string>();
      auto addr = cidr.substr(0, cidr.find('/'));
      auto st = ping(ext, addr, 5s);
      EXPECT_TRUE(st) << st.error().message;
    }
  }

  Child down({"lab", "down", "--name", sfx});
  ASSERT_EQ(run(down), 0) << down.err();
  EXPECT_EQ(leftovers(sfx), std::vector<std::string>{});
  EXPECT_FALSE(alive(manager));
}

TEST(Lab, ApiRestartPolicyWithDirectHost) {
  LabOptions o;
  o.name = random_suffix();
  o.policy = "restart";
  o.direct = true;
  o.mtu = 4000;
  o.binary = NICGUARD_BINARY;
  LabGuard guard(o.name);
  {
    auto lab = Lab::up(o);
    ASSERT_TRUE(lab) << lab.error().message;
    ASSERT_EQ(lab->drivers().size(), 1u);
    EXPECT_EQ(lab->drivers()[0].nic, "ng" + o.name + "na");
    EXPECT_EQ(lab->drivers()[0].netns, "ng-" + o.name + "-drv-a");
    ASSERT_TRUE(lab->direct());
    EXPECT_TRUE(alive(lab->manager_pid()));

    auto ext_fd = netlink::open_netns(lab->ext().netns);
    ASSERT_TRUE(ext_fd);
    auto ext = netlink::Session::open(ext_fd->get());
    ASSERT_TRUE(ext);
    EXPECT_EQ(ext->mtu("eth0").value_or(0), 4000u);

    for (const auto& addr : {lab->direct()->ipv4_address(), lab->direct()->ipv6_address(),
                             lab->apps()[0].ipv4_address(), lab->apps()[0].ipv6_address()}) {
      auto st = ping(lab->ext().netns, addr, 5s);
      EXPECT_TRUE(st) << st.error().message;
    }
    pid_t manager = lab->manager_pid();
    auto st = lab->down();
    ASSERT_TRUE(st) << st.error().message;
    EXPECT_FALSE(alive(manager));
    EXPECT_EQ(leftovers(o.name), std::vector<std::string>{});
  }
}

TEST(Lab, TopologyWithoutManager) {
  LabOptions o;
  o.name = random_suffix();
  o.apps = 3;
  o.mtu = 9000;
  o.start_manager = false;
  LabGuard guard(o.name);
  auto lab = Lab::up(o);
  ASSERT_TRUE(lab) << lab.error().message;
  const auto& sfx = o.name;

  auto sw_fd = netlink::open_netns("ng-" + sfx + "-sw");
  ASSERT_TRUE(sw_fd);
  auto sw = netlink::Session::open(sw_fd->get());
  ASSERT_TRUE(sw);
  EXPECT_TRUE(sw->is_up("br0").value_or(false));
  EXPECT_EQ(sw->mtu("br0").value_or(0), 9000u);
  for (const auto& port : {"ng" + sfx + "pa", "ng" + sfx + "pb", "ng" + sfx + "pe"}) {
    EXPECT_EQ(sw->master(port).value_or("?"), "br0") << port;
    EXPECT_TRUE(sw->is_up(port).value_or(false)) << port;
  }

  auto root = netlink::Session::open();
  ASSERT_TRUE(root);
  for (const auto& nic : {"ng" + sfx + "na", "ng" + sfx + "nb"}) {
    EXPECT_FALSE(root->is_up(nic).value_or(true)) << nic << " must stay down in the root ns";
    EXPECT_EQ(root->mtu(nic).value_or(0), 9000u);
    auto addrs = root->addresses(nic);
    ASSERT_TRUE(addrs) << addrs.error().message;
    EXPECT_TRUE(addrs->empty()) << nic << " must have no address";
  }

  auto ext_fd = netlink::open_netns("ng-" + sfx + "-ext");
  ASSERT_TRUE(ext_fd);
  auto ext = netlink::Session::open(ext_fd->get());
  ASSERT_TRUE(ext);
  auto addrs = ext->addresses("eth0");
  ASSERT_TRUE(addrs);
  std::vector<std::string> texts;
  for (const auto& a : *addrs) texts.push_back(a.text);
  EXPECT_NE(std::find(texts.begin(), texts.end(), "10.99.0.1/24"), texts.end());
  EXPECT_NE(std::find(texts.begin(), texts.end(), "fd99::1/64"), texts.end());

  for (int i = 1; i <= 3; ++i) {
    auto fd = netlink::open_netns(fmt::format("ng-{}-app{}", sfx, i));
    ASSERT_TRUE(fd) << fd.error().message;
    auto s = netlink::Session::open(fd->get());
    ASSERT_TRUE(s);
    EXPECT_EQ(s->links(), std::vector<std::string>{"lo"});
  }
  uint64_t tag = fnv1a64(sfx);
  EXPECT_EQ(lab->apps()[2].mac, fmt::format("02:{:02x}:{:02x}:00:01:03", tag & 0xff, (tag >> 8) & 0xff));
  EXPECT_EQ(lab->apps()[2].ipv4, "10.99.0.13/24");
  EXPECT_EQ(lab->apps()[2].ipv6, "fd99::13/64");

  std::ifstream toml(lab->config_path());
  std::string config((std::istreambuf_iterator<char>(toml)), {});
  EXPECT_NE(config.find(fmt::format("state_dir = \"{}/state\"", lab_dir(sfx))), std::string::npos);
  EXPECT_NE(config.find(fmt::format("nic = \"ng{}nb\"", sfx)), std::string::npos);
  EXPECT_NE(config.find(fmt::format("netns = \"ng-{}-drv-a\"", sfx)), std::string::npos);
  EXPECT_NE(config.find("mtu = 9000"), std::string::npos);

  auto loaded = load(sfx);
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->to_json(), lab->info().to_json());

  Child down({"lab", "down", "--name", sfx});
  ASSERT_EQ(run(down), 0) << down.err();
  lab->detach();  // removed by the CLI above
  EXPECT_EQ(leftovers(sfx), std::vector<std::string>{});
}

TEST(Lab, KilledRunIsRemovedByCleanup) {
  auto sfx = random_suffix();
  LabGuard guard(sfx);
  auto dir = lab_dir(sfx);
  Child up({"lab", "up", "--name", sfx, "--apps", "2"});
  // Kill once the manager has started its children, whether or not the
  // traffic wait has finished.
  ASSERT_TRUE(eventually(
      [&] {
        return fs::exists(dir + "/state/front-app2.pid") && fs::exists(dir + "/state/driver-b.pid");
      },
      30s))
      << "the manager did not start its driver domains and frontends";
  auto info = load(sfx);
  ASSERT_TRUE(info) << info.error().message;
  std::vector<pid_t> pids = {info->manager_pid};
  for (const auto& f : {"driver-a.pid", "driver-b.pid", "front-app1.pid", "front-app2.pid"}) {
    pids.push_back(read_pid(dir + "/state/" + f));
  }
  up.kill_now();
  ::kill(info->manager_pid, SIGKILL);
  ASSERT_TRUE(eventually([&] { return !alive(info->manager_pid); }, 5s));
  EXPECT_FALSE(leftovers(sfx).empty());

  Child clean({"lab", "cleanup", "--name", sfx});
  ASSERT_EQ(run(clean), 0) << clean.err();
  EXPECT_NE(clean.out().find("netns ng-" + sfx + "-sw"), std::string::npos) << clean.out();
  EXPECT_NE(clean.out().find("netns ng-" + sfx + "-drv-a"), std::string::npos) << clean.out();
  EXPECT_EQ(leftovers(sfx), std::vector<std::string>{});
  for (pid_t pid : pids) EXPECT_FALSE(alive(pid)) << "pid " << pid << " survived cleanup";

  Child again({"lab", "cleanup", "--name", sfx});
  ASSERT_EQ(run(again), 0) << again.err();
  EXPECT_NE(again.out().find("nothing to clean up"), std::string::npos) << again.out();
}

// Plain `lab cleanup` removes every lab on the host; to test it without
// touching labs other people run here, it runs in private mount and network
// namespaces with their own /run/netns and /run/nicguard.
TEST(Lab, GlobalCleanupRemovesKilledRunsAndStrays) {
  auto script = fmt::format(R"(
set -e
B={}
trap '$B lab cleanup >/dev/null 2>&1 || true' EXIT INT TERM
mkdir -p /run/netns /run/nicguard
mount -t tmpfs none /run/netns
mount -t tmpfs none /run/nicguard
ip link set lo up
$B lab up --name 1aa1 >/dev/null 2>&1 &
P=$!
i=0
while [ ! -f /run/nicguard/lab-1aa1/state/front-app1.pid ]; do
  i=$((i+1)); [ $i -lt 300 ] || exit 3; sleep 0.1
done
M=$(sed -n 's/.*"manager_pid": \([0-9]*\).*/\1/p' /run/nicguard/lab-1aa1/lab.json)
# A killed run: its manager dies; `lab up` may have finished already.
kill -9 $M
kill -9 $P 2>/dev/null || true
$B lab up --no-manager --name beef >/dev/null
rm -rf /run/nicguard/lab-beef
ip netns add ng-stray
ip link add ngc0de99 type veth peer name ngc0de98
$B lab cleanup
echo "NETNS:[$(ip netns list | tr '\n' ' ')]"
echo "LINKS:[$(ip -o link | grep -c ': ng' || true)]"
echo "DIRS:[$(ls /run/nicguard | tr '\n' ' ')]"
$B lab cleanup
)",
                            NICGUARD_BINARY);
  std::string out;
  int rc = -1;
  if (FILE* p = ::popen(("timeout 60 unshare --mount --net sh -c '" +
                         std::regex_replace(script, std::regex("'"), "'\\''") + "' 2>&1")
                            .c_str(),
                        "r")) {
    char buf[512];
    while (size_t n = std::fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
    rc = ::pclose(p);
  }
  ASSERT_EQ(rc, 0) << out;
  for (const char* line :
       {"removed netns ng-1aa1-sw", "removed netns ng-1aa1-drv-a", "removed netns ng-1aa1-app1",
        "(nicguard driver)", "(nicguard front)", "removed directory /run/nicguard/lab-1aa1",
        "removed netns ng-beef-ext", "removed link ngbeefna", "removed netns ng-stray",
        "removed link ngc0de9", "NETNS:[]", "LINKS:[0]", "DIRS:[]", "nothing to clean up"}) {
    EXPECT_NE(out.find(line), std::string::npos) << "missing '" << line << "' in:\n" << out;
  }
}

TEST(Lab, InterruptedSetupRemovesEverything) {
  auto sfx = random_suffix();
  LabGuard guard(sfx);
  Child up({"lab", "up", "--name", sfx});
  ASSERT_TRUE(eventually([&] { return fs::exists(lab_dir(sfx)); }, 10s));
  ::kill(up.pid(), SIGINT);
  int rc = run(up, 30s);
  EXPECT_NE(rc, 0);
  EXPECT_NE(rc, -1) << "lab up did not stop after SIGINT";
  EXPECT_EQ(leftovers(sfx), std::vector<std::string>{}) << up.err();
}

TEST(Lab, ManagerThatExitsFailsUpAndRemovesEverything) {
  LabOptions o;
  o.name = random_suffix();
  o.binary = "/bin/false";
  LabGuard guard(o.name);
  auto lab = Lab::up(o);
  ASSERT_FALSE(lab);
  EXPECT_NE(lab.error().message.find("exited with status 1"), std::string::npos)
      << lab.error().message;
  EXPECT_NE(lab.error().message.find("manager.log"), std::string::npos) << lab.error().message;
  EXPECT_EQ(leftovers(o.name), std::vector<std::string>{});
}

TEST(Lab, NoTrafficTimesOutWithLogsAndRemovesEverything) {
  LabOptions o;
  o.name = random_suffix();
  o.traffic_timeout = 1500ms;
  LabGuard guard(o.name);
  // A "manager" that logs and then never forwards anything.
  auto script = fmt::format("/tmp/ng-lab-test-{}.sh", o.name);
  {
    std::ofstream f(script);
    f << "#!/bin/sh\necho fake manager $2 $3\nwhile :; do sleep 0.1; done\n";
  }
  ::chmod(script.c_str(), 0755);
  o.binary = script;
  auto lab = Lab::up(o);
  ::unlink(script.c_str());
  ASSERT_FALSE(lab);
  const auto& msg = lab.error().message;
  EXPECT_NE(msg.find("no ICMP echo reply from 10.99.0.11"), std::string::npos) << msg;
  EXPECT_NE(msg.find("fake manager -c " + lab_dir(o.name) + "/nicguard.toml"), std::string::npos)
      << msg;
  EXPECT_EQ(leftovers(o.name), std::vector<std::string>{});
}

TEST(Lab, UsageErrors) {
  Child zero({"lab", "up", "--apps", "0"});
  EXPECT_NE(run(zero), 0);
  EXPECT_NE(zero.err().find("--apps"), std::string::npos) << zero.err();

  Child name({"lab", "up", "--name", "Bad_Name"});
  EXPECT_EQ(run(name), 1);
  EXPECT_NE(name.err().find("Bad_Name"), std::string::npos) << name.err();

  Child down({"lab", "down", "--name", "f00d0"});
  EXPECT_EQ(run(down), 1);
  EXPECT_NE(down.err().find("no lab named 'f00d0'"), std::string::npos) << down.err();
}

TEST(Lab, TakenNameIsRefused) {
  LabOptions o;
  o.name = random_suffix();
  o.start_manager = false;
  LabGuard guard(o.name);
  auto first = Lab::up(o);
  ASSERT_TRUE(first) << first.error().message;
  auto second = Lab::up(o);
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find("already exists"), std::string::npos)
      << second.error().message;
  EXPECT_TRUE(fs::exists(lab_dir(o.name))) << "a refused lab must not remove the existing one";
}

}  // namespace
}  // namespace ng::lab

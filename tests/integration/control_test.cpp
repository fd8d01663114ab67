// The commands a host operator types without naming a manager: `status`,
// `events` and `inject` find the only one running, and with two running
// they list both and ask for one, touching neither.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <sstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support.hpp"

namespace ng::it {
namespace {

TEST(Control, CommandsFindTheOnlyManagerAndAskWhenThereAreTwo) {
  LabGuard first;
  ASSERT_TRUE(first.ok()) << first.error();
  auto status = run(fmt::format("{} status", quote(kNicguard)));
  ASSERT_TRUE(status.ok()) << status.describe();
  EXPECT_EQ(status.out.rfind("health: OK, 1 of 1 apps served, a spare ready for every app", 0), 0u)
      << status.out;
  EXPECT_NE(status.out.find(first.config()), std::string::npos) << status.out;
  auto events = run(fmt::format("{} events", quote(kNicguard)));
  ASSERT_TRUE(events.ok()) << events.describe();
  EXPECT_NE(events.out.find("\"event\":\"start\""), std::string::npos) << events.out;
  auto inject = run(fmt::format("{} inject a nosuchfault", quote(kNicguard)));
  EXPECT_EQ(inject.exit_code, 2) << inject.describe();  // refused before any manager is asked

  LabGuard second;
  ASSERT_TRUE(second.ok()) << second.error();
  for (const char* cmd : {"status", "events", "inject a hang"}) {
    auto r = run(fmt::format("{} {}", quote(kNicguard), cmd));
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_NE(r.err.find("2 managers are running"), std::string::npos) << r.describe();
    EXPECT_NE(r.err.find("-s " + first.control_socket()), std::string::npos) << r.describe();
    EXPECT_NE(r.err.find("-s " + second.control_socket()), std::string::npos) << r.describe();
  }
  // Nothing was injected: the question went to neither manager.
  for (const LabGuard* lab : {&first, &second}) {
    for (const auto& e : read_events(*lab)) {
      EXPECT_NE(e.value("event", ""), "inject") << e.dump();
      EXPECT_NE(e.value("event", ""), "detect") << e.dump();
    }
  }
}

// A domain that cannot start says why in its own words, in status and in
// its exit event, and is restarted with back-off, not "exited with status 1".
TEST(Control, ADomainWhoseNicIsGoneSaysSo) {
  LabGuard lab;
  ASSERT_TRUE(lab.ok()) << lab.error();
  const LabDriver& b = lab.drivers().at(1);
  auto s = lab.status();
  ASSERT_TRUE(s) << lab.error();
  pid_t pid = s->at("drivers")[1].value("pid", 0);
  ASSERT_GT(pid, 0);
  auto del = run(fmt::format("ip -n {} link del {}", b.netns, b.nic));
  ASSERT_TRUE(del.ok()) << del.describe();
  ::kill(pid, SIGKILL);
  const std::string want = fmt::format("NIC '{}' is not in the driver domain's namespace", b.nic);
  std::string seen;
  EXPECT_TRUE(wait_until(
      [&] {
        auto now = lab.status();
        if (!now) return false;
        seen = now->at("drivers")[1].value("last_failure", nlohmann::json()).dump();
        return seen.find(want) != std::string::npos;
      },
      20s))
      << seen << "\n" << lab.status_table() << lab.logs();
  bool in_event = false;
  for (const auto& e : read_events(lab)) {
    if (e.value("event", "") == "exit" && e.value("reason", "").find(want) != std::string::npos) in_event = true;
  }
  EXPECT_TRUE(in_event) << event_lines(lab);
  auto table = run(fmt::format("{} status -s {}", quote(kNicguard), quote(lab.control_socket())));
  EXPECT_NE(table.out.find("driver b: last ended"), std::string::npos) << table.describe();
  EXPECT_NE(table.out.find(want), std::string::npos) << table.describe();
}

// A second manager whose config names the first one's NICs (only the state
// directory differs) is refused before it touches anything, naming the
// first; the first keeps its domains and its traffic.
TEST(Control, ASecondManagerOnTheSameNicsIsRefused) {
  LabGuard lab;
  ASSERT_TRUE(lab.ok()) << lab.error();
  auto before = lab.status();
  ASSERT_TRUE(before) << lab.error();
  std::ifstream in(lab.config());
  std::string config((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string state = fmt::format("state_dir = \"{}\"", lab.state_dir());
  auto at = config.find(state);
  ASSERT_NE(at, std::string::npos) << config;
  TempDir dir("ng-it-second");
  config.replace(at, state.size(), fmt::format("state_dir = \"{}\"", dir.file("state")));
  std::string path = dir.file("second.toml");
  std::ofstream(path) << config;
  auto r = run(fmt::format("{} manager -c {}", quote(kNicguard), quote(path)), 30s);
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.err.find("is owned by the manager at " + lab.control_socket()), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("nothing was changed"), std::string::npos) << r.describe();
  auto after = lab.status();
  ASSERT_TRUE(after) << lab.error();
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(after->at("drivers")[i].value("pid", 0), before->at("drivers")[i].value("pid", 0));
  }
  auto reach = run_in(lab.ext_ns(), "ping -c 3 -i 0.2 -W 2 " + lab.apps().at(0).ipv4, 20s);
  EXPECT_TRUE(reach.ok()) << reach.describe();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The config's [[app]] table named `name`, cut out; "" if there is none.
std::string cut_app(std::string& config, const std::string& name) {
  auto at = config.find("[[app]]\nname = \"" + name + "\"");
  if (at == std::string::npos) return "";
  auto end = config.find("[[app]]", at + 1);
  if (end == std::string::npos) end = config.size();
  std::string table = config.substr(at, end - at);
  config.erase(at, end - at);
  return table;
}

// `nicguard reload` while app1 carries a TCP transfer: app2 goes, app3
// comes (and answers), app1's frontend and both driver domains keep their
// pids, and the transfer ends whole. A bad config and a change that needs
// a restart are refused, and nothing changes.
TEST(Control, ReloadAddsAndRemovesAppsWhileAnotherAppsTransferRuns) {
  LabOptions o;
  o.apps = 2;
  LabGuard lab(o);
  ASSERT_TRUE(lab.ok()) << lab.error();
  TempDir dir("ng-it-reload");
  std::string why;
  auto file = make_random_file(dir.path(), uint64_t{24} << 20, &why);
  ASSERT_TRUE(file) << why;
  auto before = lab.status();
  ASSERT_TRUE(before) << lab.error();
  const auto& app1 = lab.apps().at(0);
  auto transfer = std::async(std::launch::async, [&] {
    return tcp_transfer(lab.ext_ns(), app1.netns, app1.ipv4, 5332, *file, 60s, uint64_t{6} << 20);
  });
  std::this_thread::sleep_for(1s);

  std::string config = read_file(lab.config());
  std::string app2 = cut_app(config, "app2");
  ASSERT_FALSE(app2.empty()) << config;
  const std::string app3_ns = fmt::format("ng-{}-app3", lab.suffix());
  config += fmt::format("\n[[app]]\nname = \"app3\"\nnetns = \"{}\"\nmac = \"02:0e:0e:00:03:03\"\n"
                        "ipv4 = [\"10.99.0.13/24\"]\nrx_probe_target = \"10.99.0.1\"\n"
                        "\n[detect]\nhang_timeout_ms = 8\n",
                        app3_ns);
  std::ofstream(lab.config()) << config;
  auto r = run(fmt::format("{} reload -s {}", quote(kNicguard), quote(lab.control_socket())), 30s);
  ASSERT_TRUE(r.ok()) << r.describe() << lab.logs();
  EXPECT_NE(r.out.find("added app3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("removed app2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("new detector settings"), std::string::npos) << r.out;
  EXPECT_TRUE(wait_until([&] { return run_in(lab.ext_ns(), "ping -c 1 -W 1 10.99.0.13", 5s).ok(); }, 20s))
      << lab.status_table() << lab.logs();
  EXPECT_NE(read_file(lab.state_dir() + "/front-app1.settings").find("\"hang_timeout_ms\":8"), std::string::npos);

  // Refused whole: a key the schema does not know, then a policy change.
  size_t seen = read_events(lab).size();
  auto applied = read_file(lab.config());
  std::ofstream(lab.config()) << applied << "\n[ring]\nbogus = 1\n";
  auto bad = run(fmt::format("{} reload -s {}", quote(kNicguard), quote(lab.control_socket())), 30s);
  EXPECT_EQ(bad.exit_code, 1) << bad.describe();
  EXPECT_NE(bad.err.find("nothing changed"), std::string::npos) << bad.describe();
  EXPECT_NE(bad.err.find("bogus"), std::string::npos) << bad.describe();
  std::string restart_only = applied;
  restart_only.replace(restart_only.find("[manager]\n"), 10, "[manager]\nrealtime_priority = 7\n");
  std::ofstream(lab.config()) << restart_only;
  auto blocked = run(fmt::format("{} reload -s {}", quote(kNicguard), quote(lab.control_socket())), 30s);
  EXPECT_EQ(blocked.exit_code, 1) << blocked.describe();
  EXPECT_NE(blocked.err.find("manager.realtime_priority changed (0 -> 7)"), std::string::npos) << blocked.describe();
  EXPECT_NE(blocked.err.find("restart the manager"), std::string::npos) << blocked.describe();
  EXPECT_TRUE(has_event(lab, seen, {{"event", "reload-refused"}})) << event_lines(lab);
  EXPECT_FALSE(has_event(lab, seen, {{"event", "start"}})) << event_lines(lab);
  EXPECT_FALSE(has_event(lab, seen, {{"event", "retire"}})) << event_lines(lab);

  auto t = transfer.get();
  EXPECT_TRUE(t.ok) << t.detail << event_lines(lab);
  auto after = lab.status();
  ASSERT_TRUE(after) << lab.error();
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(after->at("drivers")[i].value("pid", 0), before->at("drivers")[i].value("pid", 0));
  }
  std::vector<std::string> names;
  for (const auto& a : after->at("apps")) names.push_back(a.value("name", ""));
  EXPECT_EQ(names, (std::vector<std::string>{"app1", "app3"}));
  EXPECT_EQ(after->at("apps")[0].value("pid", 0), before->at("apps")[0].value("pid", 0));
  for (const auto& e : read_events(lab)) {
    EXPECT_NE(e.value("event", ""), "detect") << e.dump();
  }
}

// A datagram socket standing in for systemd's NOTIFY_SOCKET.
class NotifyListener {
 public:
  explicit NotifyListener(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    ::unlink(path.c_str());
    ok_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~NotifyListener() {
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
  }
  bool ok() const { return ok_; }
  // The next message, or "" after `limit`.
  std::string next(std::chrono::milliseconds limit) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) != 1) return "";
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }
  // Messages until one holds `what` (returned), or "" after `limit`.
  std::string until(const std::string& what, std::chrono::milliseconds limit, int* others = nullptr) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      std::string m = next(std::max(left, 1ms));
      if (m.find(what) != std::string::npos) return m;
      if (!m.empty() && others) ++*others;
    }
    return "";
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool ok_ = false;
};

// Under systemd (Type=notify) the manager says READY=1 once every app is
// served, pets the watchdog from its loop, says RELOADING=1 and READY=1
// around a reload (SIGHUP), and STOPPING=1 on SIGTERM.
TEST(Service, TheManagerSaysReadyPetsTheWatchdogReloadsAndSaysStopping) {
  std::string sfx = fmt::format("sv{}", ::getpid() % 100000);
  auto up = run(fmt::format("{} lab up --no-manager --apps 2 --name {}", quote(kNicguard), sfx), 60s);
  struct Down {
    std::string sfx;
    ~Down() { run(fmt::format("{} lab down --name {}", quote(kNicguard), sfx), 60s); }
  } down{sfx};
  ASSERT_TRUE(up.ok()) << up.describe();
  TempDir dir("ng-it-notify");
  NotifyListener systemd(dir.file("notify"));
  ASSERT_TRUE(systemd.ok());
  Background manager(fmt::format("exec env NOTIFY_SOCKET={} WATCHDOG_USEC=200000 {} manager -c /run/nicguard/lab-{}/nicguard.toml",
                                 dir.file("notify"), quote(kNicguard), sfx));
  std::string ready = systemd.until("READY=1", 30s);
  ASSERT_FALSE(ready.empty()) << manager.err();
  EXPECT_NE(ready.find("2 of 2 apps served"), std::string::npos) << ready;
  // Half the watchdog interval apart: about 10 in a second.
  int pets = 0;
  auto until = std::chrono::steady_clock::now() + 1s;
  while (std::chrono::steady_clock::now() < until) {
    if (systemd.next(100ms).find("WATCHDOG=1") != std::string::npos) ++pets;
  }
  EXPECT_GE(pets, 4) << manager.err();
  // systemctl reload: RELOADING=1, then READY=1 once it is applied.
  ::kill(manager.pid(), SIGHUP);
  EXPECT_FALSE(systemd.until("RELOADING=1", 10s).empty()) << manager.err();
  EXPECT_NE(systemd.until("READY=1", 10s).find("2 of 2 apps served"), std::string::npos) << manager.err();
  ::kill(manager.pid(), SIGTERM);
  EXPECT_FALSE(systemd.until("STOPPING=1", 10s).empty()) << manager.err();
  auto r = manager.finish(30s);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
}

// SIGUSR2 ends the manager and leaves every domain serving; the next
// manager on the same config adopts them. A TCP transfer across both does
// not notice (the upgrade of the manager in place, RestartForceExitStatus=3).
TEST(Service, SigusrTwoLeavesTheDomainsServingForTheNextManager) {
  LabGuard lab;
  ASSERT_TRUE(lab.ok()) << lab.error();
  TempDir dir("ng-it-usr2");
  std::string why;
  auto file = make_random_file(dir.path(), uint64_t{24} << 20, &why);
  ASSERT_TRUE(file) << why;
  auto before = lab.status();
  ASSERT_TRUE(before) << lab.error();
  const auto& app = lab.apps().at(0);
  auto transfer = std::async(std::launch::async, [&] {
    return tcp_transfer(lab.ext_ns(), app.netns, app.ipv4, 5331, *file, 60s, uint64_t{6} << 20);
  });
  std::this_thread::sleep_for(1s);
  ASSERT_EQ(::kill(lab.manager_pid(), SIGUSR2), 0);
  EXPECT_TRUE(wait_until([&] { return !process_alive(lab.manager_pid()); }, 10s));
  std::vector<pid_t> pids;
  for (const char* table : {"drivers", "apps"}) {
    for (const auto& d : before->at(table)) pids.push_back(d.value("pid", 0));
  }
  for (pid_t p : pids) EXPECT_TRUE(process_alive(p)) << "pid " << p << " did not outlive the manager";
  size_t seen = read_events(lab).size();
  Background next(fmt::format("exec {} manager -c {}", quote(kNicguard), quote(lab.config())));
  auto after = wait_status(lab, 10s);
  EXPECT_TRUE(after) << next.err();
  std::vector<pid_t> now;
  for (const char* table : {"drivers", "apps"}) {
    for (const auto& d : after.value_or(nlohmann::json::object()).value(table, nlohmann::json::array()))
      now.push_back(d.value("pid", 0));
  }
  EXPECT_EQ(now, pids) << "the next manager did not adopt every domain\n" << event_lines(lab);
  EXPECT_TRUE(has_event(lab, seen, {{"event", "adopt"}})) << event_lines(lab);
  auto t = transfer.get();
  EXPECT_TRUE(t.ok) << t.detail << event_lines(lab);
  auto r = next.stop();
  EXPECT_EQ(r.exit_code, 0) << r.describe();
}

// The unit file systemd would load, checked by systemd itself (with the
// binary under test in place of /usr/sbin/nicguard).
TEST(Service, TheUnitFilePassesSystemdAnalyzeVerify) {
  TempDir dir("ng-it-unit");
  std::ifstream in(std::string(NICGUARD_SOURCE_DIR) + "/dist/systemd/nicguard.service");
  std::string unit((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_NE(unit.find("Type=notify"), std::string::npos) << unit;
  for (size_t at; (at = unit.find("/usr/sbin/nicguard")) != std::string::npos;) {
    unit.replace(at, std::string("/usr/sbin/nicguard").size(), kNicguard);
  }
  std::string path = dir.file("nicguard.service");
  std::ofstream(path) << unit;
  auto r = run(fmt::format("systemd-analyze verify {}", quote(path)));
  EXPECT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.err, "") << r.describe();
}

// The Debian package holds what a host needs: the binary, the unit, the
// example config (a conffile, and a valid one), a man page per command and
// bash completion, with the libraries' packages as its dependencies.
TEST(Package, TheDebHoldsTheBinaryTheUnitTheConfigAndAManPagePerCommand) {
  auto check = run(fmt::format("{} manager --check -c {}/dist/nicguard.toml", quote(kNicguard), NICGUARD_SOURCE_DIR));
  EXPECT_TRUE(check.ok()) << check.describe();
  auto built = run(fmt::format("cmake --build {} --target package", quote(NICGUARD_BUILD_DIR)), 600s);
  ASSERT_TRUE(built.ok()) << built.describe();
  std::string deb;
  for (const auto& e : std::filesystem::directory_iterator(NICGUARD_BUILD_DIR)) {
    if (e.path().extension() == ".deb") deb = e.path().string();
  }
  ASSERT_FALSE(deb.empty()) << built.describe();
  auto list = run(fmt::format("dpkg-deb -c {}", quote(deb)));
  ASSERT_TRUE(list.ok()) << list.describe();
  std::vector<std::string> want = {"./usr/sbin/nicguard", "./usr/lib/systemd/system/nicguard.service",
                                   "./etc/nicguard/nicguard.toml", "./usr/share/man/man8/nicguard.8",
                                   "./usr/share/bash-completion/completions/nicguard"};
  auto commands = run(fmt::format("{} completion --commands", quote(kNicguard)));
  ASSERT_TRUE(commands.ok()) << commands.describe();
  std::istringstream names(commands.out);
  for (std::string c; names >> c;) want.push_back("./usr/share/man/man8/nicguard-" + c + ".8");
  EXPECT_GE(want.size(), 15u);  // status, inject, lab, campaign, ... each have a page
  for (const auto& path : want) EXPECT_NE(list.out.find(" " + path + "\n"), std::string::npos) << path << "\n" << list.out;
  auto info = run(fmt::format("dpkg-deb -I {}", quote(deb)));
  EXPECT_NE(info.out.find("conffiles"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("libsystemd0"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("libnl-route-3-200"), std::string::npos) << info.out;
}

}  // namespace
}  // namespace ng::it

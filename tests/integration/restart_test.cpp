// `systemctl restart nicguard` keeps traffic flowing: on SIGTERM a manager
// under systemd asks systemd, over the system bus, what its unit's job is,
// and a restart leaves the domains serving for the next manager as SIGUSR2
// does. Real parts: a private dbus-daemon, and a stand-in for systemd
// (org.freedesktop.systemd1: GetUnitByPID, the unit's Id and Job, the job's
// JobType) served by this test with sd-bus on a thread of its own.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support.hpp"

namespace ng::it {
namespace {

constexpr const char* kUnitPath = "/org/freedesktop/systemd1/unit/nicguard_2eservice";

// dbus-daemon on a unix socket in a temp dir, allowing everything.
class PrivateBus {
 public:
  PrivateBus() : dir_("ng-it-bus") {
    std::string config = dir_.file("bus.conf");
    std::ofstream(config) << fmt::format(
        "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
        " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
        "<busconfig>\n"
        "  <type>custom</type>\n"
        "  <listen>unix:path={}</listen>\n"
        "  <auth>EXTERNAL</auth>\n"
        "  <policy context=\"default\">\n"
        "    <allow user=\"*\"/>\n"
        "    <allow own=\"*\"/>\n"
        "    <allow send_destination=\"*\" eavesdrop=\"true\"/>\n"
        "    <allow receive_sender=\"*\"/>\n"
        "  </policy>\n"
        "</busconfig>\n",
        dir_.file("bus"));
    daemon_.emplace(fmt::format("exec dbus-daemon --nofork --print-address --config-file={}", quote(config)));
    ok_ = wait_until([&] { return std::filesystem::exists(dir_.file("bus")); }, 10s, 20ms);
  }
  bool ok() const { return ok_; }
  std::string address() const { return "unix:path=" + dir_.file("bus"); }
  std::string err() const { return daemon_ ? daemon_->err() : ""; }

 private:
  TempDir dir_;
  std::optional<Background> daemon_;
  bool ok_ = false;
};

// org.freedesktop.systemd1 as far as the manager asks it.
class FakeSystemd {
 public:
  FakeSystemd(const std::string& address, uint32_t job_id, std::string job_type)
      : job_id_(job_id), job_type_(std::move(job_type)) {
    job_path_ = fmt::format("/org/freedesktop/systemd1/job/{}", job_id_);
    if (sd_bus_new(&bus_) < 0 || sd_bus_set_address(bus_, address.c_str()) < 0 ||
        sd_bus_set_bus_client(bus_, 1) < 0 || sd_bus_start(bus_) < 0) {
      error_ = "cannot connect to " + address;
      return;
    }
    if (sd_bus_add_object_vtable(bus_, nullptr, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager",
                                 kManager, this) < 0 ||
        sd_bus_add_object_vtable(bus_, nullptr, kUnitPath, "org.freedesktop.systemd1.Unit", kUnit, this) < 0 ||
        sd_bus_add_object_vtable(bus_, nullptr, job_path_.c_str(), "org.freedesktop.systemd1.Job", kJob, this) < 0) {
      error_ = "cannot add the objects";
      return;
    }
    if (int r = sd_bus_request_name(bus_, "org.freedesktop.systemd1", 0); r < 0) {
      error_ = fmt::format("cannot own org.freedesktop.systemd1: {}", strerror(-r));
      return;
    }
    thread_ = std::thread([this] {
      while (!stop_) {
        int r = sd_bus_process(bus_, nullptr);
        if (r < 0) break;
        if (r == 0) sd_bus_wait(bus_, 50'000);
      }
    });
  }
  ~FakeSystemd() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    sd_bus_flush_close_unref(bus_);
  }
  const std::string& error() const { return error_; }
  void set_job_type(const std::string& type) {
    std::lock_guard lock(mu_);
    job_type_ = type;
  }
  std::vector<uint32_t> asked_pids() {
    std::lock_guard lock(mu_);
    return asked_;
  }

 private:
  static int get_unit_by_pid(sd_bus_message* m, void* userdata, sd_bus_error*) {
    auto* self = static_cast<FakeSystemd*>(userdata);
    uint32_t pid = 0;
    if (int r = sd_bus_message_read(m, "u", &pid); r < 0) return r;
    {
      std::lock_guard lock(self->mu_);
      self->asked_.push_back(pid);
    }
    return sd_bus_reply_method_return(m, "o", kUnitPath);
  }
  static int unit_id(sd_bus*, const char*, const char*, const char*, sd_bus_message* reply, void*, sd_bus_error*) {
    return sd_bus_message_append(reply, "s", "nicguard.service");
  }
  static int unit_job(sd_bus*, const char*, const char*, const char*, sd_bus_message* reply, void* userdata,
                      sd_bus_error*) {
    auto* self = static_cast<FakeSystemd*>(userdata);
    return sd_bus_message_append(reply, "(uo)", self->job_id_, self->job_path_.c_str());
  }
  static int job_type(sd_bus*, const char*, const char*, const char*, sd_bus_message* reply, void* userdata,
                      sd_bus_error*) {
    auto* self = static_cast<FakeSystemd*>(userdata);
    std::lock_guard lock(self->mu_);
    return sd_bus_message_append(reply, "s", self->job_type_.c_str());
  }

  static constexpr sd_bus_vtable kManager[] = {
      SD_BUS_VTABLE_START(0),
      SD_BUS_METHOD("GetUnitByPID", "u", "o", get_unit_by_pid, SD_BUS_VTABLE_UNPRIVILEGED),
      SD_BUS_VTABLE_END};
  static constexpr sd_bus_vtable kUnit[] = {
      SD_BUS_VTABLE_START(0),
      SD_BUS_PROPERTY("Id", "s", unit_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
      SD_BUS_PROPERTY("Job", "(uo)", unit_job, 0, 0),
      SD_BUS_VTABLE_END};
  static constexpr sd_bus_vtable kJob[] = {
      SD_BUS_VTABLE_START(0),
      SD_BUS_PROPERTY("JobType", "s", job_type, 0, 0),
      SD_BUS_VTABLE_END};

  sd_bus* bus_ = nullptr;
  uint32_t job_id_;
  std::string job_path_;
  std::mutex mu_;
  std::string job_type_;
  std::vector<uint32_t> asked_;
  std::string error_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::vector<pid_t> domain_pids(const nlohmann::json& status) {
  std::vector<pid_t> pids;
  for (const char* table : {"drivers", "apps"}) {
    for (const auto& d : status.value(table, nlohmann::json::array())) pids.push_back(d.value("pid", 0));
  }
  return pids;
}

std::string manager_env(const std::string& bus) {
  return fmt::format("DBUS_SYSTEM_BUS_ADDRESS={} INVOCATION_ID=0123456789abcdef0123456789abcdef", quote(bus));
}

LabOptions with_bus(const std::string& bus) {
  LabOptions o;
  o.env = {"DBUS_SYSTEM_BUS_ADDRESS=" + bus, "INVOCATION_ID=0123456789abcdef0123456789abcdef"};
  return o;
}

bool ping(const LabGuard& lab, std::string* why) {
  auto r = run_in(lab.ext_ns(), "ping -c 3 -i 0.2 -W 2 " + lab.apps().at(0).ipv4, 20s);
  if (why) *why = r.describe();
  return r.ok();
}

// SIGTERM to the lab's manager, as systemd's stop phase sends it; returns
// the domains' pids from before, once the manager is gone (empty if it did
// not go).
std::vector<pid_t> sigterm_the_manager(const LabGuard& lab) {
  auto before = lab.status();
  EXPECT_TRUE(before) << lab.error();
  if (!before) return {};
  pid_t manager = lab.manager_pid();
  EXPECT_EQ(::kill(manager, SIGTERM), 0);
  bool gone = wait_until([&] { return !process_alive(manager); }, 15s);
  EXPECT_TRUE(gone) << lab.logs();
  return gone ? domain_pids(*before) : std::vector<pid_t>{};
}

// How long the manager took to ask systemd, from its log line; -1 if unsaid.
int asked_ms(const std::string& log) {
  auto at = log.find("(asked in ");
  return at == std::string::npos ? -1 : std::atoi(log.c_str() + at + 10);
}

// A restart job: the SIGTERM leaves every domain serving and the manager
// exits 0; the next manager adopts them; traffic flows throughout.
TEST(Restart, ASystemdRestartJobLeavesTheDomainsServingForTheNextManager) {
  PrivateBus bus;
  ASSERT_TRUE(bus.ok()) << bus.err();
  FakeSystemd systemd(bus.address(), 1234, "restart");
  ASSERT_EQ(systemd.error(), "");
  LabGuard lab(with_bus(bus.address()));
  ASSERT_TRUE(lab.ok()) << lab.error();
  pid_t first = lab.manager_pid();
  auto pids = sigterm_the_manager(lab);
  ASSERT_FALSE(pids.empty());
  for (pid_t p : pids) EXPECT_TRUE(process_alive(p)) << "pid " << p << " did not outlive the manager\n" << lab.logs();
  std::string why;
  EXPECT_TRUE(ping(lab, &why)) << "no traffic with the manager gone: " << why;
  EXPECT_EQ(systemd.asked_pids(), std::vector<uint32_t>{static_cast<uint32_t>(first)});
  EXPECT_TRUE(has_event(lab, 0, {{"event", "manager-leave"}, {"reason", "systemd restart job 1234"}, {"exit_status", 0}}))
      << event_lines(lab);
  std::string log = read_file(lab.manager_log());
  EXPECT_NE(log.find("systemd's job for nicguard.service is 'restart' (job 1234): leaving the domains serving"),
            std::string::npos)
      << log;
  ::testing::Test::RecordProperty("asked_systemd_ms", asked_ms(log));
  EXPECT_LT(asked_ms(log), 500) << log;

  // The next manager (as systemd would start it) adopts them.
  size_t seen = read_events(lab).size();
  Background next(fmt::format("exec env {} {} manager -c {}", manager_env(bus.address()), quote(kNicguard),
                              quote(lab.config())));
  auto after = wait_status(lab, 10s);
  ASSERT_TRUE(after) << next.err();
  EXPECT_EQ(domain_pids(*after), pids) << "the next manager did not adopt every domain\n" << event_lines(lab);
  EXPECT_TRUE(has_event(lab, seen, {{"event", "adopt"}})) << event_lines(lab);
  EXPECT_TRUE(ping(lab, &why)) << why;

  // Its own restart's SIGTERM: exit status 0 (a non-zero one would mark the
  // unit failed), and the domains serve on again.
  ::kill(next.pid(), SIGTERM);
  auto r = next.finish(10s);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  for (pid_t p : pids) EXPECT_TRUE(process_alive(p)) << "pid " << p;
  EXPECT_TRUE(ping(lab, &why)) << why;
}

// A stop job: the domains are stopped as they always were.
TEST(Restart, ASystemdStopJobStopsTheDomains) {
  PrivateBus bus;
  ASSERT_TRUE(bus.ok()) << bus.err();
  FakeSystemd systemd(bus.address(), 77, "stop");
  ASSERT_EQ(systemd.error(), "");
  LabGuard lab(with_bus(bus.address()));
  ASSERT_TRUE(lab.ok()) << lab.error();
  auto pids = sigterm_the_manager(lab);
  ASSERT_FALSE(pids.empty());
  for (pid_t p : pids) EXPECT_FALSE(process_alive(p)) << "pid " << p << " outlived a stop";
  EXPECT_TRUE(has_event(lab, 0,
                        {{"event", "manager-stop"},
                         {"trigger", fmt::format("SIGTERM from pid {}: systemd's job for nicguard.service is 'stop' (job 77)",
                                                 ::getpid())}}))
      << event_lines(lab);
  EXPECT_FALSE(has_event(lab, 0, {{"event", "manager-leave"}})) << event_lines(lab);
}

// No bus to ask: a stop, and the log says why in one line.
TEST(Restart, NoBusToAskIsAStopThatSaysWhy) {
  TempDir dir("ng-it-nobus");
  std::string address = "unix:path=" + dir.file("no-such-bus");
  LabGuard lab(with_bus(address));
  ASSERT_TRUE(lab.ok()) << lab.error();
  auto pids = sigterm_the_manager(lab);
  ASSERT_FALSE(pids.empty());
  for (pid_t p : pids) EXPECT_FALSE(process_alive(p)) << "pid " << p << " outlived a stop";
  std::string log = read_file(lab.manager_log());
  std::string want = fmt::format(
      "could not ask systemd whether this is a restart (cannot connect to the system bus {}: No such file or "
      "directory): stopping the domains",
      address);
  EXPECT_NE(log.find(want), std::string::npos) << log;
}

// A bus that takes the connection and never answers: the manager gives up
// at its deadline (500 ms) and stops, instead of holding its loop.
TEST(Restart, ASilentBusIsAStopAfterTheDeadline) {
  TempDir dir("ng-it-silent");
  std::string path = dir.file("bus");
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << strerror(errno);
  ASSERT_EQ(::listen(fd, 8), 0);  // connections wait in the backlog, unanswered
  LabGuard lab(with_bus("unix:path=" + path));
  ASSERT_TRUE(lab.ok()) << lab.error();
  auto pids = sigterm_the_manager(lab);
  ASSERT_FALSE(pids.empty());
  for (pid_t p : pids) EXPECT_FALSE(process_alive(p)) << "pid " << p << " outlived a stop";
  nlohmann::json stop;
  for (const auto& e : read_events(lab)) {
    if (e.value("event", "") == "manager-stop") stop = e;
  }
  EXPECT_NE(stop.value("trigger", "").find("could not ask systemd whether this is a restart (GetUnitByPID("),
            std::string::npos)
      << event_lines(lab);
  EXPECT_NE(stop.value("trigger", "").find("no answer in time"), std::string::npos) << event_lines(lab);
  int64_t took = stop.value("asked_systemd_ms", int64_t{-1});
  ::testing::Test::RecordProperty("asked_systemd_ms", static_cast<int>(took));
  EXPECT_GE(took, 450) << event_lines(lab);
  EXPECT_LE(took, 1000) << event_lines(lab);
}

}  // namespace
}  // namespace ng::it

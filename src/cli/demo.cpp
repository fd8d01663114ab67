// `nicguard demo`: the whole story in one command. A lab with live traffic, a
// driver domain killed under it, and the interruption the app's clients saw,
// once with a warm spare and once with the restart policy.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <thread>

#include "cli/commands.hpp"
#include "lab/lab.hpp"
#include "manager/control.hpp"
#include "netlink/netlink.hpp"
#include "probe/probe.hpp"

namespace {

using nlohmann::json;

// A forked child that runs fn inside a namespace and writes its JSON answer
// to a pipe; reaped (and killed if still running) by the destructor.
class NetnsChild {
 public:
  template <typename Fn>
  static ng::Result<NetnsChild> start(const std::string& netns, Fn fn) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return ng::fail_errno("creating a pipe");
    pid_t pid = ::fork();
    if (pid < 0) return ng::fail_errno("forking a traffic process");
    if (pid == 0) {
      ::close(p[0]);
      std::string out;
      if (auto s = ng::netlink::enter_netns(netns); !s) {
        out = json{{"error", s.error().message}}.dump();
      } else {
        out = fn().dump();
      }
      [[maybe_unused]] auto n = ::write(p[1], out.data(), out.size());
      ::_exit(0);
    }
    ::close(p[1]);
    NetnsChild c;
    c.pid_ = pid;
    c.out_ = ng::UniqueFd(p[0]);
    return c;
  }
  NetnsChild() = default;
  NetnsChild(NetnsChild&& o) noexcept : pid_(std::exchange(o.pid_, 0)), out_(std::move(o.out_)) {}
  ~NetnsChild() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  // Waits for the child and parses what it wrote.
  json result() {
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(out_.get(), buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
    ::waitpid(pid_, nullptr, 0);
    pid_ = 0;
    return json::parse(text, nullptr, false);
  }

 private:
  pid_t pid_ = 0;
  ng::UniqueFd out_;
};

ng::Result<pid_t> driver_pid(const ng::lab::Lab& lab, const std::string& name) {
  std::ifstream f(lab.state_dir() + "/driver-" + name + ".pid");
  pid_t pid = 0;
  if (!(f >> pid) || pid <= 0) return ng::fail("no pid file for driver domain {}", name);
  return pid;
}

struct Row {
  std::string policy;
  std::string fault;
  json probe;
  bool recovered = false;
};

// Runs a 10,000 packet/s UDP stream through the lab, kills the active driver
// domain half-way, and returns what the stream saw.
ng::Result<Row> crash_under_traffic(const std::string& policy, double seconds) {
  ng::lab::LabOptions o;
  o.policy = policy;
  fmt::print("\n== {}: building a lab ({} driver domain{}) ==\n", policy,
             policy == "restart" ? 1 : 2, policy == "restart" ? "" : "s");
  auto lab = ng::lab::Lab::up(o);
  if (!lab) return tl::unexpected(lab.error());
  const auto& app = lab->apps().front();
  fmt::print("lab {}: external host {} -> app {} ({})\n", lab->suffix(), lab->ext().ipv4_address(),
             app.ipv4_address(), app.netns);
  auto echo = NetnsChild::start(app.netns, [seconds] {
    auto s = ng::probe::run_echo(7777, seconds + 3);
    return s ? json{{"ok", true}} : json{{"error", s.error().message}};
  });
  if (!echo) return tl::unexpected(echo.error());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ng::probe::StreamOptions so;
  so.address = app.ipv4_address();
  so.duration_s = seconds;
  auto stream = NetnsChild::start(lab->ext().netns, [so] {
    auto r = ng::probe::run_stream(so);
    return r ? ng::probe::to_json(*r) : json{{"error", r.error().message}};
  });
  if (!stream) return tl::unexpected(stream.error());
  std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(seconds * 500)));
  auto victim = driver_pid(*lab, "a");
  if (!victim) return tl::unexpected(victim.error());
  fmt::print("live traffic: 10000 UDP packets/s; killing driver domain a (pid {}) with SIGKILL\n",
             *victim);
  ::kill(*victim, SIGKILL);
  Row row{policy, "crash (SIGKILL)", stream->result(), false};
  if (row.probe.contains("error")) return ng::fail("probe: {}", row.probe["error"].get<std::string>());
  auto status = ng::manager::control_request(lab->control_socket(), {{"cmd", "status"}}, 2000);
  if (status) fmt::print("{}\n", ng::manager::format_status_table(*status));
  row.recovered = ng::lab::ping(lab->ext().netns, app.ipv4_address(), std::chrono::seconds(5)).has_value();
  if (auto s = lab->down(); !s) fmt::print(stderr, "warning: {}\n", s.error().message);
  return row;
}

int run_demo(bool as_json, double seconds) {
  std::vector<Row> rows;
  for (const char* policy : {"warm-spare", "restart"}) {
    auto row = crash_under_traffic(policy, seconds);
    if (!row) {
      fmt::print(stderr, "demo: {}\n", row.error().message);
      return 1;
    }
    rows.push_back(*row);
  }
  json out = json::array();
  fmt::print("\n{:<11} {:<16} {:>16} {:>10} {:>10} {:>10}\n", "policy", "fault",
             "interruption ms", "lost", "sent", "recovered");
  for (const auto& r : rows) {
    fmt::print("{:<11} {:<16} {:>16.2f} {:>10} {:>10} {:>10}\n", r.policy, r.fault,
               r.probe.value("interruption_ms", 0.0), r.probe.value("lost", 0),
               r.probe.value("sent", 0), r.recovered ? "yes" : "no");
    out.push_back({{"policy", r.policy}, {"fault", r.fault}, {"probe", r.probe},
                   {"recovered", r.recovered}});
  }
  if (as_json) fmt::print("{}\n", out.dump(2));
  return 0;
}

}  // namespace

void ng::cli::add_demo_command(CLI::App& app, int& exit_code) {
  auto as_json = std::make_shared<bool>(false);
  auto seconds = std::make_shared<double>(4.0);
  auto* cmd = app.add_subcommand(
      "demo", "Build a lab, run live traffic, crash the active driver domain, and show what the "
              "app's clients saw under the warm-spare and the restart policy");
  cmd->add_flag("--json", *as_json, "Also print the table as JSON");
  cmd->add_option("--seconds", *seconds, "Length of each traffic run")->capture_default_str();
  cmd->callback([=, &exit_code] { exit_code = run_demo(*as_json, *seconds); });
}

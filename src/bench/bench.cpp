#include "bench/bench.hpp"
#include "common/proc_net.hpp"
#include "common/text.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "lab/lab.hpp"
#include "manager/control.hpp"
#include "netlink/netlink.hpp"

namespace ng::bench {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

constexpr uint16_t kIperfPort = 5201;
constexpr uint16_t kSockperfPort = 11111;
// 18 + 8 (UDP) + 20 (IPv4) + 14 (Ethernet) + 4 (FCS) = a 64-byte frame.
constexpr int kUdpPayload = 18;
// One iperf3 sender cannot saturate either path on a small host; 4 streams
// keep the offered rate up (udp64_sent_pps shows it).
constexpr int kUdpStreams = 4;
constexpr auto kToolSlack = 20s;  // past the test's duration before a tool is killed
constexpr auto kListenTimeout = 10s;
constexpr int kBusyRetries = 5;
constexpr const char* kIperfHint = "install iperf3 (apt-get install iperf3)";
constexpr const char* kSockperfHint = "install sockperf (apt-get install sockperf)";

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

std::string last_lines(const std::string& text, int lines) {
  auto out = ng::last_lines(text, static_cast<size_t>(lines));
  return out.empty() ? "(no output)" : out;
}

std::string indent(const std::string& text) {
  std::string out = "    ";
  for (char c : text) {
    out += c;
    if (c == '\n') out += "    ";
  }
  return out;
}

double seconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

bool stopped(const Interrupted& interrupted) { return interrupted && interrupted(); }

Status interrupted_error() { return fail("interrupted by a signal"); }

}  // namespace

// ============================================================ parsers

Result<IperfFigures> parse_iperf3(std::string_view text) {
  auto j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return fail("iperf3 did not print a JSON report (is it older than 3.1?); it printed:\n{}",
                indent(last_lines(std::string(text), 10)));
  }
  if (j.contains("error") && j["error"].is_string()) {
    return fail("iperf3: {}", j["error"].get<std::string>());
  }
  try {
    const auto& s = j.at("end").at("sum_received");
    IperfFigures f;
    f.bits_per_second = s.at("bits_per_second").get<double>();
    f.bytes = s.at("bytes").get<double>();
    f.seconds = s.at("seconds").get<double>();
    if (const auto& e = j.at("end"); e.contains("sum_sent") && e["sum_sent"].is_object()) {
      f.sent_bytes = e["sum_sent"].value("bytes", 0.0);
      f.sent_seconds = e["sum_sent"].value("seconds", 0.0);
    }
    return f;
  } catch (const json::exception& e) {
    return fail("iperf3's JSON report has no usable end.sum_received ({})", e.what());
  }
}

Result<RttFigures> parse_sockperf(std::string_view text) {
  static const std::regex ansi("\x1b\\[[0-9;]*m");
  static const std::regex percentile(R"(percentile\s+([0-9.]+)\s*=\s*([0-9.]+))");
  static const std::regex total(R"(Total\s+([0-9]+)\s+observations)");
  std::string clean = std::regex_replace(std::string(text), ansi, "");
  RttFigures r;
  bool p50 = false, p99 = false;
  std::istringstream lines(clean);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, percentile)) {
      double pct = std::stod(m[1].str());
      double us = std::stod(m[2].str());
      if (std::fabs(pct - 50.0) < 1e-6) {
        r.p50_us = us;
        p50 = true;
      } else if (std::fabs(pct - 99.0) < 1e-6) {
        r.p99_us = us;
        p99 = true;
      }
    } else if (std::regex_search(line, m, total)) {
      r.observations = std::stoull(m[1].str());
    }
  }
  if (!p50 || !p99) {
    return fail("sockperf printed no 50th/99th latency percentiles; it printed:\n{}",
                indent(last_lines(clean, 12)));
  }
  return r;
}

Result<uint64_t> parse_stat_cpu_ticks(std::string_view stat) {
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so the
  // fields are counted from the last ')'. utime and stime are fields 14, 15.
  auto close = stat.rfind(')');
  if (close == std::string_view::npos) return fail("malformed /proc stat line");
  std::istringstream in{std::string(stat.substr(close + 1))};
  std::vector<std::string> fields;
  for (std::string f; in >> f && fields.size() < 13;) fields.push_back(f);
  if (fields.size() < 13) return fail("malformed /proc stat line: too few fields");
  try {
    return std::stoull(fields[11]) + std::stoull(fields[12]);
  } catch (const std::exception&) {
    return fail("malformed /proc stat line: utime/stime are not numbers");
  }
}

Result<double> process_cpu_s(pid_t pid) {
  auto text = read_text(fmt::format("/proc/{}/stat", pid));
  if (text.empty()) return fail("process {} is gone", pid);
  auto ticks = parse_stat_cpu_ticks(text);
  if (!ticks) return tl::unexpected(ticks.error());
  return static_cast<double>(*ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

namespace {

// utime+stime of the given processes and all their descendants, in seconds
// (a sandboxed domain may run its work in a child). One pass over /proc.
double tree_cpu_s(const std::vector<pid_t>& roots) {
  if (roots.empty()) return 0;
  std::map<pid_t, std::vector<pid_t>> children;
  std::map<pid_t, uint64_t> ticks;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    auto name = e.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    auto text = read_text(e.path().string() + "/stat");
    auto close = text.rfind(')');
    if (close == std::string::npos) continue;
    pid_t pid = std::atoi(name.c_str());
    std::istringstream in(text.substr(close + 1));
    std::string state;
    pid_t ppid = 0;
    in >> state >> ppid;
    children[ppid].push_back(pid);
    if (auto t = parse_stat_cpu_ticks(text)) ticks[pid] = *t;
  }
  uint64_t sum = 0;
  std::set<pid_t> seen;
  std::vector<pid_t> todo(roots.begin(), roots.end());
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    if (p <= 0 || !seen.insert(p).second) continue;
    if (auto it = ticks.find(p); it != ticks.end()) sum += it->second;
    if (auto it = children.find(p); it != children.end()) {
      todo.insert(todo.end(), it->second.begin(), it->second.end());
    }
  }
  return static_cast<double>(sum) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

}  // namespace

// ============================================================ NetnsProcess

std::optional<std::string> find_in_path(const std::string& tool) {
  if (tool.find('/') != std::string::npos) {
    return ::access(tool.c_str(), X_OK) == 0 ? std::optional(tool) : std::nullopt;
  }
  const char* env = std::getenv("PATH");
  std::string path = env != nullptr && *env != '\0'
                         ? env
                         : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  std::istringstream dirs(path);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (dir.empty()) continue;
    auto candidate = dir + "/" + tool;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return std::nullopt;
}

std::string NetnsProcess::Exit::describe() const {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return fmt::format("was killed by signal {} ({})", WTERMSIG(status),
                       ::strsignal(WTERMSIG(status)));
  }
  return "ended in an unknown way";
}

bool NetnsProcess::Exit::ok() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

Result<NetnsProcess> NetnsProcess::start(const std::string& netns, std::vector<std::string> argv,
                                         const std::string& install_hint) {
  if (argv.empty()) return fail("no command to run in netns {}", netns);
  auto exe = find_in_path(argv[0]);
  if (!exe) {
    return fail("{} is not installed (not found in PATH){}", argv[0],
                install_hint.empty() ? "" : ": " + install_hint);
  }
  auto ns = netlink::open_netns(netns);
  if (!ns) return fail("cannot run {} in netns {}: {}", argv[0], netns, ns.error().message);
  UniqueFd out(::memfd_create((argv[0] + "-output").c_str(), MFD_CLOEXEC));
  if (!out) return fail_errno("cannot run {}: memfd_create", argv[0]);
  UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null) return fail_errno("cannot run {}: opening /dev/null", argv[0]);

  // Everything the child needs is prepared before fork(): after it, only
  // async-signal-safe calls.
  std::string command = fmt::format("{}", fmt::join(argv, " "));
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  const char* path = exe->c_str();
  const pid_t parent = ::getpid();
  const int ns_fd = ns->get(), out_fd = out.get(), null_fd = null.get();

  pid_t pid = ::fork();
  if (pid < 0) return fail_errno("cannot start {} (fork)", argv[0]);
  if (pid == 0) {
    // Own session: a terminal's Ctrl-C reaches the bench, which then stops
    // its tools and removes the lab in order.
    ::setsid();
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(125);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::dup2(null_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(out_fd, 2) < 0) ::_exit(126);
    if (::setns(ns_fd, CLONE_NEWNET) != 0) {
      static const char msg[] = "nicguard bench: setns into the lab namespace failed\n";
      (void)!::write(2, msg, sizeof(msg) - 1);
      ::_exit(126);
    }
    ::close_range(3, ~0U, 0);
    ::execv(path, cargv.data());
    static const char msg[] = "nicguard bench: exec failed\n";
    (void)!::write(2, msg, sizeof(msg) - 1);
    ::_exit(127);
  }
  NetnsProcess p;
  p.pid_ = pid;
  p.pidfd_.reset(pidfd_open(pid));
  p.out_ = std::move(out);
  p.command_ = fmt::format("`{}` in netns {}", command, netns);
  return Result<NetnsProcess>(std::move(p));
}

NetnsProcess::~NetnsProcess() { kill_and_reap(); }

NetnsProcess::NetnsProcess(NetnsProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, 0)),
      pidfd_(std::move(other.pidfd_)),
      out_(std::move(other.out_)),
      command_(std::move(other.command_)),
      exit_(std::exchange(other.exit_, std::nullopt)) {}

NetnsProcess& NetnsProcess::operator=(NetnsProcess&& other) noexcept {
  if (this != &other) {
    kill_and_reap();
    pid_ = std::exchange(other.pid_, 0);
    pidfd_ = std::move(other.pidfd_);
    out_ = std::move(other.out_);
    command_ = std::move(other.command_);
    exit_ = std::exchange(other.exit_, std::nullopt);
  }
  return *this;
}

bool NetnsProcess::reap(int options) {
  if (exit_ || pid_ <= 0) return true;
  int status = 0;
  rusage ru{};
  pid_t r = ::wait4(pid_, &status, options, &ru);
  if (r == pid_) {
    exit_ = Exit{status, seconds(ru.ru_utime) + seconds(ru.ru_stime)};
  } else if (r < 0 && errno == ECHILD) {
    exit_ = Exit{W_EXITCODE(255, 0), 0};  // reaped elsewhere; nothing to know
  } else {
    return false;
  }
  pidfd_.reset();
  return true;
}

void NetnsProcess::kill_and_reap() {
  if (exit_ || pid_ <= 0) return;
  // An unreaped child keeps its pid: the signal cannot hit another process.
  ::kill(pid_, SIGKILL);
  while (!reap(0)) {
    if (errno != EINTR) break;
  }
}

bool NetnsProcess::running() { return !reap(WNOHANG); }

void NetnsProcess::stop(std::chrono::milliseconds grace) {
  if (!running()) return;
  ::kill(pid_, SIGTERM);
  auto deadline = Clock::now() + grace;
  while (!reap(WNOHANG) && Clock::now() < deadline) {
    if (pidfd_) {
      pollfd p{pidfd_.get(), POLLIN, 0};
      ::poll(&p, 1, 20);
    } else {
      std::this_thread::sleep_for(20ms);
    }
  }
  kill_and_reap();
}

Result<NetnsProcess::Exit> NetnsProcess::wait(std::chrono::milliseconds timeout,
                                              const Interrupted& interrupted) {
  auto deadline = Clock::now() + timeout;
  while (!reap(WNOHANG)) {
    if (stopped(interrupted)) {
      kill_and_reap();
      return fail("interrupted by a signal while {} ran", command_);
    }
    auto now = Clock::now();
    if (now >= deadline) {
      kill_and_reap();
      return fail("{} did not finish within {} s and was killed; its last output:\n{}", command_,
                  std::chrono::duration_cast<std::chrono::seconds>(timeout).count(),
                  indent(last_lines(output(), 10)));
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
    int ms = static_cast<int>(std::clamp<int64_t>(left, 1, 100));
    if (pidfd_) {
      pollfd p{pidfd_.get(), POLLIN, 0};
      ::poll(&p, 1, ms);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    }
  }
  return *exit_;
}

std::string NetnsProcess::output() const {
  if (!out_) return {};
  struct stat st {};
  if (::fstat(out_.get(), &st) != 0 || st.st_size <= 0) return {};
  std::string text(static_cast<size_t>(st.st_size), '\0');
  ssize_t n = ::pread(out_.get(), text.data(), text.size(), 0);
  text.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return text;
}

// ============================================================ the run

namespace {

Status wait_bound(NetnsProcess& proc, bool tcp, uint16_t port, const Interrupted& interrupted) {
  auto deadline = Clock::now() + kListenTimeout;
  while (!port_bound(proc.pid(), tcp, port)) {
    if (stopped(interrupted)) return interrupted_error();
    if (!proc.running()) {
      return fail("{} stopped before it listened on {} port {}; its output:\n{}", proc.command(),
                  tcp ? "TCP" : "UDP", port, indent(last_lines(proc.output(), 10)));
    }
    if (Clock::now() >= deadline) {
      return fail("{} did not listen on {} port {} within {} s; its output:\n{}", proc.command(),
                  tcp ? "TCP" : "UDP", port, kListenTimeout.count(),
                  indent(last_lines(proc.output(), 10)));
    }
    std::this_thread::sleep_for(20ms);
  }
  return {};
}

// The nicguard processes whose CPU time the nicguard path costs.
struct Domains {
  std::vector<pid_t> drivers;  // every driver domain, active and spare
  pid_t front = 0;             // app1's frontend
  pid_t spare = 0;             // the warm spare
  std::string spare_name;
  std::string source;  // "manager status" or "pid files"
  bool operator==(const Domains& o) const {
    return drivers == o.drivers && front == o.front && spare == o.spare;
  }
};

std::optional<pid_t> read_pid(const std::string& path) {
  auto text = read_text(path);
  char* end = nullptr;
  long v = std::strtol(text.c_str(), &end, 10);
  if (end == text.c_str() || v <= 0) return std::nullopt;
  return static_cast<pid_t>(v);
}

// From the manager's status (as `nicguard status --json` shows it); the pid
// files in the state directory if the manager does not answer.
Result<Domains> find_domains(const lab::Lab& lab) {
  Domains d;
  const std::string app = lab.apps().front().name;
  if (auto st = manager::control_request(lab.control_socket(), {{"cmd", "status"}}, 3000)) {
    try {
      for (const auto& drv : st->at("drivers")) {
        auto pid_field = drv.value("pid", json());
        if (!pid_field.is_number_integer()) {
          return fail("driver domain {} is not running (state {})", drv.value("name", "?"),
                      drv.value("state", "?"));
        }
        auto pid = pid_field.get<pid_t>();
        d.drivers.push_back(pid);
        if (drv.value("role", "") == "spare") {
          d.spare = pid;
          d.spare_name = drv.value("name", "?");
        }
      }
      for (const auto& a : st->at("apps")) {
        auto pid_field = a.value("pid", json());
        if (a.value("name", "") == app && pid_field.is_number_integer()) {
          d.front = pid_field.get<pid_t>();
        }
      }
      d.source = "manager status";
    } catch (const json::exception& e) {
      return fail("the manager's status answer is not as expected: {}", e.what());
    }
  } else {
    for (const auto& drv : lab.drivers()) {
      auto path = fmt::format("{}/driver-{}.pid", lab.state_dir(), drv.name);
      auto pid = read_pid(path);
      if (!pid) {
        return fail("driver domain {} has no pid (manager status failed: {}; no {})", drv.name,
                    st.error().message, path);
      }
      d.drivers.push_back(*pid);
    }
    if (auto pid = read_pid(fmt::format("{}/front-{}.pid", lab.state_dir(), app))) d.front = *pid;
    d.source = "pid files";
  }
  if (d.front == 0) return fail("the frontend of {} is not running", app);
  if (d.spare == 0 && d.drivers.size() >= 2) {
    // The configuration order: the second driver starts as the spare.
    d.spare = d.drivers[1];
    d.spare_name = lab.drivers()[1].name;
  }
  if (d.spare == 0) return fail("the lab has no warm-spare driver domain");
  return d;
}

struct Path {
  std::string name;     // "direct" or "nicguard"
  std::string netns;    // where the servers run
  std::string address;  // the servers' IPv4 address
  std::vector<pid_t> infra;  // driver domains and frontend (nicguard only)
  pid_t spare = 0;
  std::optional<NetnsProcess> iperf_server;
  std::optional<NetnsProcess> sockperf_server;
  PathResult result;
  double tcp_bytes = 0;
  double tcp_cpu_s = 0;
  double spare_cpu_s = 0;
  double spare_wall_s = 0;  // the windows the spare lived through
  bool spare_lost = false;  // it ended in a window: its CPU time is gone with it
  double wall_s = 0;  // time spent measuring this path
};

// CPU and wall time around one test: what the path's servers and domains
// used (the client's own CPU comes from its rusage).
class Window {
 public:
  explicit Window(const Path& p)
      : t0_(Clock::now()), cpu0_(tree_cpu_s(watched(p))), spare0_(tree_cpu_s(spare(p))) {}
  void close(Path& p, double& cpu_s) {
    cpu_s += tree_cpu_s(watched(p)) - cpu0_;
    double wall = since(t0_);
    // A spare that ended meanwhile reads as less CPU than at the start.
    double spare_s = tree_cpu_s(spare(p)) - spare0_;
    if (spare_s >= 0) {
      p.spare_cpu_s += spare_s;
      p.spare_wall_s += wall;
    } else {
      p.spare_lost = true;
    }
    p.wall_s += wall;
  }

 private:
  static std::vector<pid_t> watched(const Path& p) {
    auto pids = p.infra;
    if (p.iperf_server) pids.push_back(p.iperf_server->pid());
    return pids;
  }
  static std::vector<pid_t> spare(const Path& p) {
    return p.spare > 0 ? std::vector<pid_t>{p.spare} : std::vector<pid_t>{};
  }
  Clock::time_point t0_;
  double cpu0_;
  double spare0_;
};

struct Runner {
  const BenchOptions& o;
  std::string ext_netns;

  void progress(const std::string& line) const {
    if (o.progress) o.progress(line);
  }

  Status start_servers(Path& p) {
    auto iperf = NetnsProcess::start(
        p.netns, {"iperf3", "-s", "-B", p.address, "-p", std::to_string(kIperfPort)}, kIperfHint);
    if (!iperf) return tl::unexpected(iperf.error());
    p.iperf_server = std::move(*iperf);
    auto sp = NetnsProcess::start(p.netns,
                                  {"sockperf", "server", "-i", p.address, "-p",
                                   std::to_string(kSockperfPort)},
                                  kSockperfHint);
    if (!sp) return tl::unexpected(sp.error());
    p.sockperf_server = std::move(*sp);
    if (auto st = wait_bound(*p.iperf_server, true, kIperfPort, o.interrupted); !st) return st;
    return wait_bound(*p.sockperf_server, false, kSockperfPort, o.interrupted);
  }

  Status server_alive(Path& p, NetnsProcess& server) {
    if (server.running()) return {};
    return fail("the {} path's server {} stopped; its output:\n{}", p.name, server.command(),
                indent(last_lines(server.output(), 10)));
  }

  // One iperf3 client run from the external host against p's server.
  Result<IperfFigures> iperf(Path& p, const std::string& label, int streams, bool reverse,
                             bool udp, bool count_cpu) {
    std::vector<std::string> argv = {"iperf3", "-c", p.address, "-p", std::to_string(kIperfPort),
                                     "-t", std::to_string(o.duration_s), "-J",
                                     "--connect-timeout", "3000", "-P", std::to_string(streams)};
    if (reverse) argv.push_back("-R");
    if (udp) {
      // Unpaced; big socket buffers so that the receiving iperf3, not the
      // path, is not what drops when it is briefly descheduled.
      for (const char* a : {"-u", "-b", "0", "-w", "4M"}) argv.push_back(a);
      argv.push_back("-l");
      argv.push_back(std::to_string(kUdpPayload));
    }
    for (int attempt = 0;; ++attempt) {
      double cpu_s = 0;
      Window w(p);
      auto client = NetnsProcess::start(ext_netns, argv, kIperfHint);
      if (!client) return tl::unexpected(client.error());
      auto exit = client->wait(std::chrono::seconds(o.duration_s) + kToolSlack, o.interrupted);
      if (!exit) return tl::unexpected(exit.error());
      w.close(p, cpu_s);
      auto figures = parse_iperf3(client->output());
      if (!figures) {
        const auto& msg = figures.error().message;
        bool busy = msg.find("busy") != std::string::npos ||
                    msg.find("Connection refused") != std::string::npos;
        if (busy && attempt < kBusyRetries) {
          std::this_thread::sleep_for(300ms);
          continue;
        }
        if (auto st = server_alive(p, *p.iperf_server); !st) return tl::unexpected(st.error());
        return fail("{} on the {} path: {} {}: {}", label, p.name, client->command(),
                    exit->describe(), msg);
      }
      if (count_cpu) {
        p.tcp_cpu_s += cpu_s + exit->cpu_s;
        p.tcp_bytes += figures->bytes;
      }
      return figures;
    }
  }

  Result<RttFigures> rtt(Path& p) {
    Window w(p);
    double unused = 0;
    auto client = NetnsProcess::start(
        ext_netns,
        {"sockperf", "ping-pong", "-i", p.address, "-p", std::to_string(kSockperfPort), "-t",
         std::to_string(o.duration_s), "-m", std::to_string(kUdpPayload), "--full-rtt"},
        kSockperfHint);
    if (!client) return tl::unexpected(client.error());
    auto exit = client->wait(std::chrono::seconds(o.duration_s) + kToolSlack, o.interrupted);
    if (!exit) return tl::unexpected(exit.error());
    w.close(p, unused);
    auto r = parse_sockperf(client->output());
    if (!r || !exit->ok()) {
      if (auto st = server_alive(p, *p.sockperf_server); !st) return tl::unexpected(st.error());
      return fail("round-trip test on the {} path: {} {}{}", p.name, client->command(),
                  exit->describe(), r ? "" : ": " + r.error().message);
    }
    return r;
  }

  // Runs test `i` on both paths, alternating which goes first.
  Status both(int i, Path& direct, Path& ng, const std::function<Status(Path&)>& test) {
    std::array<Path*, 2> order = {&direct, &ng};
    if (i % 2 == 1) std::swap(order[0], order[1]);
    for (Path* p : order) {
      if (stopped(o.interrupted)) return interrupted_error();
      if (auto st = test(*p); !st) return st;
    }
    return {};
  }
};

void finish(Path& p) {
  p.result.tcp_gb_received = p.tcp_bytes / 1e9;
  p.result.tcp_cpu_s = p.tcp_cpu_s;
  p.result.cpu_s_per_gb = p.tcp_bytes > 0 ? p.tcp_cpu_s / (p.tcp_bytes / 1e9) : 0;
}

Result<BenchResult> measure(const lab::Lab& lab, const BenchOptions& o) {
  if (!lab.direct()) return fail("the lab was built without the direct host");
  if (lab.apps().empty()) return fail("the lab has no app domain");
  auto domains = find_domains(lab);
  if (!domains) return fail("cannot find the nicguard processes: {}", domains.error().message);

  Path direct{"direct", lab.direct()->netns, lab.direct()->ipv4_address()};
  Path ng{"nicguard", lab.apps().front().netns, lab.apps().front().ipv4_address()};
  ng.infra = domains->drivers;
  ng.infra.push_back(domains->front);
  ng.spare = domains->spare;

  Runner run{o, lab.ext().netns};
  run.progress(fmt::format("lab {}: direct host {}, app domain {} (warm spare: driver {}, pid {})",
                           lab.suffix(), direct.address, ng.address, domains->spare_name,
                           domains->spare));
  for (Path* p : {&direct, &ng}) {
    if (auto st = run.start_servers(*p); !st) {
      return fail("cannot start the {} path's servers: {}", p->name, st.error().message);
    }
  }

  struct Tcp {
    const char* label;
    int streams;
    bool reverse;
    double PathResult::*field;
  };
  const Tcp tcp[] = {
      {"TCP external->app, 1 stream", 1, false, &PathResult::tcp_gbps_1},
      {"TCP external->app, 4 streams", 4, false, &PathResult::tcp_gbps_4},
      {"TCP app->external, 1 stream", 1, true, &PathResult::tcp_gbps_1_rev},
      {"TCP app->external, 4 streams", 4, true, &PathResult::tcp_gbps_4_rev},
  };
  int i = 0;
  for (const auto& t : tcp) {
    auto st = run.both(i++, direct, ng, [&](Path& p) -> Status {
      auto f = run.iperf(p, t.label, t.streams, t.reverse, false, true);
      if (!f) return tl::unexpected(f.error());
      p.result.*t.field = f->bits_per_second / 1e9;
      run.progress(fmt::format("{}, {}: {:.2f} Gbit/s", t.label, p.name, p.result.*t.field));
      return {};
    });
    if (!st) return tl::unexpected(st.error());
  }
  auto udp = run.both(i++, direct, ng, [&](Path& p) -> Status {
    auto f = run.iperf(p, "UDP 64-byte frames", kUdpStreams, false, true, false);
    if (!f) return tl::unexpected(f.error());
    p.result.udp64_pps = f->seconds > 0 ? f->bytes / kUdpPayload / f->seconds : 0;
    p.result.udp64_sent_pps = f->sent_seconds > 0 ? f->sent_bytes / kUdpPayload / f->sent_seconds : 0;
    run.progress(fmt::format("UDP 64-byte frames, {}: {:.0f} received/s ({:.0f} sent/s)", p.name,
                             p.result.udp64_pps, p.result.udp64_sent_pps));
    return {};
  });
  if (!udp) return tl::unexpected(udp.error());
  auto lat = run.both(i++, direct, ng, [&](Path& p) -> Status {
    auto r = run.rtt(p);
    if (!r) return tl::unexpected(r.error());
    p.result.rtt_us_p50 = r->p50_us;
    p.result.rtt_us_p99 = r->p99_us;
    run.progress(fmt::format("round trip, {}: p50 {:.1f} us, p99 {:.1f} us", p.name, r->p50_us,
                             r->p99_us));
    return {};
  });
  if (!lat) return tl::unexpected(lat.error());

  BenchResult r;
  auto after = find_domains(lab);
  if (!after) {
    r.warnings.push_back("after the run: " + after.error().message);
  } else if (!(*after == *domains)) {
    r.warnings.push_back(
        "a nicguard process was replaced during the run (failover or restart): the nicguard "
        "figures mix two configurations");
  }
  for (Path* p : {&direct, &ng}) {
    p->iperf_server->stop();
    p->sockperf_server->stop();
    finish(*p);
  }
  r.direct = direct.result;
  r.nicguard = ng.result;
  r.spare_cpu_percent = ng.spare_wall_s > 0 ? ng.spare_cpu_s / ng.spare_wall_s * 100.0 : 0;
  if (ng.spare_lost) {
    r.warnings.push_back(fmt::format("the spare driver domain ended during a test: spare_cpu_percent covers "
                                     "only the {:.0f} s of {:.0f} s it lived through",
                                     ng.spare_wall_s, ng.wall_s));
  }
  return r;
}

constexpr std::array<std::pair<const char*, double PathResult::*>, 8> kFigures = {{
    {"tcp_gbps_1", &PathResult::tcp_gbps_1},
    {"tcp_gbps_4", &PathResult::tcp_gbps_4},
    {"tcp_gbps_1_rev", &PathResult::tcp_gbps_1_rev},
    {"tcp_gbps_4_rev", &PathResult::tcp_gbps_4_rev},
    {"udp64_pps", &PathResult::udp64_pps},
    {"rtt_us_p50", &PathResult::rtt_us_p50},
    {"rtt_us_p99", &PathResult::rtt_us_p99},
    {"cpu_s_per_gb", &PathResult::cpu_s_per_gb},
}};

}  // namespace

Result<BenchResult> run(const BenchOptions& o) {
  if (o.duration_s < 1 || o.duration_s > 3600) {
    return fail("--duration {} is out of range: use 1 to 3600 seconds", o.duration_s);
  }
  if (::geteuid() != 0) {
    return fail("nicguard bench must run as root: it builds network namespaces");
  }
  if (!find_in_path("iperf3")) return fail("iperf3 is not installed: {}", kIperfHint);
  if (!find_in_path("sockperf")) return fail("sockperf is not installed: {}", kSockperfHint);

  lab::LabOptions lo;
  lo.apps = 1;
  lo.policy = "warm-spare";
  lo.direct = true;
  lo.realtime_priority = o.realtime_priority;
  lo.path_probe_us = o.path_probe_us;
  lo.binary = o.binary;
  lo.interrupted = o.interrupted;
  if (o.progress) o.progress("building the lab (1 app domain, warm spare, direct host)");
  auto lab = lab::Lab::up(lo);
  if (!lab) return fail("cannot build the bench lab: {}", lab.error().message);
  // From here the lab's destructor removes it on every path (keep aside).
  auto result = measure(*lab, o);
  if (result) {
    result->duration_s = o.duration_s;
    result->cpus = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
    utsname u{};
    if (::uname(&u) == 0) result->kernel = u.release;
    result->lab = lab->suffix();
  }
  if (o.keep && !stopped(o.interrupted)) {
    lab->detach();
    if (o.progress) {
      o.progress(fmt::format("lab {} kept; remove it with: nicguard lab down --name {}",
                             lab->suffix(), lab->suffix()));
    }
  } else if (auto st = lab->down(); !st) {
    if (!result) return fail("{}\nand then: {}", result.error().message, st.error().message);
    result->warnings.push_back(st.error().message);
  }
  if (!result) return fail("lab {}: {}", lab->suffix(), result.error().message);
  return result;
}

json path_json(const PathResult& p) {
  json j = json::object();
  for (const auto& [key, field] : kFigures) j[key] = p.*field;
  j["udp64_sent_pps"] = p.udp64_sent_pps;
  j["tcp_gb_received"] = p.tcp_gb_received;
  j["tcp_cpu_s"] = p.tcp_cpu_s;
  return j;
}

json ratio_json(const PathResult& n, const PathResult& d) {
  json j = json::object();
  for (const auto& [key, field] : kFigures) {
    j[key] = d.*field > 0 ? json(n.*field / d.*field) : json(nullptr);
  }
  return j;
}

json to_json(const BenchResult& r) {
  return {{"direct", path_json(r.direct)},
          {"nicguard", path_json(r.nicguard)},
          {"ratio", ratio_json(r.nicguard, r.direct)},
          {"spare_cpu_percent", r.spare_cpu_percent},
          {"duration_s", r.duration_s},
          {"host", {{"cpus", r.cpus}, {"kernel", r.kernel}}},
          {"lab", r.lab},
          {"warnings", r.warnings}};
}

std::string format_table(const BenchResult& r) {
  struct Row {
    const char* label;
    const char* unit;
    double PathResult::*field;
    int decimals;
  };
  const Row rows[] = {
      {"TCP external->app, 1 stream", "Gbit/s", &PathResult::tcp_gbps_1, 2},
      {"TCP external->app, 4 streams", "Gbit/s", &PathResult::tcp_gbps_4, 2},
      {"TCP app->external, 1 stream", "Gbit/s", &PathResult::tcp_gbps_1_rev, 2},
      {"TCP app->external, 4 streams", "Gbit/s", &PathResult::tcp_gbps_4_rev, 2},
      {"UDP 64-byte frames received", "pkt/s", &PathResult::udp64_pps, 0},
      {"  (offered by the sender)", "pkt/s", &PathResult::udp64_sent_pps, 0},
      {"round trip p50 (64-byte)", "us", &PathResult::rtt_us_p50, 1},
      {"round trip p99 (64-byte)", "us", &PathResult::rtt_us_p99, 1},
      {"CPU per GB received (TCP)", "s/GB", &PathResult::cpu_s_per_gb, 3},
  };
  std::string out = fmt::format(
      "nicguard bench: lab {}, {} s per test and path, {} CPUs, kernel {}\n\n"
      "{:<30} {:<7} {:>12} {:>12} {:>16}\n",
      r.lab, r.duration_s, r.cpus, r.kernel, "", "unit", "direct", "nicguard", "nicguard/direct");
  for (const auto& row : rows) {
    double d = r.direct.*row.field, n = r.nicguard.*row.field;
    std::string ratio = d > 0 ? fmt::format("{:.2f}", n / d) : "-";
    out += fmt::format("{:<30} {:<7} {:>12.{}f} {:>12.{}f} {:>16}\n", row.label, row.unit, d,
                       row.decimals, n, row.decimals, ratio);
  }
  out += fmt::format("\nwarm-spare driver domain CPU while nicguard was measured: {:.2f} %\n",
                     r.spare_cpu_percent);
  out += "(throughput and packet rates: higher is better; round trip and CPU: lower is better;\n"
         " CPU counts iperf3 client and server, and for nicguard every driver domain and the\n"
         " frontend; softirq work the kernel charges to other tasks is not included)\n";
  for (const auto& w : r.warnings) out += fmt::format("warning: {}\n", w);
  return out;
}

}  // namespace ng::bench

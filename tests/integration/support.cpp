#include "support.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "common/sanitizer.hpp"

namespace ng::it {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::string clip(const std::string& s, size_t max = 6000) {
  if (s.size() <= max) return s;
  return "[... " + std::to_string(s.size() - max) + " bytes left out ...]\n" +
         s.substr(s.size() - max);
}

// pid -> parent pid for every process visible in /proc.
std::map<pid_t, pid_t> parent_map() {
  std::map<pid_t, pid_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    auto name = e.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    auto stat = read_file(e.path().string() + "/stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    out[std::stoi(name)] = ppid;
  }
  return out;
}

std::set<pid_t> descendants(pid_t root) {
  auto parents = parent_map();
  std::set<pid_t> out{root};
  bool grew = true;
  while (grew) {
    grew = false;
    for (const auto& [pid, ppid] : parents) {
      if (out.count(ppid) != 0 && out.insert(pid).second) grew = true;
    }
  }
  return out;
}

// Forks `/bin/sh -c cmd` in its own process group with stdin from /dev/null
// and stdout/stderr on the given descriptors. Returns the pid (-1 on error).
pid_t spawn_shell(const std::string& cmd, int out_fd, int err_fd) {
  // Prepared before fork(): the child only makes async-signal-safe calls.
  const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  ::setpgid(0, 0);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  int in = ::open("/dev/null", O_RDONLY);
  if (in < 0) ::_exit(126);
  ::dup2(in, 0);
  ::dup2(out_fd, 1);
  ::dup2(err_fd, 2);
  ::close_range(3, ~0U, 0);
  ::execv("/bin/sh", const_cast<char* const*>(argv));
  ::_exit(127);
}

}  // namespace

std::string CmdResult::describe() const {
  std::string s = fmt::format("command: {}\nexit code: {}{} after {:.1f} s\n", cmd, exit_code,
                              timed_out ? " (TIMED OUT, killed)" : "", seconds);
  s += "---- stdout ----\n" + (out.empty() ? std::string("(empty)\n") : clip(out));
  if (!s.ends_with('\n')) s += '\n';
  s += "---- stderr ----\n" + (err.empty() ? std::string("(empty)\n") : clip(err));
  if (!s.ends_with('\n')) s += '\n';
  return s;
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

bool process_alive(pid_t pid) {
  if (pid <= 0) return false;
  auto stat = read_file(fmt::format("/proc/{}/stat", pid));
  auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  char state = stat[close + 2];
  return state != 'Z' && state != 'X';
}

std::string process_cmdline(pid_t pid) {
  auto raw = read_file(fmt::format("/proc/{}/cmdline", pid));
  std::replace(raw.begin(), raw.end(), '\0', ' ');
  while (!raw.empty() && raw.back() == ' ') raw.pop_back();
  return raw;
}

void kill_tree(pid_t pid, std::chrono::milliseconds grace) {
  if (pid <= 0) return;
  // Collected before the first signal: once a parent dies its children are
  // re-parented and can no longer be found through it.
  auto victims = descendants(pid);
  for (pid_t p : victims) ::kill(p, SIGTERM);
  // A zombie counts as gone; reaping is left to the caller, who wants the status.
  auto all_gone = [&] {
    return std::none_of(victims.begin(), victims.end(), [](pid_t p) { return process_alive(p); });
  };
  if (wait_until(all_gone, grace, 20ms)) return;
  auto more = descendants(pid);
  victims.insert(more.begin(), more.end());
  for (pid_t p : victims) {
    if (process_alive(p)) ::kill(p, SIGKILL);
  }
  wait_until(all_gone, 5s, 20ms);
}

CmdResult run(const std::string& cmd, std::chrono::milliseconds limit) {
  CmdResult r;
  r.cmd = cmd;
  auto started = Clock::now();
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    r.err = fmt::format("pipe: {}", std::strerror(errno));
    return r;
  }
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    r.err = fmt::format("pipe: {}", std::strerror(errno));
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return r;
  }
  pid_t pid = spawn_shell(cmd, out_pipe[1], err_pipe[1]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (pid < 0) {
    r.err = fmt::format("fork: {}", std::strerror(errno));
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    return r;
  }
  auto deadline = started + limit;
  std::optional<Clock::time_point> exited_at;
  int status = 0;
  bool out_open = true, err_open = true;
  char buf[65536];
  for (;;) {
    if (!exited_at) {
      pid_t w = ::waitpid(pid, &status, WNOHANG);
      if (w == pid) exited_at = Clock::now();
    }
    if (!out_open && !err_open && exited_at) break;
    // A daemon the command left behind may hold the pipes open: stop reading
    // a moment after the command itself has exited.
    if (exited_at && Clock::now() - *exited_at > 500ms) break;
    if (!exited_at && Clock::now() >= deadline) {
      r.timed_out = true;
      kill_tree(pid);
      if (::waitpid(pid, &status, 0) == pid) exited_at = Clock::now();
      // Whatever is still buffered is read below, without blocking.
    }
    pollfd fds[2] = {{out_open ? out_pipe[0] : -1, POLLIN, 0},
                     {err_open ? err_pipe[0] : -1, POLLIN, 0}};
    ::poll(fds, 2, r.timed_out ? 0 : 50);
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        (i == 0 ? out_open : err_open) = false;
      }
    }
    if (r.timed_out) break;
  }
  ::close(out_pipe[0]);
  ::close(err_pipe[0]);
  r.exit_code = exited_at ? decode_status(status) : -1;
  r.seconds = seconds_since(started);
  return r;
}

std::string in_ns(const std::string& ns, const std::string& cmd) {
  return "ip netns exec " + quote(ns) + " sh -c " + quote(cmd);
}

CmdResult run_in(const std::string& ns, const std::string& cmd, std::chrono::milliseconds limit) {
  return run(in_ns(ns, cmd), limit);
}

// ------------------------------------------------------------------- Background

Background::Background(const std::string& cmd) : cmd_(cmd), started_(Clock::now()) {
  char tmpl[] = "/tmp/ng-it-bg-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return;
  dir_ = tmpl;
  int out = ::open((dir_ + "/out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int err = ::open((dir_ + "/err").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out >= 0 && err >= 0) pid_ = spawn_shell(cmd, out, err);
  if (out >= 0) ::close(out);
  if (err >= 0) ::close(err);
}

Background::~Background() {
  if (pid_ > 0 && !exited_) {
    kill_tree(pid_);
    reap(true);
  }
  if (!dir_.empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

void Background::reap(bool block) {
  if (pid_ <= 0 || exited_) return;
  int status = 0;
  if (::waitpid(pid_, &status, block ? 0 : WNOHANG) == pid_) {
    exited_ = true;
    status_ = status;
  }
}

bool Background::running() {
  reap(false);
  return pid_ > 0 && !exited_;
}

std::string Background::out() const { return dir_.empty() ? "" : read_file(dir_ + "/out"); }
std::string Background::err() const { return dir_.empty() ? "" : read_file(dir_ + "/err"); }

CmdResult Background::finish(std::chrono::milliseconds limit) {
  CmdResult r;
  r.cmd = cmd_;
  if (pid_ <= 0) {
    r.err = "the command could not be started";
    return r;
  }
  if (!wait_until([&] { return !running(); }, limit, 20ms)) {
    r.timed_out = true;
    kill_tree(pid_);
    reap(true);
  }
  r.exit_code = exited_ ? decode_status(status_) : -1;
  r.out = out();
  r.err = err();
  r.seconds = seconds_since(started_);
  return r;
}

CmdResult Background::stop() {
  if (running()) {
    kill_tree(pid_);
    reap(true);
  }
  return finish(0ms);  // stopped on purpose: not a time-out
}

// ------------------------------------------------------------------- TempDir

TempDir::TempDir(const std::string& tag) {
  std::string tmpl = "/tmp/" + tag + "-XXXXXX";
  if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ec;
  fs::remove_all(path_, ec);
}

// ------------------------------------------------------------------- lab

namespace {

std::string random_hex(int digits) {
  std::random_device rd;
  std::string s;
  for (int i = 0; i < digits; ++i) s += "0123456789abcdef"[rd() % 16];
  return s;
}

std::string without_prefix(const std::string& cidr) { return cidr.substr(0, cidr.find('/')); }

std::string nicguard_cmd(const std::string& args, std::chrono::seconds limit) {
  // timeout sends SIGTERM first: `lab up` then removes what it made.
  return fmt::format("timeout -k 10 {} {} {}", limit.count(), quote(kNicguard), args);
}

}  // namespace

LabGuard::LabGuard(const LabOptions& o) {
  // Hex only, so that even a global `nicguard lab cleanup` recognises the
  // root links as lab links; 6 digits keep clear of the lab's own 4-digit names.
  suffix_ = "dd" + random_hex(4);
  auto limit = std::chrono::duration_cast<std::chrono::seconds>(o.up_limit);
  std::string args = fmt::format("lab up --json --name {} --apps {} --mtu {} --policy {}", suffix_,
                                 o.apps, o.mtu, o.policy);
  if (o.realtime_priority >= 0) args += fmt::format(" --realtime-priority {}", o.realtime_priority);
  if (o.path_probe_us >= 0) args += fmt::format(" --path-probe-us {}", o.path_probe_us);
  if (o.domain != "process") args += fmt::format(" --domain {}", o.domain);
  if (!o.nic_model.empty()) args += fmt::format(" --nic-model {}", o.nic_model);
  std::string env;
  for (const auto& e : o.env) env += (env.empty() ? "env " : "") + quote(e) + " ";
  auto r = run(env + nicguard_cmd(args, limit), limit + 20s);
  if (!r.ok()) {
    error_ = "`nicguard lab up` failed:\n" + r.describe();
    return;
  }
  try {
    info_ = nlohmann::json::parse(r.out);
    ext_ns_ = info_.at("ext").at("netns").get<std::string>();
    ext_ipv4_ = without_prefix(info_.at("ext").at("ipv4").get<std::string>());
    ext_ipv6_ = without_prefix(info_.at("ext").at("ipv6").get<std::string>());
    switch_ns_ = info_.at("switch").at("netns").get<std::string>();
    config_ = info_.at("config").get<std::string>();
    state_dir_ = info_.at("state_dir").get<std::string>();
    control_socket_ = info_.at("control_socket").get<std::string>();
    manager_log_ = info_.value("manager_log", state_dir_ + "/manager.log");
    manager_pid_ = info_.at("manager_pid").get<pid_t>();
    for (const auto& d : info_.at("drivers")) {
      drivers_.push_back(LabDriver{d.at("name").get<std::string>(),
                                   d.at("netns").get<std::string>(),
                                   d.value("nic", std::string())});
    }
    for (const auto& a : info_.at("apps")) {
      apps_.push_back(LabApp{a.at("name").get<std::string>(), a.at("netns").get<std::string>(),
                             a.value("link", std::string("eth0")),
                             without_prefix(a.at("ipv4").get<std::string>()),
                             without_prefix(a.at("ipv6").get<std::string>()),
                             a.at("mac").get<std::string>(), a.value("mtu", 1500)});
    }
  } catch (const nlohmann::json::exception& e) {
    error_ = fmt::format("cannot understand the JSON of `nicguard lab up --json`: {}\n{}",
                         e.what(), r.describe());
    return;
  }
  if (apps_.size() != static_cast<size_t>(o.apps)) {
    error_ = fmt::format("asked for {} app domains, lab up --json lists {}\n{}", o.apps,
                         apps_.size(), r.describe());
    return;
  }
  ok_ = true;
}

LabGuard::~LabGuard() {
  auto r = down();
  (void)r;
}

std::vector<std::string> LabGuard::live_namespaces() const {
  std::vector<std::string> out;
  auto r = run("ip netns list", 10s);
  std::istringstream lines(r.out);
  std::string line;
  std::string prefix = "ng-" + suffix_ + "-";
  while (std::getline(lines, line)) {
    auto name = line.substr(0, line.find(' '));
    if (name.starts_with(prefix)) out.push_back(name);
  }
  return out;
}

#if NG_ASAN
// A sanitizer report from a lab's process: the manager, a frontend or a
// driver domain. Such a process may only have crashed into a failover the
// test expects, so its report must fail the test on its own.
void expect_no_sanitizer_report(const std::string& logs) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(logs, ec)) {
    std::string text = read_file(e.path().string());
    for (const char* mark : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error: ",
                             "SUMMARY: UndefinedBehaviorSanitizer"}) {
      auto at = text.find(mark);
      if (at == std::string::npos) continue;
      auto from = text.rfind('\n', at);
      ADD_FAILURE() << "sanitizer report in " << e.path().string() << ":\n"
                    << text.substr(from == std::string::npos ? 0 : from + 1, 6000);
      break;
    }
  }
  fs::remove_all(logs, ec);
}
#endif

CmdResult LabGuard::down() {
  CmdResult r;
  if (down_done_ || suffix_.empty()) return r;
  down_done_ = true;
#if NG_ASAN
  std::string logs = fmt::format("/tmp/nicguard-sanitize-{}", suffix_);
  r = run(nicguard_cmd(fmt::format("lab down --name {} --keep-logs {}", suffix_, logs), 60s), 80s);
  expect_no_sanitizer_report(logs);
#else
  r = run(nicguard_cmd("lab down --name " + suffix_, 60s), 80s);
#endif
  std::error_code ec;
  bool dir_left = fs::exists(std::string("/run/nicguard/lab-") + suffix_, ec);
  if (!live_namespaces().empty() || dir_left) {
    auto c = run(nicguard_cmd("lab cleanup --name " + suffix_, 60s), 80s);
    if (!live_namespaces().empty()) {
      std::fprintf(stderr, "warning: lab %s left namespaces behind after lab down and cleanup\n%s%s",
                   suffix_.c_str(), r.describe().c_str(), c.describe().c_str());
    }
  }
  return r;
}

std::optional<nlohmann::json> wait_status(const LabGuard& lab, std::chrono::milliseconds limit) {
  std::optional<nlohmann::json> got;
  wait_until(
      [&] {
        got = lab.status();
        return got.has_value();
      },
      limit);
  return got;
}

std::optional<nlohmann::json> status_json(const std::string& socket, std::string* why) {
  auto r = run(fmt::format("timeout -k 5 20 {} status --json -s {}", quote(kNicguard),
                           quote(socket)),
               30s);
  if (!r.ok()) {
    if (why) *why = r.describe();
    return std::nullopt;
  }
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (j.is_discarded()) {
    if (why) *why = "`nicguard status --json` printed no valid JSON:\n" + r.describe();
    return std::nullopt;
  }
  return j;
}

std::optional<nlohmann::json> LabGuard::status(std::string* why) const {
  return status_json(control_socket_, why);
}

std::string LabGuard::status_table() const {
  auto r = run(fmt::format("timeout -k 5 20 {} status -s {}", quote(kNicguard),
                           quote(control_socket_)),
               30s);
  return "---- nicguard status ----\n" + (r.ok() ? r.out : r.describe());
}

std::string LabGuard::logs(int lines) const {
  if (state_dir_.empty()) return "(no state directory)\n";
  auto r = run(fmt::format("for f in {}/*.log; do [ -f \"$f\" ] || continue; "
                           "echo \"---- last {} lines of $f ----\"; tail -n {} \"$f\"; done",
                           quote(state_dir_), lines, lines),
               10s);
  return r.out.empty() ? "(no logs in " + state_dir_ + ")\n" : r.out;
}

std::string link_mac(const std::string& ns, const std::string& link) {
  auto r = run(fmt::format("timeout 10 ip -n {} -j link show dev {}", quote(ns), quote(link)), 15s);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (j.is_discarded() || !j.is_array() || j.empty()) return "";
  return j[0].value("address", std::string());
}

std::string neighbour_mac(const std::string& ns, const std::string& address) {
  auto r = run(fmt::format("timeout 10 ip -n {} -j neigh show to {}", quote(ns), quote(address)),
               15s);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (j.is_discarded() || !j.is_array()) return "";
  for (const auto& e : j) {
    if (e.value("dst", std::string()) == address && e.contains("lladdr")) {
      return e["lladdr"].get<std::string>();
    }
  }
  return "";
}

bool wait_listening(const std::string& ns, int port, bool udp, std::chrono::milliseconds limit) {
  auto probe = fmt::format("timeout 5 ss -Hln{} 'sport = :{}'", udp ? "u" : "t", port);
  return wait_until([&] { return !run_in(ns, probe, 10s).out.empty(); }, limit, 50ms);
}

std::optional<RandomFile> make_random_file(const std::string& dir, uint64_t bytes,
                                           std::string* why) {
  RandomFile f;
  f.path = dir + "/random-" + std::to_string(bytes);
  f.bytes = bytes;
  auto r = run(fmt::format("timeout 120 head -c {} /dev/urandom > {} && timeout 120 sha256sum {}",
                           bytes, quote(f.path), quote(f.path)),
               150s);
  std::error_code ec;
  if (!r.ok() || fs::file_size(f.path, ec) != bytes || r.out.size() < 64) {
    if (why) *why = "cannot make the random file:\n" + r.describe();
    return std::nullopt;
  }
  f.sha256 = r.out.substr(0, 64);
  return f;
}

TransferResult tcp_transfer(const std::string& from_ns, const std::string& to_ns,
                            const std::string& to_address, int port, const RandomFile& file,
                            std::chrono::seconds limit, uint64_t pace_bytes_per_s) {
  TransferResult t;
  t.sent_sha256 = file.sha256;
  TempDir dir("ng-it-tcp");
  // Counts and hashes the stream; nothing reaches the disk on this side.
  auto script = dir.file("count_hash.py");
  write_file(script,
             "import hashlib, sys\n"
             "h = hashlib.sha256()\n"
             "n = 0\n"
             "while True:\n"
             "    b = sys.stdin.buffer.read(1 << 20)\n"
             "    if not b:\n"
             "        break\n"
             "    h.update(b)\n"
             "    n += len(b)\n"
             "print(n, h.hexdigest())\n");
  auto secs = limit.count();
  Background receiver(in_ns(
      to_ns, fmt::format("{{ timeout -k 5 {} nc -l -N -p {} < /dev/null; echo \"receiver nc exit "
                         "status $?\" >&2; }} | /usr/bin/python3 {}",
                         secs, port, quote(script))));
  if (!wait_listening(to_ns, port, false, 10s)) {
    auto rr = receiver.stop();
    t.detail = fmt::format("the receiver never listened on TCP port {} in {}\n{}", port, to_ns,
                           rr.describe());
    return t;
  }
  std::string source = "cat " + quote(file.path);
  if (pace_bytes_per_s != 0) {
    auto pace = dir.file("pace.py");
    write_file(pace,
               "import sys, time\n"
               "rate = int(sys.argv[1])\n"
               "start = time.monotonic()\n"
               "sent = 0\n"
               "while True:\n"
               "    b = sys.stdin.buffer.read(1 << 20)\n"
               "    if not b:\n"
               "        break\n"
               "    sys.stdout.buffer.write(b)\n"
               "    sys.stdout.buffer.flush()\n"
               "    sent += len(b)\n"
               "    ahead = sent / rate - (time.monotonic() - start)\n"
               "    if ahead > 0:\n"
               "        time.sleep(ahead)\n");
    source = fmt::format("/usr/bin/python3 {} {} < {}", quote(pace), pace_bytes_per_s,
                         quote(file.path));
  }
  auto sender = run_in(from_ns,
                       fmt::format("{} | timeout -k 5 {} nc -N {} {}", source, secs, to_address, port),
                       limit + 15s);
  t.seconds = sender.seconds;
  // The receiver ends as soon as the sender's FIN arrives; a little slack.
  auto rr = receiver.finish(sender.ok() ? 20s : 5s);
  std::istringstream words(rr.out);
  words >> t.received_bytes >> t.received_sha256;
  t.ok = sender.ok() && rr.ok() && t.received_bytes == file.bytes &&
         t.received_sha256 == file.sha256;
  t.detail = fmt::format(
      "{} bytes from {} to {} port {} ({}): sender sha256 {}, receiver got {} bytes, sha256 {}, "
      "{:.1f} s\n== sender ==\n{}== receiver ==\n{}",
      file.bytes, from_ns, to_address, port, to_ns, file.sha256, t.received_bytes,
      t.received_sha256.empty() ? "(none)" : t.received_sha256, t.seconds, sender.describe(),
      rr.describe());
  return t;
}

std::vector<nlohmann::json> read_events(const LabGuard& lab) {
  std::vector<nlohmann::json> out;
  std::istringstream in(read_file(lab.state_dir() + "/events.jsonl"));
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object()) out.push_back(std::move(j));
  }
  return out;
}

std::string active_driver(const LabGuard& lab) {
  auto s = lab.status();
  if (!s || s->at("apps").empty()) return "";
  const auto& a = s->at("apps")[0].at("active_driver");
  return a.is_string() ? a.get<std::string>() : "";
}

std::string event_lines(const LabGuard& lab) {
  return "== events.jsonl ==\n" + read_file(lab.state_dir() + "/events.jsonl");
}

bool has_event(const LabGuard& lab, size_t skip, const nlohmann::json& match) {
  auto events = read_events(lab);
  for (size_t i = skip; i < events.size(); ++i) {
    bool all = true;
    for (const auto& [k, v] : match.items()) all = all && events[i].value(k, nlohmann::json()) == v;
    if (all) return true;
  }
  return false;
}

}  // namespace ng::it

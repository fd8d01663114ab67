#include "probe/http.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include <curl/curl.h>

#include "common/text.hpp"
#include "common/clock.hpp"
#include "netlink/netlink.hpp"
#include "probe/csv.hpp"

namespace ng::probe {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// ============================================================ nginx

namespace {

std::string host_part(const std::string& address) {
  return address.find(':') != std::string::npos ? "[" + address + "]" : address;
}

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// The inodes of the process's sockets, as /proc/PID/fd shows them.
std::vector<std::string> socket_inodes(pid_t pid) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fmt::format("/proc/{}/fd", pid), ec)) {
    auto target = fs::read_symlink(e.path(), ec).string();
    if (target.starts_with("socket:[")) out.push_back(target.substr(8, target.size() - 9));
  }
  return out;
}

// True once the process itself (not another server in its namespace) has a
// listening TCP socket on port; /proc/PID/net shows the process's namespace.
bool listening(pid_t pid, uint16_t port) {
  const std::string want = fmt::format(":{:04X}", port);
  const auto mine = socket_inodes(pid);
  for (const char* file : {"tcp", "tcp6"}) {
    std::istringstream lines(read_text(fmt::format("/proc/{}/net/{}", pid, file)));
    std::string line;
    std::getline(lines, line);  // header
    while (std::getline(lines, line)) {
      std::istringstream f(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      f >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >>
          inode;
      if (state == "0A" && local.ends_with(want) &&
          std::find(mine.begin(), mine.end(), inode) != mine.end()) {
        return true;
      }
    }
  }
  return false;
}

Status write_site(const std::string& dir, const std::string& listen_address, uint16_t port) {
  std::error_code ec;
  for (const char* sub : {"", "/www", "/tmp"}) {
    fs::create_directories(dir + sub, ec);
    if (ec) return fail("cannot create {}{}: {}", dir, sub, ec.message());
  }
  if (auto s = write_text_file(dir + "/nginx.conf", nginx_config(dir, listen_address, port)); !s) {
    return s;
  }
  std::string body;
  while (body.size() < kProbeFileBytes) body += "nicguard probe payload\n";
  body.resize(kProbeFileBytes);
  return write_text_file(dir + "/www/probe", body);
}

}  // namespace

std::string nginx_config(const std::string& dir, const std::string& listen_address, uint16_t port) {
  return fmt::format(
      R"(# Written by `nicguard probe`: one root process, everything it writes under {0}.
daemon off;
master_process off;
worker_processes 1;
pid {0}/nginx.pid;
error_log {0}/error.log warn;
events {{
  worker_connections 1024;
}}
http {{
  access_log off;
  client_body_temp_path {0}/tmp/body;
  proxy_temp_path {0}/tmp/proxy;
  fastcgi_temp_path {0}/tmp/fastcgi;
  uwsgi_temp_path {0}/tmp/uwsgi;
  scgi_temp_path {0}/tmp/scgi;
  default_type application/octet-stream;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  server {{
    listen {1}:{2};
    root {0}/www;
    location = /probe {{ }}
  }}
}}
)",
      dir, host_part(listen_address), port);
}

Nginx::~Nginx() { stop(); }

Nginx::Nginx(Nginx&& other) noexcept
    : pid_(std::exchange(other.pid_, 0)),
      pidfd_(std::move(other.pidfd_)),
      dir_(std::move(other.dir_)),
      url_(std::move(other.url_)) {}

Nginx& Nginx::operator=(Nginx&& other) noexcept {
  if (this != &other) {
    stop();
    pid_ = std::exchange(other.pid_, 0);
    pidfd_ = std::move(other.pidfd_);
    dir_ = std::move(other.dir_);
    url_ = std::move(other.url_);
  }
  return *this;
}

// pid_ > 0 while the child is unreaped, so a signal to it cannot hit another process.
bool Nginx::reap(bool block) {
  if (pid_ <= 0) return true;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
  if (r == pid_ || (r < 0 && errno == ECHILD)) {
    pid_ = -pid_;  // keeps the number for messages
    pidfd_.reset();
    return true;
  }
  return false;
}

bool Nginx::running() { return !reap(false); }

bool Nginx::stop(std::chrono::milliseconds grace) {
  if (!running()) return true;
  ::kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    if (reap(false)) return true;
    pollfd p{pidfd_.get(), POLLIN, 0};
    if (pidfd_)
      ::poll(&p, 1, 20);
    else
      std::this_thread::sleep_for(20ms);
  }
  ::kill(pid_, SIGKILL);
  while (!reap(true) && errno == EINTR) {
  }
  return false;
}

std::string Nginx::log_tail() const {
  // error.log has the same lines as stderr once nginx has read -e; stderr
  // alone holds what went wrong before that (or the exec failing).
  std::string out = last_lines(read_text(dir_ + "/error.log"), 10);
  if (out.empty()) out = last_lines(read_text(dir_ + "/nginx.stderr"), 10);
  return out.empty() ? "(nginx logged nothing)" : out;
}

namespace {

// Everything the child needs, prepared before fork(): after it, only
// async-signal-safe calls.
struct Launch {
  std::vector<std::string> args;
  std::vector<char*> argv;
  UniqueFd netns;  // invalid: stay in the caller's namespace
  UniqueFd null;
  UniqueFd log;
};

Result<Launch> prepare(const std::string& netns, const std::string& dir,
                       const std::string& binary) {
  Launch l;
  l.args = {binary, "-c", dir + "/nginx.conf", "-p", dir + "/", "-e", dir + "/error.log"};
  for (auto& a : l.args) l.argv.push_back(a.data());
  l.argv.push_back(nullptr);
  if (!netns.empty()) {
    auto ns = netlink::open_netns(netns);
    if (!ns) return fail("cannot run nginx in netns {}: {}", netns, ns.error().message);
    l.netns = std::move(*ns);
  }
  l.null.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!l.null) return fail_errno("cannot run nginx: opening /dev/null");
  const std::string log = dir + "/nginx.stderr";
  l.log.reset(::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!l.log) return fail_errno("cannot run nginx: creating {}", log);
  return l;
}

[[noreturn]] void exec_child(const Launch& l, pid_t parent) {
  // Own session: a terminal's Ctrl-C reaches nicguard, which stops nginx itself.
  ::setsid();
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(125);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (::dup2(l.null.get(), 0) < 0 || ::dup2(l.log.get(), 1) < 0 || ::dup2(l.log.get(), 2) < 0) {
    ::_exit(126);
  }
  if (l.netns && ::setns(l.netns.get(), CLONE_NEWNET) != 0) {
    static const char msg[] = "nicguard probe: setns into the namespace failed\n";
    (void)!::write(2, msg, sizeof(msg) - 1);
    ::_exit(126);
  }
  ::close_range(3, ~0U, 0);
  ::execv(l.argv[0], l.argv.data());
  static const char msg[] = "nicguard probe: exec of nginx failed\n";
  (void)!::write(2, msg, sizeof(msg) - 1);
  ::_exit(127);
}

Status wait_ready(Nginx& n, const std::string& where, uint16_t port) {
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!n.running()) return fail("nginx exited at start{}; it logged:\n{}", where, n.log_tail());
    if (listening(n.pid(), port)) return {};
    std::this_thread::sleep_for(10ms);
  }
  return fail("nginx did not listen on port {}{} within 5 s; it logged:\n{}", port, where,
              n.log_tail());
}

}  // namespace

Result<Nginx> start_nginx(const std::string& netns, const std::string& listen_address,
                          uint16_t port, const std::string& dir_arg, const std::string& binary) {
  if (::access(binary.c_str(), X_OK) != 0) {
    return fail("{} is missing: install nginx-light (Debian) or run ./run.sh deps", binary);
  }
  if (auto e = resolve(listen_address, port); !e) {
    return fail("nginx listen address: {}", e.error().message);
  }
  std::error_code ec;
  const std::string dir = fs::absolute(dir_arg, ec).lexically_normal().string();
  if (ec) return fail("cannot use {} as nginx's directory: {}", dir_arg, ec.message());
  if (auto s = write_site(dir, listen_address, port); !s) return tl::unexpected(s.error());
  auto launch = prepare(netns, dir, binary);
  if (!launch) return tl::unexpected(launch.error());

  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return fail_errno("cannot start nginx (fork)");
  if (pid == 0) exec_child(*launch, parent);

  Nginx n;
  n.pid_ = pid;
  n.pidfd_.reset(pidfd_open(pid));
  n.dir_ = dir;
  n.url_ = fmt::format("http://{}:{}/probe", host_part(listen_address), port);
  const std::string where = netns.empty() ? "" : " in netns " + netns;
  if (auto s = wait_ready(n, where, port); !s) return tl::unexpected(s.error());
  return n;
}

// ============================================================ analysis

HttpReport analyse_requests(std::span<const RequestRecord> records, uint64_t duration_ns) {
  HttpReport r;
  r.duration_ms = static_cast<double>(duration_ns) / 1e6;
  r.requests = records.size();
  std::vector<double> latencies;
  std::vector<uint64_t> done;  // completion times of the successes
  for (const auto& q : records) {
    if (!q.ok) continue;
    latencies.push_back(static_cast<double>(q.latency_ns) / 1e6);
    done.push_back(q.start_ns + q.latency_ns);
  }
  r.ok = latencies.size();
  r.failed = r.requests - r.ok;
  r.latency_ms_max = latencies.empty() ? 0 : *std::max_element(latencies.begin(), latencies.end());
  r.latency_ms_p50 = percentile(latencies, 50);
  r.latency_ms_p90 = percentile(latencies, 90);
  r.latency_ms_p99 = percentile(latencies, 99);

  std::sort(done.begin(), done.end());
  done.push_back(std::max(duration_ns, done.empty() ? 0 : done.back()));
  uint64_t prev = 0;
  for (uint64_t t : done) {
    if (t - prev > 0 && static_cast<double>(t - prev) / 1e6 > r.longest_no_success_ms) {
      r.longest_no_success_ms = static_cast<double>(t - prev) / 1e6;
      r.longest_no_success_at_ms = static_cast<double>(prev) / 1e6;
    }
    prev = t;
  }
  return r;
}

nlohmann::json to_json(const HttpReport& r) {
  auto errors = nlohmann::json::array();
  for (const auto& e : r.errors) errors.push_back({{"at_ms", e.at_ms}, {"error", e.error}});
  return {{"duration_ms", r.duration_ms},
          {"rate", r.rate},
          {"requests", r.requests},
          {"skipped", r.skipped},
          {"ok", r.ok},
          {"failed", r.failed},
          {"errors", errors},
          {"latency_ms_p50", r.latency_ms_p50},
          {"latency_ms_p90", r.latency_ms_p90},
          {"latency_ms_p99", r.latency_ms_p99},
          {"latency_ms_max", r.latency_ms_max},
          {"longest_no_success_ms", r.longest_no_success_ms},
          {"longest_no_success_at_ms", r.longest_no_success_at_ms}};
}

std::string requests_csv(std::span<const RequestRecord> records) {
  Csv csv{"start_ms", "ok", "status", "latency_ms"};
  for (const auto& q : records) {
    csv.row(static_cast<double>(q.start_ns) / 1e6, q.ok, q.status,
            static_cast<double>(q.latency_ns) / 1e6);
  }
  return csv.text();
}

// ============================================================ client

namespace {

// libcurl's process-wide state, for as long as a client runs.
class CurlGlobal {
 public:
  CurlGlobal() : ok_(::curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK) {}
  ~CurlGlobal() {
    if (ok_) ::curl_global_cleanup();
  }
  CurlGlobal(const CurlGlobal&) = delete;
  CurlGlobal& operator=(const CurlGlobal&) = delete;
  bool ok() const { return ok_; }

 private:
  bool ok_;
};

using CurlHandle = std::unique_ptr<CURL, decltype(&::curl_easy_cleanup)>;

size_t discard(char*, size_t size, size_t count, void*) { return size * count; }

Status configure(CURL* h, const HttpClientOptions& o, char* errbuf) {
  const long timeout_ms = static_cast<long>(o.timeout_s * 1e3);
  bool ok = ::curl_easy_setopt(h, CURLOPT_URL, o.url.c_str()) == CURLE_OK;
  ok = ok && ::curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &discard) == CURLE_OK;
  ok = ok && ::curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf) == CURLE_OK;
  ok = ok && ::curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
  ok = ok && ::curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms) == CURLE_OK;
  ok = ok && ::curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms) == CURLE_OK;
  ok = ok && ::curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L) == CURLE_OK;
  // The lab is reached directly; an http_proxy from the environment would
  // measure the proxy (or fail from inside a namespace).
  ok = ok && ::curl_easy_setopt(h, CURLOPT_PROXY, "") == CURLE_OK;
  ok = ok && ::curl_easy_setopt(h, CURLOPT_NOPROXY, "*") == CURLE_OK;
  if (!ok) return fail("configuring libcurl for {} failed", o.url);
  return {};
}

void sleep_until(uint64_t t_ns) {
  timespec ts{static_cast<time_t>(t_ns / 1'000'000'000ULL),
              static_cast<long>(t_ns % 1'000'000'000ULL)};
  ::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
}

// Sleeps until t_ns, looking at `interrupted` every 100 ms; false when it fired.
bool wait_until(uint64_t t_ns, const Interrupted& interrupted) {
  for (;;) {
    if (interrupted && interrupted()) return false;
    const uint64_t now = mono_ns();
    if (now >= t_ns) return true;
    sleep_until(std::min<uint64_t>(t_ns, now + 100'000'000));
  }
}

std::string describe_failure(CURLcode rc, long status, const char* errbuf) {
  if (rc != CURLE_OK) {
    return errbuf[0] != '\0' ? fmt::format("{}: {}", ::curl_easy_strerror(rc), errbuf)
                             : std::string(::curl_easy_strerror(rc));
  }
  return fmt::format("HTTP status {}", status);
}

// One request; a failure is described into *errors when errors is given.
RequestRecord perform(CURL* h, uint64_t start_ns, char* errbuf, std::vector<HttpError>* errors) {
  errbuf[0] = '\0';
  const uint64_t t0 = mono_ns();
  CURLcode rc = ::curl_easy_perform(h);
  const uint64_t t1 = mono_ns();
  long status = 0;
  ::curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  const bool ok = rc == CURLE_OK && status == 200;
  if (!ok && errors != nullptr) {
    errors->push_back(
        {static_cast<double>(t0 - start_ns) / 1e6, describe_failure(rc, status, errbuf)});
  }
  return {t0 - start_ns, t1 - t0, static_cast<uint16_t>(status), ok};
}

Status check(const HttpClientOptions& o) {
  if (!o.url.starts_with("http://")) return fail("--url {} must start with http://", o.url);
  if (!(o.rate > 0 && o.rate <= 100000))
    return fail("--rate {} is out of range (0, 100000]", o.rate);
  if (!(o.duration_s > 0 && o.duration_s <= 3600)) return fail("--duration must be in (0, 3600] s");
  if (!(o.timeout_s > 0 && o.timeout_s <= 60)) return fail("--timeout must be in (0, 60] s");
  return {};
}

}  // namespace

Result<HttpReport> run_http_client(const HttpClientOptions& o, std::vector<RequestRecord>* records,
                                   const Interrupted& interrupted) {
  if (auto s = check(o); !s) return tl::unexpected(s.error());
  CurlGlobal global;
  if (!global.ok()) return fail("initialising libcurl failed");
  CurlHandle h(::curl_easy_init(), &::curl_easy_cleanup);
  if (!h) return fail("creating a libcurl handle failed");
  char errbuf[CURL_ERROR_SIZE] = {};
  if (auto s = configure(h.get(), o, errbuf); !s) return tl::unexpected(s.error());

  std::vector<RequestRecord> local;
  auto& out = records != nullptr ? *records : local;
  out.clear();
  out.reserve(static_cast<size_t>(o.rate * o.duration_s) + 16);
  std::vector<HttpError> errors;
  uint64_t skipped = 0;
  const uint64_t start = mono_ns();
  const uint64_t end = start + static_cast<uint64_t>(o.duration_s * 1e9);
  const double period = 1e9 / o.rate;
  const auto slots = static_cast<uint64_t>(std::ceil(o.duration_s * o.rate));  // at < end
  for (uint64_t slot = 0;; ++slot) {
    const uint64_t at = start + static_cast<uint64_t>(static_cast<double>(slot) * period);
    if (at >= end || !wait_until(at, interrupted)) break;
    const auto& q = out.emplace_back(
        perform(h.get(), start, errbuf, errors.size() < kMaxHttpErrors ? &errors : nullptr));
    // Skip the slots this request overran instead of bursting to catch up.
    const auto done = static_cast<double>(q.start_ns + q.latency_ns);
    const auto next = static_cast<uint64_t>(std::ceil(done / period));
    if (next > slot + 1) {
      skipped += std::min(next, slots) - std::min(slot + 1, slots);
      slot = next - 1;
    }
  }
  auto r = analyse_requests(out, mono_ns() - start);
  r.rate = o.rate;
  r.skipped = skipped;
  r.errors = std::move(errors);
  return r;
}

}  // namespace ng::probe

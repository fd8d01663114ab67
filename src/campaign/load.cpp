#include "campaign/load.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "common/clock.hpp"
#include "common/proc_net.hpp"
#include "common/text.hpp"

namespace ng::campaign {

using nlohmann::json;

namespace {

constexpr auto kListenWait = std::chrono::seconds(5);

bool wants(const std::vector<std::string>& kinds, const char* kind) {
  return std::find(kinds.begin(), kinds.end(), kind) != kinds.end();
}

// The load competes with the data path as an ordinary program would, even
// when the campaign itself was started at another priority.
void normal_priority() {
  sched_param p{};
  ::sched_setscheduler(0, SCHED_OTHER, &p);
  ::setpriority(PRIO_PROCESS, 0, 0);
}

json busy_loop(double seconds) {
  normal_priority();
  const uint64_t end = mono_ns() + static_cast<uint64_t>(seconds * 1e9);
  volatile uint64_t spin = 0;
  while (mono_ns() < end) {
    for (int i = 0; i < 100000; ++i) spin = spin + 1;
  }
  return json{{"ok", true}};
}

// The app the TCP load talks to: the last one, so the probe's app1 carries
// none of it, unless app1 is all there is.
const lab::App& tcp_peer(const lab::Lab& lab) { return lab.apps().back(); }

// A program run in a namespace with its output in `log`; a NetnsChild, so
// killed when the object goes (PR_SET_PDEATHSIG survives the exec).
Result<NetnsChild> exec_in(const std::string& netns, std::vector<std::string> args, std::string log) {
  return NetnsChild::start(netns, [args = std::move(args), log = std::move(log)]() mutable {
    normal_priority();
    int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (in < 0 || out < 0 || ::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(out, 2) < 0) {
      return json{{"error", fmt::format("cannot redirect {}'s output to {}", args[0], log)}};
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    return json{{"error", fmt::format("cannot run {}: {}", args[0], std::strerror(errno))}};
  });
}

std::string log_tail(const std::string& log) {
  auto tail = last_lines(read_text(log), 5);
  return tail.empty() ? "(it logged nothing)" : tail;
}

Status wait_listening(NetnsChild& server, uint16_t port, const std::string& log) {
  const auto deadline = std::chrono::steady_clock::now() + kListenWait;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!server.alive()) return fail("the TCP load's iperf3 server exited at start: {}", log_tail(log));
    if (port_bound(server.pid(), true, port)) return {};
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return fail("the TCP load's iperf3 server did not listen on port {} within 5 s: {}", port, log_tail(log));
}

}  // namespace

Status check_load_kinds(const std::vector<std::string>& kinds) {
  for (const auto& k : kinds) {
    if (k != "cpu" && k != "tcp") {
      return fail("unknown --load '{}': give cpu (a busy loop per core), tcp (full-speed TCP both ways "
                  "through the lab) or both, comma-separated",
                  k);
    }
  }
  return {};
}

std::string describe_load(const std::vector<std::string>& kinds, int apps, long cores) {
  std::vector<std::string> parts;
  if (wants(kinds, "cpu")) parts.push_back(fmt::format("{} busy loop{} at nice 0 (one per online core)", cores,
                                                        cores == 1 ? "" : "s"));
  if (wants(kinds, "tcp")) {
    parts.push_back(apps >= 2 ? fmt::format("iperf3 --bidir at full speed between the external host and app{} "
                                            "(through nicguard)",
                                            apps)
                              : std::string("iperf3 --bidir at full speed between the external host and app1, "
                                            "the probe's own app (port 5201; the lab has no other app)"));
  }
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : "; ") + p;
  return out;
}

Result<BackgroundLoad> BackgroundLoad::start(const lab::Lab& lab, const std::vector<std::string>& kinds) {
  BackgroundLoad load;
  load.tcp_ = wants(kinds, "tcp");
  if (load.tcp_) {
    if (auto s = load.start_tcp(lab); !s) return tl::unexpected(s.error());
  }
  const long cores = wants(kinds, "cpu") ? ::sysconf(_SC_NPROCESSORS_ONLN) : 0;
  for (long i = 0; i < cores; ++i) {
    // They send nothing: any namespace of the lab will do.
    auto hog = NetnsChild::start(lab.ext().netns, [] { return busy_loop(kLoadMaxSeconds); });
    if (!hog) return tl::unexpected(hog.error());
    load.hogs_.push_back(std::move(*hog));
  }
  return load;
}

Status BackgroundLoad::start_tcp(const lab::Lab& lab) {
  const auto& peer = tcp_peer(lab);
  const std::string port = fmt::format("{}", kLoadTcpPort);
  const std::string server_log = lab.state_dir() + "/load-iperf3-server.log";
  auto server = exec_in(peer.netns, {kIperf3, "-s", "-p", port, "-i", "0"}, server_log);
  if (!server) return tl::unexpected(server.error());
  iperf_server_ = std::move(*server);
  if (auto s = wait_listening(iperf_server_, kLoadTcpPort, server_log); !s) return s;
  auto client = exec_in(lab.ext().netns,
                        {kIperf3, "-c", peer.ipv4_address(), "-p", port, "-t",
                         fmt::format("{:.0f}", kLoadMaxSeconds), "--bidir", "-i", "0", "--connect-timeout", "3000"},
                        lab.state_dir() + "/load-iperf3-client.log");
  if (!client) return tl::unexpected(client.error());
  iperf_client_ = std::move(*client);
  return {};
}

Result<std::vector<std::string>> BackgroundLoad::keep_running(const lab::Lab& lab) {
  std::vector<std::string> restarted;
  for (auto& hog : hogs_) {
    if (hog.alive()) continue;
    // Nothing ends a busy loop but a signal from outside the campaign.
    auto again = NetnsChild::start(lab.ext().netns, [] { return busy_loop(kLoadMaxSeconds); });
    if (!again) return tl::unexpected(again.error());
    hog = std::move(*again);
    restarted.push_back("a busy loop had ended");
  }
  if (tcp_ && (!iperf_server_.alive() || !iperf_client_.alive())) {
    restarted.push_back(fmt::format("iperf3 had ended; its client logged: {}",
                                    log_tail(lab.state_dir() + "/load-iperf3-client.log")));
    iperf_client_.stop();
    iperf_server_.stop();
    if (auto s = start_tcp(lab); !s) return tl::unexpected(s.error());
  }
  return restarted;
}

void BackgroundLoad::stop() {
  iperf_client_.stop();
  iperf_server_.stop();
  hogs_.clear();
}

}  // namespace ng::campaign

#pragma once
// Background load under every run of a campaign (--load cpu,tcp): what a
// busy host does to the detectors and to the failover figures. It starts
// with each lab, runs until the lab goes, and stays inside the lab's
// namespaces. Every process is a NetnsChild: killed when this object goes,
// on every path, and by the kernel if the campaign itself dies.
#include <string>
#include <vector>

#include "campaign/netns_child.hpp"
#include "common/error.hpp"
#include "lab/lab.hpp"

namespace ng::campaign {

inline constexpr const char* kIperf3 = "/usr/bin/iperf3";
inline constexpr uint16_t kLoadTcpPort = 5201;
// No load outlives this even if nobody stops it; iperf3's own -t limit.
inline constexpr double kLoadMaxSeconds = 86400;

// Refuses an unknown load kind, naming it and the choices.
Status check_load_kinds(const std::vector<std::string>& kinds);

// What the load consists of, for the report: busy loops per core, and
// between which hosts the TCP load runs (app1 itself when it is the only app).
std::string describe_load(const std::vector<std::string>& kinds, int apps, long cores);

class BackgroundLoad {
 public:
  // Starts what `kinds` names in the lab; iperf3 logs go to the lab's state directory.
  static Result<BackgroundLoad> start(const lab::Lab& lab, const std::vector<std::string>& kinds);

  // Starts again whatever of it died (a TCP connection the lab could not
  // carry, e.g. through a lab that lost both driver domains); one line per
  // restart, saying what died.
  Result<std::vector<std::string>> keep_running(const lab::Lab& lab);

  void stop();

 private:
  Status start_tcp(const lab::Lab& lab);

  std::vector<NetnsChild> hogs_;
  NetnsChild iperf_server_;
  NetnsChild iperf_client_;
  bool tcp_ = false;
};

}  // namespace ng::campaign

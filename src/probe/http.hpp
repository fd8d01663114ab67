#pragma once
// HTTP probe: nginx serving one small static file inside an app namespace,
// and a libcurl client requesting it at a fixed rate. What a failover costs
// a web client is failed requests and the longest time without a successful
// response.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "probe/probe.hpp"

namespace ng::probe {

inline constexpr const char* kNginxBinary = "/usr/sbin/nginx";
inline constexpr size_t kProbeFileBytes = 1024;  // the size of what /probe serves

// The nginx.conf start_nginx writes: one process (daemon off, master_process
// off), so it runs as root without switching to an unprivileged user and
// needs no files that user could read; everything it writes (pid, error log,
// temp files) stays in dir. /probe serves dir/www/probe.
std::string nginx_config(const std::string& dir, const std::string& listen_address, uint16_t port);

// A running nginx. Destruction stops it: SIGTERM, a bounded wait, SIGKILL.
class Nginx {
 public:
  Nginx() = default;
  ~Nginx();
  Nginx(Nginx&& other) noexcept;
  Nginx& operator=(Nginx&& other) noexcept;
  Nginx(const Nginx&) = delete;
  Nginx& operator=(const Nginx&) = delete;

  pid_t pid() const { return pid_ < 0 ? -pid_ : pid_; }  // also after it ended
  const std::string& url() const { return url_; }        // http://ADDR:PORT/probe
  bool running();
  // The tail of nginx's error log and stderr, for error messages.
  std::string log_tail() const;
  // Stops it now (idempotent); true when it ended by itself within grace.
  bool stop(std::chrono::milliseconds grace = std::chrono::milliseconds(2000));

 private:
  friend Result<Nginx> start_nginx(const std::string&, const std::string&, uint16_t,
                                   const std::string&, const std::string&);
  bool reap(bool block);

  pid_t pid_ = 0;  // > 0 while unreaped, then negated
  UniqueFd pidfd_;
  std::string dir_;
  std::string url_;
};

// Writes dir/nginx.conf and dir/www/probe (dir is created if missing), then
// runs nginx inside netns ("" for the caller's) and returns once it listens
// on listen_address:port, or fails with what its error log says.
Result<Nginx> start_nginx(const std::string& netns, const std::string& listen_address,
                          uint16_t port, const std::string& dir,
                          const std::string& binary = kNginxBinary);

// ---------------------------------------------------------------- client

struct RequestRecord {
  uint64_t start_ns;    // from the client's start
  uint64_t latency_ns;  // until the response was complete, or the request failed
  uint16_t status;      // HTTP status; 0 when none came
  bool ok;              // a complete 200 response
};

struct HttpError {
  double at_ms;  // request start, from the client's start
  std::string error;
};
inline constexpr size_t kMaxHttpErrors = 5;

struct HttpReport {
  double duration_ms = 0;
  double rate = 0;  // requests per second asked for
  uint64_t requests = 0;
  uint64_t skipped = 0;  // scheduled requests not made because an earlier one overran its slot
  uint64_t ok = 0;
  uint64_t failed = 0;
  std::vector<HttpError> errors;  // the first kMaxHttpErrors failures
  // Latencies of the successful requests.
  double latency_ms_p50 = 0;
  double latency_ms_p90 = 0;
  double latency_ms_p99 = 0;
  double latency_ms_max = 0;
  // The longest time in [0, duration] without a successful response
  // completing, and where it began.
  double longest_no_success_ms = 0;
  double longest_no_success_at_ms = 0;
};

// Pure: the report's figures (not rate, errors) from the requests in the
// order they were made, over a run of duration_ns.
HttpReport analyse_requests(std::span<const RequestRecord> records, uint64_t duration_ns);
nlohmann::json to_json(const HttpReport& r);

// CSV, one row per request: start_ms,ok,status,latency_ms.
std::string requests_csv(std::span<const RequestRecord> records);

struct HttpClientOptions {
  std::string url;    // e.g. http://10.99.0.11:8080/probe
  double rate = 100;  // requests per second
  double duration_s = 10;
  double timeout_s = 1;  // per request, connecting included
};

// Requests the URL over one reused connection on a fixed schedule; a slot
// missed while a request was slow is skipped, not made up in a burst.
Result<HttpReport> run_http_client(const HttpClientOptions& o,
                                   std::vector<RequestRecord>* records = nullptr,
                                   const Interrupted& interrupted = {});

}  // namespace ng::probe

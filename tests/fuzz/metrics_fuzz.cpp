// The metrics endpoint's two parsers on the same bytes: the HTTP request a
// scraper sent (parse_metrics_request(), MetricsServer's parsing apart from
// its sockets) and the listen address of [metrics] listen
// (parse_metrics_listen()). An address it accepts is one the server can
// bind as written: loopback or an absolute socket path, and it reads back
// to the same endpoint.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "fuzz_support.hpp"
#include "manager/metrics.hpp"

namespace manager = ng::manager;
using manager::MetricsRequest;

namespace {

void check_request(std::string_view r) {
  MetricsRequest asked = manager::parse_metrics_request(r);
  bool complete = r.find("\r\n\r\n") != std::string_view::npos || r.find("\n\n") != std::string_view::npos;
  FUZZ_CHECK((asked == MetricsRequest::too_large) == !complete);
  if (asked == MetricsRequest::get) FUZZ_CHECK(r.starts_with("GET /metrics"));
  if (asked == MetricsRequest::head) FUZZ_CHECK(r.starts_with("HEAD /metrics"));
}

// How the endpoint would be written in a config.
std::string written(const manager::MetricsEndpoint& ep) {
  if (ep.family == AF_UNIX) return "unix:" + ep.address;
  if (ep.family == AF_INET6) return fmt::format("[{}]:{}", ep.address, ep.port);
  return fmt::format("{}:{}", ep.address, ep.port);
}

void check_listen(const std::string& where) {
  auto ep = manager::parse_metrics_listen(where);
  FUZZ_CHECK(ep.has_value() == manager::check_metrics_listen(where).has_value());
  if (!ep) {
    FUZZ_CHECK(!ep.error().message.empty());
    return;
  }
  // bind(), lstat() and inet_pton() take the address as a C string.
  FUZZ_CHECK(ep->address.find('\0') == std::string::npos);
  if (ep->family == AF_UNIX) {
    FUZZ_CHECK(ep->address.starts_with("/") && ep->address.size() < sizeof(sockaddr_un::sun_path));
  } else if (ep->family == AF_INET) {
    in_addr a{};
    FUZZ_CHECK(::inet_pton(AF_INET, ep->address.c_str(), &a) == 1);
    FUZZ_CHECK((ntohl(a.s_addr) >> 24) == 127);
    FUZZ_CHECK(ep->port != 0);
  } else {
    FUZZ_CHECK(ep->family == AF_INET6);
    in6_addr a{};
    FUZZ_CHECK(::inet_pton(AF_INET6, ep->address.c_str(), &a) == 1);
    FUZZ_CHECK(IN6_IS_ADDR_LOOPBACK(&a));
    FUZZ_CHECK(ep->port != 0);
  }
  auto back = manager::parse_metrics_listen(written(*ep));
  FUZZ_CHECK(back && back->family == ep->family && back->address == ep->address && back->port == ep->port);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  check_request(in);
  check_listen(std::string(in));
  return 0;
}

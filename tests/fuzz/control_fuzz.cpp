// The control socket's requests, from bytes to a request the manager acts
// on, without a manager: the input is what a client wrote, split into lines
// as ControlServer::answer_lines() splits it; each line goes through
// parse_request() and request_type_error(), and a request that passes is
// read the way Manager::handle_request() and its commands read it. That
// must never throw (an exception there would cost the client its answer),
// and the answers must always serialise.
#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "fuzz_support.hpp"
#include "manager/control.hpp"

namespace manager = ng::manager;
using nlohmann::json;

namespace {

// As control.cpp's line_of(): what goes back on the socket.
std::string line_of(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

// What Manager::handle_request(), inject() and seed_of() take from a
// request that request_type_error() passed.
json act_on(const json& request) {
  std::string cmd = request["cmd"].get<std::string>();
  auto text = [&](const char* key) {
    auto it = request.find(key);
    return it != request.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  std::string domain = text("domain"), fault = text("fault");
  uint64_t seed = 0;
  if (auto it = request.find("seed"); it != request.end() && it->is_number_unsigned()) {
    seed = it->get<uint64_t>();
  }
  return {{"ok", false},
          {"error", fmt::format("unknown cmd '{}' for '{}' ({}, seed {})", cmd, domain, fault, seed)}};
}

void one_line(std::string_view line) {
  auto req = manager::parse_request(line);
  json answer;
  if (!req) {
    FUZZ_CHECK(!req.error().message.empty());
    answer = {{"ok", false}, {"error", req.error().message}};
  } else {
    FUZZ_CHECK(req->is_object());
    std::string why = manager::request_type_error(*req);
    if (why.empty()) {
      try {
        answer = act_on(*req);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "request passed request_type_error() but threw: %s\n", e.what());
        FUZZ_CHECK(false);
      }
    } else {
      answer = {{"ok", false}, {"error", why}};
    }
  }
  FUZZ_CHECK(!line_of(answer).empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  // Whatever JSON it is, the type check names what is wrong without throwing.
  if (auto any = json::parse(in, nullptr, false); !any.is_discarded()) {
    [[maybe_unused]] auto why = manager::request_type_error(any);
  }
  size_t start = 0;
  for (size_t nl; (nl = in.find('\n', start)) != std::string_view::npos; start = nl + 1) {
    one_line(in.substr(start, nl - start));
  }
  // The last line waits for its newline on the socket; here it is a line too.
  if (start < in.size()) one_line(in.substr(start));
  return 0;
}

#include "campaign/drops.hpp"

#include <fmt/format.h>

namespace ng::campaign {

using nlohmann::json;

namespace {

constexpr const char* kAppCounters[] = {"rx_drops", "tx_drops", "hold_drops", "malformed"};
constexpr const char* kDriverCounters[] = {"nic_rx_overruns", "nic_tx_errors", "rx_unclaimed"};

uint64_t number(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() && *it > 0 ? it->get<uint64_t>() : 0;
}

int pid_of(const json& j) {
  auto it = j.find("pid");
  return it != j.end() && it->is_number_integer() ? it->get<int>() : 0;
}

// The same process's entry in the earlier answer: a frontend or domain that
// was restarted meanwhile counts from zero.
const json* earlier(const json& list, const json& now) {
  for (const auto& x : list) {
    if (x.value("name", std::string()) == now.value("name", std::string())) {
      return pid_of(x) == pid_of(now) ? &x : nullptr;
    }
  }
  return nullptr;
}

// The ring's receive drops (a frontend's ring was full) are counted by the
// driver, per frontend connection.
uint64_t ring_rx_drops(const json* driver, const std::string& app) {
  if (!driver) return 0;
  for (const auto& c : driver->value("connections", json::array())) {
    if (c.value("app", std::string()) == app) return number(c, "rx_drops");
  }
  return 0;
}

void add(std::string& out, const std::string& who, const std::string& what, uint64_t was, uint64_t is) {
  if (is <= was) return;
  out += fmt::format("{}{} {} {}", out.empty() ? "" : "; ", who, what, is - was);
}

}  // namespace

std::string drops_between(const json& before, const json& after) {
  std::string out;
  const json none = json::object();
  // Named, because earlier() points into them.
  const json apps_before = before.value("apps", json::array());
  const json drivers_before = before.value("drivers", json::array());
  for (const auto& app : after.value("apps", json::array())) {
    const std::string name = app.value("name", std::string());
    const json* was = earlier(apps_before, app);
    const json& then = was ? was->value("counters", none) : none;
    const json& now = app.value("counters", none);
    for (const char* c : kAppCounters) add(out, name, c, number(then, c), number(now, c));
  }
  for (const auto& d : after.value("drivers", json::array())) {
    const std::string name = "driver-" + d.value("name", std::string());
    const json* was = earlier(drivers_before, d);
    const json& then = was ? was->value("counters", none) : none;
    const json& now = d.value("counters", none);
    for (const char* c : kDriverCounters) add(out, name, c, number(then, c), number(now, c));
    for (const auto& c : d.value("connections", json::array())) {
      const std::string app = c.value("app", std::string());
      add(out, name, "ring_rx_drops " + app, ring_rx_drops(was, app), ring_rx_drops(&d, app));
    }
  }
  return out;
}

}  // namespace ng::campaign

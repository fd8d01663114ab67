// Many app domains on one pair of driver domains: the start-up storm (every
// frontend connecting, mapping its rings, announcing itself at once) must
// not look like a failure to any detector, and one failure must move every
// app. Bounds are generous; the figures belong to `nicguard campaign --apps`.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <map>

#include "support.hpp"

namespace ng::it {
namespace {

using Json = nlohmann::json;

// app name -> its active driver ("" while it has none), and whether every
// app also holds the other domain as a connected spare.
struct Roles {
  std::map<std::string, std::string> active;
  bool all_spares = true;
};

Roles roles(const LabGuard& lab) {
  Roles r;
  auto s = lab.status();
  if (!s) return r;
  for (const auto& app : s->at("apps")) {
    const auto& a = app.at("active_driver");
    r.active[app.value("name", "")] = a.is_string() ? a.get<std::string>() : "";
    bool spare = false;
    for (const auto& b : app.value("backends", Json::array())) spare = spare || b.value("state", "") == "spare";
    r.all_spares = r.all_spares && spare;
  }
  return r;
}

bool all_on(const Roles& r, const std::string& driver, size_t apps) {
  if (r.active.size() != apps) return false;
  for (const auto& [name, d] : r.active) {
    if (driver.empty() ? d.empty() : d != driver) return false;
  }
  return true;
}

size_t detections(const LabGuard& lab) {
  size_t n = 0;
  for (const auto& e : read_events(lab)) n += e.value("event", "") == "detect";
  return n;
}

TEST(ScaleTest, ThirtyTwoAppsComeUpWithoutADetectionAndAKillMovesThemAll) {
  constexpr size_t kApps = 32;
  LabOptions o;
  o.apps = static_cast<int>(kApps);
  o.up_limit = 300s;
  LabGuard lab(o);
  ASSERT_TRUE(lab.ok()) << lab.error();
  auto served = [&] {
    Roles r = roles(lab);
    if (r.active.size() != kApps || !r.all_spares) return false;
    for (const auto& [name, d] : r.active) {
      if (d.empty()) return false;
    }
    return true;
  };
  ASSERT_TRUE(wait_until(served, 120s, 100ms)) << lab.status_table() << event_lines(lab);
  std::this_thread::sleep_for(5s);  // running, with every frontend watching
  EXPECT_EQ(detections(lab), 0u) << event_lines(lab);

  Roles before = roles(lab);
  std::map<std::string, int> per_driver;
  for (const auto& [name, d] : before.active) ++per_driver[d];
  std::string victim = per_driver["a"] >= per_driver["b"] ? "a" : "b";
  std::string other = victim == "a" ? "b" : "a";
  auto r = run(fmt::format("{} inject {} kill -s {}", quote(kNicguard), victim, quote(lab.control_socket())), 10s);
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_TRUE(wait_until([&] { return all_on(roles(lab), other, kApps); }, 30s, 20ms))
      << lab.status_table() << event_lines(lab);
  for (size_t i : {size_t{0}, kApps / 2, kApps - 1}) {
    const auto& app = lab.apps().at(i);
    auto ping = run_in(lab.ext_ns(), "ping -c 2 -i 0.2 -W 2 " + app.ipv4, 20s);
    EXPECT_TRUE(ping.ok()) << app.name << "\n" << ping.describe();
  }
}

}  // namespace
}  // namespace ng::it

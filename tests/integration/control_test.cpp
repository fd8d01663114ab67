// The commands a host operator types without naming a manager: `status`,
// `events` and `inject` find the only one running, and with two running
// they list both and ask for one, touching neither.
#include <signal.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support.hpp"

namespace ng::it {
namespace {

TEST(Control, CommandsFindTheOnlyManagerAndAskWhenThereAreTwo) {
  LabGuard first;
  ASSERT_TRUE(first.ok()) << first.error();
  auto status = run(fmt::format("{} status", quote(kNicguard)));
  ASSERT_TRUE(status.ok()) << status.describe();
  EXPECT_EQ(status.out.rfind("health: OK, 1 of 1 apps served, a spare ready for every app", 0), 0u)
      << status.out;
  EXPECT_NE(status.out.find(first.config()), std::string::npos) << status.out;
  auto events = run(fmt::format("{} events", quote(kNicguard)));
  ASSERT_TRUE(events.ok()) << events.describe();
  EXPECT_NE(events.out.find("\"event\":\"start\""), std::string::npos) << events.out;
  auto inject = run(fmt::format("{} inject a nosuchfault", quote(kNicguard)));
  EXPECT_EQ(inject.exit_code, 2) << inject.describe();  // refused before any manager is asked

  LabGuard second;
  ASSERT_TRUE(second.ok()) << second.error();
  for (const char* cmd : {"status", "events", "inject a hang"}) {
    auto r = run(fmt::format("{} {}", quote(kNicguard), cmd));
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_NE(r.err.find("2 managers are running"), std::string::npos) << r.describe();
    EXPECT_NE(r.err.find("-s " + first.control_socket()), std::string::npos) << r.describe();
    EXPECT_NE(r.err.find("-s " + second.control_socket()), std::string::npos) << r.describe();
  }
  // Nothing was injected: the question went to neither manager.
  for (const LabGuard* lab : {&first, &second}) {
    for (const auto& e : read_events(*lab)) {
      EXPECT_NE(e.value("event", ""), "inject") << e.dump();
      EXPECT_NE(e.value("event", ""), "detect") << e.dump();
    }
  }
}

// A domain that cannot start says why in its own words, in status and in
// its exit event, and is restarted with back-off, not "exited with status 1".
TEST(Control, ADomainWhoseNicIsGoneSaysSo) {
  LabGuard lab;
  ASSERT_TRUE(lab.ok()) << lab.error();
  const LabDriver& b = lab.drivers().at(1);
  auto s = lab.status();
  ASSERT_TRUE(s) << lab.error();
  pid_t pid = s->at("drivers")[1].value("pid", 0);
  ASSERT_GT(pid, 0);
  auto del = run(fmt::format("ip -n {} link del {}", b.netns, b.nic));
  ASSERT_TRUE(del.ok()) << del.describe();
  ::kill(pid, SIGKILL);
  const std::string want = fmt::format("NIC '{}' is not in the driver domain's namespace", b.nic);
  std::string seen;
  EXPECT_TRUE(wait_until(
      [&] {
        auto now = lab.status();
        if (!now) return false;
        seen = now->at("drivers")[1].value("last_failure", nlohmann::json()).dump();
        return seen.find(want) != std::string::npos;
      },
      20s))
      << seen << "\n" << lab.status_table() << lab.logs();
  bool in_event = false;
  for (const auto& e : read_events(lab)) {
    if (e.value("event", "") == "exit" && e.value("reason", "").find(want) != std::string::npos) in_event = true;
  }
  EXPECT_TRUE(in_event) << event_lines(lab);
  auto table = run(fmt::format("{} status -s {}", quote(kNicguard), quote(lab.control_socket())));
  EXPECT_NE(table.out.find("driver b: last ended"), std::string::npos) << table.describe();
  EXPECT_NE(table.out.find(want), std::string::npos) << table.describe();
}

}  // namespace
}  // namespace ng::it

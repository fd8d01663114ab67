#include "frontend/settings.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

using ng::frontend::LiveSettings;
using ng::frontend::parse_settings;
using ng::frontend::settings_json;
using ::testing::HasSubstr;

TEST(Settings, WhatTheManagerWritesTheFrontendReads) {
  LiveSettings s{9, 250, 50, 120};
  auto back = parse_settings(settings_json(s), "front-web.settings");
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, s);
}

TEST(Settings, ABadFileIsRefusedNamingTheKeyAndTheRange) {
  auto msg = [](const char* text) {
    auto r = parse_settings(text, "f.settings");
    EXPECT_FALSE(r) << text;
    return r ? std::string() : r.error().message;
  };
  EXPECT_THAT(msg("not json"), HasSubstr("f.settings: not a JSON object"));
  EXPECT_THAT(msg(R"({"hang_timeout_ms":6,"stall_timeout_ms":100,"rx_probe_interval_ms":100})"),
              HasSubstr("rx_probe_timeout_ms is missing"));
  EXPECT_THAT(msg(R"({"hang_timeout_ms":1,"stall_timeout_ms":100,"rx_probe_interval_ms":100,"rx_probe_timeout_ms":300})"),
              HasSubstr("hang_timeout_ms = 1: expected 2 to 10000"));
  EXPECT_THAT(msg(R"({"hang_timeout_ms":-6,"stall_timeout_ms":100,"rx_probe_interval_ms":100,"rx_probe_timeout_ms":300})"),
              HasSubstr("hang_timeout_ms is missing or not a whole number"));
  EXPECT_THAT(msg(R"({"hang_timeout_ms":6,"stall_timeout_ms":100,"rx_probe_interval_ms":100,"rx_probe_timeout_ms":150})"),
              HasSubstr("less than twice"));
}

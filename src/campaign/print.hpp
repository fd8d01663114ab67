#pragma once
// The campaign's text output, shared by `nicguard campaign` and `nicguard demo`.
#include <nlohmann/json.hpp>

#include "campaign/report.hpp"

namespace ng::campaign {

// One line per finished run.
void print_progress(const RunRecord& r);
// The outcome table of summary_json(): one row per policy and kind.
void print_summary(const nlohmann::json& summary);

}  // namespace ng::campaign

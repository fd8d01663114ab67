#pragma once
// Each component registers its own subcommands; main.cpp only wires them.
// A callback stores its process exit status in exit_code.
namespace CLI {
class App;
}

namespace ng::cli {

void add_driver_command(CLI::App& app, int& exit_code);    // src/driver/command.cpp
void add_front_command(CLI::App& app, int& exit_code);     // src/frontend/command.cpp
void add_manager_commands(CLI::App& app, int& exit_code);  // src/manager/command.cpp: manager, status, reload
void add_events_command(CLI::App& app, int& exit_code);    // src/manager/events_command.cpp (via add_manager_commands)
void add_lab_command(CLI::App& app, int& exit_code);       // src/lab/command.cpp
void add_bench_command(CLI::App& app, int& exit_code);     // src/bench/command.cpp
void add_probe_command(CLI::App& app, int& exit_code);     // src/probe/command.cpp
void add_demo_command(CLI::App& app, int& exit_code);      // src/cli/demo.cpp
void add_inject_command(CLI::App& app, int& exit_code);    // src/inject/command.cpp
void add_campaign_command(CLI::App& app, int& exit_code);  // src/campaign/command.cpp
void add_completion_command(CLI::App& app, int& exit_code);  // src/cli/completion.cpp
// --realtime-priority N for the commands that build a lab (lab up, bench,
// campaign, demo): the lab config's [manager] realtime_priority; -1 leaves
// the default.
void add_realtime_priority_option(CLI::App& cmd, int& priority);  // src/lab/command.cpp

}  // namespace ng::cli

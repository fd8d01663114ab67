#include <CLI/CLI.hpp>

#include "cli/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "nicguard: keeps a host's network service alive across NIC driver failures.\n"
      "NIC drivers run in sandboxed driver domains; every app domain is served by an\n"
      "active and a warm-spare driver domain."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "nicguard 0.1.0");
  int exit_code = 0;
  ng::cli::add_manager_commands(app, exit_code);
  ng::cli::add_driver_command(app, exit_code);
  ng::cli::add_front_command(app, exit_code);
  ng::cli::add_lab_command(app, exit_code);
  ng::cli::add_bench_command(app, exit_code);
  ng::cli::add_probe_command(app, exit_code);
  ng::cli::add_demo_command(app, exit_code);
  ng::cli::add_inject_command(app, exit_code);
  ng::cli::add_campaign_command(app, exit_code);
  ng::cli::add_completion_command(app, exit_code);  // last: it lists the others
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}

#include <CLI/CLI.hpp>

#include "cli/commands.hpp"

// Placeholder until the component lands.
void ng::cli::add_manager_commands(CLI::App&, int&) {}

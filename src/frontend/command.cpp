#include <CLI/CLI.hpp>

#include "cli/commands.hpp"

// Placeholder until the component lands.
void ng::cli::add_front_command(CLI::App&, int&) {}

// `nicguard completion`: a bash completion script made from the command
// line's own definition, so it cannot drift from it; and `--commands`, the
// top-level commands one per line (the man pages are made per command).
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands.hpp"

namespace {

// What may follow a command: its subcommands and its options' names.
std::string words_of(const CLI::App& cmd) {
  std::string words;
  for (const CLI::App* sub : cmd.get_subcommands({})) words += sub->get_name() + " ";
  for (const CLI::Option* o : cmd.get_options()) {
    for (const auto& n : o->get_lnames()) words += "--" + n + " ";
    for (const auto& n : o->get_snames()) words += "-" + n + " ";
  }
  if (!words.empty()) words.pop_back();
  return words;
}

// One case per command path (" lab up"), deepest first in the output.
void cases_of(const CLI::App& cmd, const std::string& path, std::string& out) {
  for (const CLI::App* sub : cmd.get_subcommands({})) cases_of(*sub, path + " " + sub->get_name(), out);
  out += fmt::format("    \"{}\") words=\"{}\" ;;\n", path, words_of(cmd));
}

// The paths a word extends: " lab", " lab up", ...
void paths_of(const CLI::App& cmd, const std::string& path, std::string& out) {
  for (const CLI::App* sub : cmd.get_subcommands({})) {
    std::string p = path + " " + sub->get_name();
    out += fmt::format("      \"{}\") path=\"{}\" ;;\n", p, p);
    paths_of(*sub, p, out);
  }
}

std::string known_paths(const CLI::App& root) {
  std::string out;
  paths_of(root, "", out);
  return out;
}

std::string bash_script(const CLI::App& root) {
  std::string cases;
  cases_of(root, "", cases);
  return fmt::format(
      "# bash completion for nicguard; made by `nicguard completion`.\n"
      "_nicguard() {{\n"
      "  local cur=${{COMP_WORDS[COMP_CWORD]}} path=\"\" w words\n"
      "  for w in \"${{COMP_WORDS[@]:1:COMP_CWORD-1}}\"; do\n"
      "    case \"$w\" in -*) continue ;; esac\n"
      "    case \"$path $w\" in\n{}"
      "    esac\n"
      "  done\n"
      "  case \"$path\" in\n{}"
      "  esac\n"
      "  COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
      "}}\n"
      "complete -F _nicguard nicguard\n",
      known_paths(root), cases);
}

}  // namespace

void ng::cli::add_completion_command(CLI::App& app, int& exit_code) {
  auto commands = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("completion", "Print a bash completion script for nicguard "
                                               "(the package installs it)");
  cmd->add_flag("--commands", *commands, "print the top-level commands instead, one per line");
  cmd->callback([&app, commands, &exit_code] {
    if (*commands) {
      for (const CLI::App* sub : app.get_subcommands({})) fmt::print("{}\n", sub->get_name());
    } else {
      fmt::print("{}", bash_script(app));
    }
    exit_code = 0;
  });
}

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <optional>

#include "cli/commands.hpp"
#include "inject/inject.hpp"
#include "manager/locate.hpp"
#include "manager/control.hpp"

namespace {

struct InjectOptions {
  std::string domain;
  std::string fault;
  std::string config;
  std::string socket;
  std::optional<uint64_t> seed;
  bool json = false;
};

std::string fault_help() {
  std::string out = "Faults:\n";
  for (const auto& f : ng::inject::faults()) out += fmt::format("  {:<16} {}\n", f.name, f.models);
  return out;
}

int run(const InjectOptions& o) {
  if (!ng::inject::parse_fault(o.fault)) {
    fmt::print(stderr, "nicguard inject: unknown fault '{}': expected one of {}\n", o.fault,
               ng::inject::fault_list());
    return 2;
  }
  auto socket = ng::manager::control_socket_for(o.socket, o.config);
  if (!socket) {
    fmt::print(stderr, "nicguard inject: {}\n", socket.error().message);
    return 2;
  }
  nlohmann::json request{{"cmd", "inject"}, {"domain", o.domain}, {"fault", o.fault}};
  if (o.seed) request["seed"] = *o.seed;
  // A regflip into a driver VM waits up to 5 s for its breakpoint.
  auto answer = ng::manager::control_request(*socket, request, o.fault == "regflip" ? 10000 : 2000);
  if (!answer) {
    fmt::print(stderr, "nicguard inject: {}\n", answer.error().message);
    return 1;
  }
  if (!answer->value("ok", false)) {
    fmt::print(stderr, "nicguard inject: {}\n", answer->value("error", std::string("refused")));
    return 1;
  }
  if (o.json) {
    fmt::print("{}\n", answer->dump());
  } else {
    fmt::print("injected {} into {} (pid {})", o.fault, answer->value("domain", o.domain),
               answer->value("pid", 0));
    if (answer->contains("seed")) {
      fmt::print(": seed {}, {}, {} -> {}", (*answer)["seed"].get<uint64_t>(),
                 answer->value("detail", std::string()), answer->value("before", std::string()),
                 answer->value("after", std::string()));
    }
    fmt::print("\n");
  }
  return 0;
}

}  // namespace

void ng::cli::add_inject_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<InjectOptions>();
  auto* cmd = app.add_subcommand(
      "inject", "Inject a fault into a running driver domain, through the manager (root only)");
  cmd->footer(fault_help());
  cmd->add_option("domain", o->domain, "Driver domain name (as in the config: a, or driver-a)")
      ->required();
  cmd->add_option("fault", o->fault, "Fault kind (see below)")->required();
  auto* c = cmd->add_option("-c,--config", o->config, "the manager's configuration file");
  auto* s = cmd->add_option("-s,--socket", o->socket, "the manager's control socket");
  c->excludes(s);
  cmd->add_flag("--json", o->json, "Print the manager's answer as JSON");
  cmd->add_option("--seed", o->seed,
                  "regflip: the seed that picks thread, moment, register and bit (random if "
                  "not given; the answer names it, so any run can be repeated)");
  cmd->callback([o, &exit_code] { exit_code = run(*o); });
}

#pragma once
// Which manager `status`, `events` and `inject` talk to when they are told
// neither -c nor -s: the only one running. A manager without a state_dir
// in its config listens on /run/nicguard/control.sock; each lab's manager
// listens in /run/nicguard/lab-SFX/state. A socket that nobody answers on
// (a manager that died) is no candidate; with several running, the error
// lists them, so the user can pick one with -s.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "manager/config.hpp"

namespace ng::manager {

inline constexpr const char* kRunDir = "/run/nicguard";

struct RunningManager {
  std::string socket;
  std::string state_dir;  // the socket's directory, where events.jsonl is
  std::string config;     // as the manager reports it; "" if it did not answer
  nlohmann::json status;  // its {"cmd":"status"} answer; null if it did not answer
};

// Every control socket under run_dir that accepts a connection, but `skip`
// (a manager's own, which it cannot answer while it asks).
std::vector<RunningManager> running_managers(const std::string& run_dir = kRunDir, const std::string& skip = "");

// The only running manager, or an error that says what to do: start one,
// or name one of those listed.
Result<RunningManager> only_running_manager(const std::string& run_dir = kRunDir);

// The control socket a command talks to: `socket` (-s) if given, else the
// one `config` (-c) names, else the only running manager's.
Result<std::string> control_socket_for(const std::string& socket, const std::string& config);

// What `mine` would take that the running manager `other` (its status)
// already owns: a NIC, a network namespace, an app MAC; "" when nothing.
std::string shared_resource(const Config& mine, const nlohmann::json& other);

// Refuses to start a manager whose config names what another running one
// owns, naming that manager; nothing has been touched when it refuses.
Status refuse_shared_resources(const Config& mine, const std::string& run_dir = kRunDir);

}  // namespace ng::manager

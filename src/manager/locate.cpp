#include "manager/locate.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include <fmt/format.h>

#include "common/unix_socket.hpp"
#include "manager/control.hpp"

namespace ng::manager {

namespace {

// Where managers put their sockets: the default state dir, and any state
// dir one or two levels below it (labs use lab-SFX/state).
std::vector<std::string> candidate_sockets(const std::string& run_dir) {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  std::error_code ec;
  auto add = [&](const fs::path& p) {
    if (fs::is_socket(p, ec)) out.push_back(p.string());
  };
  add(fs::path(run_dir) / "control.sock");
  for (const auto& d : fs::directory_iterator(run_dir, ec)) {
    if (!d.is_directory(ec)) continue;
    add(d.path() / "control.sock");
    add(d.path() / "state" / "control.sock");
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::vector<RunningManager> running_managers(const std::string& run_dir, const std::string& skip) {
  std::vector<RunningManager> out;
  for (const auto& socket : candidate_sockets(run_dir)) {
    if (!skip.empty() && socket == skip) continue;
    // A manager that died leaves its socket file: nobody accepts on it.
    if (!connect_unix(SOCK_STREAM, socket, "control socket")) continue;
    RunningManager m{socket, std::filesystem::path(socket).parent_path().string(), ""};
    if (auto s = control_request(socket, {{"cmd", "status"}}, 1000)) {
      m.config = s->value("/manager/config"_json_pointer, std::string());
      m.status = std::move(*s);
    }
    out.push_back(std::move(m));
  }
  return out;
}

Result<RunningManager> only_running_manager(const std::string& run_dir) {
  auto all = running_managers(run_dir);
  if (all.size() == 1) return all.front();
  if (all.empty()) {
    return fail("no manager is running (none answers on a control socket under {}): start one "
                "(nicguard manager -c FILE, or nicguard lab up), or name it with -c FILE or -s SOCKET",
                run_dir);
  }
  std::string list;
  for (const auto& m : all) {
    list += fmt::format("\n  -s {}{}", m.socket, m.config.empty() ? "" : "   (config " + m.config + ")");
  }
  return fail("{} managers are running; say which with -s SOCKET (or -c FILE):{}", all.size(), list);
}

Result<std::string> control_socket_for(const std::string& socket, const std::string& config) {
  if (!socket.empty()) return socket;
  if (!config.empty()) {
    auto c = load_config(config);
    if (!c) return tl::unexpected(c.error());
    return c->control_socket;
  }
  auto only = only_running_manager();
  if (!only) return tl::unexpected(only.error());
  return only->socket;
}

std::string shared_resource(const Config& mine, const nlohmann::json& other) {
  auto names = [&](const char* table, const char* key) {
    std::vector<std::string> out;
    for (const auto& e : other.value(table, nlohmann::json::array())) {
      if (e.contains(key) && e[key].is_string()) out.push_back(e[key].get<std::string>());
    }
    return out;
  };
  auto has = [](const std::vector<std::string>& v, const std::string& x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  };
  auto nics = names("drivers", "nic"), macs = names("apps", "mac");
  auto netns = names("drivers", "netns");
  for (const auto& n : names("apps", "netns")) netns.push_back(n);
  for (const auto& d : mine.drivers) {
    if (has(nics, d.nic)) return fmt::format("NIC '{}' (driver {})", d.nic, d.name);
    if (has(netns, d.netns)) return fmt::format("network namespace '{}' (driver {})", d.netns, d.name);
  }
  for (const auto& a : mine.apps) {
    if (has(macs, format_mac(a.mac))) return fmt::format("MAC {} (app {})", format_mac(a.mac), a.name);
    if (has(netns, a.netns)) return fmt::format("network namespace '{}' (app {})", a.netns, a.name);
  }
  return "";
}

Status refuse_shared_resources(const Config& mine, const std::string& run_dir) {
  for (const auto& m : running_managers(run_dir, mine.control_socket)) {
    if (m.state_dir == mine.state_dir || !m.status.is_object()) continue;  // the state lock refuses that one
    if (auto what = shared_resource(mine, m.status); !what.empty()) {
      return fail("{} is owned by the manager at {} (config {}); nothing was changed: give this "
                  "manager other NICs, namespaces and MACs, or stop that one first",
                  what, m.socket, m.config.empty() ? "unknown" : m.config);
    }
  }
  return {};
}

}  // namespace ng::manager

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

std::vector<RunningManager> running_managers(const std::string& run_dir) {
  std::vector<RunningManager> out;
  for (const auto& socket : candidate_sockets(run_dir)) {
    // A manager that died leaves its socket file: nobody accepts on it.
    if (!connect_unix(SOCK_STREAM, socket, "control socket")) continue;
    RunningManager m{socket, std::filesystem::path(socket).parent_path().string(), ""};
    if (auto s = control_request(socket, {{"cmd", "status"}}, 1000)) {
      m.config = s->value("/manager/config"_json_pointer, std::string());
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

}  // namespace ng::manager

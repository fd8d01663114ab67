#include "common/unix_socket.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace ng {

Result<UniqueFd> bind_unix(int type, const std::string& path, const char* what) {
  UniqueFd s(::socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s) return fail_errno("creating the {}", what);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return fail("{} path {} is too long", what, path);
  std::strcpy(addr.sun_path, path.c_str());
  ::unlink(path.c_str());
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return fail_errno("binding the {} {}", what, path);
  }
  if (::chmod(path.c_str(), 0600) != 0) return fail_errno("restricting the {} {} to root", what, path);
  return s;
}

Result<UniqueFd> connect_unix(int type, const std::string& path, const char* what) {
  UniqueFd s(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  if (!s) return fail_errno("creating a socket for the {}", what);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return fail("{} path {} is too long", what, path);
  std::strcpy(addr.sun_path, path.c_str());
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return fail_errno("connecting to the {} {}", what, path);
  }
  return s;
}

}  // namespace ng

#include "common/file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/fd.hpp"

namespace ng {

namespace {

Status write_all(int fd, std::string_view content, const std::string& path) {
  while (!content.empty()) {
    ssize_t n = ::write(fd, content.data(), content.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("cannot write {}: {}; check the disk has room", path, std::strerror(errno));
    content.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

}  // namespace

Status write_file_atomic(const std::string& path, std::string_view content, mode_t mode) {
  std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) return fail("cannot create {}: {}; check the directory's permissions", tmp, std::strerror(errno));
  if (auto st = write_all(fd.get(), content, tmp); !st) {
    ::unlink(tmp.c_str());
    return st;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    auto err = fail("cannot rename {} to {}: {}; check the directory's permissions", tmp, path, std::strerror(errno));
    ::unlink(tmp.c_str());
    return err;
  }
  return {};
}

void remove_file(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) spdlog::warn("could not remove {}: {}", path, std::strerror(errno));
}

}  // namespace ng

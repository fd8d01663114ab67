#pragma once
// Errors are values on the data and control paths: every fallible call returns
// Result<T>, and the message is written for the operator who has to act on it.
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <tl/expected.hpp>

namespace ng {

struct Error {
  std::string message;
  // The peer went away (closed, reset, broken pipe): a hang-up, not
  // something malformed it sent.
  bool peer_gone = false;
};

template <typename T>
using Result = tl::expected<T, Error>;
using Status = tl::expected<void, Error>;

template <typename... Args>
tl::unexpected<Error> fail(fmt::format_string<Args...> format, Args&&... args) {
  return tl::unexpected<Error>(Error{fmt::format(format, std::forward<Args>(args)...)});
}

// Appends strerror(errno) to the message; call right after the failing syscall.
template <typename... Args>
tl::unexpected<Error> fail_errno(fmt::format_string<Args...> format, Args&&... args) {
  int saved = errno;
  return tl::unexpected<Error>(
      Error{fmt::format(format, std::forward<Args>(args)...) + ": " + std::strerror(saved)});
}

}  // namespace ng

#pragma once
// Domains start at a low priority and take their serving priority once set
// up (see the manager's exec_child): a restart must not slow the data path.
#include <sys/resource.h>

#include <cerrno>

#include "common/error.hpp"

namespace ng {

inline constexpr int kKeepNice = 100;  // outside -20..19: leave the priority as it is

inline Status serve_at(int nice) {
  if (nice == kKeepNice) return {};
  if (::setpriority(PRIO_PROCESS, 0, nice) != 0) return fail_errno("setting nice {}", nice);
  return {};
}

}  // namespace ng

#pragma once
// What the fuzz targets share: a check that stops the run with a message
// (libFuzzer keeps the input that got there), and a count of open fds.
#include <dirent.h>

#include <cstdio>
#include <cstdlib>

// A broken property is a crash to libFuzzer: abort() leaves the input in
// the artifacts like any sanitizer report would.
#define FUZZ_CHECK(cond)                                                          \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, \
                   #cond);                                                        \
      std::abort();                                                               \
    }                                                                             \
  } while (0)

namespace ng::fuzz {

// Entries of /proc/self/fd, the directory's own fd included: only a
// difference between two counts means something.
inline int open_fds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) std::abort();
  int n = 0;
  while (::readdir(d) != nullptr) ++n;
  ::closedir(d);
  return n;
}

}  // namespace ng::fuzz

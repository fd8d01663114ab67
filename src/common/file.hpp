#pragma once
// Whole-file writes that a reader never sees half done.
#include <sys/types.h>

#include <string>
#include <string_view>

#include "common/error.hpp"

namespace ng {

// Writes `content` to PATH.tmp and renames it over `path`: a reader (a
// manager adopting, a frontend rereading its settings, a browser reloading
// a report) sees the old file or the new one, never a mix.
Status write_file_atomic(const std::string& path, std::string_view content, mode_t mode = 0600);

// Removes a file the caller made; one already gone is fine, any other
// failure is logged as a warning (a leftover, not an error of the caller).
void remove_file(const std::string& path);

}  // namespace ng

#include "common/stats.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cstring>
#include <new>

namespace ng::stats {

const char* backend_state_name(BackendState s) {
  switch (s) {
    case BackendState::down: return "down";
    case BackendState::connecting: return "connecting";
    case BackendState::spare: return "spare";
    case BackendState::active: return "active";
  }
  return "unknown";
}

void set_name(char (&field)[kNameLen], const std::string& s) {
  size_t n = std::min(s.size(), size_t{kNameLen - 1});
  std::memcpy(field, s.data(), n);
  field[n] = '\0';
}

template <typename T>
Result<StatsFile<T>> StatsFile<T>::create(const std::string& path, uint32_t magic) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return fail_errno("creating stats file {}", path);
  if (::ftruncate(fd.get(), sizeof(T)) != 0) return fail_errno("sizing stats file {}", path);
  void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return fail_errno("mapping stats file {}", path);
  StatsFile f;
  f.map_ = Mapping(p, sizeof(T));
  auto* s = new (p) T{};
  s->magic = magic;
  s->version = kVersion;
  return f;
}

template <typename T>
Result<StatsFile<T>> StatsFile<T>::open(const std::string& path, uint32_t magic) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return fail_errno("opening stats file {}", path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || static_cast<size_t>(st.st_size) < sizeof(T)) {
    return fail("stats file {} is shorter than expected; is its writer from another build?", path);
  }
  void* p = ::mmap(nullptr, sizeof(T), PROT_READ, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return fail_errno("mapping stats file {}", path);
  StatsFile f;
  f.map_ = Mapping(p, sizeof(T));
  if (f->magic != magic || f->version != kVersion) {
    return fail("stats file {} has an unexpected format", path);
  }
  return f;
}

template class StatsFile<DriverStats>;
template class StatsFile<FrontStats>;

}  // namespace ng::stats

#include "frontend/cpu_sampler.hpp"

#include <linux/perf_event.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace ng::frontend {
namespace {

// One page of records: 256 samples, 64 ms of user-mode CPU, far more than
// any verdict needs. Once full, the kernel drops further samples.
constexpr size_t kDataPages = 1;

}  // namespace

Result<UniqueFd> UserCpuSampler::keep_ready() {
  perf_event_attr a{};
  a.size = sizeof(a);
  a.type = PERF_TYPE_SOFTWARE;
  a.config = PERF_COUNT_SW_DUMMY;
  a.disabled = 1;
  UniqueFd fd(static_cast<int>(::syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC)));
  if (!fd) return fail_errno("opening a perf event on the frontend itself");
  return fd;
}

Result<UserCpuSampler> UserCpuSampler::start(pid_t pid) {
  perf_event_attr a{};
  a.size = sizeof(a);
  a.type = PERF_TYPE_SOFTWARE;
  a.config = PERF_COUNT_SW_TASK_CLOCK;
  a.sample_period = kPeriodNs;
  a.sample_type = PERF_SAMPLE_IP;
  // Counting ignores these for software clocks; sampling honours them.
  a.exclude_kernel = 1;
  a.exclude_hv = 1;
  UniqueFd fd(static_cast<int>(::syscall(SYS_perf_event_open, &a, pid, -1, -1, PERF_FLAG_FD_CLOEXEC)));
  if (!fd) return fail_errno("opening a perf task-clock event on pid {}", pid);
  size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  size_t size = page * (1 + kDataPages);
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return fail_errno("mapping the perf sample buffer for pid {}", pid);
  UserCpuSampler s;
  s.event_ = std::move(fd);
  s.buffer_ = Mapping(p, size);
  return s;
}

uint64_t UserCpuSampler::user_ns() const {
  if (!running()) return 0;
  auto* meta = static_cast<perf_event_mmap_page*>(buffer_.data());
  uint64_t head = std::atomic_ref<__u64>(meta->data_head).load(std::memory_order_acquire);
  size_t page = buffer_.size() / (1 + kDataPages);
  size_t capacity = page * kDataPages;
  const std::byte* data = buffer_.bytes() + page;
  // Only samples count: a throttle or lost record is not CPU time. Records
  // are 8-byte aligned and, with the tail never moved, never wrap.
  uint64_t samples = 0;
  for (uint64_t at = 0; at + sizeof(perf_event_header) <= head && at + sizeof(perf_event_header) <= capacity;) {
    perf_event_header h;
    std::memcpy(&h, data + at, sizeof(h));
    if (h.size == 0) break;
    if (h.type == PERF_RECORD_SAMPLE) ++samples;
    at += h.size;
  }
  return samples * kPeriodNs;
}

}  // namespace ng::frontend

#include "vm/accel.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/clock.hpp"

namespace ng::vm {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string boot_id() {
  auto id = slurp("/proc/sys/kernel/random/boot_id");
  while (!id.empty() && id.back() == '\n') id.pop_back();
  return id;
}

AccelChoice probe(const std::string& image_dir, unsigned deadline_ms) {
  char dir[] = "/tmp/nicguard-kvm-XXXXXX";
  if (::mkdtemp(dir) == nullptr) return {Accel::tcg, "KVM not tried: cannot create a temporary directory"};
  std::string console = std::string(dir) + "/console";
  std::vector<std::string> args = {
      "qemu-system-x86_64", "-M", "pc", "-accel", "kvm", "-cpu", "host,-arch-capabilities",
      "-m", "128", "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
      "-kernel", image_dir + "/vmlinuz", "-initrd", image_dir + "/initramfs.cpio",
      "-append", "console=ttyS0 panic=-1 quiet", "-serial", "file:" + console};
  UniqueFd null_fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
  auto q = Qemu::start_plain(args, null_fd.get());
  AccelChoice out{Accel::tcg, fmt::format("KVM did not run the guest's init within {} ms: using TCG", deadline_ms)};
  if (!q) {
    out.reason = "KVM not tried: " + q.error().message;
  } else {
    uint64_t deadline = mono_ns() + uint64_t{deadline_ms} * 1'000'000;
    while (mono_ns() < deadline) {
      if (slurp(console).find("ng-guest: init") != std::string::npos) {
        out = {Accel::kvm, "KVM runs the guest"};
        break;
      }
      if (q->exited()) {
        out.reason = fmt::format("KVM cannot run the guest (QEMU {}): using TCG", q->reap());
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return out;
}

}  // namespace

AccelChoice choose_accel(const std::string& requested, const std::string& image_dir,
                         const std::string& cache, unsigned deadline_ms) {
  if (requested == "tcg") return {Accel::tcg, "TCG, as configured"};
  if (requested == "kvm") return {Accel::kvm, "KVM, as configured"};
  if (::access("/dev/kvm", R_OK | W_OK) != 0) return {Accel::tcg, "no usable /dev/kvm: using TCG"};
  std::string id = boot_id();
  if (!cache.empty()) {
    std::istringstream in(slurp(cache));
    std::string cached_id, verdict, reason;
    if (in >> cached_id >> verdict && cached_id == id && std::getline(in >> std::ws, reason)) {
      return {verdict == "kvm" ? Accel::kvm : Accel::tcg, reason + " (checked earlier in this boot)"};
    }
  }
  auto choice = probe(image_dir, deadline_ms);
  if (!cache.empty()) {
    std::ofstream(cache) << id << " " << accel_name(choice.accel) << " " << choice.reason << "\n";
  }
  return choice;
}

}  // namespace ng::vm

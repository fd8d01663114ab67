#pragma once
// Which accelerator a driver VM gets. /dev/kvm existing proves nothing: on
// nested or software KVM a standard kernel dies with "KVM internal error ...
// emulation failure" or makes no progress at all. So "auto" boots the guest
// image under KVM once and takes KVM only if the guest's init runs within
// the deadline; the verdict is kept for the rest of the host's boot.
#include <string>

#include "vm/vm.hpp"

namespace ng::vm {

struct AccelChoice {
  Accel accel = Accel::tcg;
  std::string reason;  // for the log and the events
};

// requested: "auto", "tcg" or "kvm". cache: a file for the verdict; empty: none.
AccelChoice choose_accel(const std::string& requested, const std::string& image_dir,
                         const std::string& cache, unsigned deadline_ms = 15000);

}  // namespace ng::vm

#include "sandbox/isolate.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <sys/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <memory>
#include <string_view>
#include <type_traits>

#include "common/fd.hpp"

namespace ng::sandbox {
namespace {

// Any directory every host has will do: the tmpfs mounted on it, in the
// domain's own mount namespace only, becomes the domain's whole filesystem.
constexpr const char* kRootMountPoint = "/tmp";
constexpr std::string_view kHostname = "nicguard-driver";

Status write_proc(const char* path, std::string_view text) {
  UniqueFd fd(::open(path, O_WRONLY | O_CLOEXEC));
  if (!fd) return fail_errno("cannot open {}", path);
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    return fail_errno("cannot write '{}' to {}", text.substr(0, text.size() - 1), path);
  return {};
}

// CAP_SYS_ADMIN survives the change of uid for one step: it makes the user
// namespace below a privileged creation, which a host that forbids
// unprivileged ones (Debian's kernel.unprivileged_userns_clone=0) allows.
Status take_identity(uint32_t id) {
  if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return fail_errno("cannot set PR_SET_KEEPCAPS");
  if (::setgroups(0, nullptr) != 0) return fail_errno("cannot drop the supplementary groups");
  if (::setresgid(id, id, id) != 0) return fail_errno("cannot take gid {}", id);
  if (::setresuid(id, id, id) != 0) return fail_errno("cannot take uid {}", id);
  ::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
  // The change of uid cleared the dumpable flag, which hands /proc/self to
  // root; the id maps below are written there as `id`.
  if (::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) return fail_errno("cannot set PR_SET_DUMPABLE");
  std::unique_ptr<std::remove_pointer_t<cap_t>, int (*)(void*)> caps(cap_init(), cap_free);
  cap_value_t admin = CAP_SYS_ADMIN;
  if (!caps || cap_set_flag(caps.get(), CAP_PERMITTED, 1, &admin, CAP_SET) != 0 ||
      cap_set_flag(caps.get(), CAP_EFFECTIVE, 1, &admin, CAP_SET) != 0 || cap_set_proc(caps.get()) != 0)
    return fail_errno("cannot keep CAP_SYS_ADMIN across the change to uid {}", id);
  return {};
}

// Only `id` is mapped, to itself: inside, the domain is no root either, and a
// file or process of any other host user is nobody's to it.
Status map_identity(uint32_t id) {
  std::string line = fmt::format("{} {} 1\n", id, id);
  if (auto s = write_proc("/proc/self/setgroups", "deny\n"); !s) return s;
  if (auto s = write_proc("/proc/self/uid_map", line); !s) return s;
  return write_proc("/proc/self/gid_map", line);
}

// pivot_root(".", ".") stacks the old root on the new one, and the lazy
// unmount then takes the whole host tree away: nothing of it stays
// reachable, not even through a path the domain held open as cwd.
Status empty_root() {
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return fail_errno("cannot make the domain's mounts private");
  if (::mount("nicguard-root", kRootMountPoint, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "size=4k,nr_inodes=2,mode=0555") != 0)
    return fail_errno("cannot mount an empty tmpfs on {} for the domain's root", kRootMountPoint);
  if (::chdir(kRootMountPoint) != 0) return fail_errno("cannot enter {}", kRootMountPoint);
  if (::syscall(SYS_pivot_root, ".", ".") != 0) return fail_errno("pivot_root into the empty root");
  if (::umount2(".", MNT_DETACH) != 0) return fail_errno("cannot detach the host's filesystem");
  if (::chdir("/") != 0) return fail_errno("chdir to the new root");
  if (::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
              nullptr) != 0)
    return fail_errno("cannot make the domain's root read-only");
  return {};
}

}  // namespace

Status isolate(uint32_t id) {
  if (id == 0) return fail("the driver domain's uid must not be 0");
  if (auto s = take_identity(id); !s) return s;
  if (::unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP) != 0)
    return fail_errno(
        "cannot create the domain's user, mount, IPC, UTS and cgroup namespaces (the kernel needs "
        "CONFIG_USER_NS, and user.max_user_namespaces must not be 0)");
  if (auto s = map_identity(id); !s) return s;
  if (auto s = empty_root(); !s) return s;
  if (::sethostname(kHostname.data(), kHostname.size()) != 0) return fail_errno("sethostname");
  return {};
}

}  // namespace ng::sandbox

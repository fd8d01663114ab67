// ng-carrier: runs in a driver VM's guest, started by its init. It tells the
// host-side domain process at once when the NIC loses its carrier, which
// only the guest can see (vm/guest_report.hpp has the frame and why it is
// sent on the link alone). While the carrier is down it repeats the report
// every 10 ms, so a lost frame delays the host by one interval.
//
// It reads the carrier every 5 ms rather than waiting for the kernel's link
// notifications: those come from the link watch, which holds a carrier
// loss back for up to a second after any other link event (seen here: a
// loss told 265 ms late, after the path check had found it).
//   ng-carrier NIC LINK BRIDGE_MAC TOKEN
// Built static, apart from nicguard's library: the guest has no libc.
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "vm/guest_report.hpp"

namespace {

constexpr long kLookNs = 5'000'000;
constexpr int kRepeatLooks = 2;  // while down: a report every 10 ms

void say(const char* what) {
  // The console is where the host reads the guest's words (its log).
  std::fprintf(stderr, "ng-guest: ng-carrier: %s\n", what);
}

bool parse_mac(const char* text, std::array<uint8_t, 6>& out) {
  unsigned b[6];
  if (std::sscanf(text, "%2x:%2x:%2x:%2x:%2x:%2x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6) return false;
  for (int i = 0; i < 6; ++i) out[i] = static_cast<uint8_t>(b[i]);
  return true;
}

// sysfs answers a read at offset 0 afresh: one call per look. A NIC that
// is down (or gone) reads as an error: no carrier.
bool carrier(int fd) {
  char c = '0';
  return ::pread(fd, &c, 1, 0) == 1 && c == '1';
}

struct Reporter {
  int packet = -1;
  sockaddr_ll to{};
  std::array<uint8_t, 6> bridge{};
  uint64_t token = 0;
  uint32_t seq = 0;

  void send(bool up) {
    auto frame = ng::vm::build_guest_report(bridge, token, up, ++seq);
    (void)::sendto(packet, frame.data(), frame.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    say("usage: ng-carrier NIC LINK BRIDGE_MAC TOKEN");
    return 2;
  }
  unsigned link_index = if_nametoindex(argv[2]);
  Reporter r;
  char* end = nullptr;
  r.token = std::strtoull(argv[4], &end, 16);
  if (link_index == 0 || !parse_mac(argv[3], r.bridge) || end == argv[4] || *end != '\0') {
    say("bad arguments: expected NIC LINK BRIDGE_MAC TOKEN (hex)");
    return 2;
  }
  char path[128];
  std::snprintf(path, sizeof path, "/sys/class/net/%s/carrier", argv[1]);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  r.packet = ::socket(AF_PACKET, SOCK_RAW, 0);  // protocol 0: sends only, receives nothing
  if (fd < 0 || r.packet < 0) {
    say(std::strerror(errno));
    return 1;
  }
  r.to.sll_family = AF_PACKET;
  r.to.sll_ifindex = static_cast<int>(link_index);
  r.to.sll_halen = 6;
  std::memset(r.to.sll_addr, 0xff, 6);
  bool up = carrier(fd);
  r.send(up);
  say(up ? "watching; the NIC has its carrier" : "watching; the NIC has no carrier");
  timespec next{};
  ::clock_gettime(CLOCK_MONOTONIC, &next);
  for (int looks = 0;; ++looks) {
    next.tv_nsec += kLookNs;
    if (next.tv_nsec >= 1'000'000'000) {
      next.tv_nsec -= 1'000'000'000;
      ++next.tv_sec;
    }
    // A guest starved of the CPU does not catch up in a burst of looks.
    timespec now_ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &now_ts);
    if (now_ts.tv_sec > next.tv_sec || (now_ts.tv_sec == next.tv_sec && now_ts.tv_nsec > next.tv_nsec)) next = now_ts;
    ::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, nullptr);
    bool now = carrier(fd);
    if (now != up) say(now ? "the NIC has its carrier again" : "the NIC lost its carrier");
    if (now != up || (!now && looks % kRepeatLooks == 0)) r.send(now);
    up = now;
  }
}

#include "frontend/frontend.hpp"

#include <fcntl.h>
#include <sched.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <csignal>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "common/clock.hpp"
#include "common/events.hpp"
#include "common/fd.hpp"
#include "common/salvage_record.hpp"
#include "common/stats.hpp"
#include "common/unix_socket.hpp"
#include "frontend/announce.hpp"
#include "frontend/cpu_sampler.hpp"
#include "frontend/path_check.hpp"
#include "frontend/replayable.hpp"
#include "frontend/rx_probe.hpp"
#include "frontend/settings.hpp"
#include "frontend/tap.hpp"
#include "frontend/watchdog.hpp"
#include "netlink/netlink.hpp"
#include "protocol/protocol.hpp"
#include "ring/idle.hpp"
#include "ring/ring.hpp"

namespace ng::frontend {
namespace {

namespace proto = ng::protocol;
using stats::BackendState;

constexpr unsigned kBatch = 32;
constexpr uint32_t kVnetHdrLen = 10;
constexpr uint32_t kMinFrame = kVnetHdrLen + 14;
constexpr uint64_t kControlPollNs = 1'000'000;
constexpr int kMaxSleepMs = 100;
// After traffic the frontend keeps waking often enough to watch the active
// domain's heartbeat; one idle longer than this sleeps long. The window is
// short because with many app domains every frontend's watching wakes the
// host: a hang costs an idle app nothing until it sends, and then it
// watches again (and the frontends with traffic fence the domain for all).
constexpr uint64_t kRecentTrafficNs = 50'000'000;
// A spare carries nothing, so its hang costs no frames: it is judged on a
// longer timeout and never on a stall.
constexpr uint32_t kSpareTimeoutFactor = 20;
// A handshake step of a domain that is runnable but given no CPU waits at
// most this long.
constexpr uint64_t kHandshakeStarveLimitNs = 10'000'000'000;
// A failure this soon after the connection became ready (or before it did)
// counts towards the reconnection back-off.
constexpr uint64_t kQuickFailureNs = 1'000'000'000;
constexpr uint64_t kMaxReconnectDelayNs = 1'000'000'000;
// Salvage datagrams read per wake-up; the loop comes back for more.
constexpr unsigned kSalvageDatagrams = 8;
// At SIGTERM, how long the driver domains get to let go of our regions.
constexpr uint64_t kLeaveWaitNs = 200'000'000;
// Doorbell reads a wedged domain's one flood of its doorbell takes (its
// socket buffer, read 4 KiB at a time: a few dozen), with room to spare.
constexpr uint32_t kKickFloodReads = 256;

enum class Detector { crash, hang, stall, carrier, violation };
const char* detector_name(Detector d) {
  switch (d) {
    case Detector::crash: return "crash";
    case Detector::hang: return "hang";
    case Detector::stall: return "stall";
    case Detector::carrier: return "carrier";
    case Detector::violation: return "protocol-violation";
  }
  return "?";
}

void apply_live_settings(FrontendOptions& o, const LiveSettings& s) {
  o.hang_timeout_ms = s.hang_timeout_ms;
  o.stall_timeout_ms = s.stall_timeout_ms;
  o.rx_probe_interval_ms = s.rx_probe_interval_ms;
  o.rx_probe_timeout_ms = s.rx_probe_timeout_ms;
}

Detector detector_of(proto::FaultKind k) {
  if (k == proto::FaultKind::crash) return Detector::crash;
  if (k == proto::FaultKind::stall) return Detector::stall;
  if (k == proto::FaultKind::carrier) return Detector::carrier;
  return Detector::hang;
}

enum Tag : uint32_t { tag_tap = 1, tag_sock = 2, tag_kick = 3, tag_salvage = 4, tag_signal = 5 };
uint64_t tag(Tag t, uint32_t id) { return uint64_t{t} << 32 | id; }

struct Backend {
  enum class State { down, hello_sent, setup_sent, ready };
  uint32_t index = 0;
  std::string name;
  std::string socket_path;
  State state = State::down;
  proto::Role role = proto::Role::spare;
  UniqueFd sock;
  // Kept across reconnections: unmapping a used region stalls the data path
  // for milliseconds, right at a failover, and a restarted domain can just
  // as well map the same memory again.
  UniqueFd memfd;
  Mapping region;
  UniqueFd doorbell;  // our end; the driver holds the other
  ring::Layout layout;
  ring::RegionHeader* header = nullptr;
  ring::Producer tx;
  ring::Consumer rx;
  uint64_t next_attempt_ns = 0;
  stats::FrontBackend* st = nullptr;
  pid_t pid = 0;      // the driver domain's process, from SO_PEERCRED
  UniqueFd pidfd;     // to fence it without racing a pid reuse
  UniqueFd ending;    // the pidfd of a failed domain on its way out, until it is gone
  Watchdog watchdog;
  // While a beat is awaited: the domain's user-mode CPU time.
  UserCpuSampler sampler;
  // One frontend samples a domain at a time (each sampling event is its own
  // timer interrupt every 250 us: 32 of them on one domain slowed the verdict
  // from 6 to 25 ms); it holds this lock, shared through the domain's
  // socket path. The others judge the domain's total CPU time on the rule
  // for a known user-mode time, since the spin is watched.
  UniqueFd sampler_lock;
  bool sampled_elsewhere = false;
  bool failed_before = false;  // its next connection is a re-join
  // The driver acknowledged the role it now has (SetupAck, ActivateAck):
  // only then do its passes prove that it skips our frames.
  bool role_acked = false;
  // The handshake step, or the Activate, waiting for its answer: judged at
  // the deadline against the domain's CPU time since the baseline.
  uint64_t handshake_deadline_ns = 0;
  uint64_t handshake_since_ns = 0;
  uint64_t handshake_cpu_ns = 0;
  // An Activate's baseline is taken at its first deadline, off the path of
  // the switch that sent it.
  bool baseline_pending = false;
  uint64_t ready_ns = 0;          // when the connection last became ready
  uint32_t quick_failures = 0;    // failures in a row, each soon after connecting
  // Doorbell reads that found kicks, beyond the frames the domain moved
  // (kick_storm()); and the indices that counted as moved when last asked.
  uint32_t kick_debt = 0;
  uint32_t kicks_rx_cons = 0;
  uint32_t kicks_tx_done = 0;

  std::string domain() const { return "driver-" + name; }

  void set_state(State s, proto::Role r) {
    state = s;
    role = r;
    BackendState v = BackendState::connecting;
    if (s == State::down) v = BackendState::down;
    if (s == State::ready) v = r == proto::Role::active ? BackendState::active : BackendState::spare;
    st->state.store(static_cast<uint32_t>(v), std::memory_order_relaxed);
  }
};

class Frontend {
 public:
  Frontend(const FrontendOptions& o, UniqueFd tap, UniqueFd epoll, UniqueFd salvage, UniqueFd signals,
           stats::FrontStatsFile st, EventLog events)
      : opt_(o),
        tap_(std::move(tap)),
        epoll_(std::move(epoll)),
        salvage_(std::move(salvage)),
        signals_(std::move(signals)),
        stats_(std::move(st)),
        events_(std::move(events)) {
    for (uint32_t i = 0; i < o.backends.size(); ++i) {
      auto b = std::make_unique<Backend>();
      b->index = i;
      b->name = o.backends[i].name;
      b->socket_path = o.backends[i].socket;
      b->st = &stats_->backends[i];
      stats::set_name(b->st->name, b->name);
      backends_.push_back(std::move(b));
    }
    stats_->active.store(-1);
    if (auto r = UserCpuSampler::keep_ready()) sampling_ready_ = std::move(*r);
    rx_probe_ = make_rx_probe(o);
    PathCheckConfig pc;
    pc.answer_timeout_ns = uint64_t{o.path_answer_timeout_ms} * 1'000'000;
    path_ = PathCheck(pc);
    epoll_event ev{EPOLLIN, {.u64 = tag(tag_tap, 0)}};
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, tap_.get(), &ev);
    if (salvage_) {
      ev = {EPOLLIN, {.u64 = tag(tag_salvage, 0)}};
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, salvage_.get(), &ev);
    }
    if (signals_) {
      ev = {EPOLLIN, {.u64 = tag(tag_signal, 0)}};
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, signals_.get(), &ev);
    }
  }

  // Every backend's ring region, created and populated now: at start-up
  // priority, before serving, so that a host starting many frontends at
  // once populates their memory (tens of MB each) behind the data path.
  Status prepare_regions() {
    auto layout = ring::compute_layout(opt_.tx_slots, opt_.rx_slots, opt_.slot_size);
    if (!layout) return tl::unexpected(layout.error());
    for (auto& b : backends_) {
      if (auto s = create_region(*b, *layout); !s) return s;
    }
    return {};
  }

  int run(uint32_t spin_us, int realtime) {
    ring::Idler idler(spin_us_at(realtime, spin_us));
    uint64_t last_control = 0;
    for (;;) {
      unsigned work = 0;
      if (Backend* a = active()) work = ring_to_tap(*a) + tap_to_ring();
      uint64_t now = mono_ns();
      clock_.tick(now);
      // The receive-path check's own ARP answers are no app traffic: counted
      // as such, they kept an idle frontend ticking every millisecond for
      // half of every probe interval.
      if (work > std::exchange(probe_answers_, 0u)) last_traffic_ns_ = now;
      if (now - last_control > kControlPollNs) {
        last_control = now;
        reconnect_due(now);
        check_receive_path(now);
        check_paths(now);
        if (!handle_events(0)) return 1;  // also watches the backends
        if (leaving_) return leave();
      }
      if (idler.keep_polling(work, now)) continue;
      auto woke = sleep(now);
      if (!woke) return 1;
      if (leaving_) return leave();
      idler.slept(*woke, now);
    }
  }

 private:
  Backend* active() {
    int a = active_;
    if (a < 0) return nullptr;
    Backend* b = backends_[static_cast<size_t>(a)].get();
    return b->state == Backend::State::ready ? b : nullptr;
  }

  // ---- data path -------------------------------------------------------

  unsigned tap_to_ring() {
    Backend* b = active();
    if (b == nullptr) return 0;  // frames wait in the TAP queue (bounded by the kernel)
    auto free = b->tx.free_slots();
    if (!free) {
      fail_backend(*b, Detector::violation, free.error().message);
      return 1;
    }
    unsigned n = std::min<unsigned>(*free, kBatch);
    unsigned count = 0;
    uint64_t bytes = 0;
    while (count < n) {
      ssize_t r = ::read(tap_.get(), b->tx.slot(count), b->tx.slot_size());
      if (r < 0) break;
      if (r < static_cast<ssize_t>(kMinFrame)) continue;
      b->tx.set(count++, ring::Desc{0, static_cast<uint32_t>(r)});
      bytes += static_cast<uint64_t>(r) - kVnetHdrLen;
    }
    if (count == 0) return 0;
    b->tx.publish(count);
    if (ring::peer_needs_kick(b->header->driver_sleeping)) ring::kick(b->doorbell.get());
    stats::add(stats_->tap_rx_frames, count);
    stats::add(stats_->tap_rx_bytes, bytes);
    stats::add(b->st->tx_frames, count);
    stats::add(b->st->tx_bytes, bytes);
    return count;
  }

  unsigned ring_to_tap(Backend& b) {
    auto avail = b.rx.available();
    if (!avail) {
      fail_backend(b, Detector::violation, avail.error().message);
      return 1;
    }
    unsigned n = std::min<unsigned>(*avail, kBatch);
    uint64_t bytes = 0;
    unsigned answers = 0;
    for (unsigned i = 0; i < n; ++i) {
      auto f = b.rx.frame(i);
      if (!f || f->len < kMinFrame) {
        b.rx.release(i);
        fail_backend(b, Detector::violation, f ? "runt frame" : f.error().message);
        return 1;
      }
      if (rx_probe_.enabled() && rx_probe_.is_answer(reinterpret_cast<const uint8_t*>(f->data) + kVnetHdrLen,
                                                     f->len - kVnetHdrLen)) {
        rx_probe_.answered(clock_.now());
        path_.answered();
        ++answers;
      }
      if (::write(tap_.get(), f->data, f->len) < 0) {
        stats::add(stats_->rx_drops, 1);
        continue;
      }
      bytes += f->len - kVnetHdrLen;
    }
    if (n == 0) return 0;
    probe_answers_ += answers;
    if (n > answers) rx_probe_.heard(clock_.now());
    b.rx.release(n);
    stats::add(stats_->tap_tx_frames, n);
    stats::add(stats_->tap_tx_bytes, bytes);
    stats::add(b.st->rx_frames, n);
    stats::add(b.st->rx_bytes, bytes);
    return n;
  }

  // ---- frames the manager salvaged from a failed domain's NIC ------------

  // They never reached the app: the failed domain's socket still held them,
  // or the switch sent them its way before it learned our new port. Written
  // to the TAP in arrival order; anything not addressed to us is dropped.
  void take_salvage() {
    uint64_t taken = 0;
    for (unsigned n = 0; n < kSalvageDatagrams; ++n) {
      ssize_t r = ::recv(salvage_.get(), salvage_buf_.data(), salvage_buf_.size(), MSG_DONTWAIT);
      if (r < 0) break;
      auto datagram = std::span<const std::byte>(salvage_buf_.data(), static_cast<size_t>(r));
      bool whole = for_each_salvage_record(datagram, [&](std::span<const std::byte> f) {
        bool ours = f.size() >= kMinFrame &&
                    std::memcmp(f.data() + kVnetHdrLen, opt_.mac.data(), opt_.mac.size()) == 0;
        if (!ours || ::write(tap_.get(), f.data(), f.size()) < 0) {
          stats::add(stats_->rx_drops, 1);
          return;
        }
        ++taken;
        stats::add(stats_->tap_tx_bytes, f.size() - kVnetHdrLen);
      });
      if (!whole) stats::add(stats_->rx_drops, 1);
    }
    stats::add(stats_->tap_tx_frames, taken);
    stats::add(stats_->salvaged, taken);
  }

  // ---- the receive-path check (rx_probe.hpp) ----------------------------

  RxProbe make_rx_probe(const FrontendOptions& o) {
    if (o.rx_probe_target.empty()) return {};
    Ipv4 target{}, sender{};
    if (::inet_pton(AF_INET, o.rx_probe_target.c_str(), target.data()) != 1 ||
        !pick_sender(o.addresses, target, sender)) {
      spdlog::warn("frontend {}: receive-path check off: {}", o.name,
                   "needs an IPv4 target and an IPv4 address of the app to ask from");
      return {};
    }
    return RxProbe(o.mac, sender, target, uint64_t{o.rx_probe_interval_ms} * 1'000'000,
                   uint64_t{o.rx_probe_timeout_ms} * 1'000'000);
  }

  void check_receive_path(uint64_t now) {
    Backend* a = active();
    if (a == nullptr || !rx_probe_.enabled()) return;
    uint64_t watched = clock_.tick(now);
    // Unanswered questions count only once the domain has read its NIC dry
    // in a pass after the one that sent the last of them (an overloaded
    // domain's NIC queue may hold the answers for hundreds of ms), and only
    // while its NIC dropped nothing for want of reading (an overloaded
    // domain loses answers without any fault).
    uint64_t passes = a->header->passes.value.load(std::memory_order_acquire);
    uint64_t drained = a->header->rx_drained_pass.value.load(std::memory_order_acquire);
    uint64_t overruns = a->header->rx_overruns.value.load(std::memory_order_acquire);
    if (overruns != rx_probe_overruns_) {
      rx_probe_overruns_ = overruns;
      rx_probe_.restart(watched);
    }
    if (rx_probe_.failed(watched) && drained >= rx_probe_pass_ + 2) {
      return fail_backend(*a, Detector::stall, rx_probe_.detail(watched));
    }
    if (!rx_probe_.due(watched) || !ask_neighbour(*a)) return;  // a full ring: next pass
    rx_probe_.sent(watched);
    rx_probe_pass_ = passes;
  }

  // The receive-path check's ARP question, through the active domain;
  // false when its TX ring is full.
  bool ask_neighbour(Backend& a) {
    const auto& frame = rx_probe_.frame();
    if (post(a, frame.data(), static_cast<uint32_t>(frame.size()), true) == 0) return false;
    if (ring::peer_needs_kick(a.header->driver_sleeping)) ring::kick(a.doorbell.get());
    return true;
  }

  // ---- the path check (path_check.hpp) -----------------------------------

  void check_paths(uint64_t now) {
    Backend* a = active();
    Backend* s = ready_spare();
    if (a == nullptr || s == nullptr || !a->role_acked || !s->role_acked || !rx_probe_.enabled()) {
      path_pair_ = {};
      return;
    }
    if (path_pair_.first != a->header || path_pair_.second != s->header) {
      path_pair_ = {a->header, s->header};
      path_.reset();
    }
    uint64_t watched = clock_.tick(now);
    PathSide as = path_side(*a), ss = path_side(*s);
    switch (path_.check(watched, as, ss)) {
      case PathVerdict::ok:
        return;
      case PathVerdict::ask:
        if (!ask_neighbour(*a)) return;  // a full ring: next time
        path_.asked(watched, as.passes);
        stats::add(stats_->path_questions, 1);
        return;
      case PathVerdict::spare_broken:
        stats::add(stats_->spare_path_broken, 1);
        events_.emit("spare-path-broken", {{"domain", s->domain()}, {"pid", s->pid}, {"detail", path_.detail()}});
        return;
      case PathVerdict::active_broken:
        return fail_backend(*a, Detector::stall,
                            fmt::format("{}, and no answer through it from {}: the active's path to the wire is broken",
                                        path_.detail(), opt_.rx_probe_target));
    }
  }

  static PathSide path_side(const Backend& b) {
    const auto& h = *b.header;
    return {h.path_probes_sent.value.load(std::memory_order_relaxed),
            h.path_probes_seen.value.load(std::memory_order_relaxed),
            h.passes.value.load(std::memory_order_acquire), h.rx_drained_pass.value.load(std::memory_order_acquire),
            h.rx_overruns.value.load(std::memory_order_acquire)};
  }

  Backend* ready_spare() {
    for (auto& b : backends_) {
      if (b->state == Backend::State::ready && static_cast<int>(b->index) != active_) return b.get();
    }
    return nullptr;
  }

  // ---- live settings (frontend/settings.hpp) ------------------------------

  void on_signals() {
    signalfd_siginfo si{};
    bool hangup = false;
    while (::read(signals_.get(), &si, sizeof(si)) == sizeof(si)) {
      if (si.ssi_signo == SIGHUP) hangup = true;
      if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) leaving_ = true;
    }
    if (hangup) reread_settings();
  }

  // SIGTERM (a reload that drops this app, a shutdown): the driver domains
  // unmap our ring regions before we exit, so that the regions' memory is
  // freed by our exit and not inside a driver domain's packet loop. Freeing
  // the tens of MB there stalled every other app's traffic for 15 ms.
  int leave() {
    std::vector<pollfd> waiting;
    for (auto& b : backends_) {
      if (!b->sock || ::shutdown(b->sock.get(), SHUT_WR) != 0) continue;
      waiting.push_back({b->sock.get(), POLLIN, 0});
    }
    uint64_t deadline = mono_ns() + kLeaveWaitNs;
    for (uint64_t now = mono_ns(); !waiting.empty() && now < deadline; now = mono_ns()) {
      int ms = static_cast<int>((deadline - now) / 1'000'000 + 1);
      if (::poll(waiting.data(), waiting.size(), ms) < 0 && errno != EINTR) break;
      std::erase_if(waiting, [](const pollfd& p) {
        if (p.revents == 0) return false;
        char buf[256];
        ssize_t n = ::recv(p.fd, buf, sizeof(buf), MSG_DONTWAIT);
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);  // gone, and its mapping with it
      });
    }
    spdlog::info("frontend {}: stopped{}", opt_.name, waiting.empty() ? "" : " (a driver domain did not let go in time)");
    return 0;
  }

  // SIGHUP: the manager rewrote the settings file. A file that does not
  // parse changes nothing; the timeouts in force stay, and the event says why.
  void reread_settings() {
    if (opt_.settings.empty()) return;
    auto s = read_settings(opt_.settings);
    if (!s) {
      spdlog::error("frontend {}: settings not changed: {}", opt_.name, s.error().message);
      events_.emit("settings-refused", {{"error", s.error().message}});
      return;
    }
    apply_live_settings(opt_, *s);
    for (auto& b : backends_) {
      if (b->state != Backend::State::ready) continue;
      auto c = watchdog_config(b->role == proto::Role::active);
      b->watchdog.retime(c.hang_timeout_ns, c.stall_timeout_ns);
    }
    rx_probe_.retime(uint64_t{opt_.rx_probe_interval_ms} * 1'000'000, uint64_t{opt_.rx_probe_timeout_ms} * 1'000'000);
    spdlog::info("frontend {}: settings {}", opt_.name, settings_json(*s));
    events_.emit("settings", {{"hang_timeout_ms", s->hang_timeout_ms}, {"stall_timeout_ms", s->stall_timeout_ms},
                              {"rx_probe_interval_ms", s->rx_probe_interval_ms},
                              {"rx_probe_timeout_ms", s->rx_probe_timeout_ms}});
  }

  // ---- sleeping and events ----------------------------------------------

  std::optional<bool> sleep(uint64_t now) {
    Backend* a = active();
    bool tx_room = false;
    if (a != nullptr) {
      ring::prepare_sleep(a->header->front_sleeping);
      auto free = a->tx.free_slots();
      tx_room = free && *free != 0;
      auto avail = a->rx.available();
      if (!avail || *avail != 0) {
        ring::cancel_sleep(a->header->front_sleeping);
        return true;
      }
    }
    arm_tap(tx_room);
    int ms = sleep_ms(now);
    clock_.plan_sleep(uint64_t(ms) * 1'000'000);
    auto ok = handle_events(ms);
    if (a != nullptr && a->header != nullptr) ring::cancel_sleep(a->header->front_sleeping);
    return ok;
  }

  int sleep_ms(uint64_t now) {
    int ms = kMaxSleepMs;
    bool suspecting = path_.asking();
    for (auto& b : backends_) suspecting = suspecting || b->watchdog.suspecting();
    if (active() != nullptr && (suspecting || now - last_traffic_ns_ < kRecentTrafficNs)) {
      // Heartbeats are judged at a quarter of the timeout at worst, so a
      // hang is found within about 1.25 timeouts even with no traffic to wake us.
      ms = std::max<int>(1, static_cast<int>(opt_.hang_timeout_ms / 4));
      if (uint64_t paused = suspects_paused_until(now); paused > now) {
        ms = std::max<int>(ms, static_cast<int>((paused - now) / 1'000'000));
      }
    }
    for (auto& b : backends_) {
      if (b->state != Backend::State::down) continue;
      uint64_t due = b->next_attempt_ns > now ? b->next_attempt_ns - now : 0;
      ms = std::min<int>(ms, static_cast<int>(due / 1'000'000) + 1);
    }
    if (active() != nullptr && rx_probe_.enabled()) {
      ms = std::min<int>(ms, static_cast<int>(std::min<uint64_t>(rx_probe_.wait_ns(clock_.now()) / 1'000'000, 1000)) + 1);
    }
    return ms;
  }

  // When every suspect is starved and its next look paused (Watchdog::
  // resample_at), and nothing else is being asked: the earliest end of
  // those pauses; else 0.
  uint64_t suspects_paused_until(uint64_t now) const {
    if (path_.asking()) return 0;
    uint64_t until = UINT64_MAX;
    for (const auto& b : backends_) {
      if (!b->watchdog.suspecting()) continue;
      uint64_t at = b->watchdog.resample_at();
      if (at <= now) return 0;
      until = std::min(until, at);
    }
    return until == UINT64_MAX ? 0 : until;
  }

  // The TAP is watched only while the active TX ring has room; otherwise a
  // readable TAP would spin the loop. The driver's kick wakes us instead.
  void arm_tap(bool want) {
    if (want == tap_armed_) return;
    epoll_event ev{want ? static_cast<uint32_t>(EPOLLIN) : 0u, {.u64 = tag(tag_tap, 0)}};
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, tap_.get(), &ev);
    tap_armed_ = want;
  }

  // nullopt on a fatal error, else whether anything woke us.
  std::optional<bool> handle_events(int timeout_ms) {
    epoll_event ev[16];
    int n = ::epoll_wait(epoll_.get(), ev, 16, timeout_ms);
    if (n < 0 && errno != EINTR) {
      spdlog::error("frontend {}: epoll_wait: {}", opt_.name, std::strerror(errno));
      return std::nullopt;
    }
    for (int i = 0; i < n; ++i) {
      auto t = static_cast<Tag>(ev[i].data.u64 >> 32);
      auto id = static_cast<uint32_t>(ev[i].data.u64);
      if (t == tag_salvage) {
        take_salvage();
        continue;
      }
      if (t == tag_signal) {
        on_signals();
        continue;
      }
      if (id >= backends_.size()) continue;
      Backend& b = *backends_[id];
      if (t == tag_kick && b.doorbell) on_doorbell(b, ev[i].events);
      if (t == tag_sock && b.sock) on_socket(b, ev[i].events);
    }
    uint64_t now = mono_ns();
    if (n > 0) reconnect_due(now);
    watch_backends(now);
    return n > 0;
  }

  // ---- hang and stall detectors --------------------------------------------

  void watch_backends(uint64_t now) {
    for (auto& b : backends_) {
      bool waiting = b->state == Backend::State::hello_sent || b->state == Backend::State::setup_sent ||
                     (b->state == Backend::State::ready && !b->role_acked);
      if (b->state == Backend::State::ready) watch(*b, now);
      if (waiting && b->state != Backend::State::down) watch_handshake(*b, now);
    }
  }

  void watch(Backend& b, uint64_t now) {
    Seen seen;
    seen.passes = b.header->passes.value.load(std::memory_order_acquire);
    seen.tx_busy_pass = b.header->tx_busy_pass.value.load(std::memory_order_acquire);
    seen.passes_count = b.role_acked;
    if (auto s = b.tx.refresh(); !s) return fail_backend(b, Detector::violation, s.error().message);
    uint64_t beat = b.header->heartbeat.value.load(std::memory_order_relaxed);
    seen.heartbeat = beat;
    seen.tx_done = b.tx.done();
    seen.tx_in_flight = b.tx.in_flight();
    if (b.watchdog.suspecting() && !b.sampler.running()) take_sampling(b);
    if (b.sampler.running()) {
      seen.user_known = true;
      seen.user_ns = b.sampler.user_ns();
    }
    seen.spin_watched_elsewhere = b.sampled_elsewhere;
    pid_t pid = b.pid;
    auto sample = [pid] { return pid > 0 ? sample_process(pid) : ProcSample{true, 'R', 0}; };
    Verdict v = b.watchdog.check(now, seen, sample);
    if (v == Verdict::ok) {
      if (!b.watchdog.suspecting()) {
        note_answered_kick(b);
        end_suspicion(b);
      }
      return;
    }
    if (v == Verdict::demand_beat) {
      take_sampling(b);
      return ring::kick(b.doorbell.get());
    }
    end_suspicion(b);
    Detector d = v == Verdict::stall ? Detector::stall
                 : v == Verdict::hang ? Detector::hang
                                      : Detector::crash;
    // A beat that landed while the process was sampled clears the suspicion.
    bool sampled = d != Detector::stall;
    if (sampled && b.header->heartbeat.value.load(std::memory_order_relaxed) != beat) return;
    std::string detail = b.watchdog.detail();
    if (d == Detector::hang && pid > 0) detail += "; " + where_is(pid);
    fail_backend(b, d, detail, b.watchdog.silent_ns());
  }

  // A silent domain is asked for a beat; while it is awaited, the time the
  // domain spends in its own code tells a spin from a busy kernel. Raising
  // the suspect's priority to let it show either sooner was tried: with 32
  // frontends a spinner at nice -20 took a core from them and the verdict
  // came later (hang p50 57 ms against 33 without; 8.1 against 9.3 with one).
  // Samples the suspect unless another frontend does; asked again on every
  // check while the suspicion lasts, so that one takes over when the
  // sampling frontend's suspicion ends first or it exits.
  void take_sampling(Backend& b) {
    if (b.pid <= 0) return;
    if (!b.sampler_lock) {
      std::string path = b.socket_path + ".sampler";
      b.sampler_lock.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    }
    if (b.sampler_lock && ::flock(b.sampler_lock.get(), LOCK_EX | LOCK_NB) != 0) {
      b.sampled_elsewhere = true;
      return;
    }
    b.sampled_elsewhere = false;
    auto s = UserCpuSampler::start(b.pid);
    if (s) {
      b.sampler = std::move(*s);
      return;
    }
    if (b.sampler_lock) ::flock(b.sampler_lock.get(), LOCK_UN);
    if (!sampler_warned_) {
      sampler_warned_ = true;
      spdlog::warn("frontend {}: {}; hangs are judged on total CPU time, which needs {} ms of it",
                   opt_.name, s.error().message, opt_.hang_timeout_ms);
    }
  }

  // How close a healthy domain came to the spin limit: the margin the
  // user-mode rule has on this host, in the metrics.
  void note_answered_kick(Backend& b) {
    if (!b.sampler.running()) return;
    uint64_t us = b.sampler.user_ns() / 1000;
    if (us > stats_->kick_user_max_us.load(std::memory_order_relaxed)) {
      stats_->kick_user_max_us.store(us, std::memory_order_relaxed);
    }
  }

  void end_suspicion(Backend& b) {
    if (b.sampler.running() && b.sampler_lock) ::flock(b.sampler_lock.get(), LOCK_UN);
    b.sampler = {};
    b.sampled_elsewhere = false;
  }

  WatchdogConfig watchdog_config(bool active) const {
    WatchdogConfig c;
    uint64_t factor = active ? 1 : kSpareTimeoutFactor;
    c.hang_timeout_ns = uint64_t{opt_.hang_timeout_ms} * 1'000'000 * factor;
    c.stall_timeout_ns = uint64_t{opt_.stall_timeout_ms} * 1'000'000 * factor;
    return c;
  }

  void arm_watchdog(Backend& b, bool active) {
    b.watchdog = Watchdog(watchdog_config(active));
    b.watchdog.reset(mono_ns(), b.header->heartbeat.value.load(std::memory_order_relaxed),
                     b.tx.done());
  }

  // The driver domain's pid (from the kernel, not from what it tells us) and
  // a pidfd to fence it with.
  void learn_peer(Backend& b, int sock) {
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.pid <= 0) return;
    b.pid = cred.pid;
    b.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, cred.pid, 0)));
  }

  // ---- connection management ---------------------------------------------

  void reconnect_due(uint64_t now) {
    for (auto& b : backends_) {
      if (b->state == Backend::State::down && b->next_attempt_ns <= now) start_connect(*b);
    }
  }

  // A domain that accepted the connection but does not finish the
  // handshake would keep the spare from ever becoming active. Its silence
  // is judged on evidence, like a missing heartbeat: a domain that is
  // stopped, or asleep with our message unanswered, or that had the CPU for
  // half the time and did not answer, is hung. One that is merely busy (a
  // start-up storm of frontends on a loaded host) gets more time, up to the
  // starvation limit.
  void watch_handshake(Backend& b, uint64_t now) {
    if (now < b.handshake_deadline_ns) return;
    ProcSample s = b.pid > 0 ? sample_process(b.pid) : ProcSample{true, 'S', 0};
    if (answer_pending(b)) return;  // came while we sampled: the event loop takes it next
    if (b.baseline_pending) {
      b.baseline_pending = false;
      b.handshake_since_ns = now;
      b.handshake_cpu_ns = s.cpu_ns;
      b.handshake_deadline_ns = now + handshake_timeout_ns() / 4;
      return;
    }
    uint64_t waited = now - b.handshake_since_ns;
    uint64_t ran = s.cpu_ns - b.handshake_cpu_ns;
    bool ignoring = s.state == 'T' || s.state == 't' || s.state == 'S' || ran >= waited / 2;
    if (s.alive && !s.exiting && !ignoring && waited < kHandshakeStarveLimitNs) {
      b.handshake_deadline_ns = now + handshake_timeout_ns() / 4;
      return;
    }
    const char* step = b.state == Backend::State::hello_sent   ? "hello"
                       : b.state == Backend::State::setup_sent ? "setup"
                                                               : "activate";
    if (!s.alive || s.exiting) return fail_backend(b, Detector::crash, fmt::format("gone before answering {}", step));
    fail_backend(b, Detector::hang,
                 fmt::format("no answer to {} within {:.0f} ms (state {}, {:.1f} ms on a CPU since)", step,
                             static_cast<double>(waited) / 1e6, s.state, static_cast<double>(ran) / 1e6));
  }

  static bool has_exited(int pidfd) {
    pollfd p{pidfd, POLLIN, 0};
    return ::poll(&p, 1, 0) != 0;  // readable once it ended; an error: nothing to wait for
  }

  bool answer_pending(const Backend& b) const {
    pollfd p{b.sock.get(), POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  }

  uint64_t handshake_timeout_ns() const { return uint64_t{opt_.handshake_timeout_ms} * 1'000'000; }

  // A domain that fails again soon after each connection (it hangs up, or
  // never finishes the handshake) is retried ever later, up to a second.
  uint64_t reconnect_delay_ns(const Backend& b) const {
    uint32_t shift = std::min<uint32_t>(b.quick_failures, 6);
    uint64_t delay = uint64_t{opt_.reconnect_ms} * 1'000'000;
    return std::min<uint64_t>(delay << (shift == 0 ? 0 : shift - 1), kMaxReconnectDelayNs);
  }

  void start_connect(Backend& b) {
    b.next_attempt_ns = mono_ns() + reconnect_delay_ns(b);
    // A fenced domain takes tens of ms to die (its memory goes before its
    // descriptors), and its listening socket takes connections until then:
    // one made now was reset as the domain ended, a second, false crash of
    // a domain already judged (8 frontends on one liar all logged it; found
    // by tests/integration/hostile_test.cpp).
    if (b.ending && !has_exited(b.ending.get())) return;
    b.ending.reset();
    UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, b.socket_path.c_str(), sizeof(addr.sun_path) - 1);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return;
    learn_peer(b, s.get());
    b.baseline_pending = false;
    b.handshake_since_ns = mono_ns();
    b.handshake_deadline_ns = b.handshake_since_ns + handshake_timeout_ns();
    b.handshake_cpu_ns = b.pid > 0 ? sample_process(b.pid).cpu_ns : 0;
    proto::Hello hello;
    hello.features = proto::kFeatureVnetHdr | proto::kFeatureHeartbeat;
    hello.app_name = opt_.name;
    if (!proto::send_message(s.get(), hello)) return;
    b.sock = std::move(s);
    epoll_event ev{EPOLLIN | EPOLLRDHUP, {.u64 = tag(tag_sock, b.index)}};
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, b.sock.get(), &ev);
    b.set_state(Backend::State::hello_sent, proto::Role::spare);
  }

  // A hang-up (the peer closed, reset, or a send found the pipe broken) is
  // the crash detector's; anything malformed the domain sent is a protocol
  // violation.
  void on_socket(Backend& b, uint32_t events) {
    if (events & EPOLLIN) {
      auto msg = proto::recv_message(b.sock.get(), 0);
      if (!msg) return fail_on(b, msg.error());
      if (auto s = on_message(b, msg->message); !s) return fail_on(b, s.error());
      return;
    }
    if (events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)) fail_backend(b, Detector::crash, "socket hang-up");
  }

  void fail_on(Backend& b, const Error& e) {
    if (e.peer_gone) return fail_backend(b, Detector::crash, "socket hang-up: " + e.message);
    fail_backend(b, Detector::violation, e.message);
  }

  // The driver's end of the doorbell closed: a hang-up like the socket's
  // (the crash handler closes both); anything else there is just kicks.
  void on_doorbell(Backend& b, uint32_t events) {
    size_t kicks = 0;
    bool open = ring::drain(b.doorbell.get(), &kicks);
    if (!open || (events & (EPOLLHUP | EPOLLERR))) return fail_backend(b, Detector::crash, "doorbell hang-up");
    if (kicks != 0 && kick_storm(b)) {
      fail_backend(b, Detector::violation,
                   fmt::format("{} doorbell reads found kicks beyond the frames the domain moved: a kick storm",
                               b.kick_debt));
    }
  }

  // An honest domain kicks us only after it published frames for us or
  // finished some of ours, so every doorbell read that finds kicks is owed
  // at least one frame moved. Reads beyond that are kicks without work: a
  // storm of them kept this loop from ever sleeping (a full core for as
  // long as the domain liked; found by tests/integration/hostile_test.cpp).
  // The allowance is what an honest domain can be ahead by, the frames it
  // moved that we have not looked at yet (both rings' worth), and the one
  // flood of a wedged domain, which the hang detector judges.
  bool kick_storm(Backend& b) {
    uint32_t rx = b.rx.cons(), tx = b.tx.done();
    uint32_t moved = (rx - b.kicks_rx_cons) + (tx - b.kicks_tx_done);
    b.kicks_rx_cons = rx;
    b.kicks_tx_done = tx;
    b.kick_debt = (b.kick_debt > moved ? b.kick_debt - moved : 0) + 1;
    return b.kick_debt > b.layout.rx_slots + b.layout.tx_slots + kKickFloodReads;
  }

  Status on_message(Backend& b, const proto::Message& m) {
    if (auto* r = std::get_if<proto::Refuse>(&m)) return fail("driver refused: {}", r->reason);
    if (auto* f = std::get_if<proto::Fault>(&m)) {
      fail_backend(b, detector_of(f->kind), "the domain reports: " + f->reason);
      return {};
    }
    if (auto* h = std::get_if<proto::HelloAck>(&m)) {
      if (b.state != Backend::State::hello_sent) return fail("unexpected hello_ack");
      if (!(h->features & proto::kFeatureVnetHdr)) {
        return fail("driver {} cannot carry virtio-net headers", h->driver_name);
      }
      return send_setup(b);
    }
    if (std::get_if<proto::SetupAck>(&m) != nullptr) {
      if (b.state != Backend::State::setup_sent) return fail("unexpected setup_ack");
      b.set_state(Backend::State::ready, b.role);
      b.role_acked = true;
      b.ready_ns = mono_ns();
      stats::add(b.st->connects, 1);
      spdlog::info("frontend {}: connected to {} as {}", opt_.name, b.name,
                   proto::role_name(b.role));
      arm_watchdog(b, b.role == proto::Role::active);
      if (b.failed_before) {
        events_.emit("rejoin", {{"domain", b.domain()}, {"pid", b.pid}, {"role", proto::role_name(b.role)}});
      }
      b.failed_before = false;
      if (b.role == proto::Role::active) set_active(b);
      promote_spare();
      return {};
    }
    if (auto* a = std::get_if<proto::ActivateAck>(&m)) {
      if (a->role == b.role) b.role_acked = true;
      return {};
    }
    return fail("unexpected {} message", proto::type_name(m));
  }

  Status send_setup(Backend& b) {
    auto layout = ring::compute_layout(opt_.tx_slots, opt_.rx_slots, opt_.slot_size);
    if (!layout) return tl::unexpected(layout.error());
    if (!b.region.valid()) {
      if (auto s = create_region(b, *layout); !s) return s;
    }
    void* p = b.region.data();
    b.layout = *layout;
    b.header = ring::init_region(p, *layout);
    b.tx = ring::Producer(ring::tx_ring(p, *layout), ring::kFresh);
    b.rx = ring::Consumer(ring::rx_ring(p, *layout), ring::kFresh);
    b.kick_debt = b.kicks_rx_cons = b.kicks_tx_done = 0;
    UniqueFd theirs;
    if (auto st = ring::make_doorbell(b.doorbell, theirs); !st) return st;
    epoll_event ev{EPOLLIN, {.u64 = tag(tag_kick, b.index)}};
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, b.doorbell.get(), &ev);
    proto::Setup s;
    s.mac = opt_.mac;
    s.mtu = opt_.mtu;
    s.role = should_start_active(b) ? proto::Role::active : proto::Role::spare;
    s.tx_slots = layout->tx_slots;
    s.rx_slots = layout->rx_slots;
    s.slot_size = layout->slot_size;
    s.region_size = layout->region_size;
    int fds[2] = {b.memfd.get(), theirs.get()};
    if (auto st = proto::send_message(b.sock.get(), s, fds); !st) return st;
    b.set_state(Backend::State::setup_sent, s.role);
    return {};
  }

  Status create_region(Backend& b, const ring::Layout& layout) {
    UniqueFd mem(::memfd_create("nicguard-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!mem) return fail_errno("creating the ring region");
    if (::ftruncate(mem.get(), static_cast<off_t>(layout.region_size)) != 0) {
      return fail_errno("sizing the ring region");
    }
    if (::fcntl(mem.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
      return fail_errno("sealing the ring region");
    }
    // Populated now, not on first use: a spare's first use is a failover,
    // and faulting in a few thousand pages then stalls it for milliseconds.
    void* p = ::mmap(nullptr, layout.region_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                     mem.get(), 0);
    if (p == MAP_FAILED) return fail_errno("mapping the ring region");
    b.region = Mapping(p, layout.region_size);
    b.memfd = std::move(mem);
    return {};
  }

  // A backend starts active when none is active or about to be, and no
  // backend earlier in the preference order is still connecting.
  bool should_start_active(const Backend& b) const {
    for (const auto& o : backends_) {
      if (o.get() == &b || o->state == Backend::State::down) continue;
      if (o->role == proto::Role::active) return false;
      if (o->index < b.index && o->state != Backend::State::ready) return false;
    }
    return true;
  }

  // With nothing active, a connected spare takes over (e.g. the preferred
  // backend's handshake failed after the other one settled as spare).
  void promote_spare() {
    for (auto& o : backends_) {
      if (o->state != Backend::State::down && o->role == proto::Role::active) return;
    }
    for (auto& o : backends_) {
      if (o->state == Backend::State::down) continue;
      // A preferred backend still connecting will start active by itself.
      if (o->state != Backend::State::ready) return;
      activate(*o);
      set_active(*o);
      spdlog::info("frontend {}: {} promoted to active", opt_.name, o->name);
      arm_watchdog(*o, true);
      return;
    }
  }

  void set_active(Backend& b) {
    rx_probe_.restart(clock_.tick(mono_ns()));
    rx_probe_pass_ = b.header->passes.value.load(std::memory_order_acquire);
    rx_probe_overruns_ = b.header->rx_overruns.value.load(std::memory_order_acquire);
    active_ = static_cast<int>(b.index);
    stats_->active.store(active_, std::memory_order_relaxed);
    b.set_state(Backend::State::ready, proto::Role::active);
    resume_held(b);
  }

  // A failed send shows up as the socket's hang-up, which the event loop
  // judges next; until the ack comes, the driver's passes prove nothing.
  void activate(Backend& b) {
    b.role_acked = false;
    b.baseline_pending = true;
    b.handshake_deadline_ns = mono_ns() + handshake_timeout_ns();
    proto::send_message(b.sock.get(), proto::Activate{proto::Role::active});
  }

  void close_backend(Backend& b) {
    end_suspicion(b);
    if (b.sock) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, b.sock.get(), nullptr);
    if (b.doorbell) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, b.doorbell.get(), nullptr);
    b.sock.reset();
    b.doorbell.reset();
    b.role_acked = false;
    b.header = nullptr;
    b.tx = {};
    b.rx = {};
    b.pidfd.reset();
    b.pid = 0;
    b.set_state(Backend::State::down, proto::Role::spare);
    b.next_attempt_ns = mono_ns() + reconnect_delay_ns(b);
  }

  // One detector fired for b: count and log it, fence the domain when it may
  // still be running, and if it was the active one move to the spare (or
  // hold the unfinished frames until a domain comes back).
  void fail_backend(Backend& b, Detector d, const std::string& why, uint64_t silent_ns = 0) {
    uint64_t t0 = mono_ns();
    count_detection(b, d, silent_ns);
    bool was_active = active_ == static_cast<int>(b.index);
    spdlog::warn("frontend {}: driver domain {} failed: {}: {}{}", opt_.name, b.name,
                 detector_name(d), why, was_active ? ", switching" : "");
    nlohmann::json ev = {{"detector", detector_name(d)}, {"domain", b.domain()}, {"pid", b.pid},
                         {"role", was_active ? "active" : "spare"}, {"detail", why}};
    if (silent_ns != 0) ev["detection_latency_us"] = silent_ns / 1000;
    events_.emit("detect", ev);
    // A hang-up from a domain that is still running (not dying) is no
    // crash it recovers from by itself: it is fenced like any other.
    if (d != Detector::crash || still_running(b)) {
      fence(b, d);
    } else {
      b.ending = std::move(b.pidfd);  // gone, or exiting (fenced by another frontend): see start_connect
    }
    b.failed_before = true;
    bool quick = b.ready_ns == 0 || t0 - b.ready_ns < kQuickFailureNs;
    b.quick_failures = quick ? b.quick_failures + 1 : 0;
    b.ready_ns = 0;
    if (!was_active) {
      close_backend(b);
      return promote_spare();
    }
    active_ = -1;
    stats_->active.store(-1, std::memory_order_relaxed);
    Backend* next = nullptr;
    for (auto& o : backends_) {
      if (o.get() != &b && o->state == Backend::State::ready) next = o.get();
    }
    if (next != nullptr) {
      switch_to(*next, b, t0);
    } else {
      hold(b);
    }
    close_backend(b);
  }

  void count_detection(Backend& b, Detector d, uint64_t silent_ns) {
    if (d == Detector::violation) stats::add(b.st->malformed, 1);
    if (d == Detector::violation) stats::add(stats_->malformed, 1);
    stats::Counter& c = d == Detector::crash  ? stats_->detected_crash
                 : d == Detector::hang ? stats_->detected_hang
                 : d == Detector::stall ? stats_->detected_stall
                 : d == Detector::carrier ? stats_->detected_carrier
                                        : stats_->detected_violation;
    stats::add(c, 1);
    if (silent_ns != 0) stats_->last_detect_us.store(silent_ns / 1000, std::memory_order_relaxed);
  }

  bool still_running(const Backend& b) const {
    if (b.pid <= 0) return false;
    ProcSample s = sample_process(b.pid);
    return s.alive && !s.exiting;
  }

  // A hung or misbehaving domain must not transmit again once its frames
  // are re-posted elsewhere, and every other frontend must learn of the
  // verdict: SIGKILL does both (the others see the hang-up at once).
  void fence(Backend& b, Detector d) {
    if (!opt_.fence || !b.pidfd) return;
    if (::syscall(SYS_pidfd_send_signal, b.pidfd.get(), SIGKILL, nullptr, 0) != 0) {
      events_.emit("fence-failed", {{"domain", b.domain()}, {"pid", b.pid}, {"error", std::strerror(errno)}});
      return;
    }
    stats::add(stats_->fences, 1);
    b.ending = std::move(b.pidfd);  // the backend is closed next: see start_connect
    events_.emit("fence", {{"domain", b.domain()}, {"pid", b.pid}, {"signal", "SIGKILL"},
                           {"reason", detector_name(d)}});
  }

  // Makes `next` active, re-posts what `failed` took but never finished and
  // announces the app's addresses so the switch learns the new port.
  void switch_to(Backend& next, Backend& failed, uint64_t t0) {
    activate(next);
    set_active(next);
    arm_watchdog(next, true);
    stats::add(stats_->failovers, 1);
    unsigned replayed = replay(next, failed);
    unsigned announced = announce(next);
    ring::kick(next.doorbell.get());
    uint64_t took = mono_ns() - t0;
    stats_->last_switch_us.store(took / 1000, std::memory_order_relaxed);
    events_.emit("switch", {{"from", failed.domain()}, {"to", next.domain()}, {"replayed", replayed},
                            {"announced", announced}, {"switch_us", took / 1000}});
    spdlog::info("frontend {}: now active on {}", opt_.name, next.name);
  }

  unsigned announce(Backend& b) {
    unsigned n = 0;
    for (const auto& frame : announcements(opt_.mac, opt_.addresses)) {
      n += post(b, frame.data(), static_cast<uint32_t>(frame.size()), true);
    }
    return n;
  }

  // ---- no domain up: the hold queue ---------------------------------------

  // Keeps what the failed domain took but never finished; the TAP queue
  // behind it holds what the app sends meanwhile (the kernel bounds it).
  void hold(Backend& failed) {
    uint64_t dropped = 0;
    if (failed.tx.attached() && failed.tx.refresh()) {
      for (uint32_t i = failed.tx.done(); i != failed.tx.prod(); ++i) {
        ring::Desc d = failed.tx.desc_at(i);
        if (!replayable(d, failed.tx.slot_size())) continue;
        if (held_.size() >= opt_.hold_frames) {
          ++dropped;
          continue;
        }
        const std::byte* p = failed.tx.slot_at(i) + d.offset;
        held_.emplace_back(p, p + d.len);
      }
    }
    stats::add(stats_->held_frames, held_.size());
    stats::add(stats_->hold_drops, dropped);
    stats::add(stats_->tx_drops, dropped);
    resuming_ = true;
    events_.emit("hold", {{"from", failed.domain()}, {"held", held_.size()}, {"dropped", dropped}});
    spdlog::warn("frontend {}: no driver domain up; holding {} frames", opt_.name, held_.size());
  }

  void resume_held(Backend& b) {
    if (!resuming_) return;
    resuming_ = false;
    unsigned posted = 0;
    while (!held_.empty()) {
      const auto& f = held_.front();
      if (post(b, f.data(), static_cast<uint32_t>(f.size()), false) == 0) break;
      held_.pop_front();
      ++posted;
    }
    uint64_t dropped = held_.size();
    held_.clear();
    stats::add(stats_->hold_drops, dropped);
    posted += announce(b);
    ring::kick(b.doorbell.get());
    events_.emit("resume", {{"to", b.domain()}, {"posted", posted}, {"dropped", dropped}});
    spdlog::info("frontend {}: resumed on {}", opt_.name, b.name);
  }

  unsigned replay(Backend& next, Backend& failed) {
    if (!failed.tx.attached() || !failed.tx.refresh()) return 0;
    unsigned count = 0;
    for (uint32_t i = failed.tx.done(); i != failed.tx.prod(); ++i) {
      ring::Desc d = failed.tx.desc_at(i);
      if (!replayable(d, failed.tx.slot_size())) continue;
      count += post(next, failed.tx.slot_at(i) + d.offset, d.len, false);
    }
    stats::add(stats_->replayed, count);
    return count;
  }

  // Posts one frame on a backend's TX ring; with_header prepends an empty
  // virtio-net header to a bare Ethernet frame.
  unsigned post(Backend& b, const void* data, uint32_t len, bool with_header) {
    auto free = b.tx.free_slots();
    uint32_t total = len + (with_header ? kVnetHdrLen : 0);
    if (!free || *free == 0 || total > b.tx.slot_size()) return 0;
    std::byte* slot = b.tx.slot(0);
    uint32_t off = 0;
    if (with_header) {
      std::memset(slot, 0, kVnetHdrLen);
      off = kVnetHdrLen;
    }
    std::memcpy(slot + off, data, len);
    b.tx.set(0, ring::Desc{0, total});
    b.tx.publish(1);
    return 1;
  }

  FrontendOptions opt_;
  UniqueFd tap_;
  UniqueFd epoll_;
  UniqueFd salvage_;  // see take_salvage()
  UniqueFd signals_;  // signalfd: SIGHUP rereads the settings file, SIGTERM and SIGINT end the run
  bool leaving_ = false;
  // Only touched (and so only given memory) when a salvage arrives.
  std::unique_ptr<std::byte[]> salvage_mem_ = std::make_unique_for_overwrite<std::byte[]>(kSalvageDatagramMax);
  std::span<std::byte> salvage_buf_{salvage_mem_.get(), kSalvageDatagramMax};
  stats::FrontStatsFile stats_;
  EventLog events_;
  std::vector<std::unique_ptr<Backend>> backends_;
  int active_ = -1;
  bool tap_armed_ = true;
  bool sampler_warned_ = false;
  UniqueFd sampling_ready_;  // see UserCpuSampler::keep_ready
  uint64_t last_traffic_ns_ = 0;
  unsigned probe_answers_ = 0;  // ARP answers to our own questions in this pass
  std::deque<std::vector<std::byte>> held_;  // see hold()
  RxProbe rx_probe_;  // timed on clock_
  uint64_t rx_probe_pass_ = 0;  // the active domain's passes when the last question went out
  uint64_t rx_probe_overruns_ = 0;  // its NIC's overruns when last seen
  PathCheck path_;
  std::pair<const ring::RegionHeader*, const ring::RegionHeader*> path_pair_{};  // the domains path_ judges
  WatchClock clock_;
  bool resuming_ = false;                     // frames held, waiting for a domain
};

// Only root reaches the socket (0600 in the state directory), and the
// driver domains' sandbox lets them create no socket to send from.
Result<UniqueFd> bind_salvage(const std::string& path) {
  auto s = bind_unix(SOCK_DGRAM, path, "salvage socket");
  if (!s) return s;
  // A hang's worth of frames at line rate arrives at once.
  int buf = 8 << 20;
  if (::setsockopt(s->get(), SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf)) != 0) {
    ::setsockopt(s->get(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
  }
  return s;
}

// SIGHUP, SIGTERM and SIGINT are read from a signalfd in the loop; blocked
// before the settings are read, so a reload that races the start is not
// lost (nor fatal). A SIGTERM before the loop runs ends it at its first turn.
Result<UniqueFd> watch_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&set, sig);
  if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) return fail_errno("blocking SIGHUP, SIGTERM and SIGINT");
  UniqueFd fd(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!fd) return fail_errno("signalfd");
  return fd;
}

Result<std::unique_ptr<Frontend>> setup(FrontendOptions o) {
  if (o.backends.empty() || o.backends.size() > stats::kMaxBackends) {
    return fail("a frontend needs 1 or {} driver domains, got {}", stats::kMaxBackends,
                o.backends.size());
  }
  auto signals = watch_signals();
  if (!signals) return tl::unexpected(signals.error());
  if (!o.settings.empty()) {
    auto s = read_settings(o.settings);
    if (!s) return tl::unexpected(s.error());
    apply_live_settings(o, *s);
  }
  if (auto s = o.netns.empty() ? Status{} : netlink::enter_netns(o.netns); !s) return tl::unexpected(s.error());
  auto st = stats::FrontStatsFile::create(o.stats, stats::kFrontMagic);
  if (!st) return tl::unexpected(st.error());
  stats::set_name((*st)->name, o.name);
  stats::set_name((*st)->tap, o.tap);
  (*st)->pid.store(static_cast<uint64_t>(::getpid()));
  auto tap = create_tap(TapConfig{o.tap, o.mac, o.mtu, o.addresses});
  if (!tap) return tl::unexpected(tap.error());
  UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep) return fail_errno("creating epoll");
  EventLog events;
  if (!o.events.empty()) {
    auto e = EventLog::open(o.events);
    if (!e) return tl::unexpected(e.error());
    events = std::move(*e);
    events.set_source("front-" + o.name);
  }
  auto salvage = o.salvage.empty() ? Result<UniqueFd>(UniqueFd()) : bind_salvage(o.salvage);
  if (!salvage) return tl::unexpected(salvage.error());
  auto f = std::make_unique<Frontend>(o, std::move(*tap), std::move(ep), std::move(*salvage), std::move(*signals),
                                      std::move(*st), std::move(events));
  if (auto s = f->prepare_regions(); !s) return tl::unexpected(s.error());
  return f;
}

}  // namespace

int run_frontend(const FrontendOptions& o) {
  auto f = setup(o);
  if (!f) {
    spdlog::error("frontend {}: {}", o.name, f.error().message);
    return 1;
  }
  auto realtime = serve_at(o.serve);
  if (!realtime) spdlog::warn("frontend {}: {}", o.name, realtime.error().message);
  spdlog::info("frontend {}: TAP {} up with {} ({} driver domains)", o.name, o.tap,
               format_mac(o.mac), o.backends.size());
  return (*f)->run(o.spin_us, realtime.value_or(0));
}

}  // namespace ng::frontend

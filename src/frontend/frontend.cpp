#include "frontend/frontend.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <spdlog/spdlog.h>

#include <cstring>
#include <memory>
#include <optional>

#include "common/clock.hpp"
#include "common/fd.hpp"
#include "common/stats.hpp"
#include "frontend/announce.hpp"
#include "frontend/tap.hpp"
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

enum Tag : uint32_t { tag_tap = 1, tag_sock = 2, tag_kick = 3 };
uint64_t tag(Tag t, uint32_t id) { return uint64_t{t} << 32 | id; }

struct Backend {
  enum class State { down, hello_sent, setup_sent, ready };
  uint32_t index = 0;
  std::string name;
  std::string socket_path;
  State state = State::down;
  proto::Role role = proto::Role::spare;
  UniqueFd sock;
  Mapping region;
  UniqueFd kick_driver;
  UniqueFd kick_front;
  ring::Layout layout;
  ring::RegionHeader* header = nullptr;
  ring::Producer tx;
  ring::Consumer rx;
  uint64_t next_attempt_ns = 0;
  stats::FrontBackend* st = nullptr;

  void set_state(State s, proto::Role r) {
    state = s;
    role = r;
    BackendState v = BackendState::connecting;
    if (s == State::down) v = BackendState::down;
    if (s == State::ready) v = r == proto::Role::active ? BackendState::active : BackendState::spare;
    st->state.store(static_cast<uint32_t>(v), std::memory_order_relaxed);
  }
};

Result<UniqueFd> make_eventfd() {
  UniqueFd fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!fd) return fail_errno("creating an eventfd");
  return fd;
}

class Frontend {
 public:
  Frontend(const FrontendOptions& o, UniqueFd tap, UniqueFd epoll, stats::FrontStatsFile st)
      : opt_(o), tap_(std::move(tap)), epoll_(std::move(epoll)), stats_(std::move(st)) {
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
    epoll_event ev{EPOLLIN, {.u64 = tag(tag_tap, 0)}};
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, tap_.get(), &ev);
  }

  int run() {
    ring::Idler idler(opt_.spin_us);
    uint64_t last_control = 0;
    for (;;) {
      unsigned work = 0;
      if (Backend* a = active()) work = ring_to_tap(*a) + tap_to_ring();
      uint64_t now = mono_ns();
      if (now - last_control > kControlPollNs) {
        last_control = now;
        reconnect_due(now);
        if (!handle_events(0)) return 1;
      }
      if (idler.keep_polling(work, now)) continue;
      auto woke = sleep(now);
      if (!woke) return 1;
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
      fail_backend(*b, "protocol violation: " + free.error().message, true);
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
    if (ring::peer_needs_kick(b->header->driver_sleeping)) ring::kick(b->kick_driver.get());
    stats::add(stats_->tap_rx_frames, count);
    stats::add(stats_->tap_rx_bytes, bytes);
    stats::add(b->st->tx_frames, count);
    stats::add(b->st->tx_bytes, bytes);
    return count;
  }

  unsigned ring_to_tap(Backend& b) {
    auto avail = b.rx.available();
    if (!avail) {
      fail_backend(b, "protocol violation: " + avail.error().message, true);
      return 1;
    }
    unsigned n = std::min<unsigned>(*avail, kBatch);
    uint64_t bytes = 0;
    for (unsigned i = 0; i < n; ++i) {
      auto f = b.rx.frame(i);
      if (!f || f->len < kMinFrame) {
        b.rx.release(i);
        fail_backend(b, f ? "protocol violation: runt frame" : "protocol violation: " + f.error().message,
                     true);
        return 1;
      }
      if (::write(tap_.get(), f->data, f->len) < 0) {
        stats::add(stats_->rx_drops, 1);
        continue;
      }
      bytes += f->len - kVnetHdrLen;
    }
    if (n == 0) return 0;
    b.rx.release(n);
    stats::add(stats_->tap_tx_frames, n);
    stats::add(stats_->tap_tx_bytes, bytes);
    stats::add(b.st->rx_frames, n);
    stats::add(b.st->rx_bytes, bytes);
    return n;
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
    auto ok = handle_events(sleep_ms(now));
    if (a != nullptr && a->header != nullptr) ring::cancel_sleep(a->header->front_sleeping);
    return ok;
  }

  int sleep_ms(uint64_t now) {
    int ms = kMaxSleepMs;
    for (auto& b : backends_) {
      if (b->state != Backend::State::down) continue;
      uint64_t due = b->next_attempt_ns > now ? b->next_attempt_ns - now : 0;
      ms = std::min<int>(ms, static_cast<int>(due / 1'000'000) + 1);
    }
    return ms;
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
      if (id >= backends_.size()) continue;
      Backend& b = *backends_[id];
      if (t == tag_kick && b.kick_front) ring::drain(b.kick_front.get());
      if (t == tag_sock && b.sock) on_socket(b, ev[i].events);
    }
    if (n > 0) reconnect_due(mono_ns());
    return n > 0;
  }

  // ---- connection management ---------------------------------------------

  void reconnect_due(uint64_t now) {
    for (auto& b : backends_) {
      if (b->state == Backend::State::down && b->next_attempt_ns <= now) start_connect(*b);
    }
  }

  void start_connect(Backend& b) {
    b.next_attempt_ns = mono_ns() + uint64_t{opt_.reconnect_ms} * 1'000'000;
    UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, b.socket_path.c_str(), sizeof(addr.sun_path) - 1);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return;
    proto::Hello hello;
    hello.features = proto::kFeatureVnetHdr | proto::kFeatureHeartbeat;
    hello.app_name = opt_.name;
    if (!proto::send_message(s.get(), hello)) return;
    b.sock = std::move(s);
    epoll_event ev{EPOLLIN | EPOLLRDHUP, {.u64 = tag(tag_sock, b.index)}};
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, b.sock.get(), &ev);
    b.set_state(Backend::State::hello_sent, proto::Role::spare);
  }

  void on_socket(Backend& b, uint32_t events) {
    if (events & EPOLLIN) {
      auto msg = proto::recv_message(b.sock.get(), 0);
      if (!msg) return fail_backend(b, msg.error().message, false);
      if (auto s = on_message(b, msg->message); !s) return fail_backend(b, s.error().message, true);
      return;
    }
    if (events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)) fail_backend(b, "socket hang-up", false);
  }

  Status on_message(Backend& b, const proto::Message& m) {
    if (auto* r = std::get_if<proto::Refuse>(&m)) return fail("driver refused: {}", r->reason);
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
      stats::add(b.st->connects, 1);
      spdlog::info("frontend {}: connected to {} as {}", opt_.name, b.name,
                   proto::role_name(b.role));
      if (b.role == proto::Role::active) set_active(b);
      promote_spare();
      return {};
    }
    if (std::get_if<proto::ActivateAck>(&m) != nullptr) return {};
    return fail("unexpected {} message", proto::type_name(m));
  }

  Status send_setup(Backend& b) {
    auto layout = ring::compute_layout(opt_.tx_slots, opt_.rx_slots, opt_.slot_size);
    if (!layout) return tl::unexpected(layout.error());
    UniqueFd mem(::memfd_create("nicguard-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!mem) return fail_errno("creating the ring region");
    if (::ftruncate(mem.get(), static_cast<off_t>(layout->region_size)) != 0) {
      return fail_errno("sizing the ring region");
    }
    if (::fcntl(mem.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
      return fail_errno("sealing the ring region");
    }
    void* p = ::mmap(nullptr, layout->region_size, PROT_READ | PROT_WRITE, MAP_SHARED, mem.get(), 0);
    if (p == MAP_FAILED) return fail_errno("mapping the ring region");
    b.region = Mapping(p, layout->region_size);
    b.layout = *layout;
    b.header = ring::init_region(p, *layout);
    b.tx = ring::Producer(ring::tx_ring(p, *layout));
    b.rx = ring::Consumer(ring::rx_ring(p, *layout));
    auto kd = make_eventfd();
    auto kf = make_eventfd();
    if (!kd || !kf) return tl::unexpected(kd ? kf.error() : kd.error());
    b.kick_driver = std::move(*kd);
    b.kick_front = std::move(*kf);
    epoll_event ev{EPOLLIN, {.u64 = tag(tag_kick, b.index)}};
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, b.kick_front.get(), &ev);
    proto::Setup s;
    s.mac = opt_.mac;
    s.mtu = opt_.mtu;
    s.role = should_start_active(b) ? proto::Role::active : proto::Role::spare;
    s.tx_slots = layout->tx_slots;
    s.rx_slots = layout->rx_slots;
    s.slot_size = layout->slot_size;
    s.region_size = layout->region_size;
    int fds[3] = {mem.get(), b.kick_driver.get(), b.kick_front.get()};
    if (auto st = proto::send_message(b.sock.get(), s, fds); !st) return st;
    b.set_state(Backend::State::setup_sent, s.role);
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
      proto::send_message(o->sock.get(), proto::Activate{proto::Role::active});
      set_active(*o);
      spdlog::info("frontend {}: {} promoted to active", opt_.name, o->name);
      return;
    }
  }

  void set_active(Backend& b) {
    active_ = static_cast<int>(b.index);
    stats_->active.store(active_, std::memory_order_relaxed);
    b.set_state(Backend::State::ready, proto::Role::active);
  }

  void close_backend(Backend& b) {
    if (b.sock) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, b.sock.get(), nullptr);
    if (b.kick_front) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, b.kick_front.get(), nullptr);
    b.sock.reset();
    b.kick_front.reset();
    b.kick_driver.reset();
    b.header = nullptr;
    b.tx = {};
    b.rx = {};
    b.region.reset();
    b.set_state(Backend::State::down, proto::Role::spare);
    b.next_attempt_ns = mono_ns() + uint64_t{opt_.reconnect_ms} * 1'000'000;
  }

  void fail_backend(Backend& b, const std::string& why, bool violation) {
    if (violation) {
      stats::add(b.st->malformed, 1);
      stats::add(stats_->malformed, 1);
    }
    bool was_active = active_ == static_cast<int>(b.index);
    spdlog::warn("frontend {}: driver domain {} failed ({}){}", opt_.name, b.name, why,
                 was_active ? ", switching" : "");
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
    if (next != nullptr) switch_to(*next, b);
    close_backend(b);
  }

  // Makes `next` active, re-posts what `failed` took but never finished and
  // announces the app's addresses so the switch learns the new port.
  void switch_to(Backend& next, Backend& failed) {
    proto::send_message(next.sock.get(), proto::Activate{proto::Role::active});
    set_active(next);
    stats::add(stats_->failovers, 1);
    unsigned posted = replay(next, failed);
    for (const auto& frame : announcements(opt_.mac, opt_.addresses)) {
      posted += post(next, frame.data(), static_cast<uint32_t>(frame.size()), true);
    }
    if (posted != 0) ring::kick(next.kick_driver.get());
    spdlog::info("frontend {}: now active on {}", opt_.name, next.name);
  }

  unsigned replay(Backend& next, Backend& failed) {
    if (!failed.tx.attached() || !failed.tx.refresh()) return 0;
    unsigned count = 0;
    for (uint32_t i = failed.tx.done(); i != failed.tx.prod(); ++i) {
      ring::Desc d = failed.tx.desc_at(i);
      if (d.offset >= failed.tx.slot_size() || d.len > failed.tx.slot_size() - d.offset) continue;
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
  stats::FrontStatsFile stats_;
  std::vector<std::unique_ptr<Backend>> backends_;
  int active_ = -1;
  bool tap_armed_ = true;
};

Result<std::unique_ptr<Frontend>> setup(const FrontendOptions& o) {
  if (o.backends.empty() || o.backends.size() > stats::kMaxBackends) {
    return fail("a frontend needs 1 or {} driver domains, got {}", stats::kMaxBackends,
                o.backends.size());
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
  return std::make_unique<Frontend>(o, std::move(*tap), std::move(ep), std::move(*st));
}

}  // namespace

int run_frontend(const FrontendOptions& o) {
  auto f = setup(o);
  if (!f) {
    spdlog::error("frontend {}: {}", o.name, f.error().message);
    return 1;
  }
  spdlog::info("frontend {}: TAP {} up with {} ({} driver domains)", o.name, o.tap,
               format_mac(o.mac), o.backends.size());
  return (*f)->run();
}

}  // namespace ng::frontend

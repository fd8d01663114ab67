#include "driver/driver.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <seccomp.h>
#include <signal.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "common/clock.hpp"
#include "common/fd.hpp"
#include "common/sanitizer.hpp"
#include "common/stats.hpp"
#include "common/unix_socket.hpp"
#include "driver/crash.hpp"
#include "driver/nic.hpp"
#include "driver/path_probe.hpp"
#include "inject/inject.hpp"
#include "netlink/netlink.hpp"
#include "protocol/protocol.hpp"
#include "ring/idle.hpp"
#include "ring/ring.hpp"
#include "sandbox/sandbox.hpp"
#include "vm/guest_report.hpp"
#include "vm/vm.hpp"

namespace ng::driver {
namespace {

namespace proto = ng::protocol;

constexpr unsigned kBatch = 32;
constexpr uint32_t kRxBufSize = 65536 + 256;
constexpr uint32_t kMinFrame = kVnetHdrLen + 14;
constexpr uint64_t kControlPollNs = 1'000'000;
// A new frontend's ring region is mapped in this much per pass (populate()).
constexpr size_t kPopulateSlice = size_t{2} << 20;
constexpr unsigned kControlPerPass = 1;
constexpr unsigned kNicBatches = 4;
constexpr uint64_t kProbeBroadcastEvery = 512;
// Long runs of per-item work (control events, copies of a broadcast to
// every frontend) beat every so many items, so that no frontend takes
// their length for a spin.
constexpr unsigned kItemsPerBeat = 8;

enum Tag : uint32_t { tag_nic = 1, tag_listen = 2, tag_sock = 3, tag_kick = 4, tag_vm = 5, tag_qmp = 6 };

uint64_t tag(Tag t, uint32_t id) { return uint64_t{t} << 32 | id; }

struct Connection {
  enum class State { awaiting_hello, awaiting_setup, populating, ready };
  uint32_t id = 0;
  UniqueFd sock;
  State state = State::awaiting_hello;
  std::string app;
  Mac mac{};
  proto::Role role = proto::Role::spare;
  Mapping region;
  ring::Layout layout;
  size_t populated = 0;  // bytes of the region mapped in so far (State::populating)
  UniqueFd doorbell;  // our end: the frontend's kicks arrive here, ours leave here
  ring::RegionHeader* header = nullptr;
  ring::Producer rx;
  ring::Consumer tx;
  stats::DriverConnection* stats = nullptr;
  uint32_t rx_pending = 0;  // frames copied into rx slots, not yet published
  uint32_t rx_free = 0;
  bool lied = false;  // ctl-garbage, ctl-truncated: its one bad control message is sent

  bool active() const { return state == State::ready && role == proto::Role::active; }
};

class Driver {
 public:
  Driver(const DriverOptions& o, std::unique_ptr<Nic> nic, UniqueFd listen, UniqueFd epoll,
         stats::DriverStatsFile stats, std::optional<inject::ControlFile> inject)
      : opt_(o),
        inject_(std::move(inject)),
        nic_(std::move(nic)),
        listen_(std::move(listen)),
        epoll_(std::move(epoll)),
        stats_(std::move(stats)),
        rx_bufs_(size_t{kBatch} * kRxBufSize) {
    for (unsigned i = 0; i < kBatch; ++i) {
      rx_iov_[i] = {rx_bufs_.data() + size_t{i} * kRxBufSize, kRxBufSize};
    }
  }

  // The domain lives and dies with its driver VM: QEMU's exit (a guest
  // panic ends it too) ends the domain, which the frontends see at once as
  // the hang-up of every connection.
  Status attach_vm(VmDomain vm) {
    vm_ = std::move(vm);
    constexpr uint64_t kDebugHoldLimitNs = 10'000'000'000;  // a regflip waits 5 s at most
    vcpu_stops_ = VcpuStops(uint64_t{opt_.vm.hang_timeout_ms} * 1'000'000, kDebugHoldLimitNs);
    epoll_event ev{EPOLLIN, {.u64 = tag(tag_vm, 0)}};
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, vm_->qemu.pidfd(), &ev) != 0) {
      return fail_errno("watching QEMU's pidfd");
    }
    ev = {EPOLLIN, {.u64 = tag(tag_qmp, 0)}};
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, vm_->events->fd(), &ev) != 0) {
      return fail_errno("watching QEMU's QMP events");
    }
    return {};
  }

  int run(uint32_t spin_us, int realtime) {
    ring::Idler idler(spin_us_at(realtime, spin_us));
    uint64_t last_control = 0;
    for (;;) {
      Fault f = inject_ ? inject_->armed() : Fault::none;
      if (f != Fault::none) misbehave(f);
      start_pass();
      unsigned work = poll_nic(f) +
                      (f == Fault::stall_tx ? 0 : poll_tx(f == Fault::drop));
      probe_path(f, probe_frames_ != 0);
      populate_due();
      if (vm_ && !watch_guest(f)) return 1;
      // A probe is no traffic: busy-polling after one would cost an idle
      // domain 5% of a core at a probe every millisecond.
      unsigned probes = std::exchange(probe_frames_, 0u);
      work -= probes;
      uint64_t now = mono_ns();
      if (now - last_control > kControlPollNs) {
        last_control = now;
        if (!handle_events(0)) return 1;
      }
      if (work == 0 && probes != 0) idler.slept(false, now);
      // A storming domain does not sleep between its storms: kicks are its work.
      if (idler.keep_polling(work + (f == Fault::kick_storm), now)) continue;
      auto woke = sleep();
      if (!woke) return 1;
      idler.slept(*woke, now);
    }
  }

 private:
  using Fault = inject::Fault;

  // The injected faults that act before a pass of the packet loop; stall-tx,
  // stall-rx and drop act inside it.
  void misbehave(Fault f) {
    if (f == Fault::crash) {
      volatile uintptr_t bad = 8;
      *reinterpret_cast<volatile uint64_t*>(bad) = 0;
    }
    if (f == Fault::hang) {
      for (;;) asm volatile("" ::: "memory");
    }
    if (f == Fault::slow) ::usleep(5000);
    if (f == Fault::leak) leak();
    if (f == Fault::corrupt) corrupt();
    if (f == Fault::wedge) wedge();
    if (f == Fault::deaf) go_deaf();
    if (f == Fault::hangup) hang_up_all();
    if (f == Fault::rx_index_jump || f == Fault::rx_index_back) move_rx_producer(f == Fault::rx_index_jump);
    if (f == Fault::tx_index_jump || f == Fault::tx_index_back) move_tx_done(f == Fault::tx_index_jump);
    if (f == Fault::desc_outside || f == Fault::len_zero || f == Fault::len_max) publish_bad_rx(f);
    if (f == Fault::desc_flip) flip_descriptors();
    if (f == Fault::ctl_garbage || f == Fault::ctl_truncated) lie_on_control(f);
    if (f == Fault::kick_storm) kick_storm();
  }

  // What a hostile domain can do with the descriptors it shares: fill them,
  // stop reading, and block inside a read. Unsandboxed it also makes them
  // blocking (their file status flags are the frontend's too); the sandbox
  // refuses F_SETFL, and a domain that tries it there dies of SIGSYS.
  void wedge() {
    for (auto& c : conns_) {
      if (!c || !c->doorbell) continue;
      if (!opt_.sandbox) {
        ::fcntl(c->doorbell.get(), F_SETFL, 0);
        ::fcntl(c->sock.get(), F_SETFL, 0);
      }
      char junk[4096] = {};
      while (::send(c->doorbell.get(), junk, sizeof(junk), MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
      }
    }
    for (auto& c : conns_) {
      if (c && c->doorbell) {
        ring::drain(c->doorbell.get());
        char b;
        for (;;) {  // blocks until a kick, then for good
          [[maybe_unused]] auto r = ::read(c->doorbell.get(), &b, 1);
        }
      }
    }
  }

  void go_deaf() {
    if (deaf_) return;
    deaf_ = true;
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, listen_.get(), nullptr);
    for (auto& c : conns_) {
      if (c) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c->sock.get(), nullptr);
    }
  }

  void hang_up_all() {
    for (auto& c : conns_) {
      if (c) drop(*c, "injected hang-up");
    }
  }

  void leak() {
    constexpr size_t kChunk = size_t{16} << 20;
    auto* p = static_cast<char*>(std::malloc(kChunk));
    if (p == nullptr) std::abort();  // what a driver that ignores allocation failure does
    std::memset(p, 0x5a, kChunk);
    leaked_.push_back(p);
  }

  void corrupt() { publish_bad_rx(Fault::corrupt); }

  // ---- a domain that lies to its frontends ----------------------------------
  // Each lie is told again on every pass while armed: the domain's own honest
  // work may overwrite it, and the frontend must find it whenever it looks.

  static ring::Desc bad_desc(Fault f, uint32_t slot_size) {
    if (f == Fault::desc_outside) return {slot_size - 16, 64};  // starts in the slot, ends in the next
    if (f == Fault::len_zero) return {0, 0};
    if (f == Fault::len_max) return {0, UINT32_MAX};
    return {slot_size, 64};  // corrupt: starts past the slot
  }

  void publish_bad_rx(Fault f) {
    for (auto& c : conns_) {
      if (!c || !c->active()) continue;
      auto free = c->rx.free_slots();
      if (!free || *free == 0) continue;
      c->rx.set(0, bad_desc(f, c->rx.slot_size()));
      c->rx.publish(1);
      ring::kick(c->doorbell.get());
    }
  }

  // The index the frontend reads on the ring it consumes, moved from what it
  // took: 2^31 ahead, or one behind.
  void move_rx_producer(bool ahead) {
    for (auto& c : conns_) {
      if (!c || c->state != Connection::State::ready) continue;
      ring::RingControl* rx = ring::rx_ring(c->region.data(), c->layout).control;
      uint32_t taken = rx->cons.value.load(std::memory_order_acquire);
      rx->prod.value.store(ahead ? taken + (1u << 31) : taken - 1, std::memory_order_release);
      ring::kick(c->doorbell.get());
    }
  }

  // The indices this domain owns on the ring the frontend produces: past what
  // the frontend posted by a ring and one, or behind what this domain really
  // finished by as much (so behind whatever the frontend last saw, too).
  void move_tx_done(bool ahead) {
    for (auto& c : conns_) {
      if (!c || c->state != Connection::State::ready) continue;
      ring::RingControl* tx = ring::tx_ring(c->region.data(), c->layout).control;
      uint32_t step = c->layout.tx_slots + 1;
      uint32_t to = ahead ? tx->prod.value.load(std::memory_order_acquire) + step : c->tx.cons() - step;
      tx->cons.value.store(to, std::memory_order_relaxed);
      tx->done.value.store(to, std::memory_order_release);
    }
  }

  // Time of check to time of use: a published descriptor whose length flips
  // between valid and 2^32-1 while the frontend reads it, so that a frontend
  // that loaded a field twice would check one value and use the other. The
  // sandbox lets a domain start no thread: the loop flips for a while each
  // pass, beating all along, and publishes the next frame each time the
  // frontend took one on a good read. It leaves the length valid: only a
  // read during the flipping can see the bad one.
  void flip_descriptors() {
    constexpr uint64_t kFlipNs = 500'000;
    constexpr uint32_t kFlipsPerBeat = 1024;
    uint64_t until = mono_ns() + kFlipNs;
    for (uint32_t n = 0;; ++n) {
      for (auto& c : conns_) {
        if (c && c->active()) flip(*c, n & 1 ? UINT32_MAX : kFlipLen);
      }
      if (n % kFlipsPerBeat != kFlipsPerBeat - 1) continue;
      beat();
      if (mono_ns() >= until) break;
    }
    for (auto& c : conns_) {
      if (c && c->active()) flip(*c, kFlipLen);
    }
  }

  // A harmless frame: to nobody's MAC, of a local experimental EtherType.
  static constexpr uint32_t kFlipLen = 64;
  static constexpr std::array<uint8_t, kFlipLen> kFlipFrame = {
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0,                          // virtio-net header
      0x02, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x02, 0x6e, 0x67,  // destination, source...
      0x00, 0x00, 0x01, 0x88, 0xb5};                         // ... EtherType

  void flip(Connection& c, uint32_t len) {
    ring::RingRef rx = ring::rx_ring(c.region.data(), c.layout);
    if (rx.control->cons.value.load(std::memory_order_acquire) == c.rx.prod()) {
      auto free = c.rx.free_slots();
      if (!free || *free == 0) return;
      std::memcpy(c.rx.slot(0), kFlipFrame.data(), kFlipFrame.size());
      c.rx.set(0, ring::Desc{0, kFlipLen});
      c.rx.publish(1);
      ring::kick(c.doorbell.get());
      return;
    }
    ring::Desc& d = rx.descs[(c.rx.prod() - 1) & (rx.slots - 1)];
    std::atomic_ref<uint32_t>(d.len).store(len, std::memory_order_relaxed);
  }

  // One bad message per frontend on its control socket, in whatever state
  // its connection is: a frontend connecting now gets it inside its handshake.
  void lie_on_control(Fault f) {
    for (auto& c : conns_) {
      if (!c || c->lied) continue;
      c->lied = true;
      auto bytes = f == Fault::ctl_garbage ? garbage_message() : truncated_fault_message();
      [[maybe_unused]] auto r = ::send(c->sock.get(), bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    }
  }

  static std::vector<uint8_t> garbage_message() {
    std::vector<uint8_t> junk(48);
    for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<uint8_t>(0xa5 ^ (i * 37));
    return junk;
  }

  // A fault report the frontend would believe (and fail over on, as a hang),
  // cut inside its reason, with a header that agrees with the cut: only the
  // body's own length field gives it away.
  static std::vector<uint8_t> truncated_fault_message() {
    auto m = proto::encode(proto::Fault{proto::FaultKind::hang, "a report cut short"});
    m.resize(m.size() - 8);
    set_payload_length(m, static_cast<uint32_t>(m.size() - proto::kHeaderSize));
    return m;
  }

  static void set_payload_length(std::vector<uint8_t>& m, uint32_t n) {
    for (size_t i = 0; i < 4; ++i) m[8 + i] = static_cast<uint8_t>(n >> (8 * i));  // after magic, version, type
  }

  // hello-truncated: the answer to a hello, short of the payload its header
  // announces. The connection stays open: the frontend must end it.
  Status answer_hello_truncated(Connection& c) {
    proto::HelloAck ack;
    ack.features = proto::kFeatureVnetHdr | proto::kFeatureHeartbeat;
    ack.driver_name = opt_.name;
    auto m = proto::encode(ack);
    m.resize(m.size() - 4);
    [[maybe_unused]] auto r = ::send(c.sock.get(), m.data(), m.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    return {};
  }

  // Kicks with no work behind them, for a while each pass and beating all
  // along: in every other way the domain stays healthy and carries its traffic.
  void kick_storm() {
    constexpr uint64_t kStormNs = 500'000;
    uint64_t until = mono_ns() + kStormNs;
    for (unsigned n = 0;; ++n) {
      for (auto& c : conns_) {
        if (c && c->state == Connection::State::ready) ring::kick(c->doorbell.get());
      }
      if (n % kItemsPerBeat != kItemsPerBeat - 1) continue;
      beat();
      if (mono_ns() >= until) return;
    }
  }

  // The heartbeat's low bit says "inside a NIC call": such a call may run
  // the receiving stack in this process's time for milliseconds (a veth
  // peer's softirq work), which a frontend must not take for a spin. Every
  // change advances the word, so each one is a beat.
  void beat() { publish((heartbeat_ | 1) + 1); }
  void enter_nic_call() { publish(heartbeat_ | 1); }
  // A beat that stays inside the call: progress through a long one.
  void enter_nic_call_again() { publish((heartbeat_ | 1) + 2); }

  // Asked only while reading the NIC with a backlog (a full batch), at most
  // once per control poll: a driver that stopped reading must not look
  // merely overloaded.
  void account_overruns() {
    uint64_t now = mono_ns();
    if (now - overruns_asked_ns_ < kControlPollNs) return;
    overruns_asked_ns_ = now;
    uint64_t n = nic_->rx_overruns();
    if (n == overruns_) return;
    overruns_ = n;
    stats_->nic_rx_overruns.store(n, std::memory_order_relaxed);
    for (auto& c : conns_) {
      if (c && c->header) c->header->rx_overruns.value.store(n, std::memory_order_release);
    }
  }

  // Every pass is counted for the frontends' stall detector: frames still
  // untaken after passes that began once they were posted were skipped.
  void start_pass() {
    ++passes_;
    for (auto& c : conns_) {
      if (c && c->header) c->header->passes.value.store(passes_, std::memory_order_release);
    }
    beat();
  }

  // One probe to the peer when due. A domain whose transmit is stalled or
  // drops everything sends none: the probe takes the data's path.
  void probe_path(Fault f, bool peer_probed) {
    if (opt_.path_probe_us == 0) return;
    uint64_t now = mono_ns();
    // Half an interval early is on time for a domain its peer's probe just
    // woke: it answers with its own, and the pair settles into one wake-up
    // each per interval instead of two. A busy domain sends on time.
    uint64_t interval = probe_interval_ns();
    uint64_t early = peer_probed ? interval / 2 : 0;
    if (now + early < next_probe_ns_) return;
    next_probe_ns_ = now + interval;
    if (f == Fault::stall_tx || f == Fault::drop) return;
    // Broadcast until the peer is known, and every so often after, so that
    // a peer whose MAC changed is found again.
    bool broadcast = !peer_known_ || probes_sent_ % kProbeBroadcastEvery == 0;
    Mac dst = broadcast ? Mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff} : peer_mac_;
    std::array<std::byte, kVnetHdrLen + kPathProbeLen> frame{};
    std::array<std::byte, kPathProbeLen> eth;
    build_path_probe(eth, dst, nic_->mac(), opt_.pair_id, self_id_, probes_sent_ + 1);
    std::memcpy(frame.data() + kVnetHdrLen, eth.data(), eth.size());
    iovec iov{frame.data(), frame.size()};
    unsigned refused = 0;
    enter_nic_call();
    auto sent = nic_->send({&iov, 1}, &refused);
    beat();
    if (!sent || *sent != 1 || refused != 0) return;
    stats_->path_probes_sent.store(++probes_sent_, std::memory_order_relaxed);
    publish_probes();
  }

  uint64_t probe_interval_ns() const { return uint64_t{opt_.path_probe_us} * 1000; }

  // At once, not at the next pass: the frontends judge a path in probe
  // intervals, and an idle domain's next pass may be an interval away.
  void publish_probes() {
    for (auto& c : conns_) {
      if (!c || !c->header) continue;
      c->header->path_probes_sent.value.store(probes_sent_, std::memory_order_relaxed);
      c->header->path_probes_seen.value.store(probes_seen_, std::memory_order_relaxed);
    }
  }

  // A frame with the probes' EtherType is never an app's: counted if it is
  // our peer's, and dropped either way.
  bool take_probe(const std::byte* eth, uint32_t len) {
    if (!is_path_probe(eth, len)) return false;
    ++probe_frames_;
    auto p = parse_path_probe(eth, len, opt_.pair_id, self_id_);
    if (!p) return true;
    stats_->path_probes_seen.store(++probes_seen_, std::memory_order_relaxed);
    publish_probes();
    peer_mac_ = p->src;
    peer_known_ = true;
    return true;
  }

  // The guest's word that its NIC lost the carrier (vm/guest_report.hpp);
  // watch_guest acts on it in the same pass.
  bool take_guest_report(const std::byte* eth, uint32_t len) {
    if (!vm::is_guest_report(eth, len)) return false;
    ++probe_frames_;
    auto r = vm::parse_guest_report(eth, len, vm_->spec.report_token);
    if (!r) {
      stats::add(stats_->guest_reports_refused, 1);
      return true;
    }
    if (!r->carrier && !guest_carrier_lost_) guest_carrier_lost_ = mono_ns();
    return true;
  }

  void publish(uint64_t hb) {
    heartbeat_ = hb;
    stats_->heartbeat.store(hb, std::memory_order_relaxed);
    for (auto& c : conns_) {
      if (c && c->header) c->header->heartbeat.value.store(hb, std::memory_order_relaxed);
    }
  }

  // Blocks until a kick, a frame, a control message or the heartbeat period.
  std::optional<bool> sleep() {
    for (auto& c : conns_) {
      if (c && c->active()) ring::prepare_sleep(c->header->driver_sleeping);
    }
    bool pending = false, carrying = false;
    for (auto& c : conns_) {
      if (c && c->active()) {
        carrying = true;
        auto a = c->tx.available();
        pending = pending || !a || *a != 0;
      }
    }
    beat();  // the loops above touch every frontend's region
    arm_nic(carrying);
    int timeout_ms = static_cast<int>((opt_.heartbeat_us + 999) / 1000);
    if (opt_.path_probe_us != 0) {
      // A domain that carries apps is woken by its peer's probe and answers
      // it (probe_path); its own timer is only the fallback for a silent
      // peer, half an interval late, so that it does not fire just before
      // the peer's probe arrives and cost a second wake-up.
      uint64_t now = mono_ns();
      uint64_t next = next_probe_ns_ + (carrying ? probe_interval_ns() / 2 : 0);
      uint64_t due = next > now ? next - now : 0;
      timeout_ms = std::min<int>(timeout_ms, static_cast<int>((due + 999'999) / 1'000'000));
    }
    if (vm_) {
      uint64_t now = mono_ns(), next = vm_->watch->next_due_ns();
      if (vcpu_stops_.stopped()) next = std::min(next, vcpu_stops_.due_ns());
      uint64_t due = next > now ? next - now : 0;
      timeout_ms = std::min<int>(timeout_ms, static_cast<int>((due + 999'999) / 1'000'000));
    }
    auto ok = handle_events(pending || populating_ != 0 ? 0 : timeout_ms);
    for (auto& c : conns_) {
      if (c && c->header) ring::cancel_sleep(c->header->driver_sleeping);
    }
    return ok;
  }

  // A domain that carries no app has nobody to deliver to: what its NIC
  // gets (the peer's path probes, broadcasts) waits for the next pass its
  // own timer or a frontend brings. Waking for every probe cost an idle
  // spare nearly twice the wake-ups, each tens of microseconds of a busy
  // host's CPU. Activation comes on the control socket, which stays armed.
  void arm_nic(bool want) {
    if (want == nic_armed_) return;
    epoll_event ev{want ? static_cast<uint32_t>(EPOLLIN) : 0u, {.u64 = tag(tag_nic, 0)}};
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, nic_->fd(), &ev);
    nic_armed_ = want;
  }

  // nullopt on a fatal error, else whether anything woke us.
  std::optional<bool> handle_events(int timeout_ms) {
    epoll_event ev[32];
    int n = ::epoll_wait(epoll_.get(), ev, 32, timeout_ms);
    if (n < 0 && errno != EINTR) {
      spdlog::error("driver {}: epoll_wait: {}", opt_.name, std::strerror(errno));
      return std::nullopt;
    }
    // Everything done for the events (draining kicks, accepting, mapping a
    // new frontend's region, unmapping a departed one's) is the kernel's
    // work and may take milliseconds at a connection storm: marked like a
    // NIC call, and beaten every few events, so that no frontend takes it
    // for a spin.
    if (n > 0) enter_nic_call();
    unsigned control = 0;
    for (int i = 0; i < n; ++i) {
      if (i % kItemsPerBeat == kItemsPerBeat - 1) enter_nic_call_again();
      auto t = static_cast<Tag>(ev[i].data.u64 >> 32);
      auto id = static_cast<uint32_t>(ev[i].data.u64);
      if (t == tag_kick && id < conns_.size() && conns_[id]) {
        if (!ring::drain(conns_[id]->doorbell.get())) drop(*conns_[id], "frontend closed its doorbell");
        continue;
      }
      // At a start-up storm every frontend's setup waits here; one per pass
      // keeps the packet loop going meanwhile. The rest stay readable and
      // come back on the next call, in epoll's round-robin.
      if (t == tag_vm) return vm_exited();
      if (t == tag_qmp && !on_qmp_events()) return std::nullopt;
      if (t == tag_nic || ++control > kControlPerPass) continue;
      if (t == tag_listen) accept_all();
      if (t == tag_sock && id < conns_.size() && conns_[id]) on_socket(*conns_[id], ev[i].events);
    }
    if (n > 0) beat();
    return n > 0;
  }

  // Asks the guest when due; false once it is judged hung, after telling
  // every frontend why (they fail over and fence this domain).
  // `armed`: the inject control file's word this pass (regflip: the
  // manager's debugger is attached).
  bool watch_guest(Fault armed) {
    uint64_t now = mono_ns();
    if (guest_carrier_lost_ != 0) {
      report_fault(proto::FaultKind::carrier,
                   fmt::format("driver VM: the guest's NIC ({}) lost its carrier", vm_->spec.nic_model));
      return false;
    }
    size_t len = 0;
    if (const std::byte* q = vm_->watch->question(now, &len)) {
      iovec iov{const_cast<std::byte*>(q), len};
      unsigned refused = 0;
      enter_nic_call();
      (void)nic_->send({&iov, 1}, &refused);
      beat();
    }
    if (vcpu_stops_.debugger(armed == Fault::regflip, now)) vm_->watch->heard(now);
    // Stopped vCPUs are judged by who stopped them, not by the silence.
    if (vcpu_stops_.stopped()) {
      auto why = vcpu_stops_.verdict(now);
      if (why.empty()) return true;
      report_fault(proto::FaultKind::hang, why);
      return false;
    }
    if (vcpu_stops_.debugger_attached(now)) return true;
    auto v = vm_->watch->verdict(now);
    if (!v) return true;
    report_fault(v->exiting ? proto::FaultKind::crash : proto::FaultKind::hang,
                 (v->exiting ? "driver VM ending: " : "driver VM hung: ") + v->reason);
    return false;
  }

  // QEMU tells of a guest panic (pvpanic) the moment the guest kernel
  // panics, before it exits; and of vCPUs stopped from outside.
  bool on_qmp_events() {
    auto names = vm_->events->read();
    if (!names) {
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, vm_->events->fd(), nullptr);
      return true;  // QEMU is going: its pidfd says how
    }
    for (const auto& n : *names) {
      if (n == "GUEST_PANICKED" || n == "SHUTDOWN" || n == "RESET") {
        report_fault(proto::FaultKind::crash, "driver VM: QEMU reports " + n + (n == "GUEST_PANICKED" ? " (the guest kernel panicked)" : ""));
        return false;
      }
      // A debugger (regflip's gdbstub) stops the vCPUs too (VcpuStops).
      if (n == "STOP") vcpu_stops_.on_stop(mono_ns());
      if (n == "RESUME" && vcpu_stops_.on_resume()) vm_->watch->heard(mono_ns());
    }
    return true;
  }

  void report_fault(proto::FaultKind kind, const std::string& why) {
    spdlog::error("driver {}: {}; its console: {}", opt_.name, why, vm::console_tail(vm_->console.get()));
    proto::Fault fault{kind, why};
    for (auto& c : conns_) {
      if (c) (void)proto::send_message(c->sock.get(), fault);
    }
  }

  std::nullopt_t vm_exited() {
    std::string why = vm_->qemu.reap();
    spdlog::error("driver {}: driver VM {}; its console: {}", opt_.name, why,
                  vm::console_tail(vm_->console.get()));
    return std::nullopt;
  }

  void accept_all() {
    for (;;) {
      UniqueFd s(::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!s) return;
      uint32_t id = free_slot();
      if (id >= stats::kMaxConnections) {
        proto::send_message(s.get(), proto::Refuse{1, "driver domain serves too many frontends"});
        continue;
      }
      auto c = std::make_unique<Connection>();
      c->id = id;
      c->sock = std::move(s);
      epoll_event ev{EPOLLIN | EPOLLRDHUP, {.u64 = tag(tag_sock, id)}};
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c->sock.get(), &ev);
      conns_[id] = std::move(c);
    }
  }

  uint32_t free_slot() {
    if (conns_.size() < stats::kMaxConnections) conns_.resize(stats::kMaxConnections);
    for (uint32_t i = 0; i < conns_.size(); ++i) {
      if (!conns_[i]) return i;
    }
    return stats::kMaxConnections;
  }

  void on_socket(Connection& c, uint32_t events) {
    if (events & EPOLLIN) {
      auto msg = proto::recv_message(c.sock.get(), 0);
      if (!msg) return drop(c, msg.error().message);
      if (auto s = on_message(c, *msg); !s) {
        proto::send_message(c.sock.get(), proto::Refuse{2, s.error().message});
        return drop(c, s.error().message);
      }
      return;
    }
    if (events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)) drop(c, "frontend hung up");
  }

  Status on_message(Connection& c, proto::Received& in) {
    if (auto* h = std::get_if<proto::Hello>(&in.message)) return on_hello(c, *h);
    if (auto* s = std::get_if<proto::Setup>(&in.message)) return on_setup(c, *s, in.fds);
    if (auto* a = std::get_if<proto::Activate>(&in.message)) {
      if (c.state != Connection::State::ready) return fail("activate before setup");
      c.role = a->role;
      c.stats->role.store(static_cast<uint32_t>(c.role), std::memory_order_relaxed);
      spdlog::info("driver {}: {} is now {}", opt_.name, c.app, proto::role_name(c.role));
      return proto::send_message(c.sock.get(), proto::ActivateAck{c.role});
    }
    return fail("unexpected {} message", proto::type_name(in.message));
  }

  Status on_hello(Connection& c, const proto::Hello& h) {
    if (c.state != Connection::State::awaiting_hello) return fail("hello sent twice");
    if (inject_ && inject_->armed() == Fault::hello_truncated) return answer_hello_truncated(c);
    if (h.min_version > proto::kVersion || h.max_version < proto::kVersion) {
      return fail("frontend speaks versions {}..{}, this driver speaks {}", h.min_version,
                  h.max_version, proto::kVersion);
    }
    c.app = h.app_name;
    c.state = Connection::State::awaiting_setup;
    proto::HelloAck ack;
    ack.features =
        h.features & (proto::kFeatureHeartbeat | (nic_->vnet_hdr() ? proto::kFeatureVnetHdr : 0));
    ack.driver_name = opt_.name;
    ack.nic_mac = nic_->mac();
    ack.nic_mtu = nic_->mtu();
    return proto::send_message(c.sock.get(), ack);
  }

  Status on_setup(Connection& c, const proto::Setup& s, std::vector<UniqueFd>& fds) {
    if (c.state != Connection::State::awaiting_setup) return fail("setup before hello");
    if (fds.size() != 2) return fail("setup carries {} descriptors, expected 2", fds.size());
    auto layout = ring::compute_layout(s.tx_slots, s.rx_slots, s.slot_size);
    if (!layout) return tl::unexpected(layout.error());
    if (s.region_size != layout->region_size) return fail("region size disagrees with layout");
    if (s.mtu > nic_->mtu()) {
      return fail("app MTU {} exceeds the NIC's MTU {}: raise the NIC's MTU", s.mtu, nic_->mtu());
    }
    for (auto& o : conns_) {
      if (o && o.get() != &c && o->state == Connection::State::ready && o->mac == s.mac) {
        return fail("MAC {} is already served for {}", format_mac(s.mac), o->app);
      }
    }
    if (auto st = map_region(c, fds[0].get(), *layout); !st) return st;
    c.doorbell = std::move(fds[1]);
    c.mac = s.mac;
    c.role = s.role;
    c.layout = *layout;
    c.state = Connection::State::populating;
    ++populating_;
    return populate(c);
  }

  // A new frontend's region (tens of MB) is mapped in a slice per pass, not
  // at once: MAP_POPULATE of the whole region held this loop, and every
  // other app's traffic, for 20 ms and more on a loaded host. Populated
  // before the SetupAck all the same: a spare's first use is a failover,
  // and faulting in thousands of pages then would stall its first passes.
  Status populate(Connection& c) {
    size_t end = std::min(c.populated + kPopulateSlice, c.region.size());
    enter_nic_call();
    int rc = ::madvise(c.region.bytes() + c.populated, end - c.populated, MADV_POPULATE_WRITE);
    beat();
    // EINVAL: a kernel before 5.14; the pages fault in on first use instead.
    if (rc != 0 && errno != EINVAL) return fail_errno("populating the ring region");
    c.populated = rc == 0 ? end : c.region.size();
    if (c.populated < c.region.size()) return {};
    --populating_;
    return finish_setup(c);
  }

  void populate_due() {
    if (populating_ == 0) return;
    for (auto& c : conns_) {
      if (!c || c->state != Connection::State::populating) continue;
      if (auto st = populate(*c); !st) drop(*c, st.error().message);
    }
  }

  Status finish_setup(Connection& c) {
    auto h = ring::attach_region(c.region.data(), c.region.size(), c.layout);
    if (!h) return tl::unexpected(h.error());
    c.header = *h;
    c.rx = ring::Producer(ring::rx_ring(c.region.data(), c.layout));
    c.tx = ring::Consumer(ring::tx_ring(c.region.data(), c.layout));
    c.state = Connection::State::ready;
    c.header->passes.value.store(passes_, std::memory_order_release);
    c.header->rx_overruns.value.store(overruns_, std::memory_order_release);
    c.header->path_probes_sent.value.store(probes_sent_, std::memory_order_relaxed);
    c.header->path_probes_seen.value.store(probes_seen_, std::memory_order_relaxed);
    epoll_event ev{EPOLLIN, {.u64 = tag(tag_kick, c.id)}};
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c.doorbell.get(), &ev);
    publish_stats(c);
    spdlog::info("driver {}: {} connected as {} ({})", opt_.name, c.app, proto::role_name(c.role),
                 format_mac(c.mac));
    return proto::send_message(c.sock.get(), proto::SetupAck{c.id});
  }

  Status map_region(Connection& c, int memfd, const ring::Layout& layout) {
    // An unsealed region could be shrunk under us and fault the driver.
    int seals = ::fcntl(memfd, F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK)) return fail("ring region is not sealed");
    struct stat st {};
    if (::fstat(memfd, &st) != 0 || static_cast<size_t>(st.st_size) < layout.region_size) {
      return fail("ring region is smaller than the negotiated layout");
    }
    void* p = ::mmap(nullptr, layout.region_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (p == MAP_FAILED) return fail_errno("mapping the ring region");
    c.region = Mapping(p, layout.region_size);
    return {};
  }

  void publish_stats(Connection& c) {
    auto& s = stats_->conns[c.id];
    s.rx_frames = 0;
    s.rx_bytes = 0;
    s.tx_frames = 0;
    s.tx_bytes = 0;
    s.rx_drops = 0;
    s.malformed = 0;
    stats::set_name(s.app, c.app);
    std::memcpy(s.mac, c.mac.data(), 6);
    s.role.store(static_cast<uint32_t>(c.role), std::memory_order_relaxed);
    s.in_use.store(1, std::memory_order_release);
    c.stats = &s;
    stats::add(stats_->connections, 1);
  }

  void drop(Connection& c, const std::string& why) {
    spdlog::info("driver {}: dropping connection of {}: {}", opt_.name,
                 c.app.empty() ? "a frontend" : c.app, why);
    if (c.stats) {
      c.stats->in_use.store(0, std::memory_order_release);
      stats_->connections.store(stats_->connections.load() - 1, std::memory_order_relaxed);
    }
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.sock.get(), nullptr);
    if (c.doorbell) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.doorbell.get(), nullptr);
    if (c.state == Connection::State::populating) --populating_;
    conns_[c.id].reset();
  }

  // Reads up to kNicBatches batches: a backlog (a start-up storm) drains in
  // a few passes instead of queueing in the NIC for hundreds of ms.
  unsigned poll_nic(Fault f) {
    unsigned total = 0;
    for (unsigned i = 0; i < kNicBatches; ++i) {
      unsigned got = poll_nic_batch(f);
      total += got;
      if (got < kBatch) {
        drained();
        break;
      }
    }
    return total;
  }

  // The NIC had no more to give in this pass: whatever reached it before
  // the pass is delivered. The frontends' receive-path check waits for this
  // evidence before it calls an answer lost. A NIC whose receive stopped
  // (the stall-rx fault) gives nothing, and so says drained at once.
  void drained() {
    for (auto& c : conns_) {
      if (c && c->header) c->header->rx_drained_pass.value.store(passes_, std::memory_order_release);
    }
  }

  unsigned poll_nic_batch(Fault f) {
    if (f == Fault::stall_rx) return 0;
    uint32_t lens[kBatch];
    enter_nic_call();
    auto got = nic_->receive(rx_iov_, lens);
    beat();
    if (!got || *got == 0) return 0;
    if (vm_) vm_->watch->heard(mono_ns());
    if (*got == kBatch) account_overruns();
    if (f == Fault::drop) return *got;
    for (unsigned i = 0; i < *got; ++i) {
      // A broadcast is copied to every frontend: a batch of them is long
      // enough for the host's interrupt work, charged to whoever runs, to
      // look like a spin. Beating now and then keeps it told apart.
      if (i % kItemsPerBeat == kItemsPerBeat - 1) beat();
      if (lens[i] < kMinFrame) continue;
      const auto* frame = static_cast<const std::byte*>(rx_iov_[i].iov_base);
      if (vm_ && take_guest_report(frame + kVnetHdrLen, lens[i] - kVnetHdrLen)) continue;
      if (opt_.path_probe_us != 0 && take_probe(frame + kVnetHdrLen, lens[i] - kVnetHdrLen)) continue;
      if (vm_ && vm_->watch->is_answer(frame + kVnetHdrLen, lens[i] - kVnetHdrLen)) {
        ++probe_frames_;  // no traffic either
        continue;
      }
      stats::add(stats_->nic_rx_frames, 1);
      stats::add(stats_->nic_rx_bytes, lens[i] - kVnetHdrLen);
      deliver(frame, lens[i]);
    }
    // A batch of broadcasts for 64 frontends is thousands of copies and up
    // to 64 kicks (each a syscall): beaten and marked like a NIC call, so
    // that its length is not taken for a spin.
    enter_nic_call();
    for (auto& c : conns_) {
      if (!c || c->rx_pending == 0) continue;
      c->rx.publish(c->rx_pending);
      c->rx_pending = 0;
      c->rx_free = 0;  // recomputed from the ring on the next frame
      if (ring::peer_needs_kick(c->header->front_sleeping)) ring::kick(c->doorbell.get());
    }
    beat();
    return *got;
  }

  void deliver(const std::byte* frame, uint32_t len) {
    const auto* dst = reinterpret_cast<const uint8_t*>(frame + kVnetHdrLen);
    bool group = dst[0] & 1;
    bool claimed = false;
    for (auto& c : conns_) {
      if (!c || !c->active()) continue;
      if (!group && std::memcmp(dst, c->mac.data(), 6) != 0) continue;
      claimed = true;
      copy_to(*c, frame, len);
      if (!group) break;
    }
    if (!claimed && !group) stats::add(stats_->rx_unclaimed, 1);
  }

  void copy_to(Connection& c, const std::byte* frame, uint32_t len) {
    if (c.rx_pending == c.rx_free) {
      // Publish what this batch filled so the free count below is exact.
      if (c.rx_pending != 0) c.rx.publish(std::exchange(c.rx_pending, 0u));
      auto f = c.rx.free_slots();
      if (!f) return drop(c, f.error().message);
      c.rx_free = *f;
    }
    if (c.rx_pending == c.rx_free || len > c.rx.slot_size()) {
      stats::add(c.stats->rx_drops, 1);
      return;
    }
    std::memcpy(c.rx.slot(c.rx_pending), frame, len);
    c.rx.set(c.rx_pending, ring::Desc{0, len});
    ++c.rx_pending;
    stats::add(c.stats->rx_frames, 1);
    stats::add(c.stats->rx_bytes, len - kVnetHdrLen);
  }

  unsigned poll_tx(bool drop_all) {
    unsigned work = 0;
    for (auto& c : conns_) {
      if (c && c->active()) work += drop_all ? discard_tx(*c) : poll_tx(*c);
    }
    return work;
  }

  unsigned discard_tx(Connection& c) {
    auto avail = c.tx.available();
    if (!avail || *avail == 0) return 0;
    c.tx.release(*avail);
    return *avail;
  }

  // Sends what one frontend posted; frames it sends with a foreign source MAC
  // or a malformed descriptor are counted and skipped.
  unsigned poll_tx(Connection& c) {
    auto avail = c.tx.available();
    if (!avail) {
      drop(c, avail.error().message);
      return 1;
    }
    unsigned n = std::min<unsigned>(*avail, kBatch);
    if (n == 0) return 0;
    iovec iov[kBatch];
    uint32_t ring_pos[kBatch];  // ring entries consumed once iov[j] is sent
    unsigned count = 0;
    uint64_t bytes = 0;
    for (unsigned i = 0; i < n; ++i) {
      auto f = c.tx.frame(i);
      if (!f || f->len < kMinFrame ||
          std::memcmp(f->data + kVnetHdrLen + 6, c.mac.data(), 6) != 0) {
        stats::add(c.stats->malformed, 1);
        continue;
      }
      iov[count] = {const_cast<std::byte*>(f->data), f->len};
      ring_pos[count++] = i + 1;
      bytes += f->len - kVnetHdrLen;
    }
    unsigned refused = 0;
    unsigned sent = 0;
    if (count > 0) {
      enter_nic_call();
      auto r = nic_->send({iov, count}, &refused);
      beat();
      if (!r) spdlog::error("driver {}: {}", opt_.name, r.error().message);
      sent = r.value_or(0);
    }
    unsigned consumed = count == 0 ? n : (sent == count ? n : (sent == 0 ? 0 : ring_pos[sent - 1]));
    if (consumed == 0) {
      c.header->tx_busy_pass.value.store(passes_, std::memory_order_release);
      return 0;
    }
    c.tx.release(consumed);
    stats::add(c.stats->tx_frames, sent - refused);
    if (sent != count) {
      bytes = 0;
      for (unsigned j = 0; j < sent; ++j) bytes += iov[j].iov_len - kVnetHdrLen;
    }
    stats::add(c.stats->tx_bytes, bytes);
    stats::add(stats_->nic_tx_bytes, bytes);
    stats::add(stats_->nic_tx_frames, sent - refused);
    stats::add(stats_->nic_tx_errors, refused);
    if (ring::peer_needs_kick(c.header->front_sleeping)) ring::kick(c.doorbell.get());
    return consumed;
  }

  DriverOptions opt_;
  std::optional<inject::ControlFile> inject_;
  std::vector<char*> leaked_;  // the leak fault's allocations, kept reachable
  std::unique_ptr<Nic> nic_;
  UniqueFd listen_;
  UniqueFd epoll_;
  stats::DriverStatsFile stats_;
  std::vector<std::byte> rx_bufs_;
  iovec rx_iov_[kBatch]{};
  std::vector<std::unique_ptr<Connection>> conns_;
  unsigned populating_ = 0;  // connections in State::populating
  uint64_t heartbeat_ = 0;
  uint64_t passes_ = 0;
  uint64_t overruns_ = 0;
  uint64_t overruns_asked_ns_ = 0;
  bool deaf_ = false;  // the deaf fault: control sockets no longer watched
  uint32_t self_id_ = path_probe_sender_id(opt_.name);
  uint64_t next_probe_ns_ = 0;
  uint64_t probes_sent_ = 0;
  uint64_t probes_seen_ = 0;
  unsigned probe_frames_ = 0;  // probes read in this pass
  bool nic_armed_ = true;      // the NIC's fd wakes the loop (arm_nic)
  Mac peer_mac_{};
  bool peer_known_ = false;
  std::optional<VmDomain> vm_;
  uint64_t guest_carrier_lost_ = 0;  // when the guest said so; 0: it did not
  VcpuStops vcpu_stops_{0, 0};  // set in attach_vm
};

Result<UniqueFd> listen_on(const std::string& path) {
  auto s = bind_unix(SOCK_SEQPACKET, path, "frontend socket");
  if (!s) return s;
  if (::listen(s->get(), 64) != 0) return fail_errno("listening on {}", path);
  return s;
}

Result<std::unique_ptr<Nic>> open_nic(const DriverOptions& o, std::optional<VmDomain>& vm) {
  if (!o.vm.enabled) return open_af_packet(o.nic);
  auto d = boot_vm_domain(o.name, o.nic, o.vm, STDERR_FILENO);
  if (!d) return tl::unexpected(d.error());
  auto link = std::move(d->link);
  vm = std::move(*d);
  return link;
}

// Started by the manager, a domain is pid 1 of a pid namespace of its own;
// /proc is still the host's here, and its "self" names us as the host sees us.
pid_t host_pid() {
  char buf[32] = {};
  ssize_t n = ::readlink("/proc/self", buf, sizeof buf - 1);
  return n > 0 ? static_cast<pid_t>(std::strtol(buf, nullptr, 10)) : ::getpid();
}

// As pid 1 of its pid namespace the domain gets no signal it has no handler
// for: SIGTERM and SIGINT would be ignored.
void end_on_terminate_as_init() {
  if (::getpid() != 1) return;
  struct sigaction sa {};
  sa.sa_handler = [](int sig) { ::_exit(128 + sig); };
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGTERM, SIGINT}) ::sigaction(sig, &sa, nullptr);
}

Result<Driver*> setup(const DriverOptions& o, std::unique_ptr<Driver>& out) {
  if (auto s = o.netns.empty() ? Status{} : netlink::enter_netns(o.netns); !s) return tl::unexpected(s.error());
  std::optional<VmDomain> vm;
  auto nic = open_nic(o, vm);
  if (!nic) return tl::unexpected(nic.error());
  auto listen = listen_on(o.socket);
  if (!listen) return tl::unexpected(listen.error());
  auto st = stats::DriverStatsFile::create(o.stats, stats::kDriverMagic);
  if (!st) return tl::unexpected(st.error());
  stats::set_name((*st)->name, o.name);
  stats::set_name((*st)->nic, o.nic);
  (*st)->nic_fd.store(static_cast<uint64_t>((*nic)->fd()) + 1);
  (*st)->pid.store(static_cast<uint64_t>(host_pid()));
  std::optional<inject::ControlFile> inject;
  if (!o.inject.empty()) {
    auto f = inject::ControlFile::open(o.inject);
    if (!f) return tl::unexpected(f.error());
    inject = std::move(*f);
  }
  UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep) return fail_errno("creating epoll");
  epoll_event ev{EPOLLIN, {.u64 = tag(tag_nic, 0)}};
  ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, (*nic)->fd(), &ev);
  ev = {EPOLLIN, {.u64 = tag(tag_listen, 0)}};
  ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, listen->get(), &ev);
  out = std::make_unique<Driver>(o, std::move(*nic), std::move(*listen), std::move(ep),
                                 std::move(*st), std::move(inject));
  if (vm) {
    if (auto s = out->attach_vm(std::move(*vm)); !s) return tl::unexpected(s.error());
  }
  return out.get();
}

}  // namespace

int run_driver(const DriverOptions& o) {
  auto crash_stack = hang_up_on_crash();
  end_on_terminate_as_init();
  if (o.vm.enabled && o.uid != 0) {
    spdlog::error("driver {}: --uid is for process domains: a driver VM's QEMU is its child", o.name);
    return 2;
  }
  std::unique_ptr<Driver> driver;
  auto d = setup(o, driver);
  if (!d) {
    spdlog::error("driver {}: {}", o.name, d.error().message);
    return 1;
  }
  auto realtime = serve_at(o.serve);
  if (!realtime) spdlog::warn("driver {}: {}", o.name, realtime.error().message);
  if (o.sandbox) {
    sandbox::Policy policy;
    policy.memory_limit_bytes = o.memory_limit_mb << 20;
#if NG_ASAN
    // AddressSanitizer reserves terabytes of address space: no RLIMIT_AS fits it.
    policy.memory_limit_bytes = 0;
    spdlog::warn("driver {}: AddressSanitizer build: no memory limit ({} MiB asked)", o.name, o.memory_limit_mb);
#endif
    // A VM domain reaps and, on its way out, kills its own QEMU, through
    // the pidfd it holds; it has no other child and can signal nobody else.
    if (o.vm.enabled) policy.extra_syscalls = {SCMP_SYS(wait4), SCMP_SYS(pidfd_send_signal)};
    policy.uid = o.uid;
    spdlog::info("driver {}: sandbox: {}", o.name, sandbox::describe(policy));
    if (auto s = sandbox::apply(policy); !s) {
      spdlog::error("driver {}: sandbox: {}", o.name, s.error().message);
      return 1;
    }
  }
  spdlog::info("driver {}: serving NIC {} on {}", o.name, o.nic, o.socket);
  return (*d)->run(o.spin_us, realtime.value_or(0));
}

}  // namespace ng::driver

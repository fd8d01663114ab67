#include "manager/systemd_job.hpp"

#include <systemd/sd-bus.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>

#include "common/clock.hpp"

namespace ng::manager {
namespace {

constexpr const char* kSystemd = "org.freedesktop.systemd1";
constexpr const char* kPrivateSocket = "/run/systemd/private";

// Closed without a flush: sd_bus_flush_close_unref() waits for the
// connection to finish authenticating and drain its write queue, with no
// deadline of ours, which is what a bus that does not answer would make it
// do. Nothing is left to send once we stop waiting for the answers.
struct BusClose {
  void operator()(sd_bus* b) const { sd_bus_close_unref(b); }
};
using Bus = std::unique_ptr<sd_bus, BusClose>;
struct MessageUnref {
  void operator()(sd_bus_message* m) const { sd_bus_message_unref(m); }
};
using Message = std::unique_ptr<sd_bus_message, MessageUnref>;
struct SlotUnref {
  void operator()(sd_bus_slot* s) const { sd_bus_slot_unref(s); }
};
using Slot = std::unique_ptr<sd_bus_slot, SlotUnref>;

std::string errno_text(int negative) { return std::strerror(-negative); }

// One method call in flight; its answer lands here from sd_bus_process().
struct Call {
  std::string what;  // for messages: "GetUnitByPID(123)"
  bool done = false;
  Message reply;
  std::string error;
  Slot slot;  // declared last: unref'd first, so no answer can land in a dead Call
};

int on_reply(sd_bus_message* m, void* userdata, sd_bus_error*) {
  auto* c = static_cast<Call*>(userdata);
  c->done = true;
  if (const sd_bus_error* e = sd_bus_message_get_error(m)) {
    c->error = fmt::format("{}: {}", e->name ? e->name : "error", e->message ? e->message : "(no message)");
  } else {
    c->reply.reset(sd_bus_message_ref(m));
  }
  return 1;
}

class Session {
 public:
  Session(Bus bus, uint64_t deadline_ns) : bus_(std::move(bus)), deadline_ns_(deadline_ns) {}

  // Sends a call (its arguments appended by `append`), answered later.
  template <typename Append>
  Status send(Call& call, const char* path, const char* interface, const char* member, Append&& append) {
    sd_bus_message* raw = nullptr;
    int r = sd_bus_message_new_method_call(bus_.get(), &raw, kSystemd, path, interface, member);
    if (r < 0) return fail("{}: {}", call.what, errno_text(r));
    Message m(raw);
    if ((r = append(m.get())) < 0) return fail("{}: {}", call.what, errno_text(r));
    sd_bus_slot* slot = nullptr;
    r = sd_bus_call_async(bus_.get(), &slot, m.get(), on_reply, &call, remaining_us());
    if (r < 0) return fail("{}: {}", call.what, errno_text(r));
    call.slot.reset(slot);
    return {};
  }

  Status send_get(Call& call, const std::string& path, const char* interface, const char* property) {
    return send(call, path.c_str(), "org.freedesktop.DBus.Properties", "Get",
                [&](sd_bus_message* m) { return sd_bus_message_append(m, "ss", interface, property); });
  }

  // Runs the connection until every call is answered or the deadline passes.
  Status wait(std::initializer_list<Call*> calls) {
    auto all_done = [&] {
      for (Call* c : calls) {
        if (!c->done) return false;
      }
      return true;
    };
    while (!all_done()) {
      int r = sd_bus_process(bus_.get(), nullptr);
      if (r < 0) return fail("the connection failed: {}", errno_text(r));
      if (r > 0) continue;
      if (mono_ns() >= deadline_ns_) {
        for (Call* c : calls) {
          if (!c->done) return fail("{}: no answer in time", c->what);
        }
      }
      r = sd_bus_wait(bus_.get(), remaining_us());
      if (r < 0) return fail("the connection failed: {}", errno_text(r));
    }
    for (Call* c : calls) {
      if (!c->error.empty()) return fail("{}: {}", c->what, c->error);
    }
    return {};
  }

 private:
  uint64_t remaining_us() const {
    uint64_t now = mono_ns();
    return now >= deadline_ns_ ? 1 : (deadline_ns_ - now) / 1000 + 1;
  }

  Bus bus_;
  uint64_t deadline_ns_;
};

// A variant holding `type` ("s", "(uo)", ...), entered for reading.
Status enter_variant(Call& c, const char* type) {
  int r = sd_bus_message_enter_container(c.reply.get(), 'v', type);
  if (r < 0) return fail("{}: the answer is not a variant of {}: {}", c.what, type, errno_text(r));
  return {};
}

Result<SystemdJob> ask(Bus bus, pid_t pid, uint64_t deadline_ns) {
  Session s(std::move(bus), deadline_ns);
  Call unit{fmt::format("GetUnitByPID({})", pid)};
  if (auto st = s.send(unit, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "GetUnitByPID",
                       [&](sd_bus_message* m) { return sd_bus_message_append(m, "u", static_cast<uint32_t>(pid)); });
      !st)
    return tl::unexpected(st.error());
  if (auto st = s.wait({&unit}); !st) return tl::unexpected(st.error());
  const char* path = nullptr;
  if (int r = sd_bus_message_read(unit.reply.get(), "o", &path); r < 0 || !path)
    return fail("{}: the answer is not an object path", unit.what);
  std::string unit_path = path;

  Call id{"the Id of " + unit_path}, job{"the Job of " + unit_path};
  if (auto st = s.send_get(id, unit_path, "org.freedesktop.systemd1.Unit", "Id"); !st) return tl::unexpected(st.error());
  if (auto st = s.send_get(job, unit_path, "org.freedesktop.systemd1.Unit", "Job"); !st) return tl::unexpected(st.error());
  if (auto st = s.wait({&id, &job}); !st) return tl::unexpected(st.error());
  SystemdJob out;
  const char* name = nullptr;
  if (auto st = enter_variant(id, "s"); !st) return tl::unexpected(st.error());
  if (sd_bus_message_read(id.reply.get(), "s", &name) < 0 || !name) return fail("{}: not a string", id.what);
  out.unit = name;
  const char* job_path = nullptr;
  if (auto st = enter_variant(job, "(uo)"); !st) return tl::unexpected(st.error());
  if (sd_bus_message_read(job.reply.get(), "(uo)", &out.id, &job_path) < 0 || !job_path)
    return fail("{}: not a (uo)", job.what);
  if (out.id == 0) return out;

  Call type{fmt::format("the JobType of job {} ({})", out.id, job_path)};
  if (auto st = s.send_get(type, job_path, "org.freedesktop.systemd1.Job", "JobType"); !st)
    return tl::unexpected(st.error());
  if (auto st = s.wait({&type}); !st) return tl::unexpected(st.error());
  const char* t = nullptr;
  if (auto st = enter_variant(type, "s"); !st) return tl::unexpected(st.error());
  if (sd_bus_message_read(type.reply.get(), "s", &t) < 0 || !t) return fail("{}: not a string", type.what);
  out.type = t;
  return out;
}

Result<Bus> open_system_bus() {
  sd_bus* raw = nullptr;
  int r = sd_bus_open_system(&raw);
  if (r < 0) {
    const char* address = std::getenv("DBUS_SYSTEM_BUS_ADDRESS");
    return fail("cannot connect to the system bus {}: {}", address ? address : "unix:path=/run/dbus/system_bus_socket",
                errno_text(r));
  }
  return Bus(raw);
}

// systemd's own socket, without a bus daemon in between (root only).
Result<Bus> open_private() {
  sd_bus* raw = nullptr;
  int r = sd_bus_new(&raw);
  if (r < 0) return fail("sd_bus_new: {}", errno_text(r));
  Bus bus(raw);
  std::string address = fmt::format("unix:path={}", kPrivateSocket);
  if ((r = sd_bus_set_address(bus.get(), address.c_str())) < 0 || (r = sd_bus_start(bus.get())) < 0)
    return fail("cannot connect to {}: {}", kPrivateSocket, errno_text(r));
  return bus;
}

}  // namespace

bool under_systemd() {
  for (const char* name : {"NOTIFY_SOCKET", "INVOCATION_ID"}) {
    const char* v = std::getenv(name);
    if (v && *v) return true;
  }
  return false;
}

bool is_restart_job(const std::string& type) { return type == "restart" || type == "try-restart"; }

Result<SystemdJob> systemd_job_of(pid_t pid, std::chrono::milliseconds limit) {
  uint64_t deadline = mono_ns() + static_cast<uint64_t>(limit.count()) * 1'000'000;
  std::string errors;
  const char* env = std::getenv("DBUS_SYSTEM_BUS_ADDRESS");
  if ((!env || !*env) && ::access(kPrivateSocket, F_OK) == 0) {
    auto bus = open_private();
    if (bus) {
      auto job = ask(std::move(*bus), pid, deadline);
      if (job) return job;
      errors = fmt::format("{}: {}", kPrivateSocket, job.error().message);
    } else {
      errors = bus.error().message;
    }
    if (mono_ns() >= deadline) return fail("{}", errors);
  }
  auto bus = open_system_bus();
  if (!bus) return fail("{}{}", errors.empty() ? "" : errors + "; ", bus.error().message);
  auto job = ask(std::move(*bus), pid, deadline);
  if (!job) return fail("{}{}", errors.empty() ? "" : errors + "; ", job.error().message);
  return job;
}

}  // namespace ng::manager

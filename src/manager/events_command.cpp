// `nicguard events`: prints the event log (STATE_DIR/events.jsonl) and, with
// --follow, what is appended to it, like tail -f.
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/signal_latch.hpp"
#include "manager/config.hpp"
#include "manager/locate.hpp"

namespace {

using Emit = std::function<void(std::string_view)>;

struct EventsOptions {
  std::string config;
  std::string state_dir;
  bool follow = false;
  std::vector<std::string> events;
  int64_t since_ms = -1;  // none
};

// "2026-01-01T12:00:00.000000Z", as ng::iso8601 writes it, to ns since the
// epoch; nullopt for anything else.
std::optional<uint64_t> parse_wall(const std::string& s) {
  tm t{};
  int us = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%6dZ", &t.tm_year, &t.tm_mon, &t.tm_mday,
                  &t.tm_hour, &t.tm_min, &t.tm_sec, &us) != 7) {
    return std::nullopt;
  }
  t.tm_year -= 1900;
  t.tm_mon -= 1;
  time_t secs = ::timegm(&t);
  if (secs < 0 || us < 0) return std::nullopt;
  return static_cast<uint64_t>(secs) * 1'000'000'000ULL + static_cast<uint64_t>(us) * 1000;
}

// Which lines to print. The wall-clock stamp, not the monotonic one, dates a
// line: the log outlives reboots, which restart the monotonic clock.
class Filter {
 public:
  Filter(const std::vector<std::string>& events, std::optional<uint64_t> since_wall_ns)
      : events_(events.begin(), events.end()), since_(since_wall_ns) {}

  // A line that is not a JSON object (torn by a full disk, say) matches no
  // filter; it is shown only when there is none.
  bool keep(std::string_view line) const {
    if (events_.empty() && !since_) return true;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object()) return false;
    if (!events_.empty()) {
      auto it = j.find("event");
      bool named = it != j.end() && it->is_string() && events_.contains(it->get<std::string>());
      if (!named) return false;
    }
    if (since_) {
      auto it = j.find("ts_wall");
      auto when =
          it != j.end() && it->is_string() ? parse_wall(it->get<std::string>()) : std::nullopt;
      if (!when || *when < *since_) return false;
    }
    return true;
  }

 private:
  std::set<std::string, std::less<>> events_;
  std::optional<uint64_t> since_;
};

ng::Status open_error(const std::string& path) {
  if (errno == EACCES || errno == EPERM) {
    return ng::fail(
        "permission denied reading {}: the event log is root's (mode 0600); run as root", path);
  }
  return ng::fail_errno("opening the event log {}", path);
}

// Reads the complete lines of a file that grows by appends. A file that is
// replaced, truncated or removed is started over (or waited for).
class Tail {
 public:
  explicit Tail(std::string path) : path_(std::move(path)) {}

  // false, and no error, when the file does not exist (yet).
  ng::Result<bool> open();
  bool is_open() const { return static_cast<bool>(fd_); }
  // Emits every complete line appended since the last call.
  ng::Status poll(const Emit& emit);
  // The last line, when the file does not end with a newline.
  std::string rest() { return std::exchange(partial_, {}); }

 private:
  ng::Status drain(const Emit& emit);
  ng::Result<bool> moved_on() const;

  std::string path_;
  ng::UniqueFd fd_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  std::string partial_;
};

ng::Result<bool> Tail::open() {
  ng::UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return false;
    return tl::unexpected(open_error(path_).error());
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ng::fail_errno("checking the event log {}", path_);
  if (!S_ISREG(st.st_mode)) {
    return ng::fail("{} is not a regular file; is it the state directory's events.jsonl?", path_);
  }
  fd_ = std::move(fd);
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  partial_.clear();
  return true;
}

ng::Status Tail::drain(const Emit& emit) {
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::read(fd_.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ng::fail_errno("reading the event log {}", path_);
    if (n == 0) return {};
    partial_.append(buf, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
      emit(std::string_view(partial_).substr(start, nl - start));
    }
    partial_.erase(0, start);
  }
}

// Whether the path now names another file than the one being read, none,
// or a truncated one (everything read so far is gone).
ng::Result<bool> Tail::moved_on() const {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    if (errno == ENOENT) return true;
    return ng::fail_errno("checking the event log {}", path_);
  }
  off_t pos = ::lseek(fd_.get(), 0, SEEK_CUR);
  return st.st_dev != dev_ || st.st_ino != ino_ || st.st_size < pos;
}

ng::Status Tail::poll(const Emit& emit) {
  if (fd_) {
    if (auto s = drain(emit); !s) return s;
    auto moved = moved_on();
    if (!moved) return tl::unexpected(moved.error());
    if (!*moved) return {};
    fd_.reset();
  }
  auto opened = open();
  if (!opened) return tl::unexpected(opened.error());
  return *opened ? drain(emit) : ng::Status{};
}

int print_once(Tail& tail, const Filter& filter, const std::string& path) {
  auto opened = tail.open();
  if (!opened || !*opened) {
    fmt::print(stderr, "nicguard events: {}\n",
               opened ? fmt::format("no event log at {}: the manager creates it when it starts "
                                    "(nicguard manager -c FILE); --follow waits for it",
                                    path)
                      : opened.error().message);
    return 1;
  }
  auto s = tail.poll([&](std::string_view line) {
    if (filter.keep(line)) fmt::print("{}\n", line);
  });
  if (!s) {
    fmt::print(stderr, "nicguard events: {}\n", s.error().message);
    return 1;
  }
  if (std::string last = tail.rest(); !last.empty() && filter.keep(last)) fmt::print("{}\n", last);
  return 0;
}

// Polls every 100 ms: cheaper to get right than inotify across the file
// being created, replaced or truncated, and quick enough for a person.
int follow(Tail& tail, const Filter& filter, const std::string& path) {
  ng::SignalLatch latch;  // SIGINT/SIGTERM/SIGHUP end the loop, exit status 0
  bool told = false;
  Emit print = [&](std::string_view line) {
    if (!filter.keep(line)) return;
    fmt::print("{}\n", line);
    std::fflush(stdout);
  };
  while (!latch.fired()) {
    if (auto s = tail.poll(print); !s) {
      fmt::print(stderr, "nicguard events: {}\n", s.error().message);
      return 1;
    }
    if (!tail.is_open() && !told) {
      fmt::print(stderr,
                 "nicguard events: waiting for {} (the manager creates it when it starts)\n", path);
      told = true;
    }
    timespec pause{0, 100'000'000};
    ::nanosleep(&pause, nullptr);
  }
  return 0;
}

std::optional<std::string> log_path(const EventsOptions& o) {
  if (!o.state_dir.empty()) return o.state_dir + "/events.jsonl";
  if (o.config.empty()) {
    auto only = ng::manager::only_running_manager();
    if (!only) {
      fmt::print(stderr, "nicguard events: {} (or give --state-dir DIR)\n", only.error().message);
      return std::nullopt;
    }
    return only->state_dir + "/events.jsonl";
  }
  auto config = ng::manager::load_config(o.config);
  if (!config) {
    fmt::print(stderr, "nicguard events: {}\n", config.error().message);
    return std::nullopt;
  }
  return config->path("events.jsonl");
}

int run_events(const EventsOptions& o) {
  auto path = log_path(o);
  if (!path) return 2;
  std::optional<uint64_t> since;
  if (o.since_ms >= 0) {
    uint64_t back = static_cast<uint64_t>(o.since_ms) * 1'000'000ULL;
    since = ng::wall_ns() - std::min(ng::wall_ns(), back);
  }
  Filter filter(o.events, since);
  Tail tail(*path);
  return o.follow ? follow(tail, filter, *path) : print_once(tail, filter, *path);
}

}  // namespace

void ng::cli::add_events_command(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<EventsOptions>();
  auto* sub = app.add_subcommand(
      "events", "Print the manager's event log (starts, exits, restarts, failovers).");
  sub->footer(
      "Prints STATE_DIR/events.jsonl, one JSON object per line (docs/config.md lists the\n"
      "events). --follow keeps printing lines as they are appended, waiting for the file if\n"
      "the manager has not created it yet, until SIGINT or SIGTERM. Exit status: 0, 1 when\n"
      "the log cannot be read, 2 for bad arguments or configuration.");
  auto* c = sub->add_option("-c,--config", opts->config, "the manager's configuration file");
  auto* d = sub->add_option("--state-dir", opts->state_dir, "the manager's state directory");
  c->excludes(d);
  sub->add_flag("-f,--follow", opts->follow, "keep printing new events as they are appended");
  sub->add_option("--event", opts->events, "only events of this name (repeatable)")
      ->allow_extra_args(false);
  sub->add_option("--since-ms", opts->since_ms,
                  "only events of the last N milliseconds (wall clock)")
      ->check(CLI::NonNegativeNumber);
  sub->callback([opts, &exit_code] { exit_code = run_events(*opts); });
}

#include "campaign/report.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <map>
#include <optional>
#include <string_view>

#include <fmt/format.h>

#include "campaign/resources.hpp"
#include "common/fd.hpp"
#include "common/file.hpp"
#include "probe/probe.hpp"

namespace ng::campaign {

using nlohmann::json;

const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::no_effect:
      return "no-effect";
    case Outcome::recovered:
      return "recovered";
    case Outcome::not_recovered:
      return "not-recovered";
    case Outcome::silent_failure:
      return "silent-failure";
    case Outcome::false_alarm:
      return "false-alarm";
  }
  return "unknown";
}

namespace {

constexpr std::array kOutcomes = {Outcome::no_effect, Outcome::recovered, Outcome::not_recovered,
                                  Outcome::silent_failure, Outcome::false_alarm};
// The paper's yardstick: an interruption a TCP stream or a VoIP call rides out.
constexpr double kShortMs = 10;

// ---- runs grouped by (policy, kind) ------------------------------------------

struct Group {
  std::string policy;
  std::string kind;
  std::vector<const RunRecord*> runs;
};

// First-seen order, so the tables follow the order the campaign ran in.
std::vector<Group> group_runs(const std::vector<RunRecord>& runs) {
  std::vector<Group> groups;
  for (const auto& r : runs) {
    auto it = std::find_if(groups.begin(), groups.end(), [&](const Group& g) {
      return g.policy == r.policy && g.kind == r.kind;
    });
    if (it == groups.end()) it = groups.insert(groups.end(), Group{r.policy, r.kind, {}});
    it->runs.push_back(&r);
  }
  return groups;
}

template <typename Pred>
int64_t count_runs(const Group& g, Pred pred) {
  return std::count_if(g.runs.begin(), g.runs.end(), [&](const RunRecord* r) { return pred(*r); });
}

template <typename Pred>
std::vector<double> values_if(const Group& g, double RunRecord::*field, Pred keep) {
  std::vector<double> out;
  for (const auto* r : g.runs) {
    if (keep(*r) && std::isfinite(r->*field)) out.push_back(r->*field);
  }
  return out;
}

// Null rather than zeros when there is nothing to summarise, so a reader
// cannot mistake "no recovered runs" for "recovered instantly".
json spread(std::vector<double> v, std::initializer_list<int> percentiles, bool with_max) {
  if (v.empty()) return nullptr;
  json out = json::object();
  for (int p : percentiles) out[fmt::format("p{}", p)] = probe::percentile(v, p);
  if (with_max) out["max"] = *std::max_element(v.begin(), v.end());
  return out;
}

bool is(const RunRecord& r, Outcome o) { return r.outcome == o; }
bool recovered_short(const RunRecord& r) {
  return is(r, Outcome::recovered) && r.interruption_ms <= kShortMs;
}

int64_t with_outcome(const Group& g, Outcome o) {
  return count_runs(g, [o](const RunRecord& r) { return is(r, o); });
}

json outcome_counts(const Group& g) {
  json out = json::object();
  for (auto o : kOutcomes) out[outcome_name(o)] = with_outcome(g, o);
  return out;
}

json detector_counts(const Group& g) {
  json out = json::object();
  for (const auto* r : g.runs) {
    if (!r->detector.empty()) out[r->detector] = out.value(r->detector, 0) + 1;
  }
  return out;
}

json group_counts(const Group& g) {
  auto manifested = count_runs(g, [](const RunRecord& r) { return r.manifested(); });
  auto detected =
      count_runs(g, [](const RunRecord& r) { return r.manifested() && !r.detector.empty(); });
  auto within = count_runs(g, recovered_short);
  auto share = manifested == 0
                   ? json(nullptr)
                   : json(static_cast<double>(within) / static_cast<double>(manifested));
  return {
      {"policy", g.policy},
      {"kind", g.kind},
      {"runs", g.runs.size()},
      {"manifested", manifested},
      {"detected", detected},
      {"recovered", with_outcome(g, Outcome::recovered)},
      {"recovered_within_10ms", within},
      {"recovered_within_10ms_share", share},
      {"not_recovered", with_outcome(g, Outcome::not_recovered)},
      {"silent_failures", with_outcome(g, Outcome::silent_failure)},
      {"no_effect", with_outcome(g, Outcome::no_effect)},
      {"false_alarms", with_outcome(g, Outcome::false_alarm)},
      {"outcomes", outcome_counts(g)},
      {"detectors", detector_counts(g)},
  };
}

// The app behind the worst all-apps interruption of the recovered runs; "" if none.
std::string worst_app(const std::vector<const RunRecord*>& runs) {
  const RunRecord* worst = nullptr;
  for (const auto* r : runs) {
    if (is(*r, Outcome::recovered) && (!worst || r->interruption_all_apps_ms > worst->interruption_all_apps_ms)) {
      worst = r;
    }
  }
  return worst ? worst->worst_app : "";
}

std::vector<std::string> false_detection_details(const std::vector<const RunRecord*>& runs) {
  std::vector<std::string> out;
  for (const auto* r : runs) {
    for (const auto& d : r->false_detections) out.push_back(fmt::format("run {}: {}", r->run, d));
  }
  return out;
}

// Nearest-rank percentile of one figure over the runs that measured HTTP.
double http_over_runs(const std::vector<const RunRecord*>& runs, double HttpFigures::*field, double p) {
  std::vector<double> v;
  for (const auto* r : runs) {
    if (r->http) v.push_back((*r->http).*field);
  }
  return probe::percentile(v, p);
}

// What the HTTP clients saw over these runs, beside the worst latency of the
// baseline windows: the same clients, the same lab, no fault acting yet.
json http_json(const std::vector<const RunRecord*>& runs) {
  uint64_t requests = 0, failed = 0, baseline_failed = 0, measured = 0;
  double max = 0, baseline_max = 0;
  for (const auto* r : runs) {
    if (!r->http) continue;
    ++measured;
    requests += r->http->requests;
    failed += r->http->failed;
    baseline_failed += r->http->baseline_failed;
    max = std::max(max, r->http->latency_ms_max);
    baseline_max = std::max(baseline_max, r->http->baseline_latency_ms_max);
  }
  if (measured == 0) return nullptr;
  return {{"runs", measured},
          {"requests", requests},
          {"failed_requests", failed},
          {"latency_ms",
           {{"p50", http_over_runs(runs, &HttpFigures::latency_ms_p50, 50)},
            {"p99", http_over_runs(runs, &HttpFigures::latency_ms_p99, 99)},
            {"max", max}}},
          {"no_fault", {{"latency_ms_max", baseline_max}, {"failed_requests", baseline_failed}}}};
}

json group_json(const Group& g) {
  auto any = [](const RunRecord&) { return true; };
  auto recovered = [](const RunRecord& r) { return is(r, Outcome::recovered); };
  auto out = group_counts(g);
  out["interruption_ms"] = spread(values_if(g, &RunRecord::interruption_ms, recovered), {50, 90, 99}, true);
  out["interruption_all_apps_ms"] =
      spread(values_if(g, &RunRecord::interruption_all_apps_ms, recovered), {50, 99}, true);
  out["worst_app"] = worst_app(g.runs);
  out["detection_ms"] = spread(values_if(g, &RunRecord::detection_ms,
                                         [](const RunRecord& r) { return r.detection_ms >= 0; }),
                               {50, 99}, false);
  out["recovery_ms"] = spread(
      values_if(g, &RunRecord::recovery_ms, [](const RunRecord& r) { return r.recovery_ms >= 0; }),
      {50, 99}, false);
  out["baseline_ms"] = spread(values_if(g, &RunRecord::baseline_ms, any), {50, 99}, true);
  out["window_silence_ms"] = spread(values_if(g, &RunRecord::window_silence_ms, recovered), {50, 99}, true);
  out["tcp_connections_lost"] = count_runs(g, [](const RunRecord& r) { return !r.tcp_survived; });
  uint64_t lost = 0;
  for (const auto* r : g.runs) lost += r->lost;
  out["packets_lost"] = lost;
  auto details = false_detection_details(g.runs);
  out["false_detections"] = details.size();
  out["false_detection_details"] = std::move(details);
  out["http"] = http_json(g.runs);
  return out;
}

json info_json(const CampaignInfo& info) {
  return {{"started", info.started},
          {"host", info.host},
          {"command", info.command},
          {"domain", info.domain},
          {"window_ms", info.window_ms},
          {"gap_threshold_ms", info.gap_threshold_ms},
          {"unprovoked_failures", info.unprovoked},
          {"not_injected", info.not_injected},
          {"apps", info.apps},
          {"app_stream_pps", info.app_stream_pps}};
}

json load_json(const CampaignInfo& info) {
  auto loadavg = [](double v) { return v < 0 ? json(nullptr) : json(v); };
  return {{"kinds", info.load},
          {"detail", info.load_detail},
          {"loadavg_1min_start", loadavg(info.loadavg_start)},
          {"loadavg_1min_end", loadavg(info.loadavg_end)},
          {"restarts", info.load_restarts}};
}

// ---- text --------------------------------------------------------------------

constexpr std::string_view kHttpCsvHeader =
    "http_requests,http_failed,http_latency_p50_ms,http_latency_p99_ms,http_latency_max_ms,"
    "http_baseline_latency_max_ms";

// Empty fields when the campaign ran without --http.
std::string http_csv(const std::optional<HttpFigures>& h) {
  if (!h) return ",,,,,";
  return fmt::format("{},{},{},{},{},{}", h->requests, h->failed, h->latency_ms_p50, h->latency_ms_p99,
                     h->latency_ms_max, h->baseline_latency_ms_max);
}

constexpr std::string_view kResourcesCsvHeader =
    "manager_fds,manager_rss_kib,frontend_fds,frontend_rss_kib,manager_pid,frontend_pids";

// Empty fields for a run whose processes could not be read. The frontends'
// pids are space-separated, in the apps' order.
std::string resources_csv(const std::optional<ResourceSample>& s) {
  if (!s) return ",,,,,";
  return fmt::format("{},{},{},{},{},{}", s->manager_fds, s->manager_rss_kib, s->frontend_fds, s->frontend_rss_kib,
                     s->manager_pid, fmt::join(s->frontend_pids, " "));
}

// RFC 4180: quote only when needed, double the quotes inside.
std::string csv_field(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

// Good for text and for attribute values, in HTML and in XML alike.
std::string esc(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        // XML 1.0 has no way to write most control characters, even escaped.
        bool control = static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r';
        out += control ? '?' : c;
    }
  }
  return out;
}

// Milliseconds as a reader wants them: enough digits for a sub-ms detection,
// none wasted on a one-second outage; "-" for "did not happen".
std::string ms_text(double v) {
  if (v < 0 || !std::isfinite(v)) return "-";
  if (v < 10) return fmt::format("{:.2f}", v);
  if (v < 1000) return fmt::format("{:.1f}", v);
  return fmt::format("{:.0f}", v);
}

std::string percent(int64_t part, int64_t whole) {
  if (whole <= 0) return "-";
  return fmt::format("{:.1f}%", 100.0 * static_cast<double>(part) / static_cast<double>(whole));
}

std::string cell(std::string_view text, std::string_view cls = "") {
  if (cls.empty()) return fmt::format("<td>{}</td>", text);
  return fmt::format("<td class=\"{}\">{}</td>", cls, text);
}

std::string header_row(std::initializer_list<std::string_view> names) {
  std::string out = "<tr>";
  for (auto n : names) out += fmt::format("<th>{}</th>", esc(n));
  return out + "</tr>\n";
}

std::string none(std::string_view why) {
  return fmt::format("<p class=\"none\">{}</p>\n", esc(why));
}

// ---- SVG ---------------------------------------------------------------------

class Svg {
 public:
  Svg(int width, int height, std::string_view cls, std::string_view label)
      : out_(fmt::format("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"{}\" width=\"{}\" "
                         "height=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">\n",
                         cls, width, height, width, height, esc(label))) {}

  // `extra` is trusted attribute text written by this file, never user data.
  void line(double x1, double y1, double x2, double y2, std::string_view stroke,
            std::string_view extra = "") {
    out_ += fmt::format(
        "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" {}/>\n", x1,
        y1, x2, y2, stroke, extra);
  }
  void rect(double x, double y, double w, double h, std::string_view fill,
            std::string_view extra = "") {
    out_ += fmt::format(
        "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\" {}/>\n", x,
        y, w, h, fill, extra);
  }
  void dot(double x, double y, std::string_view fill) {
    out_ +=
        fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"1.5\" fill=\"{}\"/>\n", x, y, fill);
  }
  void path(std::string_view d, std::string_view stroke, std::string_view extra = "") {
    out_ += fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" {}/>\n", d,
                        stroke, extra);
  }
  void text(double x, double y, std::string_view s, std::string_view anchor = "start",
            std::string_view extra = "") {
    out_ += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"{}\" {}>{}</text>\n", x, y,
                        anchor, extra, esc(s));
  }
  std::string done() && { return std::move(out_) + "</svg>\n"; }

 private:
  std::string out_;
};

// The plotting area inside an SVG, margins left for the axes' labels.
struct Box {
  double left, top, width, height;
  double right() const { return left + width; }
  double bottom() const { return top + height; }
};

// Maps data to pixels; the log variant draws values at or below `lo` at the
// axis' start, which is where an interruption of 0 ms belongs.
struct Scale {
  double lo, hi, px_lo, px_hi;
  bool log = false;
  double operator()(double v) const {
    double f =
        log ? (std::log10(std::max(v, lo)) - std::log10(lo)) / (std::log10(hi) - std::log10(lo))
            : (v - lo) / (hi - lo);
    return px_lo + std::clamp(f, 0.0, 1.0) * (px_hi - px_lo);
  }
};

struct Tick {
  double v;
  std::string label;
};

void x_axis(Svg& svg, const Box& box, const Scale& x, const std::vector<Tick>& ticks,
            std::string_view label) {
  svg.line(box.left, box.bottom(), box.right(), box.bottom(), "#333");
  for (const auto& t : ticks) {
    double px = x(t.v);
    svg.line(px, box.bottom(), px, box.bottom() + 5, "#333");
    svg.text(px, box.bottom() + 18, t.label, "middle");
  }
  svg.text(box.left + box.width / 2, box.bottom() + 36, label, "middle", "class=\"axis-label\"");
}

void y_axis(Svg& svg, const Box& box, const Scale& y, const std::vector<Tick>& ticks,
            std::string_view label) {
  svg.line(box.left, box.top, box.left, box.bottom(), "#333");
  for (const auto& t : ticks) {
    double py = y(t.v);
    svg.line(box.left, py, box.right(), py, "#e5e5e5");
    svg.line(box.left - 5, py, box.left, py, "#333");
    svg.text(box.left - 8, py + 4, t.label, "end");
  }
  svg.text(14, box.top + box.height / 2, label, "middle",
           fmt::format("class=\"axis-label\" transform=\"rotate(-90 14 {:.1f})\"",
                       box.top + box.height / 2));
}

std::string tick_label(double v) { return fmt::format("{:g}", v); }

// 1-2-5 steps, so tick labels stay short and round.
std::vector<Tick> linear_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) return {};
  double raw = (hi - lo) / target;
  double mag = std::pow(10, std::floor(std::log10(raw)));
  double r = raw / mag;
  double step = mag * (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10);
  std::vector<Tick> out;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    double v = std::abs(t) < step * 1e-9 ? 0 : t;  // no "-0"
    out.push_back({v, tick_label(v)});
  }
  return out;
}

std::vector<Tick> decade_ticks(double lo, double hi) {
  std::vector<Tick> out;
  for (double d = lo; d <= hi * 1.0001; d *= 10) out.push_back({d, tick_label(d)});
  return out;
}

constexpr std::array<std::string_view, 8> kPalette = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                                      "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::string_view color(size_t i) { return kPalette[i % kPalette.size()]; }

// ---- CDF of interruptions ----------------------------------------------------

struct Series {
  std::string name;
  std::vector<double> sorted;  // interruption_ms of the recovered runs
};

std::vector<Series> cdf_series(const std::vector<RunRecord>& runs) {
  std::vector<Series> out;
  for (const auto& g : group_runs(runs)) {
    auto v = values_if(g, &RunRecord::interruption_ms,
                       [](const RunRecord& r) { return is(r, Outcome::recovered); });
    if (v.empty()) continue;
    std::sort(v.begin(), v.end());
    out.push_back({fmt::format("{}, {}", g.policy, g.kind), std::move(v)});
  }
  return out;
}

// Whole decades that always hold 1..100 ms, so the 10 ms line sits inside and
// warm-spare (sub-ms) and restart (tens of ms) fit on one plot.
Scale cdf_x_scale(const std::vector<Series>& series, const Box& box) {
  double min_pos = 1, max_v = 100;
  for (const auto& s : series) {
    for (double v : s.sorted) {
      if (v > 0) min_pos = std::min(min_pos, v);
      max_v = std::max(max_v, v);
    }
  }
  double lo = std::pow(10, std::floor(std::log10(std::max(min_pos, 1e-3))));
  double hi = std::pow(10, std::ceil(std::log10(max_v)));
  return {lo, hi, box.left, box.right(), true};
}

// A step per run: the curve rises by 1/n at each run's interruption.
std::string step_path(const Series& s, const Scale& x, const Scale& y) {
  auto n = static_cast<double>(s.sorted.size());
  std::string d = fmt::format("M{:.1f},{:.1f}", x(x.lo), y(0));
  for (size_t i = 0; i < s.sorted.size(); ++i) {
    d += fmt::format(" H{:.1f} V{:.1f}", x(s.sorted[i]), y(static_cast<double>(i + 1) / n));
  }
  return d + fmt::format(" H{:.1f}", x(x.hi));
}

void legend(Svg& svg, const std::vector<Series>& series, double left, double top) {
  for (size_t i = 0; i < series.size(); ++i) {
    double y = top + 18.0 * static_cast<double>(i);
    svg.line(left, y, left + 24, y, color(i), "stroke-width=\"2\"");
    svg.text(left + 30, y + 4, fmt::format("{} (n={})", series[i].name, series[i].sorted.size()));
  }
}

std::string cdf_svg(const std::vector<Series>& series) {
  Box box{60, 20, 520, 300};
  Svg svg(860, 380, "cdf", "CDF of interruption per policy and fault kind");
  auto x = cdf_x_scale(series, box);
  Scale y{0, 1, box.bottom(), box.top};
  y_axis(svg, box, y, {{0, "0%"}, {0.25, "25%"}, {0.5, "50%"}, {0.75, "75%"}, {1, "100%"}},
         "recovered runs");
  x_axis(svg, box, x, decade_ticks(x.lo, x.hi), "interruption (ms, log scale)");
  svg.line(x(kShortMs), box.top, x(kShortMs), box.bottom(), "#555",
           "stroke-dasharray=\"6,4\" class=\"limit-10ms\"");
  svg.text(x(kShortMs) + 4, box.top + 12, "10 ms");
  for (size_t i = 0; i < series.size(); ++i) svg.path(step_path(series[i], x, y), color(i));
  legend(svg, series, box.right() + 30, box.top + 10);
  return std::move(svg).done();
}

std::string cdf_section(const std::vector<RunRecord>& runs) {
  std::string out = "<h2>Interruption of recovered runs</h2>\n";
  auto series = cdf_series(runs);
  if (series.empty()) return out + none("No recovered runs: nothing to plot.");
  out +=
      "<p>Cumulative distribution of the probe's longest silence after each injection that was "
      "detected and recovered from. Interruptions below the axis' first tick (including 0 ms) "
      "are drawn at its start.</p>\n";
  return out + cdf_svg(series);
}

// ---- timelines ---------------------------------------------------------------

struct Silence {
  double from, to;
};

bool drawable(const TimelinePoint& p) { return std::isfinite(p.t_ms) && std::isfinite(p.rtt_us); }
bool happened(double ms) { return ms >= 0 && std::isfinite(ms); }

std::optional<Silence> longest_silence(const Timeline& t) {
  std::vector<double> ts;
  for (const auto& p : t.points) {
    if (drawable(p)) ts.push_back(p.t_ms);
  }
  std::sort(ts.begin(), ts.end());
  std::optional<Silence> best;
  for (size_t i = 1; i < ts.size(); ++i) {
    if (!best || ts[i] - ts[i - 1] > best->to - best->from) best = Silence{ts[i - 1], ts[i]};
  }
  return best;
}

Scale timeline_x(const Timeline& t, const Box& box) {
  double lo = 0, hi = 0;
  for (const auto& p : t.points) {
    if (!drawable(p)) continue;
    lo = std::min(lo, p.t_ms);
    hi = std::max(hi, p.t_ms);
  }
  if (happened(t.detect_ms)) hi = std::max(hi, t.detect_ms);
  if (happened(t.recovery_ms)) hi = std::max(hi, t.recovery_ms);
  double pad = std::max((hi - lo) * 0.02, 0.5);
  return {lo - pad, hi + pad, box.left, box.right()};
}

Scale timeline_y(const Timeline& t, const Box& box) {
  double hi = 0;
  for (const auto& p : t.points) {
    if (drawable(p)) hi = std::max(hi, p.rtt_us);
  }
  return {0, hi > 0 ? hi * 1.05 : 1, box.bottom(), box.top};
}

// Labels sit on their own rows above the plot so that a detection and a
// switch 0.3 ms apart do not print over each other.
void marker(Svg& svg, const Box& box, const Scale& x, double at, std::string_view stroke,
            std::string_view label, int row, bool dashed) {
  double px = x(at);
  svg.line(px, box.top, px, box.bottom(), stroke,
           dashed ? "stroke-width=\"1.5\" stroke-dasharray=\"5,3\"" : "stroke-width=\"1.5\"");
  svg.text(px, box.top - 6 - 13.0 * row, label, "middle", fmt::format("fill=\"{}\"", stroke));
}

void silence_band(Svg& svg, const Box& box, const Scale& x, const Silence& s) {
  svg.rect(x(s.from), box.top, std::max(x(s.to) - x(s.from), 1.0), box.height, "#fde2e2",
           "class=\"silence\"");
}

// Said in words under the plot: a label inside it would sit on the dots
// whenever the silence is a sub-millisecond sliver.
std::string timeline_caption(const Timeline& t) {
  auto text = fmt::format("{} packets", t.points.size());
  if (auto s = longest_silence(t)) {
    text += fmt::format("; longest silence {} ms, from {:+.2f} to {:+.2f} ms",
                        ms_text(s->to - s->from), s->from, s->to);
  }
  return fmt::format("<p class=\"note\">{}.</p>\n", esc(text));
}

std::string timeline_svg(const Timeline& t) {
  Box box{70, 50, 660, 220};
  Svg svg(760, 320, "timeline", t.title);
  auto x = timeline_x(t, box);
  auto y = timeline_y(t, box);
  if (auto s = longest_silence(t)) silence_band(svg, box, x, *s);
  y_axis(svg, box, y, linear_ticks(y.lo, y.hi, 5), "rtt (us)");
  x_axis(svg, box, x, linear_ticks(x.lo, x.hi, 8), "time from injection (ms)");
  for (const auto& p : t.points) {
    if (drawable(p)) svg.dot(x(p.t_ms), y(p.rtt_us), "#1f77b4");
  }
  marker(svg, box, x, 0, "#d62728", "injection", 0, false);
  if (happened(t.detect_ms)) {
    marker(svg, box, x, t.detect_ms, "#ff7f0e",
           fmt::format("detected +{} ms", ms_text(t.detect_ms)), 1, true);
  }
  if (happened(t.recovery_ms)) {
    marker(svg, box, x, t.recovery_ms, "#2ca02c",
           fmt::format("recovered +{} ms", ms_text(t.recovery_ms)), 2, true);
  }
  return std::move(svg).done();
}

std::string timelines_section(const std::vector<Timeline>& timelines) {
  std::string out = "<h2>Timelines</h2>\n";
  if (timelines.empty()) return out + none("No timelines were recorded.");
  out +=
      "<p>Each dot is a probe packet's echo (round-trip time over arrival time); the shaded band "
      "is the longest silence.</p>\n";
  for (const auto& t : timelines) {
    out += fmt::format("<h3>{}</h3>\n", esc(t.title));
    if (t.points.empty()) {
      out += none("No probe packets around this injection.");
      continue;
    }
    out += timeline_svg(t) + timeline_caption(t);
  }
  return out;
}

// ---- outcome table -----------------------------------------------------------

// One row of the paper-style table, read back from summary.json so that the
// page and the file never disagree.
struct OutcomeRow {
  std::string policy, kind;
  int64_t runs = 0, no_effect = 0, recovered = 0, not_recovered = 0, silent = 0, false_alarms = 0;
  int64_t manifested = 0, within_10ms = 0, tcp_lost = 0;
  std::map<std::string, int64_t> detectors;

  void add(const OutcomeRow& o) {
    runs += o.runs, no_effect += o.no_effect, recovered += o.recovered;
    not_recovered += o.not_recovered, silent += o.silent, manifested += o.manifested;
    false_alarms += o.false_alarms;
    within_10ms += o.within_10ms, tcp_lost += o.tcp_lost;
    for (const auto& [name, n] : o.detectors) detectors[name] += n;
  }
};

int64_t count_of(const json& g, const char* key) {
  auto it = g.find(key);
  return it != g.end() && it->is_number() ? it->get<int64_t>() : 0;
}

OutcomeRow outcome_row(const json& g) {
  OutcomeRow r{g.value("policy", ""), g.value("kind", "")};
  r.runs = count_of(g, "runs");
  r.no_effect = count_of(g, "no_effect");
  r.recovered = count_of(g, "recovered");
  r.not_recovered = count_of(g, "not_recovered");
  r.silent = count_of(g, "silent_failures");
  r.false_alarms = count_of(g, "false_alarms");
  r.manifested = count_of(g, "manifested");
  r.within_10ms = count_of(g, "recovered_within_10ms");
  r.tcp_lost = count_of(g, "tcp_connections_lost");
  if (auto it = g.find("detectors"); it != g.end() && it->is_object()) {
    for (const auto& [name, n] : it->items()) {
      r.detectors[name] = n.is_number() ? n.get<int64_t>() : 0;
    }
  }
  return r;
}

std::string count_cell(int64_t n, int64_t whole) {
  return cell(fmt::format("{} <span class=\"pct\">({})</span>", n, percent(n, whole)));
}

std::string detectors_text(const std::map<std::string, int64_t>& detectors) {
  std::string out;
  for (const auto& [name, n] : detectors) {
    out += fmt::format("{}{} {}", out.empty() ? "" : ", ", esc(name), n);
  }
  return out.empty() ? "-" : out;
}

std::string outcome_tr(const OutcomeRow& r, bool total) {
  std::string out = total ? "<tr class=\"total\">" : "<tr>";
  out += cell(esc(r.policy), "l") + cell(total ? "all" : esc(r.kind), "l") +
         cell(fmt::format("{}", r.runs));
  out += count_cell(r.no_effect, r.runs) + count_cell(r.recovered, r.runs);
  out += count_cell(r.not_recovered, r.runs) + count_cell(r.silent, r.runs);
  out += count_cell(r.false_alarms, r.runs);
  out += count_cell(r.manifested, r.runs) + count_cell(r.within_10ms, r.manifested);
  out += cell(detectors_text(r.detectors), "l") + cell(fmt::format("{}", r.tcp_lost));
  return out + "</tr>\n";
}

// Rows grouped under their policy (first-seen order), each policy closed by
// its totals, as in the paper.
std::string outcome_rows(const json& groups) {
  std::vector<std::string> policies;
  for (const auto& g : groups) {
    auto p = g.value("policy", "");
    if (std::find(policies.begin(), policies.end(), p) == policies.end()) policies.push_back(p);
  }
  std::string out;
  for (const auto& p : policies) {
    OutcomeRow total{p, ""};
    for (const auto& g : groups) {
      if (g.value("policy", "") != p) continue;
      auto row = outcome_row(g);
      out += outcome_tr(row, false);
      total.add(row);
    }
    out += outcome_tr(total, true);
  }
  return out;
}

const json& groups_of(const json& summary) {
  static const json kEmpty = json::array();
  auto it = summary.find("groups");
  return it != summary.end() && it->is_array() ? *it : kEmpty;
}

std::string outcome_section(const json& summary) {
  std::string out = "<h2>Outcomes</h2>\n";
  const auto& groups = groups_of(summary);
  if (groups.empty()) return out + none("No runs.");
  out += "<table class=\"outcomes\">\n";
  out += header_row({"Policy", "Fault", "Runs", "No effect", "Recovered", "Not recovered",
                     "Silent failure", "False alarm", "Manifested", "Recovered within 10 ms", "Detectors",
                     "TCP connections lost"});
  out += outcome_rows(groups);
  out +=
      "</table>\n<p class=\"note\">Outcome percentages are of all runs; \"recovered within "
      "10 ms\" is of manifested runs.</p>\n";
  return out;
}

// ---- latency table -----------------------------------------------------------

std::string stat_cell(const json& g, const char* key, const char* q) {
  auto it = g.find(key);
  if (it == g.end() || !it->is_object()) return cell("-");
  auto v = it->find(q);
  return cell(v != it->end() && v->is_number() ? ms_text(v->get<double>()) : "-");
}

std::string latency_tr(const json& g) {
  std::string out =
      "<tr>" + cell(esc(g.value("policy", "")), "l") + cell(esc(g.value("kind", "")), "l");
  for (const char* q : {"p50", "p90", "p99", "max"}) out += stat_cell(g, "interruption_ms", q);
  for (const char* q : {"p50", "p99", "max"}) out += stat_cell(g, "interruption_all_apps_ms", q);
  auto worst = g.value("worst_app", std::string());
  out += cell(worst.empty() ? "-" : esc(worst), "l");
  for (const char* q : {"p50", "p99"}) out += stat_cell(g, "detection_ms", q);
  for (const char* q : {"p50", "p99"}) out += stat_cell(g, "recovery_ms", q);
  for (const char* q : {"p50", "p99", "max"}) out += stat_cell(g, "window_silence_ms", q);
  for (const char* q : {"p50", "p99", "max"}) out += stat_cell(g, "baseline_ms", q);
  return out + cell(fmt::format("{}", count_of(g, "packets_lost"))) + "</tr>\n";
}

std::string latency_section(const json& summary) {
  const auto& groups = groups_of(summary);
  if (groups.empty()) return "";
  std::string out = "<h2>Latencies (ms)</h2>\n<table class=\"latency\">\n";
  out +=
      "<tr><th rowspan=\"2\">Policy</th><th rowspan=\"2\">Fault</th>"
      "<th colspan=\"4\">Interruption (recovered)</th>"
      "<th colspan=\"4\">Interruption, worst of every app (recovered)</th><th colspan=\"2\">Detection</th>"
      "<th colspan=\"2\">Recovery</th><th colspan=\"3\">Longest silence in the window (recovered)</th>"
      "<th colspan=\"3\">Baseline silence</th><th rowspan=\"2\">Packets lost</th></tr>\n";
  out += header_row({"p50", "p90", "p99", "max", "p50", "p99", "max", "app", "p50", "p99", "p50", "p99", "p50",
                     "p99", "max", "p50", "p99", "max"});
  for (const auto& g : groups) out += latency_tr(g);
  return out + "</table>\n";
}

// ---- HTTP --------------------------------------------------------------------

std::string http_stat(const json& http, const char* key, const char* q) {
  auto it = http.find(key);
  if (it == http.end() || !it->is_object()) return cell("-");
  auto v = it->find(q);
  return cell(v != it->end() && v->is_number() ? ms_text(v->get<double>()) : "-");
}

std::string http_tr(const json& g) {
  const auto& h = g["http"];
  std::string out = "<tr>" + cell(esc(g.value("policy", "")), "l") + cell(esc(g.value("kind", "")), "l");
  out += cell(fmt::format("{}", count_of(h, "runs"))) + cell(fmt::format("{}", count_of(h, "requests")));
  auto failed = count_of(h, "failed_requests");
  out += cell(fmt::format("{}", failed), failed > 0 ? "bad" : "");
  for (const char* q : {"p50", "p99", "max"}) out += http_stat(h, "latency_ms", q);
  return out + http_stat(h, "no_fault", "latency_ms_max") + "</tr>\n";
}

double number_in(const json& j, const char* key, const char* inner) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_object()) return -1;
  auto v = it->find(inner);
  return v != it->end() && v->is_number() ? v->get<double>() : -1;
}

std::string http_section(const json& summary) {
  auto all = summary.find("http");
  if (all == summary.end() || !all->is_object()) return "";
  std::string out = "<h2>HTTP (nginx in app1, clients in the external host)</h2>\n";
  out += fmt::format(
      "<p>Across every run's window the slowest successful request took {} ms; in the baseline "
      "windows before the injections (no fault acting) it took {} ms. {} of {} requests "
      "failed.</p>\n",
      ms_text(number_in(*all, "latency_ms", "max")), ms_text(number_in(*all, "no_fault", "latency_ms_max")),
      count_of(*all, "failed_requests"), count_of(*all, "requests"));
  out += "<table class=\"http\">\n";
  out += header_row({"Policy", "Fault", "Runs", "Requests", "Failed", "Latency p50 ms", "p99 ms", "max ms",
                     "No-fault max ms"});
  for (const auto& g : groups_of(summary)) {
    if (g.contains("http") && g["http"].is_object()) out += http_tr(g);
  }
  return out +
         "</table>\n<p class=\"note\">Requests overlapping each run's window; p50 is the median of the "
         "runs' medians, p99 the p99 of the runs' p99s, max the slowest request. No-fault: the same "
         "clients in the baseline window before each injection.</p>\n";
}

// ---- false alarms ------------------------------------------------------------

std::string false_alarm_section(const json& summary) {
  const auto& groups = groups_of(summary);
  bool any_none = std::any_of(groups.begin(), groups.end(),
                              [](const json& g) { return g.value("kind", "") == kNoInjection; });
  if (!any_none) return "";
  std::string out = "<h2>False alarms (kind none: nothing injected)</h2>\n";
  auto details = summary.value("false_detection_details", json::array());
  out += fmt::format("<p>{} detection{} in runs that injected nothing.</p>\n", details.size(),
                     details.size() == 1 ? "" : "s");
  for (const auto& d : details) out += "<div class=\"note\">" + esc(d.is_string() ? d.get<std::string>() : "") + "</div>\n";
  return out;
}

// ---- the lab's processes over the runs, and what outlived them ---------------

std::string flat_text(const json& flat) {
  if (flat.is_boolean()) return flat.get<bool>() ? "flat" : "not flat";
  return "not comparable (a process was replaced)";
}

std::string resources_lab_html(const json& lab) {
  std::string out = fmt::format("<h3>Lab under {}: {} of {} runs sampled, {}</h3>\n",
                                esc(lab.value("policy", "")), count_of(lab, "sampled"), count_of(lab, "runs"),
                                esc(flat_text(lab.value("flat", json()))));
  if (!lab.contains("first_run")) return out;
  const auto n = count_of(lab, "window_runs");
  out += "<table class=\"resources\">\n";
  out += header_row({"Figure", "First run", "Last run", fmt::format("Mean of first {}", n),
                     fmt::format("Mean of last {}", n), "Change"});
  const json changes = lab.value("change_percent", json::object());
  for (const char* f : {"manager_fds", "manager_rss_kib", "frontend_fds", "frontend_rss_kib"}) {
    out += "<tr>" + cell(f, "l") + cell(figure_text(lab["first_run"], f)) + cell(figure_text(lab["last_run"], f));
    out += cell(figure_text(lab["first_mean"], f)) + cell(figure_text(lab["last_mean"], f));
    out += cell(change_text(changes, f)) + "</tr>\n";
  }
  out += "</table>\n";
  for (const auto& c : lab.value("pid_changes", json::array())) {
    out += "<div class=\"note\">" + esc(c.is_string() ? c.get<std::string>() : "") + "</div>\n";
  }
  return out;
}

std::string leftovers_html(const json& summary) {
  auto it = summary.find("leftovers");
  if (it == summary.end() || !it->is_array()) return none("Leftovers were not checked.");
  if (it->empty()) return "<p>Nothing of the labs was left once they were torn down.</p>\n";
  std::string out = "<p class=\"bad\">Left once the labs were torn down:</p>\n";
  for (const auto& l : *it) out += "<div class=\"note\">" + esc(l.is_string() ? l.get<std::string>() : "") + "</div>\n";
  return out;
}

std::string resources_section(const json& summary) {
  std::string out = "<h2>The lab's processes over the runs</h2>\n";
  const json res = summary.value("resources", json::object());
  for (const auto& lab : res.value("labs", json::array())) out += resources_lab_html(lab);
  for (const auto& e : res.value("errors", json::array())) {
    out += "<div class=\"note\">not sampled: " + esc(e.is_string() ? e.get<std::string>() : "") + "</div>\n";
  }
  out += fmt::format(
      "<p class=\"note\">Sampled after each run's recovery: open fds and resident memory (KiB) of the "
      "manager and, summed, of the frontends. Flat: every mean of the last runs within {:g}% of the first's; "
      "figures of processes replaced between runs are not compared.</p>\n",
      kFlatPercent);
  return out + "<h3>Leftovers</h3>\n" + leftovers_html(summary);
}

// ---- every run ---------------------------------------------------------------

std::string run_tr(const RunRecord& r) {
  std::string name = outcome_name(r.outcome);
  std::string out =
      "<tr>" + cell(fmt::format("{}", r.run)) + cell(esc(r.policy), "l") + cell(esc(r.kind), "l");
  out += cell(fmt::format("{}", r.seed)) + cell(esc(r.domain), "l") + cell(esc(r.detail), "l");
  out += cell(r.detector.empty() ? "-" : esc(r.detector), "l") + cell(name, "l o-" + name);
  out += cell(ms_text(r.detection_ms)) + cell(ms_text(r.recovery_ms));
  out += cell(ms_text(r.interruption_ms)) + cell(ms_text(r.baseline_ms));
  out += cell(fmt::format("{}", r.lost)) +
         cell(r.tcp_survived ? "kept" : "lost", r.tcp_survived ? "" : "bad");
  out += cell(ms_text(r.interruption_all_apps_ms)) + cell(r.worst_app.empty() ? "-" : esc(r.worst_app), "l");
  if (!r.http) return out + cell("-") + cell("-") + "</tr>\n";
  out += cell(fmt::format("{}", r.http->failed), r.http->failed > 0 ? "bad" : "");
  return out + cell(ms_text(r.http->latency_ms_max)) + "</tr>\n";
}

std::string runs_section(const std::vector<RunRecord>& runs) {
  std::string out = "<h2>Every run</h2>\n";
  if (runs.empty()) return out + none("No runs.");
  out += "<table class=\"runs\">\n";
  out +=
      header_row({"#", "Policy", "Fault", "Seed", "Domain", "Injection", "Detector", "Outcome",
                  "Detection ms", "Recovery ms", "Interruption ms", "Baseline ms", "Lost", "TCP",
                  "Every app ms", "Worst app", "HTTP failed", "HTTP max ms"});
  for (const auto& r : runs) out += run_tr(r);
  return out + "</table>\n";
}

// ---- page --------------------------------------------------------------------

// No '<', '>' or '&' in here: the page must stay well-formed XML too.
constexpr std::string_view kStyle = R"(
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1300px}
h1{font-size:1.5em} h3{font-size:1em}
h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:0.5em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f2f2f2;text-align:center}
td.l{text-align:left}
tr.total td{font-weight:bold;background:#f8f8f8}
table.runs{font-size:12px}
.pct{color:#666}
.o-no-effect{color:#777} .o-recovered{color:#1a7f37} .o-not-recovered{color:#b35900}
.o-silent-failure{color:#c00;font-weight:bold} .o-false-alarm{color:#c00} td.bad{color:#c00} p.bad{color:#c00}
svg{display:block;margin:0.5em 0;background:#fff}
svg text{font-family:system-ui,sans-serif;font-size:11px;fill:#333}
.none{color:#777;font-style:italic} .note{color:#555;font-size:12px}
dl.info{display:grid;grid-template-columns:max-content auto;gap:2px 14px}
dl.info dt{font-weight:bold} dl.info dd{margin:0}
)";

std::string page_head() {
  return fmt::format(
      "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n"
      "<meta charset=\"utf-8\"/>\n<title>nicguard campaign report</title>\n<style>{}</style>\n"
      "</head>\n<body>\n",
      kStyle);
}

std::string loadavg_text(double v) { return v < 0 ? "unknown" : fmt::format("{:.2f}", v); }

std::string load_text(const CampaignInfo& info) {
  std::string what = info.load.empty() ? "none" : esc(info.load_detail);
  std::string out = fmt::format("{}; 1-minute load average {} at the start, {} at the end", what,
                                loadavg_text(info.loadavg_start), loadavg_text(info.loadavg_end));
  for (const auto& r : info.load_restarts) out += "<div>restarted: " + esc(r) + "</div>";
  return out;
}

std::string info_section(const CampaignInfo& info, size_t runs) {
  auto item = [](std::string_view term, const std::string& html) {
    return fmt::format("<dt>{}</dt><dd>{}</dd>\n", term, html);
  };
  std::string out = "<h1>nicguard fault-injection campaign</h1>\n<dl class=\"info\">\n";
  out += item("Started", esc(info.started)) + item("Host", esc(info.host));
  out += item("Command", "<code>" + esc(info.command) + "</code>");
  out += item("Driver domains", info.domain == "vm" ? "driver VMs (the NIC's own kernel driver in a QEMU guest)"
                                                    : "processes (AF_PACKET, sandboxed)");
  out += item("Window", info.window_detail.empty()
                            ? fmt::format("{} ms after each injection", ms_text(info.window_ms))
                            : esc(info.window_detail) + " after each injection");
  out += item("Gap threshold",
              fmt::format("silences under {} ms not counted", ms_text(info.gap_threshold_ms)));
  out += item("Runs", fmt::format("{}", runs));
  out += item("App domains", info.apps == 1 ? std::string("1")
                                            : fmt::format("{} (the probe and TCP streams on app1, a {} packet/s "
                                                          "UDP stream on every other)",
                                                          info.apps, info.app_stream_pps));
  out += item("Background load", load_text(info));
  std::string unprovoked = info.unprovoked.empty() ? "none" : "";
  for (const auto& u : info.unprovoked) unprovoked += "<div>" + esc(u) + "</div>";
  out += item("Failures nobody injected", unprovoked);
  std::string not_injected = info.not_injected.empty() ? "none" : "";
  for (const auto& u : info.not_injected) not_injected += "<div>" + esc(u) + "</div>";
  out += item("Injections refused (run taken again)", not_injected);
  out +=
      "</dl>\n<p class=\"note\">no effect: no detector fired, traffic never broke; recovered: a "
      "detector fired and traffic flowed again within the window; not recovered: a detector fired "
      "but traffic had not resumed; silent failure: traffic broke and no detector fired; false alarm: "
      "nothing was injected (kind none) and a detector fired.</p>\n";
  return out;
}

// ---- files -------------------------------------------------------------------

// mkdir -p, each level 0755 (less the umask): the report is meant to be read.
Status make_dirs(const std::string& dir) {
  for (size_t pos = dir.find('/', 1);; pos = dir.find('/', pos + 1)) {
    auto part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) {
      return fail("cannot create report directory {}: {}; choose a directory you may write to",
                  part, std::strerror(errno));
    }
    if (pos == std::string::npos) break;
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return fail("report directory {} exists but is not a directory; choose another path", dir);
  }
  return {};
}

Status write_file(const std::string& path, std::string_view content) {
  return write_file_atomic(path, content, 0644);
}

}  // namespace

std::string runs_csv(const std::vector<RunRecord>& runs) {
  std::string out =
      "run,policy,kind,seed,domain,detail,detector,outcome,detection_ms,recovery_ms,"
      "interruption_ms,baseline_ms,window_silence_ms,lost,tcp_survived,interruption_all_apps_ms,worst_app,"
      "false_detections," +
      std::string(kHttpCsvHeader) + ",drops," + std::string(kResourcesCsvHeader) + "\n";
  for (const auto& r : runs) {
    out += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", r.run, csv_field(r.policy),
                       csv_field(r.kind), r.seed, csv_field(r.domain), csv_field(r.detail),
                       csv_field(r.detector), outcome_name(r.outcome), r.detection_ms, r.recovery_ms,
                       r.interruption_ms, r.baseline_ms, r.window_silence_ms, r.lost, r.tcp_survived ? "true" : "false",
                       r.interruption_all_apps_ms, csv_field(r.worst_app), r.false_detections.size(),
                       http_csv(r.http), csv_field(r.drops), resources_csv(r.resources));
  }
  return out;
}

json summary_json(const std::vector<RunRecord>& runs, const CampaignInfo& info) {
  json groups = json::array();
  for (const auto& g : group_runs(runs)) groups.push_back(group_json(g));
  std::vector<const RunRecord*> all;
  for (const auto& r : runs) all.push_back(&r);
  auto details = false_detection_details(all);
  json resources = resources_json(runs);
  resources["errors"] = info.resource_errors;
  return {{"campaign", info_json(info)},
          {"load", load_json(info)},
          {"false_detections", details.size()},
          {"false_detection_details", std::move(details)},
          {"http", http_json(all)},
          {"resources", std::move(resources)},
          {"leftovers", info.leftovers_checked ? json(info.leftovers) : json(nullptr)},
          {"groups", std::move(groups)}};
}

std::string report_html(const std::vector<RunRecord>& runs, const json& summary,
                        const std::vector<Timeline>& timelines, const CampaignInfo& info) {
  std::string out = page_head();
  out += info_section(info, runs.size());
  out += outcome_section(summary);
  out += latency_section(summary);
  out += http_section(summary);
  out += false_alarm_section(summary);
  out += resources_section(summary);
  out += cdf_section(runs);
  out += timelines_section(timelines);
  out += runs_section(runs);
  return out + "</body>\n</html>\n";
}

Status write_report(const std::string& dir, const std::vector<RunRecord>& runs,
                    const std::vector<Timeline>& timelines, const CampaignInfo& info) {
  if (dir.empty()) {
    return fail("no report directory given; name a directory to write the report to");
  }
  if (auto st = make_dirs(dir); !st) return st;
  auto summary = summary_json(runs, info);
  if (auto st = write_file(dir + "/runs.csv", runs_csv(runs)); !st) return st;
  // Replace rather than throw on bytes that are not UTF-8 (a detail copied from a register dump).
  auto text = summary.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  if (auto st = write_file(dir + "/summary.json", text); !st) return st;
  return write_file(dir + "/report.html", report_html(runs, summary, timelines, info));
}

}  // namespace ng::campaign

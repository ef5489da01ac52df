// 12_overload_demo: an overloaded backend in virtual time, with no protection, keel's adaptive
// concurrency limiter, keel's client-side adaptive throttle, and both; prints goodput, latency
// and the backend's wasted work per phase, and draws it.
// SPDX-License-Identifier: BSL-1.0
//
// The backend has C workers (C = 20) and a FIFO queue; a request takes a worker 50 ms plus an
// exponential 50 ms (mean 100 ms), so it serves 200 requests a second, and a request's latency
// grows with the queue ahead of it (an M/G/c queue). The server never learns that a client gave
// up: a request still queued when its client times out is served anyway, and that work is
// wasted. That is what makes an unprotected client's goodput collapse: once the queue is longer
// than the timeout, every answer comes too late.
//
// Requests arrive at random (Poisson) with a 1 s client timeout and no retry. The timeline
// (load as a multiple of the nominal capacity of 200 requests a second):
//
//     0 s  0.5x   normal
//    20 s  2x     overload
//    60 s  4x     heavy overload
//   100 s  2x     and half the workers are lost (C = 10: the load is 4x what is left)
//   130 s  2x     the workers are back
//
// The same requests (one seeded stream) go through five set-ups, each driving keel's decision
// cores by hand at the virtual time of each event (try_acquire(now), finish(..., now)):
//
//   no protection   the client's timeout only; the backend queues without bound;
//   503 only        the backend answers 503 (in 1 ms) when 20 requests are queued; no client
//                   policy (the baseline the throttle is measured against);
//   keel limiter    adaptive_limiter_core<gradient2_limit> in front of the unbounded backend;
//   keel throttle   adaptive_throttle_core (K = 2) in front of the 503-answering backend;
//   keel both       the throttle, then the limiter inside it, in front of the 503 backend.
//
// Writes overload.svg (or argv[1]). Returns non-zero unless, in every overloaded phase, each
// keel set-up's goodput is at least 90 % of the backend's capacity while the unprotected
// client's is under 50 %.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <functional>
#include <limits>
#include <queue>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/core.h>

#include <keel/admission.hpp>

#include "support/panel_chart.hpp"

using namespace std::chrono_literals;

namespace {

// ---- The scenario -------------------------------------------------------------------------

struct phase {
  const char* name;
  keel::duration begins;
  double load;  // offered requests per second, as a multiple of the nominal capacity
  int workers;
};

constexpr int nominal_workers = 20;
constexpr std::array<phase, 5> phases{{{"normal 0.5x", 0s, 0.5, nominal_workers},
                                       {"2x", 20s, 2.0, nominal_workers},
                                       {"4x", 60s, 4.0, nominal_workers},
                                       {"C/2, 2x", 100s, 2.0, nominal_workers / 2},
                                       {"C back, 2x", 130s, 2.0, nominal_workers}}};
constexpr std::size_t overloaded_from = 1;  // phases from this one on offer more than capacity
constexpr keel::duration scenario_length = 160s;
constexpr keel::duration base_work = 50ms;  // plus an exponential with the same mean
constexpr keel::duration mean_work = 2 * base_work;
constexpr keel::duration client_timeout = 1s;
constexpr keel::duration reply_503_after = 1ms;
constexpr std::size_t bounded_queue = nominal_workers;  // the 503 backend's queue
constexpr std::size_t unbounded = std::numeric_limits<std::size_t>::max();

std::size_t phase_at(keel::duration t) {
  std::size_t p = 0;
  while (p + 1 < phases.size() && t >= phases[p + 1].begins) ++p;
  return p;
}
keel::duration phase_end(std::size_t p) {
  return p + 1 < phases.size() ? phases[p + 1].begins : scenario_length;
}
/// Requests per second the backend can serve with `workers`.
double capacity(int workers) {
  return static_cast<double>(workers) / std::chrono::duration<double>(mean_work).count();
}

double seconds(keel::duration d) { return std::chrono::duration<double>(d).count(); }
double millis(keel::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5)];
}

/// The offered requests, the same for every set-up: when each arrives and the work it costs.
struct request_spec {
  keel::duration arrives;
  keel::duration work;
};

std::vector<request_spec> offered_requests() {
  std::mt19937_64 rng(2026);
  // By hand, not std::exponential_distribution: its output differs between standard libraries.
  const auto unit = [](std::mt19937_64& r) {
    return -std::log1p(-static_cast<double>(r() >> 11) * 0x1.0p-53);  // mean 1
  };
  std::vector<request_spec> out;
  double t = 0;  // seconds
  for (;;) {
    const std::size_t p =
        phase_at(std::chrono::duration_cast<keel::duration>(std::chrono::duration<double>(t)));
    t += unit(rng) / (phases[p].load * capacity(nominal_workers));
    const auto at = std::chrono::duration_cast<keel::duration>(std::chrono::duration<double>(t));
    if (at >= scenario_length) return out;
    const auto extra = std::chrono::duration_cast<keel::duration>(
        std::chrono::duration<double>(unit(rng) * seconds(base_work)));
    out.push_back({at, base_work + extra});
  }
}

// ---- One set-up's run ---------------------------------------------------------------------

struct setup {
  const char* name;
  bool limiter, throttle;
  std::size_t max_queue;  // the backend's; beyond it, a 503
};

// Gradient2 rather than AIMD: Gradient2 moves the limit from latency alone (the window's RTT
// against its long average), so it keeps the backend's queue short even where the backend
// never answers 503. AIMD falls only on a drop (a timeout, a 503, or a window slower than its
// `timeout` option): against the unbounded queue it grows until requests time out, unless its
// `timeout` is tuned to this backend (run here, AIMD's limit reaches 115, and when the capacity
// halves its p99 is 968 ms and 10.7 % of the backend's work is wasted). The default min_limit
// (20) is the whole backend's capacity: lowered, the limit can follow the capacity down.
using limiter_core = keel::adaptive_limiter_core<keel::gradient2_limit>;
keel::gradient2_limit_options gradient2_options() {
  keel::gradient2_limit_options o;
  o.min_limit = 2;
  return o;
}

struct bucket_stats {
  std::size_t successes = 0, sent = 0;
  std::vector<double> latencies_ms;
};
constexpr keel::duration bucket_length = 1s;
constexpr std::size_t bucket_count = static_cast<std::size_t>(scenario_length / bucket_length);

struct phase_stats {
  std::size_t offered = 0, successes = 0, local_rejections = 0, replies_503 = 0, timeouts = 0;
  keel::duration wasted_work{};  // worker time spent on requests whose client had given up
  std::vector<double> latencies_ms;
};

struct result {
  std::array<phase_stats, phases.size()> phase{};
  std::array<bucket_stats, bucket_count> bucket{};
  // At the end of each phase: the limiter's limit and long RTT, the throttle's p.
  std::array<std::uint32_t, phases.size()> limit{};
  std::array<double, phases.size()> long_rtt_ms{}, p{};
};

class simulation {
 public:
  simulation(const setup& s, const std::vector<request_spec>& requests)
      : setup_(s), requests_(requests), state_(requests.size()) {
    for (std::size_t i = 0; i < requests_.size(); ++i) push(requests_[i].arrives, kind::arrive, i);
    for (std::size_t p = 1; p < phases.size(); ++p)
      push(phases[p].begins, kind::capacity_change, p);
  }

  result run() {
    while (!events_.empty()) {
      const event e = events_.top();
      events_.pop();
      if (e.at >= scenario_length) break;
      now_ = e.at;
      handle(e);
    }
    note_phase_end(phases.size() - 1);
    return std::move(result_);
  }

 private:
  enum class kind { arrive, served, reply_503, client_gives_up, capacity_change };
  struct event {
    keel::duration at;
    std::uint64_t seq;
    kind what;
    std::size_t index;  // the request's (the phase's for a capacity change)
    bool operator>(const event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  struct request_state {
    keel::limiter_admission limiter{};
    keel::throttle_admission throttle{};
    bool waiting = false;  // the client still waits for the answer
  };

  keel::time_point now_point() const { return keel::time_point(now_); }
  void push(keel::duration at, kind k, std::size_t i) { events_.push({at, seq_++, k, i}); }
  double draw() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }
  phase_stats& here() { return result_.phase[phase_at(now_)]; }
  phase_stats& arrived_in(std::size_t i) { return result_.phase[phase_at(requests_[i].arrives)]; }
  bucket_stats& bucket_here() {
    return result_
        .bucket[std::min(static_cast<std::size_t>(now_ / bucket_length), bucket_count - 1)];
  }

  /// Tells the policies how the call ended, as a pipeline of them would.
  void finish(request_state& r, keel::limiter_result l, keel::throttle_result t) {
    r.waiting = false;
    if (setup_.limiter) limiter_.finish(r.limiter, l, now_point(), [this] { return draw(); });
    if (setup_.throttle) throttle_.finish(r.throttle, t, now_point());
  }

  void note_phase_end(std::size_t p) {
    result_.limit[p] = limiter_.limit();
    result_.long_rtt_ms[p] =
        limiter_.inspect([](const keel::gradient2_limit& g) { return millis(g.long_rtt()); });
    result_.p[p] = throttle_.probability();
  }

  void start(std::size_t i) {
    ++busy_;
    push(now_ + requests_[i].work, kind::served, i);
  }

  void handle(const event& e) {
    switch (e.what) {
      case kind::arrive: {
        request_state& r = state_[e.index];
        ++arrived_in(e.index).offered;
        if (setup_.throttle) {
          r.throttle = throttle_.try_acquire(now_point(), [this] { return draw(); });
          if (!r.throttle) {
            ++arrived_in(e.index).local_rejections;
            return;
          }
        }
        if (setup_.limiter) {
          r.limiter = limiter_.try_acquire(now_point());
          if (!r.limiter) {
            ++arrived_in(e.index).local_rejections;
            // An inner policy's rejection: the throttle takes the request back.
            if (setup_.throttle)
              throttle_.finish(r.throttle, keel::throttle_result::ignored, now_point());
            return;
          }
        }
        r.waiting = true;
        ++bucket_here().sent;
        push(now_ + client_timeout, kind::client_gives_up, e.index);
        if (busy_ < workers_) {
          start(e.index);
        } else if (queue_.size() < setup_.max_queue) {
          queue_.push_back(e.index);
        } else {
          push(now_ + reply_503_after, kind::reply_503, e.index);
        }
        return;
      }
      case kind::served: {
        --busy_;
        request_state& r = state_[e.index];
        if (r.waiting) {
          const double ms = millis(now_ - requests_[e.index].arrives);
          ++here().successes;
          here().latencies_ms.push_back(ms);
          ++bucket_here().successes;
          bucket_here().latencies_ms.push_back(ms);
          finish(r, keel::limiter_result::measured, keel::throttle_result::accepted);
        } else {
          here().wasted_work += requests_[e.index].work;
        }
        serve_queue();
        return;
      }
      case kind::reply_503:
        ++arrived_in(e.index).replies_503;
        finish(state_[e.index], keel::limiter_result::dropped, keel::throttle_result::refused);
        return;
      case kind::client_gives_up:
        if (!state_[e.index].waiting) return;
        ++arrived_in(e.index).timeouts;
        finish(state_[e.index], keel::limiter_result::dropped, keel::throttle_result::refused);
        return;
      case kind::capacity_change:
        note_phase_end(e.index - 1);
        // Lost workers finish what they hold; new ones take from the queue at once.
        workers_ = phases[e.index].workers;
        serve_queue();
        return;
    }
  }

  void serve_queue() {
    while (busy_ < workers_ && !queue_.empty()) {
      start(queue_.front());
      queue_.pop_front();
    }
  }

  setup setup_;
  const std::vector<request_spec>& requests_;
  std::vector<request_state> state_;
  limiter_core limiter_{keel::gradient2_limit(gradient2_options())};
  keel::adaptive_throttle_core throttle_{};
  std::mt19937_64 rng_{7};
  std::priority_queue<event, std::vector<event>, std::greater<>> events_;
  std::deque<std::size_t> queue_;
  keel::duration now_{};
  std::uint64_t seq_ = 0;
  int workers_ = phases[0].workers, busy_ = 0;
  result result_;
};

// ---- What each run shows ------------------------------------------------------------------

double percent(double part, double whole) { return whole <= 0 ? 0.0 : 100.0 * part / whole; }

/// Goodput in `p`: answers in time per second, as a percentage of the backend's capacity.
double goodput(const phase_stats& s, std::size_t p) {
  return percent(static_cast<double>(s.successes) / seconds(phase_end(p) - phases[p].begins),
                 capacity(phases[p].workers));
}
/// Worker time spent on requests whose client had given up, as a percentage of all of it.
double waste(const phase_stats& s, std::size_t p) {
  return percent(seconds(s.wasted_work),
                 seconds(phase_end(p) - phases[p].begins) * phases[p].workers);
}

// ---- The chart ----------------------------------------------------------------------------

struct chart_panel {
  const char* title;
  const char* unit;
  double y_max, y_step;
  double (*value)(const bucket_stats&, std::size_t);
};

int workers_at_bucket(std::size_t b) {
  return phases[phase_at(bucket_length * static_cast<keel::duration::rep>(b))].workers;
}

template <std::size_t N>
void write_svg(const std::string& path, const std::array<setup, N>& setups,
               const std::array<result, N>& runs) {
  const std::array<chart_panel, 3> panels{{
      {"goodput (% of capacity)", "%", 125, 25,
       [](const bucket_stats& b, std::size_t i) {
         return percent(static_cast<double>(b.successes) / seconds(bucket_length),
                        capacity(workers_at_bucket(i)));
       }},
      {"sent to the backend (% of capacity)", "%", 400, 100,
       [](const bucket_stats& b, std::size_t i) {
         return percent(static_cast<double>(b.sent) / seconds(bucket_length),
                        capacity(workers_at_bucket(i)));
       }},
      {"p99 latency of successes (ms)", "", 1000, 250,
       [](const bucket_stats& b, std::size_t) { return percentile(b.latencies_ms, 0.99); }},
  }};
  const auto& strokes = keel_examples::five_lines;
  const std::array<const char*, 5> shades{"#ffffff", "#fff0e0", "#ffd6d6", "#ffe5cc", "#e6f5e6"};
  std::vector<keel_examples::chart_phase> shaded;
  for (std::size_t p = 0; p < phases.size(); ++p) {
    shaded.push_back({seconds(phases[p].begins), seconds(phase_end(p)), phases[p].name, shades[p]});
  }
  keel_examples::panel_chart chart(
      path, "An overloaded backend in virtual time: 2x, 4x, half the workers lost, back",
      seconds(scenario_length), panels.size(), 150);
  for (std::size_t k = 0; k < panels.size(); ++k) {
    const chart_panel& panel = panels[k];
    chart.panel(k, panel.title, panel.unit, panel.y_max, panel.y_step, shaded);
    for (std::size_t r = 0; r < N; ++r) {
      std::vector<double> values;
      for (std::size_t b = 0; b < bucket_count; ++b) {
        values.push_back(panel.value(runs[r].bucket[b], b));
      }
      chart.line(values, seconds(bucket_length),
                 fmt::format("{} stroke-linejoin=\"round\"", strokes[r]));
    }
  }
  chart.time_axis(10);
  for (std::size_t r = 0; r < N; ++r) {
    chart.legend(160 * static_cast<double>(r), strokes[r], setups[r].name);
  }
  chart.close();
}

}  // namespace

int main(int argc, char** argv) {
  constexpr std::size_t modes = 5;
  const std::array<setup, modes> setups{{{"no protection", false, false, unbounded},
                                         {"503 only", false, false, bounded_queue},
                                         {"keel limiter", true, false, unbounded},
                                         {"keel throttle", false, true, bounded_queue},
                                         {"keel both", true, true, bounded_queue}}};
  const std::vector<request_spec> requests = offered_requests();
  std::array<result, modes> runs;
  for (std::size_t m = 0; m < modes; ++m) runs[m] = simulation(setups[m], requests).run();

  fmt::print(
      "A backend of {} workers (capacity {:g} requests/s), {} requests over {:g} s of virtual "
      "time,\na {:g} s client timeout, no retry.\n\n"
      "goodput: answers in time per second, as % of the capacity then; p50, p99: their latency;\n"
      "shed: refused locally, 503, timeouts: % of the requests that arrived in the phase;\n"
      "wasted: the backend's worker time spent on requests whose client had given up.\n\n",
      nominal_workers, capacity(nominal_workers), requests.size(), seconds(scenario_length),
      seconds(client_timeout));
  fmt::print("{:<11} {:<14} {:>8} {:>7} {:>7} {:>6} {:>6} {:>8} {:>7}\n", "phase", "set-up",
             "goodput", "p50", "p99", "shed", "503", "timeouts", "wasted");
  const auto ms = [](const std::vector<double>& v, double q) {
    return v.empty() ? std::string("-") : fmt::format("{:.0f} ms", percentile(v, q));
  };
  for (std::size_t p = 0; p < phases.size(); ++p) {
    for (std::size_t m = 0; m < modes; ++m) {
      const phase_stats& s = runs[m].phase[p];
      const auto of_offered = [&](std::size_t n) {
        return percent(static_cast<double>(n), static_cast<double>(s.offered));
      };
      fmt::print("{:<11} {:<14} {:>7.1f}% {:>7} {:>7} {:>5.1f}% {:>5.1f}% {:>7.1f}% {:>6.1f}%\n",
                 m == 0 ? phases[p].name : "", setups[m].name, goodput(s, p),
                 ms(s.latencies_ms, 0.5), ms(s.latencies_ms, 0.99), of_offered(s.local_rejections),
                 of_offered(s.replies_503), of_offered(s.timeouts), waste(s, p));
    }
  }
  fmt::print(
      "\nat the end of each phase: keel limiter's limit (its long RTT), keel throttle's p\n");
  for (std::size_t p = 0; p < phases.size(); ++p)
    fmt::print("  {:<12} limit {:>3} ({:>3.0f} ms)   p {:.2f}\n", phases[p].name, runs[2].limit[p],
               runs[2].long_rtt_ms[p], runs[3].p[p]);

  const std::string svg = argc > 1 ? argv[1] : "overload.svg";
  write_svg(svg, setups, runs);
  fmt::print("chart: {}\n", std::filesystem::absolute(svg).string());

  // What the demo promises, in every overloaded phase.
  bool keel_holds = true, unprotected_collapses = true;
  for (std::size_t p = overloaded_from; p < phases.size(); ++p) {
    unprotected_collapses = unprotected_collapses && goodput(runs[0].phase[p], p) < 50.0;
    for (std::size_t m = 2; m < modes; ++m)
      keel_holds = keel_holds && goodput(runs[m].phase[p], p) >= 90.0;
  }
  fmt::print(
      "\nkeel's goodput >= 90 % of capacity in every overloaded phase: {}; the unprotected "
      "client's under 50 %: {}\n",
      keel_holds ? "yes" : "NO", unprotected_collapses ? "yes" : "NO");
  return keel_holds && unprotected_collapses ? 0 : 1;
}

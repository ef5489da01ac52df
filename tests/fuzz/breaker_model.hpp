// SPDX-License-Identifier: BSL-1.0
// The reference model of keel::circuit_breaker and the driver that runs one
// operation sequence into both, comparing them after every operation. Shared
// by tests/unit/reliability/breaker_model_test.cpp (seeded random sequences)
// and tests/fuzz/breaker_model_fuzz.cpp (sequences from the fuzzer's bytes).
// The model is written from docs/circuit_breaker.md, as plainly as possible.
#ifndef KEEL_TESTS_FUZZ_BREAKER_MODEL_HPP_INCLUDED
#define KEEL_TESTS_FUZZ_BREAKER_MODEL_HPP_INCLUDED

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <sstream>
#include <string>

#include <keel/circuit_breaker.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "../support/rng.hpp"

namespace keel_model {

using namespace std::chrono_literals;
using keel::circuit_state;
using keel::duration;
using keel::time_point;

using rng = keel_test::rng;

enum class model_rule { consecutive, ratio_count };

/// The reference model: the documented semantics, written as plainly as
/// possible, with the open-time growth factor fixed at 1.
struct model {
  // configuration
  model_rule rule = model_rule::consecutive;
  int threshold = 5;        // consecutive_failures
  std::size_t window = 1;   // failure_ratio_count
  std::size_t minimum = 1;  // failure_ratio_count
  double ratio = 0.5;       // failure_ratio_count
  int probes = 1;
  int needed = 1;  // success_threshold, 0 resolved to probes
  duration open_duration{};
  duration max_open{};
  duration max_wait{};
  bool honor_hint = true;

  // state
  circuit_state state = circuit_state::closed;
  std::uint64_t gen = 0;
  int run = 0;                // consecutive failures (closed/disabled)
  std::deque<bool> outcomes;  // last `window` results, true = failure (closed/disabled)
  time_point open_until{};
  time_point round_began{};
  int admitted = 0, successes = 0, failures = 0;  // the half-open round
  std::uint64_t failures_total = 0, rejections_total = 0;

  struct decision {
    bool admitted;
    std::uint64_t gen;
    circuit_state state;
    std::optional<duration> retry_after;
  };

  void begin_round(time_point t) {
    state = circuit_state::half_open;
    ++gen;
    round_began = t;
    admitted = 1;
    successes = failures = 0;
  }

  decision acquire(time_point t) {
    switch (state) {
      case circuit_state::closed:
      case circuit_state::disabled:
        return {true, gen, state, std::nullopt};
      case circuit_state::isolated:
        ++rejections_total;
        return {false, gen, state, std::nullopt};
      case circuit_state::open:
        if (t < open_until) {
          ++rejections_total;
          return {false, gen, state, open_until - t};
        }
        begin_round(t);
        return {true, gen, state, std::nullopt};
      case circuit_state::half_open:
        if (admitted < probes) {
          ++admitted;
          return {true, gen, state, std::nullopt};
        }
        if (t >= round_began + max_wait) {
          begin_round(t);
          return {true, gen, state, std::nullopt};
        }
        ++rejections_total;
        return {false, gen, state, round_began + max_wait - t};
    }
    return {};
  }

  void open(time_point t, std::optional<duration> hint) {
    duration d = open_duration;
    if (honor_hint && hint) d = std::clamp(*hint, duration::zero(), max_open);
    state = circuit_state::open;
    ++gen;
    open_until = t + d;
    run = 0;
  }

  void clear_window() {
    run = 0;
    outcomes.clear();
  }

  void release(std::uint64_t g) {
    if (g == gen && state == circuit_state::half_open && admitted > 0) --admitted;
  }

  void record(std::uint64_t g, bool failed, time_point t, std::optional<duration> hint) {
    if (failed) ++failures_total;  // every failure counts, late ones included
    if (g != gen) return;          // late: belongs to an earlier state
    if (state == circuit_state::closed || state == circuit_state::disabled) {
      const bool can_trip = state == circuit_state::closed;
      if (rule == model_rule::consecutive) {
        if (!failed) {
          run = 0;
        } else if (can_trip && run + 1 >= threshold) {
          open(t, hint);
        } else {
          ++run;
        }
        return;
      }
      outcomes.push_back(failed);
      if (outcomes.size() > window) outcomes.pop_front();
      if (!failed || !can_trip || outcomes.size() < minimum) return;
      const auto f = static_cast<double>(std::count(outcomes.begin(), outcomes.end(), true));
      if (f / static_cast<double>(outcomes.size()) >= ratio) open(t, hint);
      return;
    }
    if (state != circuit_state::half_open) return;
    (failed ? failures : successes) += 1;
    if (successes >= needed) {
      state = circuit_state::closed;
      ++gen;
      clear_window();
    } else if (failures > probes - needed) {
      open(t, hint);
    }
  }

  void force(circuit_state to) {
    if (to != circuit_state::isolated) clear_window();
    run = 0;  // a forced transition ends any run
    state = to;
    ++gen;
  }

  std::uint32_t window_calls() const {
    if (rule == model_rule::consecutive) {
      return state == circuit_state::closed || state == circuit_state::disabled
                 ? static_cast<std::uint32_t>(run)
                 : 0u;
    }
    return static_cast<std::uint32_t>(outcomes.size());
  }
  std::uint32_t window_failures() const {
    if (rule == model_rule::consecutive) return window_calls();
    return static_cast<std::uint32_t>(std::count(outcomes.begin(), outcomes.end(), true));
  }
};

inline const char* name(circuit_state s) {
  switch (s) {
    case circuit_state::closed:
      return "closed";
    case circuit_state::open:
      return "open";
    case circuit_state::half_open:
      return "half_open";
    case circuit_state::isolated:
      return "isolated";
    case circuit_state::disabled:
      return "disabled";
  }
  return "?";
}

inline std::string str(std::optional<duration> d) {
  return d ? std::to_string(d->count()) + "ns" : std::string("none");
}

struct run_result {
  std::uint64_t operations = 0;   // operations driven and compared
  std::uint64_t transitions = 0;  // state changes seen (a coverage figure)
  std::uint64_t half_open_rounds = 0;
  std::string mismatch;  // empty when model and breaker agreed throughout
};

/// Drives one sequence of at most `steps` operations, drawn from `r` (an rng,
/// or a fuzzer's bytes: anything with in(lo, hi) and chance(percent); with a
/// done() member the sequence also ends when it is true), into a fresh
/// breaker and model. `seed` only labels a mismatch.
template <class Source>
run_result drive(Source& r, std::uint64_t seed, model_rule rule, int steps) {
  model m;
  m.rule = rule;
  keel::circuit_breaker_options o;
  if (rule == model_rule::consecutive) {
    m.threshold = static_cast<int>(r.in(1, 4));
    o.trip = keel::consecutive_failures{.threshold = m.threshold};
  } else {
    static constexpr std::array ratios{0.2, 0.25, 1.0 / 3.0, 0.5, 0.6, 2.0 / 3.0, 0.75, 1.0};
    m.window = static_cast<std::size_t>(r.in(1, 8));
    m.minimum = static_cast<std::size_t>(r.in(1, static_cast<std::int64_t>(m.window)));
    m.ratio = ratios[static_cast<std::size_t>(r.in(0, ratios.size() - 1))];
    o.trip = keel::failure_ratio_count{.window_size = static_cast<int>(m.window),
                                       .minimum_calls = static_cast<int>(m.minimum),
                                       .ratio = m.ratio};
  }
  m.probes = static_cast<int>(r.in(1, 3));
  const int threshold_option = static_cast<int>(r.in(0, m.probes));
  m.needed = threshold_option == 0 ? m.probes : threshold_option;
  m.open_duration = std::chrono::milliseconds(500 * r.in(0, 8));  // 0 included: reopen at once
  m.max_open = m.open_duration + std::chrono::milliseconds(500 * r.in(0, 6));
  m.max_wait = std::chrono::milliseconds(500 * r.in(1, 10));
  m.honor_hint = r.chance(70);
  o.permitted_probes = m.probes;
  o.success_threshold = threshold_option;
  o.open_duration = m.open_duration;
  o.max_open_duration = m.max_open;
  o.max_wait_in_half_open = m.max_wait;
  o.honor_retry_after = m.honor_hint;
  o.open_duration_factor = 1.0;

  keel::testing::virtual_environment env;
  auto breaker = keel::circuit_breaker{o}.with_environment(env);
  using permit_t = decltype(breaker)::permit;
  struct held {
    std::optional<permit_t> permit;
    std::uint64_t model_gen = 0;
  };
  std::array<held, 3> slots;

  run_result out;
  std::ostringstream log;  // the operations so far, printed on a mismatch
  circuit_state last = circuit_state::closed;
  auto fail = [&](const std::string& what) {
    std::ostringstream s;
    s << "seed " << seed << " step " << out.operations << ": " << what << "\nafter: " << log.str();
    out.mismatch = s.str();
  };

  for (int step = 0; step < steps && out.mismatch.empty(); ++step) {
    if constexpr (requires { r.done(); }) {
      if (r.done()) break;
    }
    const time_point now = env.now();
    const auto op = r.in(0, 199);
    auto free_slot = std::find_if(slots.begin(), slots.end(), [](auto& h) { return !h.permit; });
    auto used = [&]() -> held* {
      std::array<held*, 3> u{};
      std::size_t n = 0;
      for (auto& h : slots)
        if (h.permit) u[n++] = &h;
      return n == 0 ? nullptr
                    : u[static_cast<std::size_t>(r.in(0, static_cast<std::int64_t>(n) - 1))];
    };
    if (op < 70 && free_slot != slots.end()) {  // acquire
      log << "acq ";
      const model::decision d = m.acquire(now);
      permit_t p = breaker.try_acquire();
      if (p.admitted() != d.admitted) {
        fail(std::string("admission: breaker ") + (p.admitted() ? "admitted" : "rejected") +
             ", model " + (d.admitted ? "admitted" : "rejected"));
        break;
      }
      if (!d.admitted) {
        const keel::errc code = d.state == circuit_state::isolated ? keel::errc::circuit_isolated
                                                                   : keel::errc::circuit_open;
        if (p.rejection_code() != code) fail("rejection code");
        if (p.retry_after() != d.retry_after) {
          fail("retry_after: breaker " + str(p.retry_after()) + ", model " + str(d.retry_after));
        }
      } else {
        if (p.is_probe() != (d.state == circuit_state::half_open)) fail("is_probe");
        free_slot->permit.emplace(std::move(p));
        free_slot->model_gen = d.gen;
      }
    } else if (op < 150) {  // a result for one held permit
      held* h = used();
      if (h == nullptr) {
        log << "none ";  // nothing held: a no-op, still compared
      } else if (op < 90) {
        log << "ok ";
        m.record(h->model_gen, false, now, std::nullopt);
        h->permit->record_success();
      } else if (op < 140) {
        std::optional<duration> hint;
        if (r.chance(30)) hint = std::chrono::milliseconds(500 * r.in(-2, 14));
        log << "fail(" << str(hint) << ") ";
        m.record(h->model_gen, true, now, hint);
        h->permit->record_failure(duration::zero(), hint);
      } else {
        log << "drop ";
        m.release(h->model_gen);
      }
      // A recorded permit does nothing more; an unrecorded one is released.
      if (h != nullptr) h->permit.reset();
    } else if (op < 194) {  // virtual time
      static constexpr std::array<std::int64_t, 6> ns{
          0, 1, 499'999'999, 500'000'000, 1'000'000'000, 2'500'000'000};
      const duration d = r.chance(80) ? duration(ns[static_cast<std::size_t>(r.in(0, 5))])
                                      : duration(r.in(0, 6'000'000'000));
      log << "+" << d.count() << "ns ";
      env.advance(d);
    } else if (op < 195) {
      log << "isolate ";
      m.force(circuit_state::isolated);
      breaker.isolate();
    } else if (op < 196) {
      log << "disable ";
      m.force(circuit_state::disabled);
      breaker.disable();
    } else {
      log << "reset ";
      m.force(circuit_state::closed);
      breaker.reset();
    }
    ++out.operations;
    if (!out.mismatch.empty()) break;

    const keel::circuit_metrics k = breaker.metrics();
    if (k.state != m.state) {
      fail(std::string("state: breaker ") + name(k.state) + ", model " + name(m.state));
    } else if (k.failures != m.failures_total) {
      fail("failures: breaker " + std::to_string(k.failures) + ", model " +
           std::to_string(m.failures_total));
    } else if (k.rejections != m.rejections_total) {
      fail("rejections: breaker " + std::to_string(k.rejections) + ", model " +
           std::to_string(m.rejections_total));
    } else if (k.calls != m.window_calls() || k.window_failures != m.window_failures()) {
      fail("window: breaker " + std::to_string(k.calls) + "/" + std::to_string(k.window_failures) +
           ", model " + std::to_string(m.window_calls()) + "/" +
           std::to_string(m.window_failures()));
    } else if (m.state == circuit_state::half_open &&
               k.probes_admitted != static_cast<std::uint32_t>(m.admitted)) {
      fail("probes admitted: breaker " + std::to_string(k.probes_admitted) + ", model " +
           std::to_string(m.admitted));
    } else if (m.state == circuit_state::open &&
               k.retry_after != std::max(m.open_until - env.now(), duration::zero())) {
      fail("metrics retry_after: breaker " + str(k.retry_after));
    }
    if (k.state != last) {
      ++out.transitions;
      if (k.state == circuit_state::half_open) ++out.half_open_rounds;
      last = k.state;
    }
  }
  return out;
}

/// Drives the sequence of seed `seed`: what a failing test prints, to replay.
inline run_result drive(std::uint64_t seed, model_rule rule, int steps) {
  rng r{seed};
  return drive(r, seed, rule, steps);
}

}  // namespace keel_model

#endif  // KEEL_TESTS_FUZZ_BREAKER_MODEL_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
// The reference model of keel::circuit_breaker and the driver that runs one
// operation sequence into both, comparing them after every operation. Shared
// by the unit tests (tests/unit/reliability/breaker_model_test.cpp and
// breaker_wrap_model_test.cpp: seeded random sequences) and the fuzz target
// (tests/fuzz/breaker_model_fuzz.cpp: sequences from the fuzzer's bytes).
//
// The model is written from docs/circuit_breaker.md (and the comments of
// circuit_breaker_options.hpp), as plainly as possible: every result the
// rule's window ever saw is kept in a vector and the window is recounted from
// it each time; the open time is recomputed from the number of trips. It
// covers all four trip rules, the slow-call rule, open-duration growth,
// retry-after hints, the half-open round (probes, success threshold,
// max_wait_in_half_open), late results, ignored outcomes, isolate, disable
// and reset, the events, and which options are valid.
#ifndef KEEL_TESTS_SUPPORT_BREAKER_MODEL_HPP_INCLUDED
#define KEEL_TESTS_SUPPORT_BREAKER_MODEL_HPP_INCLUDED

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <keel/circuit_breaker.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/expected.hpp"
#include "support/rng.hpp"

namespace keel_model {

using namespace std::chrono_literals;
using keel::circuit_state;
using keel::duration;
using keel::open_reason;
using keel::time_point;

using rng = keel_test::rng;

enum class model_rule { consecutive, in_period, ratio_count, ratio_time };

inline const char* name(model_rule r) {
  switch (r) {
    case model_rule::consecutive:
      return "consecutive_failures";
    case model_rule::in_period:
      return "failures_in_period";
    case model_rule::ratio_count:
      return "failure_ratio_count";
    case model_rule::ratio_time:
      return "failure_ratio_time";
  }
  return "?";
}

inline const char* name(circuit_state s) { return keel::to_string(s); }

inline const char* name(open_reason r) {
  switch (r) {
    case open_reason::consecutive_failures:
      return "consecutive_failures";
    case open_reason::failures_in_period:
      return "failures_in_period";
    case open_reason::failure_ratio:
      return "failure_ratio";
    case open_reason::slow_call_ratio:
      return "slow_call_ratio";
    case open_reason::probe_failed:
      return "probe_failed";
  }
  return "?";
}

inline std::string str(std::optional<duration> d) {
  return d ? std::to_string(d->count()) + "ns" : std::string("none");
}
inline std::string str(time_point t) { return "@" + std::to_string(t.time_since_epoch().count()); }

// ---- Plain arithmetic on the clock's range --------------------------------

inline constexpr std::int64_t end_of_time = std::numeric_limits<std::int64_t>::max();

/// t + d for t, d >= 0, or the end of the clock when that does not fit.
inline time_point later(time_point t, duration d) {
  const std::int64_t a = t.time_since_epoch().count();
  const std::int64_t b = d.count();
  return time_point(duration(b > end_of_time - a ? end_of_time : a + b));
}

/// d * f (f >= 1) the way one writes it in C++: in double, truncated to whole
/// nanoseconds, or the largest duration when it does not fit.
inline duration times(duration d, double f) {
  const double x = static_cast<double>(d.count()) * f;
  if (x >= 9223372036854775807.0) return duration::max();
  return duration(static_cast<std::int64_t>(x));
}

// ---- Which options are valid ------------------------------------------------

/// Every field of `o` that is outside its documented bounds (the comments of
/// circuit_breaker_options.hpp and the messages of validate()); empty when
/// the options are valid. All of them, not the first: the model does not
/// claim to know in which order keel checks.
inline std::vector<std::string> invalid_fields(const keel::circuit_breaker_options& o) {
  std::vector<std::string> bad;
  auto ratio_ok = [](double r) { return r > 0.0 && r <= 1.0; };  // NaN fails both
  bool ratio_rule = false;
  if (const auto* c = std::get_if<keel::consecutive_failures>(&o.trip)) {
    if (c->threshold < 1) bad.emplace_back("consecutive_failures.threshold");
  } else if (const auto* p = std::get_if<keel::failures_in_period>(&o.trip)) {
    if (p->threshold < 1 || p->threshold > 1'000'000)
      bad.emplace_back("failures_in_period.threshold");
    if (p->period <= duration::zero()) bad.emplace_back("failures_in_period.period");
  } else if (const auto* n = std::get_if<keel::failure_ratio_count>(&o.trip)) {
    ratio_rule = true;
    if (n->window_size < 1 || n->window_size > 16'777'216)
      bad.emplace_back("failure_ratio_count.window_size");
    if (n->minimum_calls < 1 || n->minimum_calls > n->window_size)
      bad.emplace_back("failure_ratio_count.minimum_calls");
    if (!ratio_ok(n->ratio)) bad.emplace_back("failure_ratio_count.ratio");
  } else if (const auto* t = std::get_if<keel::failure_ratio_time>(&o.trip)) {
    ratio_rule = true;
    if (t->buckets < 1 || t->buckets > 1000) bad.emplace_back("failure_ratio_time.buckets");
    if (t->period.count() < t->buckets) bad.emplace_back("failure_ratio_time.period");
    if (t->minimum_calls < 1) bad.emplace_back("failure_ratio_time.minimum_calls");
    if (!ratio_ok(t->ratio)) bad.emplace_back("failure_ratio_time.ratio");
  }
  if (o.slow_calls) {
    if (!ratio_rule) bad.emplace_back("circuit_breaker_options.slow_calls");
    if (o.slow_calls->threshold < duration::zero()) bad.emplace_back("slow_call_ratio.threshold");
    if (!ratio_ok(o.slow_calls->ratio)) bad.emplace_back("slow_call_ratio.ratio");
  }
  if (o.open_duration < duration::zero()) bad.emplace_back("circuit_breaker_options.open_duration");
  if (!(o.open_duration_factor >= 1.0 && o.open_duration_factor <= 1000.0))
    bad.emplace_back("circuit_breaker_options.open_duration_factor");
  if (o.max_open_duration < o.open_duration)
    bad.emplace_back("circuit_breaker_options.max_open_duration");
  if (o.growth_reset_after < duration::zero())
    bad.emplace_back("circuit_breaker_options.growth_reset_after");
  if (o.permitted_probes < 1 || o.permitted_probes > 1000)
    bad.emplace_back("circuit_breaker_options.permitted_probes");
  if (o.success_threshold < 0 || o.success_threshold > o.permitted_probes)
    bad.emplace_back("circuit_breaker_options.success_threshold");
  if (o.max_wait_in_half_open <= duration::zero())
    bad.emplace_back("circuit_breaker_options.max_wait_in_half_open");
  return bad;
}

// ---- Events -----------------------------------------------------------------

enum class event_kind : unsigned char { changed, opened, half_opened, closed, rejected };

/// One event, flattened: the fields that do not apply to its kind stay zero.
struct event {
  event_kind kind{};
  circuit_state from{};                     // changed
  circuit_state to{};                       // changed; rejected: the state that rejected
  time_point at{};                          // all but rejected
  open_reason reason{};                     // opened
  std::optional<open_reason> also_right{};  // model only: a second reason that is as right
  double failure_ratio = 0.0;               // opened
  duration open_for{};                      // opened
  keel::errc code{};                        // rejected
  std::optional<duration> retry_after{};    // rejected
};

inline std::string describe(const event& e) {
  std::ostringstream s;
  switch (e.kind) {
    case event_kind::changed:
      s << "changed(" << name(e.from) << "->" << name(e.to) << str(e.at) << ")";
      break;
    case event_kind::opened:
      s << "opened(" << name(e.reason) << ", ratio " << e.failure_ratio << ", for "
        << e.open_for.count() << "ns" << str(e.at) << ")";
      break;
    case event_kind::half_opened:
      s << "half_opened(" << str(e.at) << ")";
      break;
    case event_kind::closed:
      s << "closed(" << str(e.at) << ")";
      break;
    case event_kind::rejected:
      s << "rejected(" << (e.code == keel::errc::circuit_isolated ? "isolated" : "open") << ", "
        << name(e.to) << ", " << str(e.retry_after) << ")";
      break;
  }
  return s.str();
}

/// True when `got` is the event the model expected.
inline bool matches(const event& want, const event& got) {
  if (want.kind != got.kind) return false;
  switch (want.kind) {
    case event_kind::changed:
      return want.from == got.from && want.to == got.to && want.at == got.at;
    case event_kind::opened:
      return (want.reason == got.reason || want.also_right == got.reason) &&
             want.failure_ratio == got.failure_ratio && want.open_for == got.open_for &&
             want.at == got.at;
    case event_kind::half_opened:
    case event_kind::closed:
      return want.at == got.at;
    case event_kind::rejected:
      return want.code == got.code && want.to == got.to && want.retry_after == got.retry_after;
  }
  return false;
}

/// The listener of the breaker under test: appends every event to a log.
struct recording_listener {
  std::vector<event>* log;
  void on(const keel::circuit_state_changed& e) const {
    event x;
    x.kind = event_kind::changed;
    x.from = e.from;
    x.to = e.to;
    x.at = e.at;
    log->push_back(x);
  }
  void on(const keel::circuit_opened& e) const {
    event x;
    x.kind = event_kind::opened;
    x.reason = e.reason;
    x.failure_ratio = e.failure_ratio;
    x.open_for = e.open_for;
    x.at = e.at;
    log->push_back(x);
  }
  void on(const keel::circuit_half_opened& e) const {
    event x;
    x.kind = event_kind::half_opened;
    x.at = e.at;
    log->push_back(x);
  }
  void on(const keel::circuit_closed& e) const {
    event x;
    x.kind = event_kind::closed;
    x.at = e.at;
    log->push_back(x);
  }
  void on(const keel::call_rejected& e) const {
    event x;
    x.kind = event_kind::rejected;
    x.code = e.code;
    x.to = e.state;
    x.retry_after = e.retry_after;
    log->push_back(x);
  }
};

// ---- The model ----------------------------------------------------------------

/// How a call that was let through ended, as the breaker counts it.
enum class result { success, failure, ignored };

/// The reference model: the documented semantics, written as plainly as possible.
struct model {
  // ---- configuration, resolved from the options as the docs say
  model_rule rule = model_rule::consecutive;
  int threshold = 5;               // consecutive_failures, failures_in_period
  duration period{};               // failures_in_period, failure_ratio_time
  std::size_t window_size = 1;     // failure_ratio_count
  std::int64_t buckets = 1;        // failure_ratio_time
  std::int64_t bucket_length = 1;  // failure_ratio_time: period / buckets in ns, rounded down
  std::size_t minimum_calls = 1;   // ratio rules
  double ratio = 1.0;              // ratio rules
  bool slow_rule = false;          // slow_calls set
  duration slow_threshold{};       // slower than this (strictly) is slow
  double slow_ratio = 1.0;
  int probes = 1;
  int successes_needed = 1;  // success_threshold, 0 resolved to probes
  duration open_duration{};
  double factor = 1.0;
  duration max_open{};
  duration growth_reset_after{};
  duration max_wait{};
  bool honor_hint = true;

  // ---- state
  circuit_state state = circuit_state::closed;
  std::uint64_t gen = 0;  // +1 at every transition; a result of another generation is late
  // The rule's window, emptied when the circuit closes (half-open -> closed,
  // reset(), disable()) and only then.
  int run = 0;                            // consecutive_failures: failures in a row
  std::vector<time_point> failure_times;  // failures_in_period: every failure
  struct call {
    time_point at;
    bool failed;
    bool slow;
  };
  std::vector<call> calls;  // ratio rules: every call (the count window looks at the last ones)
  time_point open_until{};
  time_point round_began{};
  int admitted = 0, probe_successes = 0, probe_failures = 0;  // the half-open round
  int trips = 0;                          // trips since the growth was last reset
  std::optional<time_point> last_closed;  // the last half-open -> closed or reset()
  time_point last_transition{};
  std::uint64_t failures_total = 0, slow_total = 0, rejections_total = 0;
  std::vector<event> events;  // what the breaker should have emitted since the last clear

  /// Coverage figures, not semantics: how often the model took each path.
  struct tally {
    std::array<std::uint64_t, 5> opened_by{};  // by open_reason
    std::uint64_t grown = 0;          // opened for longer than open_duration, without a hint
    std::uint64_t capped = 0;         // ... for exactly max_open_duration (> open_duration)
    std::uint64_t hinted = 0;         // opened for a honoured hint
    std::uint64_t growth_resets = 0;  // a stable close forgot a grown open time
    std::uint64_t new_rounds = 0;     // half-open rounds abandoned after max_wait_in_half_open
    std::uint64_t late = 0;           // results of an earlier generation
    std::uint64_t ignored = 0;        // ignored outcomes and cancellations
    std::uint64_t slow = 0;           // slow calls
    std::uint64_t expired = 0;        // time steps after which the window held fewer calls

    tally& operator+=(const tally& o) {
      for (std::size_t i = 0; i < opened_by.size(); ++i) opened_by[i] += o.opened_by[i];
      grown += o.grown;
      capped += o.capped;
      hinted += o.hinted;
      growth_resets += o.growth_resets;
      new_rounds += o.new_rounds;
      late += o.late;
      ignored += o.ignored;
      slow += o.slow;
      expired += o.expired;
      return *this;
    }
  };
  tally paths;

  explicit model(const keel::circuit_breaker_options& o) {
    if (const auto* c = std::get_if<keel::consecutive_failures>(&o.trip)) {
      rule = model_rule::consecutive;
      threshold = c->threshold;
    } else if (const auto* p = std::get_if<keel::failures_in_period>(&o.trip)) {
      rule = model_rule::in_period;
      threshold = p->threshold;
      period = p->period;
    } else if (const auto* n = std::get_if<keel::failure_ratio_count>(&o.trip)) {
      rule = model_rule::ratio_count;
      window_size = static_cast<std::size_t>(n->window_size);
      minimum_calls = static_cast<std::size_t>(n->minimum_calls);
      ratio = n->ratio;
    } else if (const auto* t = std::get_if<keel::failure_ratio_time>(&o.trip)) {
      rule = model_rule::ratio_time;
      period = t->period;
      buckets = t->buckets;
      bucket_length = t->period.count() / t->buckets;
      minimum_calls = static_cast<std::size_t>(t->minimum_calls);
      ratio = t->ratio;
    }
    if (o.slow_calls) {
      slow_rule = true;
      slow_threshold = o.slow_calls->threshold;
      slow_ratio = o.slow_calls->ratio;
    }
    probes = o.permitted_probes;
    successes_needed = o.success_threshold == 0 ? o.permitted_probes : o.success_threshold;
    open_duration = o.open_duration;
    factor = o.open_duration_factor;
    max_open = o.max_open_duration;
    growth_reset_after = o.growth_reset_after;
    max_wait = o.max_wait_in_half_open;
    honor_hint = o.honor_retry_after;
  }

  struct decision {
    bool admitted;
    std::uint64_t gen;
    circuit_state state;
    std::optional<duration> retry_after;
  };

  // ---- the rule's window
  struct counts {
    std::size_t calls = 0, failures = 0, slow = 0;
  };

  bool in_period_at(time_point failure, time_point now) const { return now - failure < period; }

  /// failure_ratio_time: bucket k covers [k len, (k + 1) len).
  std::int64_t bucket_of(time_point t) const {
    return t.time_since_epoch().count() / bucket_length;
  }

  /// What the rule's window holds at `now`.
  counts window(time_point now) const {
    counts c;
    switch (rule) {
      case model_rule::consecutive:
        if (state == circuit_state::closed || state == circuit_state::disabled) {
          c.calls = c.failures = static_cast<std::size_t>(run);
        }
        break;
      case model_rule::in_period: {
        std::size_t n = 0;
        for (time_point f : failure_times) n += in_period_at(f, now) ? 1 : 0;
        // The rule holds only the last threshold - 1 failures.
        c.calls = c.failures = std::min(n, static_cast<std::size_t>(threshold - 1));
        break;
      }
      case model_rule::ratio_count: {
        const std::size_t first = calls.size() > window_size ? calls.size() - window_size : 0;
        for (std::size_t i = first; i < calls.size(); ++i) {
          ++c.calls;
          c.failures += calls[i].failed ? 1 : 0;
          c.slow += calls[i].slow ? 1 : 0;
        }
        break;
      }
      case model_rule::ratio_time:
        for (const call& x : calls) {
          if (bucket_of(x.at) > bucket_of(now) - buckets) {
            ++c.calls;
            c.failures += x.failed ? 1 : 0;
            c.slow += x.slow ? 1 : 0;
          }
        }
        break;
    }
    return c;
  }

  static double fraction(std::size_t part, std::size_t whole) {
    return whole == 0 ? 0.0 : static_cast<double>(part) / static_cast<double>(whole);
  }

  void empty_window() {
    run = 0;
    failure_times.clear();
    calls.clear();
  }

  // ---- transitions
  void change(circuit_state to, time_point t) {
    if (to != state) {
      event e;
      e.kind = event_kind::changed;
      e.from = state;
      e.to = to;
      e.at = t;
      events.push_back(e);
    }
    state = to;
    ++gen;
    last_transition = t;
  }

  void begin_round(time_point t) {
    if (state == circuit_state::half_open) ++paths.new_rounds;
    change(circuit_state::half_open, t);
    event e;
    e.kind = event_kind::half_opened;
    e.at = t;
    events.push_back(e);
    round_began = t;
    admitted = 1;  // the caller that began the round is its first probe
    probe_successes = probe_failures = 0;
  }

  /// Trip k since the growth was last reset opens for min(open_duration ·
  /// factor^(k-1), max_open_duration), or for the hint when one is honoured.
  void open(time_point t, std::optional<duration> hint, open_reason why,
            std::optional<open_reason> also, double failure_ratio) {
    if (state == circuit_state::closed && last_closed && t - *last_closed >= growth_reset_after) {
      paths.growth_resets += trips > 0 && factor > 1.0 ? 1 : 0;
      trips = 0;  // the last close was stable
    }
    ++trips;
    duration d = open_duration;
    for (int k = 1; k < trips && d < max_open; ++k) d = std::min(times(d, factor), max_open);
    if (honor_hint && hint) {
      d = std::clamp(*hint, duration::zero(), max_open);
      ++paths.hinted;
    } else if (d > open_duration) {
      ++(d == max_open ? paths.capped : paths.grown);
    }
    ++paths.opened_by[static_cast<std::size_t>(why)];
    change(circuit_state::open, t);
    open_until = later(t, d);
    run = 0;
    event e;
    e.kind = event_kind::opened;
    e.reason = why;
    e.also_right = also;
    e.failure_ratio = failure_ratio;
    e.open_for = d;
    e.at = t;
    events.push_back(e);
  }

  void close(time_point t) {
    change(circuit_state::closed, t);
    empty_window();
    last_closed = t;
    event e;
    e.kind = event_kind::closed;
    e.at = t;
    events.push_back(e);
  }

  decision reject(std::optional<duration> retry_after) {
    ++rejections_total;
    event e;
    e.kind = event_kind::rejected;
    e.code =
        state == circuit_state::isolated ? keel::errc::circuit_isolated : keel::errc::circuit_open;
    e.to = state;
    e.retry_after = retry_after;
    events.push_back(e);
    return {false, gen, state, retry_after};
  }

  // ---- operations
  decision acquire(time_point t) {
    switch (state) {
      case circuit_state::closed:
      case circuit_state::disabled:
        return {true, gen, state, std::nullopt};
      case circuit_state::isolated:
        return reject(std::nullopt);
      case circuit_state::open:
        if (t < open_until) return reject(open_until - t);
        begin_round(t);
        return {true, gen, state, std::nullopt};
      case circuit_state::half_open: {
        if (admitted < probes) {
          ++admitted;
          return {true, gen, state, std::nullopt};
        }
        const time_point give_up = later(round_began, max_wait);
        if (t >= give_up) {
          begin_round(t);
          return {true, gen, state, std::nullopt};
        }
        return reject(give_up - t);
      }
    }
    return {};
  }

  void release(std::uint64_t g) {
    if (g == gen && state == circuit_state::half_open && admitted > 0) --admitted;
  }

  /// A call admitted in generation `g` ended with `r` at `t`, having taken `elapsed`.
  void record(std::uint64_t g, result r, time_point t, duration elapsed,
              std::optional<duration> hint) {
    if (r == result::ignored) {  // counts as neither; a probe's slot is freed
      ++paths.ignored;
      release(g);
      return;
    }
    const bool failed = r == result::failure;
    const bool slow = slow_rule && elapsed > slow_threshold;
    if (failed) ++failures_total;  // totals count late results too
    if (slow) ++slow_total;
    paths.slow += slow ? 1 : 0;
    if (g != gen) {  // late: it belongs to an earlier state
      ++paths.late;
      return;
    }
    if (state == circuit_state::half_open) {
      // A slow probe counts as a failed probe.
      (failed || slow ? probe_failures : probe_successes) += 1;
      if (probe_successes >= successes_needed) {
        close(t);
      } else if (probe_failures > probes - successes_needed) {
        open(t, failed ? hint : std::nullopt, open_reason::probe_failed, std::nullopt,
             fraction(static_cast<std::size_t>(probe_failures),
                      static_cast<std::size_t>(probe_failures + probe_successes)));
      }
      return;
    }
    if (state != circuit_state::closed && state != circuit_state::disabled) return;
    const bool may_trip = state == circuit_state::closed;  // disabled: counted, never trips
    switch (rule) {
      case model_rule::consecutive:
        if (!failed) {
          run = 0;
        } else if (may_trip && run + 1 >= threshold) {
          open(t, hint, open_reason::consecutive_failures, std::nullopt, 1.0);
        } else {
          ++run;
        }
        return;
      case model_rule::in_period: {
        if (!failed) return;
        failure_times.push_back(t);
        std::size_t n = 0;
        for (time_point f : failure_times) n += in_period_at(f, t) ? 1 : 0;
        if (may_trip && n >= static_cast<std::size_t>(threshold)) {
          open(t, hint, open_reason::failures_in_period, std::nullopt, 1.0);
        }
        return;
      }
      case model_rule::ratio_count:
      case model_rule::ratio_time: {
        calls.push_back({t, failed, slow});
        if (!may_trip || !(failed || slow)) return;  // only a failure or a slow call trips
        const counts c = window(t);
        if (c.calls < minimum_calls) return;
        const double fr = fraction(c.failures, c.calls);
        const bool by_failures = failed && fr >= ratio;
        const bool by_slowness = slow && fraction(c.slow, c.calls) >= slow_ratio;
        if (by_failures || by_slowness) {
          // Both at once: the docs do not say which reason the event names.
          open(t, failed ? hint : std::nullopt,
               by_failures ? open_reason::failure_ratio : open_reason::slow_call_ratio,
               by_failures && by_slowness ? std::optional(open_reason::slow_call_ratio)
                                          : std::nullopt,
               fr);
        }
        return;
      }
    }
  }

  void force(circuit_state to, time_point t) {
    if (to != circuit_state::isolated) empty_window();
    run = 0;  // a forced transition ends any run
    if (to == circuit_state::closed) {
      trips = 0;  // reset() forgets the growth
      last_closed = t;
    }
    change(to, t);
    if (to == circuit_state::closed) {
      event e;
      e.kind = event_kind::closed;
      e.at = t;
      events.push_back(e);
    }
  }

  keel::circuit_metrics metrics(time_point now) const {
    keel::circuit_metrics m;
    m.state = state;
    m.failures = failures_total;
    m.slow_calls = slow_total;
    m.rejections = rejections_total;
    const counts c = window(now);
    m.window_calls = static_cast<std::uint32_t>(c.calls);
    m.window_failures = static_cast<std::uint32_t>(c.failures);
    m.window_slow_calls = static_cast<std::uint32_t>(c.slow);
    m.failure_ratio = fraction(c.failures, c.calls);
    m.slow_call_ratio = fraction(c.slow, c.calls);
    if (state == circuit_state::half_open) m.probes_admitted = static_cast<std::uint32_t>(admitted);
    m.last_transition = last_transition;
    if (state == circuit_state::open) m.retry_after = std::max(open_until - now, duration::zero());
    return m;
  }
};

/// The first field in which `got` differs from `want`, or "".
inline std::string compare(const keel::circuit_metrics& want, const keel::circuit_metrics& got) {
  auto num = [](auto v) { return std::to_string(v); };
  auto differs = [](const char* field, const std::string& w, const std::string& g) {
    return std::string("metrics().") + field + ": breaker " + g + ", model " + w;
  };
  if (want.state != got.state) return differs("state", name(want.state), name(got.state));
  if (want.failures != got.failures)
    return differs("failures", num(want.failures), num(got.failures));
  if (want.slow_calls != got.slow_calls)
    return differs("slow_calls", num(want.slow_calls), num(got.slow_calls));
  if (want.rejections != got.rejections)
    return differs("rejections", num(want.rejections), num(got.rejections));
  if (want.window_calls != got.window_calls)
    return differs("window_calls", num(want.window_calls), num(got.window_calls));
  if (want.window_failures != got.window_failures)
    return differs("window_failures", num(want.window_failures), num(got.window_failures));
  if (want.window_slow_calls != got.window_slow_calls)
    return differs("window_slow_calls", num(want.window_slow_calls), num(got.window_slow_calls));
  if (want.failure_ratio != got.failure_ratio)
    return differs("failure_ratio", num(want.failure_ratio), num(got.failure_ratio));
  if (want.slow_call_ratio != got.slow_call_ratio)
    return differs("slow_call_ratio", num(want.slow_call_ratio), num(got.slow_call_ratio));
  if (want.probes_admitted != got.probes_admitted)
    return differs("probes_admitted", num(want.probes_admitted), num(got.probes_admitted));
  if (want.last_transition != got.last_transition)
    return differs("last_transition", str(want.last_transition), str(got.last_transition));
  if (want.retry_after != got.retry_after)
    return differs("retry_after", str(want.retry_after), str(got.retry_after));
  return {};
}

// ---- Options -------------------------------------------------------------------

/// Anything with in(lo, hi) and chance(percent): an rng, or a fuzzer's bytes.
template <class Source>
std::size_t index(Source& r, std::size_t n) {
  return static_cast<std::size_t>(r.in(0, static_cast<std::int64_t>(n) - 1));
}

template <class Source, class T, std::size_t N>
T one_of(Source& r, const std::array<T, N>& values) {
  return values[index(r, N)];
}

inline constexpr std::array ratios{0.2, 0.25, 1.0 / 3.0, 0.5, 0.6, 2.0 / 3.0, 0.75, 1.0};

/// A configuration for `rule`. The unit test draws valid options in ranges
/// where every boundary is reached by the driver's time steps; with `edges`
/// (the fuzz harness) a field sometimes takes an extreme value, valid or not.
template <class Source>
keel::circuit_breaker_options draw_options(Source& r, model_rule rule, bool edges) {
  const duration half = 500ms;
  auto edge = [&] { return edges && r.chance(6); };
  // Extremes of an int field, and of a duration field.
  auto int_edge = [&](int lo, int hi) {
    const std::array<int, 6> v{lo - 1, lo, hi, hi + 1, 0, -1};
    return one_of(r, v);
  };
  auto duration_edge = [&] {
    const std::array<duration, 7> v{duration(-1),        duration::zero(),    duration(1),
                                    duration(1LL << 40), duration(1LL << 62), duration::max(),
                                    duration::min()};
    return one_of(r, v);
  };
  auto ratio_of = [&] {
    if (edge()) {
      const std::array<double, 7> v{0.0,
                                    -0.5,
                                    1.0 + 1e-12,
                                    1e-300,
                                    std::numeric_limits<double>::quiet_NaN(),
                                    std::numeric_limits<double>::infinity(),
                                    1.0};
      return one_of(r, v);
    }
    return one_of(r, ratios);
  };

  keel::circuit_breaker_options o;
  switch (rule) {
    case model_rule::consecutive: {
      keel::consecutive_failures c{.threshold = static_cast<int>(r.in(1, 4))};
      if (edge()) c.threshold = int_edge(1, std::numeric_limits<int>::max() - 1);
      o.trip = c;
      break;
    }
    case model_rule::in_period: {
      keel::failures_in_period p{.threshold = static_cast<int>(r.in(1, 4)),
                                 .period = half * r.in(1, 6) + duration(r.in(-1, 1))};
      if (edge()) p.threshold = int_edge(1, 1'000'000);
      if (edge()) p.period = duration_edge();
      o.trip = p;
      break;
    }
    case model_rule::ratio_count: {
      keel::failure_ratio_count c;
      c.window_size = static_cast<int>(r.in(1, 8));
      c.minimum_calls = static_cast<int>(r.in(1, c.window_size));
      c.ratio = ratio_of();
      if (edge()) c.window_size = int_edge(1, 1 << 24);
      if (edge()) c.minimum_calls = int_edge(1, c.window_size);
      o.trip = c;
      break;
    }
    case model_rule::ratio_time: {
      keel::failure_ratio_time t;
      t.buckets = static_cast<int>(r.in(1, 4));
      // Buckets of 250 ms to 1 s, so that the time steps meet their edges;
      // sometimes a period that the buckets do not divide.
      t.period = 250ms * r.in(1, 4) * t.buckets;
      if (r.chance(25)) t.period += duration(r.in(1, t.buckets));
      t.minimum_calls = static_cast<int>(r.in(1, 6));
      t.ratio = ratio_of();
      if (edge()) t.buckets = int_edge(1, 1000);
      if (edge())
        t.period = r.chance(50) ? duration(t.buckets) + duration(r.in(-1, 1)) : duration_edge();
      if (edge()) t.minimum_calls = int_edge(1, std::numeric_limits<int>::max() - 1);
      o.trip = t;
      break;
    }
  }
  const bool ratio_rule = rule == model_rule::ratio_count || rule == model_rule::ratio_time;
  if ((ratio_rule && r.chance(50)) || edge()) {
    const std::array<duration, 6> thresholds{0ns, 1ns, 100ms, 499'999'999ns, 500ms, 1s};
    o.slow_calls = keel::slow_call_ratio{.threshold = one_of(r, thresholds), .ratio = ratio_of()};
    if (edge()) o.slow_calls->threshold = duration_edge();
  }
  o.permitted_probes = static_cast<int>(r.in(1, 3));
  o.success_threshold = static_cast<int>(r.in(0, o.permitted_probes));
  if (edge()) o.permitted_probes = int_edge(1, 1000);
  if (edge()) o.success_threshold = int_edge(0, o.permitted_probes);
  o.open_duration = half * r.in(0, 8);  // 0 included: a probe may go at once
  if (edge()) o.open_duration = duration_edge();
  {
    const std::array<double, 6> factors{1.0, 1.0, 1.5, 2.0, 3.0, 10.0};
    o.open_duration_factor =
        r.chance(70) ? one_of(r, factors) : 1.0 + static_cast<double>(r.in(0, 300)) / 100.0;
    if (edge()) {
      const std::array<double, 8> v{0.999999,
                                    1000.0,
                                    1000.5,
                                    0.0,
                                    -1.0,
                                    std::numeric_limits<double>::quiet_NaN(),
                                    std::numeric_limits<double>::infinity(),
                                    999.99};
      o.open_duration_factor = one_of(r, v);
    }
  }
  const duration more = half * r.in(0, 10);
  o.max_open_duration = o.open_duration < duration::zero()
                            ? more
                            : later(time_point(o.open_duration), more).time_since_epoch();
  if (edge()) {
    o.max_open_duration =
        r.chance(50) && o.open_duration > duration::min() ? o.open_duration - 1ns : duration_edge();
  }
  {
    const std::array<duration, 8> resets{0ns, 500ms, 1s, 2s, 3s, 5s, 10s, 60s};
    o.growth_reset_after = one_of(r, resets);
    if (edge()) o.growth_reset_after = duration_edge();
  }
  o.max_wait_in_half_open = half * r.in(1, 10);
  if (edge()) o.max_wait_in_half_open = duration_edge();
  o.honor_retry_after = r.chance(70);
  return o;
}

// ---- The driver ------------------------------------------------------------------

struct run_result {
  std::uint64_t operations = 0;   // operations driven and compared
  std::uint64_t transitions = 0;  // state changes seen (a coverage figure)
  std::uint64_t half_open_rounds = 0;
  std::uint64_t trips = 0;  // circuit_opened events (grown, hinted or not)
  model::tally paths;       // what the model went through (coverage)
  bool valid_options = true;
  std::string mismatch;  // empty when model and breaker agreed throughout
};

/// The outcomes a test call can produce, as the breaker under test classifies
/// them: it handles every failure but `all_fallbacks_failed` (a failure it does not
/// handle, so a success) and ignores `rate_limited`; a cancellation is ignored.
enum class kind : unsigned char { success, failure, unhandled, ignored, cancelled };

inline result counted_as(kind k) {
  switch (k) {
    case kind::success:
    case kind::unhandled:
      return result::success;
    case kind::failure:
      return result::failure;
    case kind::ignored:
    case kind::cancelled:
      return result::ignored;
  }
  return result::success;
}

inline const char* name(kind k) {
  switch (k) {
    case kind::success:
      return "ok";
    case kind::failure:
      return "fail";
    case kind::unhandled:
      return "unhandled";
    case kind::ignored:
      return "ignored";
    case kind::cancelled:
      return "cancelled";
  }
  return "?";
}

inline keel::errc code_of(kind k) {
  switch (k) {
    case kind::unhandled:
      return keel::errc::all_fallbacks_failed;
    case kind::ignored:
      return keel::errc::rate_limited;
    case kind::cancelled:
      return keel::errc::cancelled;
    default:
      return keel::errc::timeout;
  }
}

/// An outcome<int> of kind `k` (a keel failure, so that it carries `hint`).
inline keel::outcome<int> outcome_of(kind k, std::optional<duration> hint) {
  if (k == kind::success) return keel::outcome<int>(1);
  return keel::outcome<int>::from_keel(code_of(k), hint);
}

using call_value = keel_test::expected<int, std::error_code>;

/// One operation of a sequence, kept to print the sequence on a mismatch.
struct note {
  enum op_t : unsigned char {
    acq,
    none,
    ok,
    fail,
    record,
    drop,
    exec,
    advance,
    isolate,
    disable,
    reset
  };
  op_t op = none;
  kind k = kind::success;
  duration d{};  // elapsed, the call's duration, or the time step
  std::optional<duration> hint{};
};

inline std::string describe(const std::vector<note>& ops) {
  std::ostringstream s;
  for (const note& n : ops) {
    switch (n.op) {
      case note::acq:
        s << "acq ";
        break;
      case note::none:
        s << "none ";
        break;
      case note::ok:
        s << "ok(" << n.d.count() << ") ";
        break;
      case note::fail:
        s << "fail(" << n.d.count() << ", " << str(n.hint) << ") ";
        break;
      case note::record:
        s << "record(" << name(n.k) << ", " << n.d.count() << ", " << str(n.hint) << ") ";
        break;
      case note::drop:
        s << "drop ";
        break;
      case note::exec:
        s << "exec(" << name(n.k) << ", " << n.d.count() << ", " << str(n.hint) << ") ";
        break;
      case note::advance:
        s << "+" << n.d.count() << "ns ";
        break;
      case note::isolate:
        s << "isolate ";
        break;
      case note::disable:
        s << "disable ";
        break;
      case note::reset:
        s << "reset ";
        break;
    }
  }
  return s.str();
}

/// Drives one sequence of at most `steps` operations, drawn from `r` (an rng,
/// or a fuzzer's bytes: anything with in(lo, hi) and chance(percent); with a
/// done() member the sequence also ends when it is true), into a fresh
/// breaker configured with `o` and a model of it. `seed` only labels a
/// mismatch. Invalid options must be refused with keel::config_error.
/// `wrap_in` > 0 starts the breaker that many transitions before its
/// generation leaves the state word's 27 bits (a test seam; the model is
/// unchanged: the breaker must behave the same).
template <class Source>
run_result drive(Source& r, std::uint64_t seed, const keel::circuit_breaker_options& o, int steps,
                 std::uint32_t wrap_in = 0) {
  run_result out;
  // ---- the options: valid as documented, or refused
  const std::vector<std::string> bad = invalid_fields(o);
  const keel::validation_result problem = keel::validate(o);
  out.valid_options = bad.empty();
  // The breaker under test: it handles every failure but all_fallbacks_failed and
  // ignores rate_limited (see `kind`), and records its events.
  std::vector<event> seen;
  keel::testing::virtual_environment env;
  auto handles = keel::on::any_failure && !keel::on::code(keel::errc::all_fallbacks_failed);
  auto ignores = keel::on::code(keel::errc::rate_limited);
  using breaker_t = keel::circuit_breaker<decltype(handles), recording_listener,
                                          keel::testing::virtual_environment, decltype(ignores)>;
  // Not std::optional: asking whether breaker_t is default-constructible
  // instantiates its `Env env = {}`, which clang refuses for an explicit
  // constructor (virtual_environment's).
  std::unique_ptr<breaker_t> constructed;
  {
    std::string refused;
    try {
      constructed =
          std::make_unique<breaker_t>(o, handles, recording_listener{&seen}, env, ignores);
    } catch (const keel::config_error& e) {
      refused = e.field();
    }
    std::ostringstream s;
    if (bad.empty() != refused.empty()) {
      s << "options: the model reads them as "
        << (bad.empty() ? "valid" : "invalid (" + bad[0] + ")") << ", the constructor "
        << (refused.empty() ? "accepted them" : "threw for " + refused);
    } else if (problem.has_value() == bad.empty()) {
      s << "options: validate() disagrees with the constructor";
    } else if (!bad.empty() && (refused != problem->field ||
                                std::find(bad.begin(), bad.end(), refused) == bad.end())) {
      s << "options: refused for " << refused << " (validate(): " << problem->field
        << "), which the model finds valid";
    }
    out.mismatch = s.str();
    if (!bad.empty() || !out.mismatch.empty()) return out;
  }
  breaker_t& breaker = *constructed;
  if (wrap_in > 0) {
    using seam = keel::detail::breaker_core_test_access;
    seam::set_generation(breaker.core(),
                         static_cast<std::uint32_t>(seam::generations_per_cell - wrap_in));
  }
  // Huge windows are valid but slow to scan: a short sequence suffices.
  if (const auto* p = std::get_if<keel::failures_in_period>(&o.trip); p && p->threshold > 4096) {
    steps = std::min(steps, 1);
  }
  if (const auto* c = std::get_if<keel::failure_ratio_count>(&o.trip);
      c && c->window_size > 65536) {
    steps = std::min(steps, 64);
  }

  model m(o);
  using permit_t = typename breaker_t::permit;
  struct held {
    std::optional<permit_t> permit;
    std::uint64_t model_gen = 0;
  };
  std::array<held, 3> slots;
  // Generations: the breaker's must change exactly when the model's does.
  std::optional<std::uint64_t> last_model_gen;
  std::uint64_t last_breaker_gen = 0;

  std::vector<note> log;  // the operations so far, printed on a mismatch
  circuit_state last = circuit_state::closed;
  auto fail = [&](const std::string& what) {
    if (!out.mismatch.empty()) return;
    std::ostringstream s;
    s << "seed " << seed << " step " << out.operations << ": " << what
      << "\nafter: " << describe(log);
    out.mismatch = s.str();
  };
  const duration period = m.period;
  const duration bucket = duration(m.bucket_length);
  const duration slow = m.slow_threshold;
  const duration just_slow = slow < duration::max() ? slow + 1ns : slow;

  auto elapsed_of = [&]() -> duration {
    switch (r.in(0, 5)) {
      case 0:
        return duration::zero();
      case 1:
        return slow > duration::zero() ? slow - 1ns : slow;
      case 2:
        return slow;
      case 3:
        return just_slow;
      default:
        return duration(r.in(0, 1'200'000'000));
    }
  };
  auto hint_of = [&]() -> std::optional<duration> {
    if (!r.chance(30)) return std::nullopt;
    if (r.chance(5)) return r.chance(50) ? duration::max() : duration::min();
    return std::chrono::milliseconds(500 * r.in(-2, 14));
  };
  auto kind_of = [&]() -> kind {
    const auto k = r.in(0, 19);
    return k < 8    ? kind::success
           : k < 16 ? kind::failure
           : k < 17 ? kind::unhandled
           : k < 19 ? kind::ignored
                    : kind::cancelled;
  };
  auto compare_admission = [&](const model::decision& d, bool admitted, bool is_probe,
                               keel::errc code, std::optional<duration> retry_after) {
    if (admitted != d.admitted) {
      fail(std::string("admission: breaker ") + (admitted ? "admitted" : "rejected") + ", model " +
           (d.admitted ? "admitted" : "rejected") + " (model state " + name(m.state) + ")");
      return;
    }
    if (!d.admitted) {
      const keel::errc want = d.state == circuit_state::isolated ? keel::errc::circuit_isolated
                                                                 : keel::errc::circuit_open;
      if (code != want) fail("rejection code");
      if (retry_after != d.retry_after) {
        fail("retry_after: breaker " + str(retry_after) + ", model " + str(d.retry_after));
      }
    } else if (is_probe != (d.state == circuit_state::half_open)) {
      fail("is_probe");
    }
  };

  for (int step = 0; step < steps && out.mismatch.empty(); ++step) {
    if constexpr (requires { r.done(); }) {
      if (r.done()) break;
    }
    m.events.clear();
    seen.clear();
    const time_point now = env.now();
    const auto op = r.in(0, 199);
    auto free_slot = std::find_if(slots.begin(), slots.end(), [](auto& h) { return !h.permit; });
    auto used = [&]() -> held* {
      std::array<held*, 3> u{};
      std::size_t n = 0;
      for (auto& h : slots)
        if (h.permit) u[n++] = &h;
      return n == 0 ? nullptr : u[index(r, n)];
    };
    if (op < 60 && free_slot != slots.end()) {  // acquire, and hold the permit
      log.push_back({note::acq});
      const model::decision d = m.acquire(now);
      permit_t p = breaker.try_acquire();
      compare_admission(d, p.admitted(), p.is_probe(), p.rejection_code(), p.retry_after());
      if (p.admitted() && d.admitted) {
        if (last_model_gen && (*last_model_gen == d.gen) != (last_breaker_gen == p.generation())) {
          fail("generation: breaker " + std::to_string(last_breaker_gen) + " -> " +
               std::to_string(p.generation()) + ", model " + std::to_string(*last_model_gen) +
               " -> " + std::to_string(d.gen));
        }
        last_model_gen = d.gen;
        last_breaker_gen = p.generation();
        free_slot->permit.emplace(std::move(p));
        free_slot->model_gen = d.gen;
      }
    } else if (op < 140) {  // a result for one held permit
      held* h = used();
      const auto how = r.in(0, 19);
      if (h == nullptr) {
        log.push_back({note::none});  // nothing held: a no-op, still compared
      } else if (how < 6) {
        const duration e = elapsed_of();
        log.push_back({note::ok, kind::success, e});
        m.record(h->model_gen, result::success, now, e, std::nullopt);
        h->permit->record_success(e);
      } else if (how < 13) {
        const duration e = elapsed_of();
        const std::optional<duration> hint = hint_of();
        log.push_back({note::fail, kind::failure, e, hint});
        m.record(h->model_gen, result::failure, now, e, hint);
        h->permit->record_failure(e, hint);
      } else if (how < 18) {  // an outcome, classified by the breaker's predicates
        const kind k = kind_of();
        const duration e = r.chance(50) ? duration::zero() : elapsed_of();
        const std::optional<duration> hint = hint_of();
        log.push_back({note::record, k, e, hint});
        m.record(h->model_gen, counted_as(k), now, e, hint);
        h->permit->record(outcome_of(k, hint), e);
      } else {
        log.push_back({note::drop});
        m.release(h->model_gen);
      }
      // A recorded permit does nothing more; an unrecorded one is released.
      if (h != nullptr) h->permit.reset();
    } else if (op < 160) {  // try_execute: a call that takes `d` of virtual time
      const kind k = kind_of();
      const std::array<duration, 5> ds{0ns, slow, just_slow, 1ms, 300ms};
      const duration d = r.chance(80) ? one_of(r, ds) : duration(r.in(0, 1'200'000'000));
      // A hint travels in a thrown keel::error; the code predicates (handle,
      // ignore) read only keel failures and error values, so only a handled
      // failure or a cancellation is thrown.
      const std::optional<duration> hint =
          (k == kind::failure || k == kind::cancelled) && r.chance(50) ? hint_of() : std::nullopt;
      log.push_back({note::exec, k, d, hint});
      const model::decision dm = m.acquire(now);
      bool called = false;
      const keel::outcome<call_value> res = breaker.try_execute([&]() -> call_value {
        called = true;
        env.advance(d);
        if (k == kind::success) return 1;
        if (hint) throw keel::error(code_of(k), hint);
        return keel_test::unexpected<std::error_code>(keel::make_error_code(code_of(k)));
      });
      if (called != dm.admitted) {
        fail(std::string("admission: breaker ") + (called ? "called" : "rejected") + ", model " +
             (dm.admitted ? "admitted" : "rejected"));
      } else if (!called) {
        const bool isolated = res.is(keel::errc::circuit_isolated);
        if (!isolated && !res.is(keel::errc::circuit_open))
          fail("a rejection that is no rejection");
        compare_admission(dm, false, false,
                          isolated ? keel::errc::circuit_isolated : keel::errc::circuit_open,
                          res.retry_after());
      } else {
        const time_point end = env.now();
        m.record(dm.gen, counted_as(k), end, end - now, hint);
      }
    } else if (op < 194) {  // virtual time
      const std::array<duration, 10> ns{0ns,     1ns,          499'999'999ns, 500ms,        1s,
                                        2'500ms, period - 1ns, period,        bucket - 1ns, bucket};
      duration d = r.chance(80) ? one_of(r, ns) : duration(r.in(0, 6'000'000'000));
      if (r.chance(1)) d = duration(1LL << r.in(40, 62));  // far ahead: saturating sums
      log.push_back({note::advance, kind::success, d});
      const std::size_t before = m.window(now).calls;
      env.advance(d);
      m.paths.expired += m.window(env.now()).calls < before ? 1 : 0;
    } else if (op < 195) {
      log.push_back({note::isolate});
      m.force(circuit_state::isolated, now);
      breaker.isolate();
    } else if (op < 196) {
      log.push_back({note::disable});
      m.force(circuit_state::disabled, now);
      breaker.disable();
    } else {
      log.push_back({note::reset});
      m.force(circuit_state::closed, now);
      breaker.reset();
    }
    ++out.operations;
    if (!out.mismatch.empty()) break;

    // ---- after every operation: the events, the state and the metrics
    const std::size_t n = std::max(seen.size(), m.events.size());
    for (std::size_t i = 0; i < n; ++i) {
      const bool both = i < seen.size() && i < m.events.size();
      if (!both || !matches(m.events[i], seen[i])) {
        fail("event " + std::to_string(i) + ": breaker " +
             (i < seen.size() ? describe(seen[i]) : std::string("none")) + ", model " +
             (i < m.events.size() ? describe(m.events[i]) : std::string("none")));
        break;
      }
      if (seen[i].kind == event_kind::opened) ++out.trips;
    }
    const keel::circuit_metrics k = breaker.metrics();
    if (breaker.state() != k.state) fail("state() and metrics().state differ");
    const std::string diff = compare(m.metrics(env.now()), k);
    if (!diff.empty()) fail(diff);
    if (k.state != last) {
      ++out.transitions;
      last = k.state;
    }
    for (const event& e : seen) out.half_open_rounds += e.kind == event_kind::half_opened ? 1 : 0;
  }
  out.paths = m.paths;
  return out;
}

/// Drives the sequence of seed `seed` for `rule` (the options drawn from the
/// same seed): what a failing test prints, to replay.
inline run_result drive(std::uint64_t seed, model_rule rule, int steps, std::uint32_t wrap_in = 0) {
  rng r{seed};
  const keel::circuit_breaker_options o = draw_options(r, rule, false);
  return drive(r, seed, o, steps, wrap_in);
}

}  // namespace keel_model

#endif  // KEEL_TESTS_SUPPORT_BREAKER_MODEL_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CIRCUIT_BREAKER_DETAIL_TRIP_RULES_HPP_INCLUDED
#define KEEL_CIRCUIT_BREAKER_DETAIL_TRIP_RULES_HPP_INCLUDED

// The four trip rules of a circuit breaker, each a type with the same small
// interface, their memory (trip_rules), and visit_rule: the one place that
// dispatches on the rule. What is common to all rules (the state word,
// transitions, half-open) is the state machine's.
//
// Every rule has:
//   run_in_word        true when its count lives in the state word (the
//                      machine then counts with CASes on the word)
//   records_successes  true when a success must reach record_success
//   counts(run, now)   what its window holds (`run`: the word's run of failures)
//   record_success(now)        a success admitted closed (not the run_in_word rule)
//   record(failed, slow, judge, now)  counts an outcome admitted closed (not
//                      the run_in_word rule) and returns its verdict, judged
//                      only when `judge` (a disabled circuit counts but never
//                      trips)
//   reset()            empties the window (the circuit closes)
// `now` is a callable that reads the time at most once (read only by the
// rules that need it).

#include <cstdint>
#include <type_traits>
#include <utility>
#include <variant>

#include "keel/circuit_breaker/circuit_breaker_events.hpp"
#include "keel/circuit_breaker/circuit_breaker_options.hpp"
#include "keel/circuit_breaker/detail/windows.hpp"
#include "keel/core/time.hpp"

namespace keel::detail {

/// What a rule decided after an outcome: open for `reason` (when `trips`).
struct trip_verdict {
  bool trips = false;
  open_reason reason{};
  double failure_ratio = 0.0;  ///< failures / calls seen by the rule (1.0 for the counting rules)
};

/// part / whole, 0 when whole is 0.
inline double ratio_of(std::uint64_t part, std::uint64_t whole) noexcept {
  return whole == 0 ? 0.0 : static_cast<double>(part) / static_cast<double>(whole);
}

/// consecutive_failures: the run of failures is the payload of the state word,
/// counted by the machine; this rule holds nothing else.
struct consecutive_rule {
  static constexpr bool run_in_word = true;
  static constexpr bool records_successes = false;

  window_counts counts(std::uint32_t run, time_point) const noexcept { return {run, run, 0}; }
  void reset() noexcept {}
};

/// failures_in_period: the stamps of the last threshold - 1 failures.
struct in_period_rule {
  static constexpr bool run_in_word = false;
  static constexpr bool records_successes = false;

  window_counts counts(std::uint32_t, time_point now) const noexcept {
    const std::uint32_t n = stamps.count(now);
    return {n, n, 0};
  }
  template <class Now>
  void record_success(Now&) noexcept {}
  template <class Now>
  trip_verdict record(bool failed, bool, bool judge, Now& now) {
    if (!failed) return {};
    if (stamps.record(now()) && judge) return {true, open_reason::failures_in_period, 1.0};
    return {};
  }
  void reset() noexcept { stamps.reset(); }

  failure_stamps stamps;
};

/// The thresholds of the two ratio rules (and of the slow-call rule next to them).
struct ratio_limits {
  std::uint32_t minimum_calls = 1;
  double failure_ratio = 1.0;
  double slow_ratio = 1.0;

  /// A ratio is judged only on a failure or a slow call: a success never opens.
  trip_verdict judge(window_counts c, bool failed, bool slow) const noexcept {
    if (c.calls < minimum_calls) return {};
    const double fr = ratio_of(c.failures, c.calls);
    if (failed && fr >= failure_ratio) return {true, open_reason::failure_ratio, fr};
    if (slow && ratio_of(c.slow, c.calls) >= slow_ratio) {
      return {true, open_reason::slow_call_ratio, fr};
    }
    return {};
  }
};

/// failure_ratio_count: a ring of the last window_size outcomes.
struct ratio_count_rule {
  static constexpr bool run_in_word = false;
  static constexpr bool records_successes = true;

  window_counts counts(std::uint32_t, time_point) const noexcept { return window.counts(); }
  /// True when a success would leave the window as it is: a full window of
  /// successes is a fixed point (see count_window). The only rule that can say so.
  bool success_changes_nothing() const noexcept { return window.full_of_successes(); }
  template <class Now>
  void record_success(Now&) noexcept {
    window.record(false, false);
  }
  template <class Now>
  trip_verdict record(bool failed, bool slow, bool judge, Now&) {
    window.record(failed, slow);
    if (!(failed || slow) || !judge) return {};
    return limits.judge(window.counts(), failed, slow);
  }
  void reset() noexcept { window.reset(); }

  count_window window;
  ratio_limits limits;
};

/// failure_ratio_time: buckets of period / buckets, striped per thread.
struct ratio_time_rule {
  static constexpr bool run_in_word = false;
  static constexpr bool records_successes = true;

  window_counts counts(std::uint32_t, time_point now) const noexcept { return window.counts(now); }
  template <class Now>
  void record_success(Now& now) noexcept {
    window.record_success(static_cast<time_point>(now()));
  }
  template <class Now>
  trip_verdict record(bool failed, bool slow, bool judge, Now& now) {
    const time_point t = now();
    window.record(t, failed, slow);
    if (!(failed || slow) || !judge) return {};
    return limits.judge(window.counts(t), failed, slow);
  }
  void reset() noexcept { window.reset(); }

  time_window window;
  ratio_limits limits;
};

/// Which of the four rules a breaker has, in the order of trip_rule's alternatives.
enum class trip_rule_kind : unsigned char { consecutive, in_period, ratio_count, ratio_time };

/// The kind of rule `t` is.
constexpr trip_rule_kind kind_of(const trip_rule& t) noexcept {
  return static_cast<trip_rule_kind>(t.index());
}
static_assert(std::variant_size_v<trip_rule> == 4 &&
              std::is_same_v<std::variant_alternative_t<0, trip_rule>, consecutive_failures> &&
              std::is_same_v<std::variant_alternative_t<1, trip_rule>, failures_in_period> &&
              std::is_same_v<std::variant_alternative_t<2, trip_rule>, failure_ratio_count> &&
              std::is_same_v<std::variant_alternative_t<3, trip_rule>, failure_ratio_time>);

/// The memory of every rule; only the configured one (options.trip) is set
/// up and ever used. The kind lives with the caller (the state machine keeps
/// it next to its state word, where the closed path reads it).
struct trip_rules {
  /// Configures the rule `o.trip` names; `o` must be valid.
  explicit trip_rules(const circuit_breaker_options& o) {
    const bool slow = o.slow_calls.has_value();
    const double slow_ratio = slow ? o.slow_calls->ratio : 1.0;
    if (const auto* p = std::get_if<failures_in_period>(&o.trip)) {
      in_period.stamps.configure(p->threshold, p->period);
    } else if (const auto* n = std::get_if<failure_ratio_count>(&o.trip)) {
      ratio_count.window.configure(n->window_size, slow);
      ratio_count.limits = {static_cast<std::uint32_t>(n->minimum_calls), n->ratio, slow_ratio};
    } else if (const auto* t = std::get_if<failure_ratio_time>(&o.trip)) {
      ratio_time.window.configure(t->period, t->buckets);
      ratio_time.limits = {static_cast<std::uint32_t>(t->minimum_calls), t->ratio, slow_ratio};
    }
  }
  trip_rules(const trip_rules&) = delete;
  trip_rules& operator=(const trip_rules&) = delete;

  in_period_rule in_period;  // (consecutive_failures keeps its run in the state word)
  ratio_count_rule ratio_count;
  ratio_time_rule ratio_time;
};

/// The one dispatch point on the rule: `f(rule)` with the rule of kind `k`,
/// taken from `rules()` (a trip_rules, const or not) only when it has memory:
/// consecutive_failures reads nothing but the state word. Every case must
/// return the same type. Always inlined: a switch in place, as on the closed
/// path it must be (out of line, it cost a failure-then-success pipeline 20
/// instructions).
template <class GetRules, class F>
[[gnu::always_inline]] inline decltype(auto) visit_rule(trip_rule_kind k, GetRules&& rules, F&& f) {
  switch (k) {
    case trip_rule_kind::consecutive: {
      consecutive_rule run_in_word;
      return f(run_in_word);
    }
    case trip_rule_kind::in_period:
      return f(rules().in_period);
    case trip_rule_kind::ratio_count:
      return f(rules().ratio_count);
    case trip_rule_kind::ratio_time:
      break;
  }
  return f(rules().ratio_time);
}

}  // namespace keel::detail

#endif  // KEEL_CIRCUIT_BREAKER_DETAIL_TRIP_RULES_HPP_INCLUDED

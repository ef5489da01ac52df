// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CIRCUIT_BREAKER_CIRCUIT_BREAKER_OPTIONS_HPP_INCLUDED
#define KEEL_CIRCUIT_BREAKER_CIRCUIT_BREAKER_OPTIONS_HPP_INCLUDED

#include <chrono>
#include <cstdint>
#include <optional>
#include <variant>

#include "keel/core/config_error.hpp"
#include "keel/core/time.hpp"

namespace keel {

/// Where a circuit breaker stands.
enum class circuit_state : unsigned char {
  closed,     ///< calls go through; outcomes are counted against the trip rule
  open,       ///< calls are rejected at once (errc::circuit_open) until the open time is over
  half_open,  ///< exactly `permitted_probes` calls go through; the rest are rejected
  isolated,   ///< forced open by hand (isolate()); rejected with errc::circuit_isolated
  disabled,   ///< forced closed by hand (disable()); outcomes are counted, nothing trips
};

/// The state's name for logs and dashboards: "closed", "open", "half-open",
/// "isolated" or "disabled".
constexpr const char* to_string(circuit_state s) noexcept {
  switch (s) {
    case circuit_state::closed:
      return "closed";
    case circuit_state::open:
      return "open";
    case circuit_state::half_open:
      return "half-open";
    case circuit_state::isolated:
      return "isolated";
    case circuit_state::disabled:
      return "disabled";
  }
  return "unknown";
}

/// Trip rule: open after `threshold` failures in a row. A success resets the
/// count. The closed path of this rule writes no shared memory on success.
struct consecutive_failures {
  int threshold =
      5;  ///< failures in a row that open the circuit. Default 5 (Envoy consecutive_5xx).
};

/// Trip rule: open when `threshold` failures happened within the last `period`
/// (sliding, exact: a failure at time t has expired at t + period). Successes
/// do not matter. Memory: threshold - 1 time stamps.
struct failures_in_period {
  int threshold = 5;                           ///< failures that open the circuit. Default 5.
  duration period = std::chrono::seconds(10);  ///< sliding period. Default 10 s.
};

/// Trip rule: failure ratio over the last `window_size` calls (a ring of bits).
/// Opens on a failure once the window holds at least `minimum_calls` calls and
/// failures / calls >= `ratio`. Defaults are resilience4j's.
struct failure_ratio_count {
  int window_size = 100;  ///< calls remembered. Default 100 (resilience4j slidingWindowSize).
  int minimum_calls =
      100;             ///< no decision below this many calls. Default 100, at most window_size.
  double ratio = 0.5;  ///< in (0, 1]. Default 0.5 (resilience4j failureRateThreshold 50%).
};

/// Trip rule: failure ratio over the last `period`, split into `buckets` of
/// period / buckets each. A bucket covering [s, s + len) expires exactly at
/// s + period. Opens on a failure once the window holds `minimum_calls` calls
/// and failures / calls >= `ratio`. Reads the clock on every call.
struct failure_ratio_time {
  duration period =
      std::chrono::seconds(30);  ///< window length. Default 30 s (Polly SamplingDuration).
  int buckets = 10;              ///< Default 10 (Polly, opossum, Failsafe).
  int minimum_calls = 100;       ///< Default 100 (Polly MinimumThroughput).
  double ratio = 0.5;            ///< in (0, 1]. Default 0.5.
};

/// The trip rule of a breaker: one of the four rule structs above.
using trip_rule =
    std::variant<consecutive_failures, failures_in_period, failure_ratio_count, failure_ratio_time>;

/// Slow-call tripping, next to a failure-ratio rule (count or time window):
/// a call that takes longer than `threshold` is slow; the circuit opens once
/// slow calls / calls >= `ratio` (with the rule's minimum_calls). A slow
/// failure counts both as a failure and as slow. Costs two clock reads per call.
struct slow_call_ratio {
  duration threshold =
      std::chrono::seconds(5);  ///< slower than this (strictly) is slow. Default 5 s.
  double ratio = 1.0;  ///< in (0, 1]. Default 1.0 (resilience4j slowCallRateThreshold 100%).
};

/// Everything a circuit_breaker is configured with. Aggregate: use designated
/// initializers, `{.trip = keel::failure_ratio_count{.window_size = 20, .minimum_calls = 10}}`.
struct circuit_breaker_options {
  /// When the circuit opens. Default: 5 consecutive failures.
  trip_rule trip = consecutive_failures{};

  /// Also open on slow calls; needs a failure_ratio_count or failure_ratio_time rule.
  std::optional<slow_call_ratio> slow_calls = std::nullopt;

  /// How long the circuit stays open after its first trip. Default 30 s (opossum
  /// resetTimeout, Envoy base_ejection_time; Polly 5 s, resilience4j 60 s).
  duration open_duration = std::chrono::seconds(30);

  /// Each further trip without a stable close in between multiplies the open
  /// time by this (>= 1). Default 1: fixed open time.
  double open_duration_factor = 1.0;

  /// Cap of a grown open time and of a retry-after hint. Default 5 min.
  duration max_open_duration = std::chrono::minutes(5);

  /// A close that lasted this long resets the growth: the next trip opens for
  /// open_duration again. Default 60 s.
  duration growth_reset_after = std::chrono::seconds(60);

  /// When the failure that trips carries a retry-after hint (outcome::retry_after(),
  /// or the hint given to record_failure()), open for that long, capped at
  /// max_open_duration, instead. Default true.
  bool honor_retry_after = true;

  /// Calls let through in half-open, in total per half-open round. Default 1
  /// (Polly, opossum, gobreaker). At most 1000.
  int permitted_probes = 1;

  /// Probe successes that close the circuit; 0 means "= permitted_probes".
  /// The circuit reopens as soon as closing has become impossible. Default 0.
  int success_threshold = 0;

  /// A half-open round whose probes are all out and that has not decided this
  /// long after it began is abandoned: the next call starts a new round, so a
  /// probe that never reports back cannot block the breaker. Default 30 s.
  duration max_wait_in_half_open = std::chrono::seconds(30);
};

namespace detail {

constexpr bool valid_ratio(double r) noexcept { return r > 0.0 && r <= 1.0; }

}  // namespace detail

/// The first problem of `o`, or nullopt when it is valid. The one source of
/// truth for every constructor; usable in static_assert.
constexpr validation_result validate(const circuit_breaker_options& o) noexcept {
  if (const auto* r = std::get_if<consecutive_failures>(&o.trip)) {
    if (r->threshold < 1) return config_problem{"consecutive_failures.threshold", "must be >= 1"};
  } else if (const auto* p = std::get_if<failures_in_period>(&o.trip)) {
    if (p->threshold < 1) return config_problem{"failures_in_period.threshold", "must be >= 1"};
    if (p->threshold > 1'000'000) {
      return config_problem{"failures_in_period.threshold", "must be <= 1000000"};
    }
    if (p->period <= duration::zero())
      return config_problem{"failures_in_period.period", "must be > 0"};
  } else if (const auto* c = std::get_if<failure_ratio_count>(&o.trip)) {
    if (c->window_size < 1)
      return config_problem{"failure_ratio_count.window_size", "must be >= 1"};
    if (c->window_size > (1 << 24)) {
      return config_problem{"failure_ratio_count.window_size", "must be <= 16777216"};
    }
    if (c->minimum_calls < 1 || c->minimum_calls > c->window_size) {
      return config_problem{"failure_ratio_count.minimum_calls", "must be in [1, window_size]"};
    }
    if (!detail::valid_ratio(c->ratio))
      return config_problem{"failure_ratio_count.ratio", "must be in (0, 1]"};
  } else if (const auto* t = std::get_if<failure_ratio_time>(&o.trip)) {
    if (t->buckets < 1 || t->buckets > 1000) {
      return config_problem{"failure_ratio_time.buckets", "must be in [1, 1000]"};
    }
    if (t->period < duration(t->buckets)) {
      return config_problem{"failure_ratio_time.period", "must be >= buckets nanoseconds"};
    }
    if (t->minimum_calls < 1)
      return config_problem{"failure_ratio_time.minimum_calls", "must be >= 1"};
    if (!detail::valid_ratio(t->ratio))
      return config_problem{"failure_ratio_time.ratio", "must be in (0, 1]"};
  }
  if (o.slow_calls) {
    if (!std::holds_alternative<failure_ratio_count>(o.trip) &&
        !std::holds_alternative<failure_ratio_time>(o.trip)) {
      return config_problem{"circuit_breaker_options.slow_calls",
                            "needs a failure_ratio_count or failure_ratio_time trip rule"};
    }
    if (o.slow_calls->threshold < duration::zero()) {
      return config_problem{"slow_call_ratio.threshold", "must be >= 0"};
    }
    if (!detail::valid_ratio(o.slow_calls->ratio)) {
      return config_problem{"slow_call_ratio.ratio", "must be in (0, 1]"};
    }
  }
  if (o.open_duration < duration::zero()) {
    return config_problem{"circuit_breaker_options.open_duration", "must be >= 0"};
  }
  if (!(o.open_duration_factor >= 1.0) || o.open_duration_factor > 1000.0) {
    return config_problem{"circuit_breaker_options.open_duration_factor", "must be in [1, 1000]"};
  }
  if (o.max_open_duration < o.open_duration) {
    return config_problem{"circuit_breaker_options.max_open_duration", "must be >= open_duration"};
  }
  if (o.growth_reset_after < duration::zero()) {
    return config_problem{"circuit_breaker_options.growth_reset_after", "must be >= 0"};
  }
  if (o.permitted_probes < 1 || o.permitted_probes > 1000) {
    return config_problem{"circuit_breaker_options.permitted_probes", "must be in [1, 1000]"};
  }
  if (o.success_threshold < 0 || o.success_threshold > o.permitted_probes) {
    return config_problem{"circuit_breaker_options.success_threshold",
                          "must be in [0, permitted_probes] (0 = permitted_probes)"};
  }
  if (o.max_wait_in_half_open <= duration::zero()) {
    return config_problem{"circuit_breaker_options.max_wait_in_half_open", "must be > 0"};
  }
  return std::nullopt;
}

}  // namespace keel

#endif  // KEEL_CIRCUIT_BREAKER_CIRCUIT_BREAKER_OPTIONS_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_RETRY_BACKOFF_HPP_INCLUDED
#define KEEL_RETRY_BACKOFF_HPP_INCLUDED

#include <chrono>
#include <cmath>
#include <cstdint>
#include <variant>

#include "keel/core/config_error.hpp"
#include "keel/core/environment.hpp"
#include "keel/core/time.hpp"
#include "keel/detail/algorithm.hpp"

namespace keel {

// Every delay below is the wait before retry number `r` (1-based: r = 1 is the
// wait between the first call and the second). Sources use other conventions;
// each comment says how its index maps to r. U is uniform in [0, 1).

/// The same delay before every retry; with `jitter` f > 0 the delay is spread
/// uniformly over [d(1-f), d(1+f)) (Polly's constant backoff with UseJitter is f = 0.25).
struct constant_backoff {
  duration delay = std::chrono::milliseconds(100);  ///< wait before each retry. Default 100 ms.
  double jitter = 0.0;                              ///< proportional jitter f in [0, 1]. Default 0.
};

/// initial + (r-1)·increment, capped at max_delay (tenacity's wait_incrementing;
/// Polly's linear backoff `(n+1)·d` is initial = increment = d), then jittered by ±f.
struct linear_backoff {
  duration initial = std::chrono::milliseconds(100);    ///< wait before the first retry
  duration increment = std::chrono::milliseconds(100);  ///< added for each further retry
  duration max_delay = std::chrono::seconds(10);        ///< cap on the un-jittered delay
  double jitter = 0.0;                                  ///< proportional jitter f in [0, 1]
};

/// min(max_delay, initial·factor^(r-1)), then jittered by ±f. This is gRPC A6
/// (`min(initialBackoff·multiplier^(n-1), maxBackoff)·U(0.8, 1.2)` is jitter = 0.2),
/// resilience4j's ofExponentialBackoff and failsafe's withBackoff.
struct exponential_backoff {
  duration initial =
      std::chrono::milliseconds(100);             ///< wait before the first retry. Default 100 ms.
  double factor = 2.0;                            ///< growth per retry, >= 1. Default 2.
  duration max_delay = std::chrono::seconds(10);  ///< cap on the un-jittered delay. Default 10 s.
  double jitter = 0.0;                            ///< proportional jitter f in [0, 1]. Default 0.
};

/// AWS "Full Jitter": U·min(max_delay, base·factor^(r-1)), so uniform in [0, that).
/// Source: AWS Architecture Blog "Exponential Backoff And Jitter" (aws-samples/
/// aws-arch-backoff-simulator, backoff_simulator.py, n = r-1, factor 2).
struct full_jitter_backoff {
  duration base = std::chrono::milliseconds(100);  ///< the top of the first range
  double factor = 2.0;                             ///< growth per retry, >= 1 (AWS: 2)
  duration max_delay = std::chrono::seconds(10);   ///< cap on the top of the range
};

/// AWS "Equal Jitter": v/2 + U·v/2 with v = min(max_delay, base·factor^(r-1)),
/// so uniform in [v/2, v). Same source as full_jitter_backoff.
struct equal_jitter_backoff {
  duration base = std::chrono::milliseconds(100);  ///< the top of the first range
  double factor = 2.0;                             ///< growth per retry, >= 1 (AWS: 2)
  duration max_delay = std::chrono::seconds(10);   ///< cap on the top of the range
};

/// AWS "Decorrelated Jitter": sleep = min(max_delay, base + U·(3·prev - base)),
/// prev = base before the first retry, so uniform in [base, 3·prev). Stateful:
/// the state lives in each call's retry loop (backoff_state), never in the policy.
struct decorrelated_jitter_backoff {
  duration base = std::chrono::milliseconds(100);  ///< the smallest delay, and the seed
  duration max_delay = std::chrono::seconds(10);   ///< cap on every delay
};

/// Polly v8's DecorrelatedJitterBackoffV2 (george-polevoy, Polly #530;
/// App-vNext/Polly src/Polly.Core/Retry/RetryHelper.cs, n = r-1):
/// t = n + U; next = 2^t·tanh(sqrt(4t)); delay = (next - prev)/1.4·base; prev = next;
/// then min(delay, max_delay). The median first delay is near `base`; delays are
/// smooth over attempts with no clustering. Stateful like the AWS one.
struct decorrelated_jitter_v2_backoff {
  duration base = std::chrono::milliseconds(100);  ///< about the median of the first delay
  duration max_delay = std::chrono::seconds(10);   ///< cap on every delay
};

/// What a stateful backoff remembers between the retries of one call. The retry
/// loop keeps one per call on its stack; start a fresh one for each call.
struct backoff_state {
  duration previous{};       ///< AWS decorrelated: the previous delay (zero: none yet)
  double previous_v2 = 0.0;  ///< Polly V2: the previous value of the formula
};

namespace detail {

inline constexpr double max_ns_double = 9223372036854775807.0;  // rounds to 2^63

/// A non-negative nanosecond count held as a double, as a duration: clamped to
/// [0, duration::max()], NaN gives zero. Converting only after the clamp is what
/// keeps huge attempt numbers free of undefined behaviour.
inline duration clamp_ns(double ns) noexcept {
  if (!(ns > 0.0)) return duration::zero();
  if (ns >= max_ns_double) return duration::max();
  return duration{static_cast<std::int64_t>(ns)};
}

/// min(cap, base·factor^(r-1)) without overflow: attempt 10,000 with factor 2 is cap.
inline duration capped_exponential(duration base, double factor, int r, duration cap) noexcept {
  if (base <= duration::zero()) return duration::zero();
  const int n = r < 1 ? 0 : r - 1;
  const double b = static_cast<double>(base.count());
  double scaled;
  if (factor == 2.0) {
    // Factor 2 (the default): a product with an exact power of two, the same
    // double as with pow(2, n), without a call into libm. base >= 1 ns, so
    // from 2^63 on it is past any cap.
    if (n >= 63) return cap;
    scaled = b * static_cast<double>(std::uint64_t{1} << n);
  } else {
    scaled = b * std::pow(factor, n);
  }
  // !(x < cap) also catches +inf; compare in double before converting.
  if (!(scaled < static_cast<double>(cap.count()))) return cap;
  return clamp_ns(scaled);
}

/// d·(1 + f·(2U - 1)): uniform in [d(1-f), d(1+f)). Draws only when f > 0.
template <class Random>
duration proportional_jitter(duration d, double f, const Random& random) {
  if (f <= 0.0 || d <= duration::zero()) return d;
  const double u = random.uniform();
  return clamp_ns(static_cast<double>(d.count()) * (1.0 + f * (2.0 * u - 1.0)));
}

constexpr bool is_finite(double x) noexcept { return x == x && x - x == 0.0; }

}  // namespace detail

/// A backoff: one of the formulas above, as a small copyable value usable in a
/// constexpr retry_options. `next(r, state, random)` gives the wait before retry r.
///
///     keel::backoff b = keel::exponential_backoff{.initial = 200ms, .max_delay = 5s, .jitter =
///     0.2};
class backoff {
 public:
  using formula = std::variant<constant_backoff, linear_backoff, exponential_backoff,
                               full_jitter_backoff, equal_jitter_backoff,
                               decorrelated_jitter_backoff, decorrelated_jitter_v2_backoff>;

  /// Default: exponential_backoff{} (100 ms doubling up to 10 s, no jitter).
  constexpr backoff() noexcept = default;
  constexpr backoff(constant_backoff b) noexcept : formula_(b) {}                // NOLINT: implicit
  constexpr backoff(linear_backoff b) noexcept : formula_(b) {}                  // NOLINT
  constexpr backoff(exponential_backoff b) noexcept : formula_(b) {}             // NOLINT
  constexpr backoff(full_jitter_backoff b) noexcept : formula_(b) {}             // NOLINT
  constexpr backoff(equal_jitter_backoff b) noexcept : formula_(b) {}            // NOLINT
  constexpr backoff(decorrelated_jitter_backoff b) noexcept : formula_(b) {}     // NOLINT
  constexpr backoff(decorrelated_jitter_v2_backoff b) noexcept : formula_(b) {}  // NOLINT

  /// No delay at all (constant zero): for tests and for callers that pace themselves.
  static constexpr backoff none() noexcept { return constant_backoff{duration::zero(), 0.0}; }

  /// The formula held.
  constexpr const formula& get() const noexcept { return formula_; }

  /// The wait before retry r (1-based). Updates `state` for the decorrelated
  /// formulas; draws from `random` only when the formula or its jitter needs it.
  template <random_source Random>
  duration next(int r, backoff_state& state, const Random& random) const {
    if (r < 1) r = 1;
    // The three formulas with proportional jitter share one call of it.
    duration d{};
    double jitter = 0.0;
    switch (formula_.index()) {
      case 0: {
        const auto& b = *std::get_if<constant_backoff>(&formula_);
        d = b.delay;
        jitter = b.jitter;
        break;
      }
      case 1: {
        const auto& b = *std::get_if<linear_backoff>(&formula_);
        d = detail::saturating_add(b.initial,
                                   detail::saturating_mul(b.increment, static_cast<double>(r - 1)));
        if (d > b.max_delay) d = b.max_delay;
        jitter = b.jitter;
        break;
      }
      case 2: {
        const auto& b = *std::get_if<exponential_backoff>(&formula_);
        d = detail::capped_exponential(b.initial, b.factor, r, b.max_delay);
        jitter = b.jitter;
        break;
      }
      case 3: {  // AWS full jitter: U(0, expo)
        const auto& b = *std::get_if<full_jitter_backoff>(&formula_);
        const duration top = detail::capped_exponential(b.base, b.factor, r, b.max_delay);
        // The double product can round above `top` (and so above max_delay): clamp back.
        return detail::min(detail::clamp_ns(random.uniform() * static_cast<double>(top.count())),
                           top);
      }
      case 4: {  // AWS equal jitter: expo/2 + U(0, expo/2)
        const auto& b = *std::get_if<equal_jitter_backoff>(&formula_);
        const duration top = detail::capped_exponential(b.base, b.factor, r, b.max_delay);
        const double half = static_cast<double>(top.count()) / 2.0;
        // Rounding in double can land just outside [top/2, top]: clamp back.
        const duration drawn = detail::clamp_ns(half + random.uniform() * half);
        return detail::min(detail::max(drawn, top / 2), top);
      }
      case 5: {  // AWS decorrelated jitter: min(cap, U(base, 3·prev)), prev0 = base
        const auto& b = *std::get_if<decorrelated_jitter_backoff>(&formula_);
        const duration prev = state.previous > duration::zero() ? state.previous : b.base;
        const double lo = static_cast<double>(b.base.count());
        const double hi = 3.0 * static_cast<double>(prev.count());
        d = detail::clamp_ns(lo + random.uniform() * (hi - lo));
        // A base near duration::max() rounds down in double: never go below it.
        if (d < b.base) d = b.base;
        if (d > b.max_delay) d = b.max_delay;
        state.previous = d;
        return d;
      }
      default: {  // Polly DecorrelatedJitterBackoffV2
        const auto& b = *std::get_if<decorrelated_jitter_v2_backoff>(&formula_);
        constexpr double p_factor = 4.0;          // smooths the first delay (Polly's PFactor)
        constexpr double rp_scaling = 1.0 / 1.4;  // puts medians near 1, 2, 4... x base
        const double t = static_cast<double>(r - 1) + random.uniform();
        const double next = std::pow(2.0, t) * std::tanh(std::sqrt(p_factor * t));
        if (!detail::is_finite(next)) {  // t >= 1024: Polly returns TimeSpan.MaxValue (Polly #2163)
          state.previous_v2 = next;
          return b.max_delay;
        }
        const double intrinsic = next - state.previous_v2;
        state.previous_v2 = next;
        d = detail::clamp_ns(intrinsic * rp_scaling * static_cast<double>(b.base.count()));
        if (d > b.max_delay) d = b.max_delay;
        return d;
      }
    }
    return detail::proportional_jitter(d, jitter, random);
  }

 private:
  formula formula_{exponential_backoff{}};
};

namespace detail {

/// The one check of a backoff's fields; `in_retry` picks the field-name prefix.
constexpr validation_result validate_backoff(const backoff& b, bool in_retry) noexcept {
  const auto named = [in_retry](std::string_view retry_name, std::string_view alone,
                                std::string_view reason) {
    return validation_result(config_problem{in_retry ? retry_name : alone, reason});
  };
  const auto jitter_ok = [](double f) { return f >= 0.0 && f <= 1.0; };
  const auto factor_ok = [](double f) { return detail::is_finite(f) && f >= 1.0; };
  const duration zero = duration::zero();
  const backoff::formula& f = b.get();
  // index() and std::get rather than get_if: GCC 12 refuses get_if's pointer
  // test on a temporary in a constant expression.
  switch (f.index()) {
    case 0: {
      const auto& c = std::get<constant_backoff>(f);
      if (c.delay < zero)
        return named("retry_options.backoff.delay", "backoff.delay", "must be >= 0");
      if (!jitter_ok(c.jitter))
        return named("retry_options.backoff.jitter", "backoff.jitter", "must be within [0, 1]");
      return std::nullopt;
    }
    case 1: {
      const auto& l = std::get<linear_backoff>(f);
      if (l.initial < zero)
        return named("retry_options.backoff.initial", "backoff.initial", "must be >= 0");
      if (l.increment < zero)
        return named("retry_options.backoff.increment", "backoff.increment", "must be >= 0");
      if (l.max_delay < l.initial)
        return named("retry_options.backoff.max_delay", "backoff.max_delay", "must be >= initial");
      if (!jitter_ok(l.jitter))
        return named("retry_options.backoff.jitter", "backoff.jitter", "must be within [0, 1]");
      return std::nullopt;
    }
    case 2: {
      const auto& e = std::get<exponential_backoff>(f);
      if (e.initial < zero)
        return named("retry_options.backoff.initial", "backoff.initial", "must be >= 0");
      if (!factor_ok(e.factor))
        return named("retry_options.backoff.factor", "backoff.factor", "must be finite and >= 1");
      if (e.max_delay < e.initial)
        return named("retry_options.backoff.max_delay", "backoff.max_delay", "must be >= initial");
      if (!jitter_ok(e.jitter))
        return named("retry_options.backoff.jitter", "backoff.jitter", "must be within [0, 1]");
      return std::nullopt;
    }
    default:
      break;
  }
  duration base{};
  duration max_delay{};
  double factor = 2.0;
  switch (f.index()) {
    case 3:
      base = std::get<full_jitter_backoff>(f).base;
      max_delay = std::get<full_jitter_backoff>(f).max_delay;
      factor = std::get<full_jitter_backoff>(f).factor;
      break;
    case 4:
      base = std::get<equal_jitter_backoff>(f).base;
      max_delay = std::get<equal_jitter_backoff>(f).max_delay;
      factor = std::get<equal_jitter_backoff>(f).factor;
      break;
    case 5:
      base = std::get<decorrelated_jitter_backoff>(f).base;
      max_delay = std::get<decorrelated_jitter_backoff>(f).max_delay;
      break;
    default:
      base = std::get<decorrelated_jitter_v2_backoff>(f).base;
      max_delay = std::get<decorrelated_jitter_v2_backoff>(f).max_delay;
      break;
  }
  if (base < zero) return named("retry_options.backoff.base", "backoff.base", "must be >= 0");
  if (!factor_ok(factor))
    return named("retry_options.backoff.factor", "backoff.factor", "must be finite and >= 1");
  if (max_delay < base)
    return named("retry_options.backoff.max_delay", "backoff.max_delay", "must be >= base");
  return std::nullopt;
}

}  // namespace detail

/// Checks a backoff's fields (durations >= 0, factor >= 1, jitter in [0, 1],
/// max_delay >= the first delay). Field names read "backoff.<field>".
constexpr validation_result validate(const backoff& b) noexcept {
  return detail::validate_backoff(b, false);
}

}  // namespace keel

#endif  // KEEL_RETRY_BACKOFF_HPP_INCLUDED

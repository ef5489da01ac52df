// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_TIME_HPP_INCLUDED
#define KEEL_CORE_TIME_HPP_INCLUDED

#include <chrono>
#include <cstdint>
#include <limits>

namespace keel {

/// keel's one duration type: signed 64-bit nanoseconds (about ±292 years).
/// Options accept any std::chrono duration that converts to it (100ms, 5s, ...).
using duration = std::chrono::nanoseconds;

/// keel's one time point type: steady-clock nanoseconds. Injected clocks
/// (keel::testing::manual_clock) produce the same type, so options and events
/// never depend on which clock a policy was built with.
using time_point = std::chrono::time_point<std::chrono::steady_clock, duration>;

/// The deadline of a call that has none.
inline constexpr time_point no_deadline = time_point::max();

// Saturating time arithmetic, for policies and their authors: every sum and
// product of durations keel makes goes through these, so `duration::max()`
// means "forever" and never wraps to the past.

namespace detail {
inline constexpr std::int64_t max_ns = std::numeric_limits<std::int64_t>::max();
inline constexpr std::int64_t min_ns = std::numeric_limits<std::int64_t>::min();
}  // namespace detail

/// a + b, clamped to the representable range instead of overflowing.
constexpr duration saturating_add(duration a, duration b) noexcept {
  std::int64_t r{};
  if (__builtin_add_overflow(a.count(), b.count(), &r)) {
    return duration{b.count() > 0 ? detail::max_ns : detail::min_ns};
  }
  return duration{r};
}

/// t + d, clamped: a deadline far in the future becomes no_deadline, never a past time.
constexpr time_point saturating_add(time_point t, duration d) noexcept {
  return time_point{saturating_add(t.time_since_epoch(), d)};
}

/// d * factor for factor >= 0, clamped to duration::max(); NaN gives zero.
constexpr duration saturating_mul(duration d, double factor) noexcept {
  const double r = static_cast<double>(d.count()) * factor;
  if (!(r == r)) return duration::zero();  // NaN
  // 2^63 is exactly representable as a double; anything at or above it saturates.
  if (r >= 9223372036854775807.0) return duration::max();
  if (r <= -9223372036854775807.0) return duration::min();
  return duration{static_cast<std::int64_t>(r)};
}

/// A non-negative number of seconds as a duration, clamped to [0, duration::max()].
constexpr duration seconds_to_duration(double seconds) noexcept {
  if (!(seconds > 0.0)) return duration::zero();  // negative or NaN
  return saturating_mul(duration{1'000'000'000}, seconds);
}

/// max(0, b - a) without overflow: the time left from `now` until `deadline`.
constexpr duration time_until(time_point now, time_point deadline) noexcept {
  if (deadline <= now) return duration::zero();
  std::int64_t r{};
  if (__builtin_sub_overflow(deadline.time_since_epoch().count(), now.time_since_epoch().count(),
                             &r)) {
    return duration::max();
  }
  return duration{r};
}

namespace detail {
// keel's own headers name them here too.
using keel::saturating_add;
using keel::saturating_mul;
using keel::seconds_to_duration;
using keel::time_until;
}  // namespace detail

}  // namespace keel

#endif  // KEEL_CORE_TIME_HPP_INCLUDED

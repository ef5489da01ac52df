// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_COARSE_CLOCK_HPP_INCLUDED
#define KEEL_CORE_COARSE_CLOCK_HPP_INCLUDED

// A cheaper monotonic clock for policies whose windows and thresholds are
// much longer than its resolution. Opt-in: not included by <keel/keel.hpp>.

#include <chrono>
#include <cstdint>
#include <ctime>

#include "keel/core/environment.hpp"
#include "keel/core/time.hpp"

#if defined(__linux__) && defined(CLOCK_MONOTONIC_COARSE)
#define KEEL_DETAIL_HAS_COARSE_CLOCK 1
#else
#define KEEL_DETAIL_HAS_COARSE_CLOCK 0
#endif

namespace keel {

/// The monotonic clock as of the kernel's last timer tick (Linux
/// CLOCK_MONOTONIC_COARSE): read without a system call or a time-stamp
/// counter, about 8x cheaper than keel::steady_clock, never ahead of it, and
/// behind it by up to resolution() (typically 1-4 ms). Its time line is
/// steady_clock's, so deadlines read by either compare. Elsewhere it is
/// keel::steady_clock.
struct coarse_steady_clock {
  time_point now() const noexcept {
#if KEEL_DETAIL_HAS_COARSE_CLOCK
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return time_point(duration(static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 +
                               static_cast<std::int64_t>(ts.tv_nsec)));
#else
    return steady_clock{}.now();
#endif
  }

  /// How far apart its readings step (the kernel's tick); 1 ns where it is steady_clock.
  static duration resolution() noexcept {
#if KEEL_DETAIL_HAS_COARSE_CLOCK
    timespec ts{};
    if (::clock_getres(CLOCK_MONOTONIC_COARSE, &ts) != 0) return duration(1);
    return duration(static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 +
                    static_cast<std::int64_t>(ts.tv_nsec));
#else
    return duration(1);
#endif
  }
};

/// default_environment with the coarse clock: for a breaker's time-window
/// rule, a slow-call threshold or a timeout that are many ticks long
/// (`keel::circuit_breaker{o}.with_environment(keel::coarse_environment{})`).
using coarse_environment = basic_environment<coarse_steady_clock>;

}  // namespace keel

#endif  // KEEL_CORE_COARSE_CLOCK_HPP_INCLUDED

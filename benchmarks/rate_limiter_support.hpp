// SPDX-License-Identifier: BSL-1.0
// The floor of the rate limiter's benchmarks: the GCRA a careful programmer
// would write by hand, one clock read and one compare-and-swap on the
// theoretical arrival time, and nothing else (no pause, no refunds, no waits);
// it is the floor of the sliding window's rows too.
#ifndef KEEL_BENCHMARKS_RATE_LIMITER_SUPPORT_HPP_INCLUDED
#define KEEL_BENCHMARKS_RATE_LIMITER_SUPPORT_HPP_INCLUDED

#include <atomic>
#include <chrono>
#include <cstdint>

#include <keel/admission/rate_limiter.hpp>
#include <keel/admission/sliding_window_limit.hpp>

namespace keel_bench {

/// One unit per nanosecond with a burst of a second: a call never waits for
/// the clock, so every row measures the admission path.
inline constexpr keel::rate_limit_options fast_limit{
    .limit = 1'000'000'000, .period = std::chrono::seconds(1), .burst = 1'000'000'000};

/// A window that never fills (2^62 units per second, 60 buckets): every row
/// measures the admission path, crossing a bucket every 16.7 ms.
inline constexpr keel::sliding_window_options fast_window{
    .limit = std::uint64_t{1} << 62, .period = std::chrono::seconds(1), .buckets = 60};

class hand_written_gcra {
 public:
  bool try_acquire() noexcept {
    const std::int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
    std::int64_t tat = tat_.load(std::memory_order_relaxed);
    for (;;) {
      const std::int64_t end = (tat > now ? tat : now) + interval_;
      if (end - tau_ > now) return false;
      if (tat_.compare_exchange_weak(tat, end, std::memory_order_acq_rel,
                                     std::memory_order_relaxed)) {
        return true;
      }
    }
  }

 private:
  std::int64_t interval_ = 1;
  std::int64_t tau_ = 1'000'000'000;
  std::atomic<std::int64_t> tat_{0};
};

}  // namespace keel_bench

#endif  // KEEL_BENCHMARKS_RATE_LIMITER_SUPPORT_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_TIMEOUT_TIMEOUT_EVENTS_HPP_INCLUDED
#define KEEL_TIMEOUT_TIMEOUT_EVENTS_HPP_INCLUDED

#include <atomic>
#include <cstdint>

#include "keel/core/time.hpp"

namespace keel {

/// A call passed its deadline; the caller gets errc::timeout.
struct timed_out {
  duration timeout;  ///< the policy's configured timeout
  duration elapsed;  ///< how long the call ran (0 when the deadline had passed before it started)
  time_point deadline;  ///< the deadline the call saw (the earliest of the nested ones)
};

/// A call returned after its deadline and, with keep_late_result, its outcome was kept.
struct late_result_kept {
  duration timeout;
  duration elapsed;
  time_point deadline;
};

/// A ready-made, thread-safe listener counting timeout events; a timeout is an
/// immutable value, so its counters live here: `with_listener(std::ref(counters))`.
class timeout_counters {
 public:
  void on(const timed_out&) const noexcept { timed_out_.fetch_add(1, std::memory_order_relaxed); }
  void on(const late_result_kept&) const noexcept { kept_.fetch_add(1, std::memory_order_relaxed); }

  /// Calls that ended in errc::timeout.
  std::uint64_t timed_out_calls() const noexcept {
    return timed_out_.load(std::memory_order_relaxed);
  }
  /// Late calls whose outcome was kept (keep_late_result).
  std::uint64_t late_results_kept() const noexcept { return kept_.load(std::memory_order_relaxed); }

 private:
  mutable std::atomic<std::uint64_t> timed_out_{0};
  mutable std::atomic<std::uint64_t> kept_{0};
};

}  // namespace keel

#endif  // KEEL_TIMEOUT_TIMEOUT_EVENTS_HPP_INCLUDED

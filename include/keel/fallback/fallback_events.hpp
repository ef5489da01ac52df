// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_FALLBACK_FALLBACK_EVENTS_HPP_INCLUDED
#define KEEL_FALLBACK_FALLBACK_EVENTS_HPP_INCLUDED

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "keel/core/error.hpp"

namespace keel {

/// An alternative of a fallback chain produced the result. `index` is the
/// 0-based position of that alternative in the chain; `failure` is the failure
/// it saw (of the primary, or of the alternative tried just before it).
struct fallback_used {
  std::size_t index;
  keel::failure failure;
};

/// An alternative was not tried because its `when(...)` predicate does not
/// handle the current failure. Cheap: built for every skip a listener hears.
struct fallback_skipped {
  std::size_t index;  ///< 0-based position of the skipped alternative
};

/// The primary and every alternative that was tried failed; the caller gets
/// keel::errc::all_fallbacks_failed with `count` causes (the primary included).
struct all_fallbacks_failed {
  std::size_t count;
};

/// A fallback chain stopped because the caller requested stop: cancellation is
/// not a failure to degrade from, so no further alternative is tried.
struct fallback_cancelled {
  std::size_t tried;  ///< outcomes produced before the stop (the primary included)
};

/// A ready-made listener that counts fallback events; thread-safe. A fallback
/// is an immutable value, so its counters live here: pass `std::ref(counters)`
/// to `with_listener`, and share one object between several chains if you like.
class fallback_counters {
 public:
  void on(const fallback_used&) const noexcept { used_.fetch_add(1, std::memory_order_relaxed); }
  void on(const fallback_skipped&) const noexcept {
    skipped_.fetch_add(1, std::memory_order_relaxed);
  }
  void on(const all_fallbacks_failed&) const noexcept {
    all_failed_.fetch_add(1, std::memory_order_relaxed);
  }
  void on(const fallback_cancelled&) const noexcept {
    cancelled_.fetch_add(1, std::memory_order_relaxed);
  }

  /// Calls whose result came from an alternative.
  std::uint64_t used() const noexcept { return used_.load(std::memory_order_relaxed); }
  /// Alternatives skipped because they do not handle the failure.
  std::uint64_t skipped() const noexcept { return skipped_.load(std::memory_order_relaxed); }
  /// Calls that ended in errc::all_fallbacks_failed.
  std::uint64_t all_failed() const noexcept { return all_failed_.load(std::memory_order_relaxed); }
  /// Chains stopped by the caller's stop request.
  std::uint64_t cancelled() const noexcept { return cancelled_.load(std::memory_order_relaxed); }

 private:
  mutable std::atomic<std::uint64_t> used_{0};
  mutable std::atomic<std::uint64_t> skipped_{0};
  mutable std::atomic<std::uint64_t> all_failed_{0};
  mutable std::atomic<std::uint64_t> cancelled_{0};
};

}  // namespace keel

#endif  // KEEL_FALLBACK_FALLBACK_EVENTS_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_FALLBACK_FALLBACK_EVENTS_HPP_INCLUDED
#define KEEL_FALLBACK_FALLBACK_EVENTS_HPP_INCLUDED

#include <cstddef>

#include "keel/core/error.hpp"
#include "keel/core/observe.hpp"

namespace keel {

/// An alternative of a fallback chain produced the result. `index` is the
/// 0-based position of that alternative in the chain; `failure` is the failure
/// it saw (of the primary, or of the alternative tried just before it).
struct fallback_used {
  static constexpr event_kind kind = event_kind::fallback_used;
  std::size_t index;
  keel::failure failure;
  event_source source{};  ///< the fallback, and the pipeline of the call
};

/// An alternative was not tried because its `when(...)` predicate does not
/// handle the current failure. Cheap: built for every skip a listener hears.
struct fallback_skipped {
  static constexpr event_kind kind = event_kind::fallback_skipped;
  std::size_t index;      ///< 0-based position of the skipped alternative
  event_source source{};  ///< the fallback, and the pipeline of the call
};

/// The primary and every alternative that was tried failed; the caller gets
/// keel::errc::all_fallbacks_failed with `count` causes (the primary included).
struct all_fallbacks_failed {
  static constexpr event_kind kind = event_kind::all_fallbacks_failed;
  std::size_t count;
  event_source source{};  ///< the fallback, and the pipeline of the call
};

/// A fallback chain stopped because the caller requested stop: cancellation is
/// not a failure to degrade from, so no further alternative is tried.
struct fallback_cancelled {
  static constexpr event_kind kind = event_kind::fallback_cancelled;
  std::size_t tried;      ///< outcomes produced before the stop (the primary included)
  event_source source{};  ///< the fallback, and the pipeline of the call
};

}  // namespace keel

#endif  // KEEL_FALLBACK_FALLBACK_EVENTS_HPP_INCLUDED

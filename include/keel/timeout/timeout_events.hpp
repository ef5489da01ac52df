// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_TIMEOUT_TIMEOUT_EVENTS_HPP_INCLUDED
#define KEEL_TIMEOUT_TIMEOUT_EVENTS_HPP_INCLUDED

#include "keel/core/observe.hpp"
#include "keel/core/time.hpp"

namespace keel {

/// A call passed its deadline; the caller gets errc::timeout.
struct timed_out {
  static constexpr event_kind kind = event_kind::timed_out;
  duration timeout;  ///< the policy's configured timeout
  duration elapsed;  ///< how long the call ran (0 when the deadline had passed before it started)
  time_point deadline;    ///< the deadline the call saw (the earliest of the nested ones)
  event_source source{};  ///< the timeout, and the pipeline of the call
};

/// A call returned after its deadline and, with keep_late_result, its outcome was kept.
struct late_result_kept {
  static constexpr event_kind kind = event_kind::late_result_kept;
  duration timeout;
  duration elapsed;
  time_point deadline;
  event_source source{};  ///< the timeout, and the pipeline of the call
};

}  // namespace keel

#endif  // KEEL_TIMEOUT_TIMEOUT_EVENTS_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_RETRY_RETRY_EVENTS_HPP_INCLUDED
#define KEEL_RETRY_RETRY_EVENTS_HPP_INCLUDED

#include <string_view>

#include "keel/core/error.hpp"
#include "keel/core/observe.hpp"
#include "keel/core/time.hpp"

namespace keel {

/// Why a retry policy stopped retrying a failure.
enum class give_up_reason : unsigned char {
  max_attempts,     ///< retries_exhausted: the last allowed attempt failed
  max_elapsed,      ///< retries_exhausted: the next attempt would start past max_elapsed
  deadline,         ///< retries_exhausted: the next attempt would start at or past the deadline
  delay_function,   ///< retries_exhausted: the user delay function returned "stop" (nullopt)
  abort_predicate,  ///< retry_aborted: the failure matched abort_on
  cancelled,        ///< retry_aborted: stop was requested, or the failure is a cancellation
  rejection,  ///< retry_aborted: an inner policy rejected the call and retry_rejections is off
};

/// The enumerator's name ("max_attempts"); "unknown" otherwise.
constexpr std::string_view to_string_view(give_up_reason r) noexcept {
  switch (r) {
    case give_up_reason::max_attempts:
      return "max_attempts";
    case give_up_reason::max_elapsed:
      return "max_elapsed";
    case give_up_reason::deadline:
      return "deadline";
    case give_up_reason::delay_function:
      return "delay_function";
    case give_up_reason::abort_predicate:
      return "abort_predicate";
    case give_up_reason::cancelled:
      return "cancelled";
    case give_up_reason::rejection:
      return "rejection";
  }
  return "unknown";
}

/// A failed attempt will be retried after `delay`.
struct retry_scheduled {
  static constexpr event_kind kind = event_kind::retry_scheduled;
  int attempt = 0;          ///< the attempt that failed (1-based); the next one is attempt + 1
  duration delay{};         ///< the wait before the next attempt
  ::keel::failure failure;  ///< how the attempt failed
  bool from_hint = false;   ///< the delay is a server or keel hint, not the backoff
  event_source source{};    ///< the retry (and the pipeline) that emitted it
};

/// Retrying stopped with a failure: attempts or time ran out.
struct retries_exhausted {
  static constexpr event_kind kind = event_kind::retries_exhausted;
  int attempts = 0;         ///< calls made, the first included
  give_up_reason reason{};  ///< max_attempts, max_elapsed, deadline or delay_function
  ::keel::failure failure;  ///< the last failure, which the caller gets
  event_source source{};    ///< the retry (and the pipeline) that emitted it
};

/// Retrying stopped because the failure must not be retried.
struct retry_aborted {
  static constexpr event_kind kind = event_kind::retry_aborted;
  int attempt = 0;          ///< the attempt whose failure stopped it
  give_up_reason reason{};  ///< abort_predicate, cancelled or rejection
  ::keel::failure failure;  ///< that failure
  event_source source{};    ///< the retry (and the pipeline) that emitted it
};

/// A shared retry_budget refused a retry; the caller gets the last failure.
struct retry_budget_exhausted {
  static constexpr event_kind kind = event_kind::retry_budget_exhausted;
  int attempt = 0;          ///< the attempt that failed and was not retried
  ::keel::failure failure;  ///< its failure
  event_source source{};    ///< the retry (and the pipeline) that emitted it
};

/// A call succeeded after at least one retry.
struct retry_succeeded {
  static constexpr event_kind kind = event_kind::retry_succeeded;
  int attempts = 0;       ///< calls made, the first included (>= 2)
  event_source source{};  ///< the retry (and the pipeline) that emitted it
};

}  // namespace keel

#endif  // KEEL_RETRY_RETRY_EVENTS_HPP_INCLUDED

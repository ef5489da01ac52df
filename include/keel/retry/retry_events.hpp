// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_RETRY_RETRY_EVENTS_HPP_INCLUDED
#define KEEL_RETRY_RETRY_EVENTS_HPP_INCLUDED

#include <cstdint>
#include <string_view>

#include "keel/core/error.hpp"
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
  int attempt = 0;          ///< the attempt that failed (1-based); the next one is attempt + 1
  duration delay{};         ///< the wait before the next attempt
  ::keel::failure failure;  ///< how the attempt failed
  bool from_hint = false;   ///< the delay is a server or keel hint, not the backoff
};

/// Retrying stopped with a failure: attempts or time ran out.
struct retries_exhausted {
  int attempts = 0;         ///< calls made, the first included
  give_up_reason reason{};  ///< max_attempts, max_elapsed, deadline or delay_function
  ::keel::failure failure;  ///< the last failure, which the caller gets
};

/// Retrying stopped because the failure must not be retried.
struct retry_aborted {
  int attempt = 0;          ///< the attempt whose failure stopped it
  give_up_reason reason{};  ///< abort_predicate, cancelled or rejection
  ::keel::failure failure;  ///< that failure
};

/// A shared retry_budget refused a retry; the caller gets the last failure.
struct retry_budget_exhausted {
  int attempt = 0;          ///< the attempt that failed and was not retried
  ::keel::failure failure;  ///< its failure
};

/// What a retry policy counted so far; readable without a listener. Only the
/// failure and retry paths count: a call that succeeds at once writes nothing,
/// so a policy shared by many threads costs no contended cache line.
struct retry_counters {
  std::uint64_t retries = 0;                ///< retries started (sleeps begun)
  std::uint64_t successes_after_retry = 0;  ///< calls that succeeded after at least one retry
  std::uint64_t exhausted = 0;              ///< retries_exhausted events
  std::uint64_t aborted = 0;                ///< retry_aborted events
  std::uint64_t budget_refusals = 0;        ///< retry_budget_exhausted events
};

}  // namespace keel

#endif  // KEEL_RETRY_RETRY_EVENTS_HPP_INCLUDED

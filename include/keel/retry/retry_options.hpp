// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_RETRY_RETRY_OPTIONS_HPP_INCLUDED
#define KEEL_RETRY_RETRY_OPTIONS_HPP_INCLUDED

#include <chrono>

#include "keel/core/config_error.hpp"
#include "keel/core/time.hpp"
#include "keel/retry/backoff.hpp"

namespace keel {

/// How a retry policy retries. An aggregate: fill it with designated initializers,
///
///     keel::retry_options{.max_attempts = 5,
///                         .backoff = keel::exponential_backoff{.initial = 200ms, .jitter = 0.2}}
struct retry_options {
  /// Total calls, the first included (resilience4j's meaning; Polly counts retries).
  /// >= 1; 1 disables retrying. Default 3.
  int max_attempts = 3;

  /// The wait before each retry. Default: 100 ms doubling up to 10 s, each delay
  /// spread ±20% (gRPC A6's formula), so that clients that failed together do not
  /// retry together.
  ::keel::backoff backoff = exponential_backoff{.initial = std::chrono::milliseconds(100),
                                                .factor = 2.0,
                                                .max_delay = std::chrono::seconds(10),
                                                .jitter = 0.2};

  /// Limit on the whole call, measured from its start (the clock is read at the
  /// start only when this is set): no retry starts at or past it. Default: none.
  duration max_elapsed = duration::max();

  /// Upper bound on a hint (Retry-After, keel::error::retry_after, an inner
  /// breaker's retry_after): a hint wins over the backoff but never waits longer
  /// than this. Default 30 s.
  duration max_hint_delay = std::chrono::seconds(30);

  /// Whether a rejection by an inner policy (any code equal to
  /// keel::condition::rejected) is retried, after its retry_after hint.
  /// Default false: the rejection is returned at once.
  bool retry_rejections = false;
};

/// Checks every field; problems are named "retry_options.<field>" (the backoff's
/// "retry_options.backoff.<field>").
constexpr validation_result validate(const retry_options& o) noexcept {
  if (o.max_attempts < 1) return config_problem{"retry_options.max_attempts", "must be >= 1"};
  if (o.max_elapsed <= duration::zero())
    return config_problem{"retry_options.max_elapsed", "must be > 0 (duration::max() = none)"};
  if (o.max_hint_delay < duration::zero())
    return config_problem{"retry_options.max_hint_delay", "must be >= 0"};
  return detail::validate_backoff(o.backoff, true);
}

}  // namespace keel

#endif  // KEEL_RETRY_RETRY_OPTIONS_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CIRCUIT_BREAKER_CIRCUIT_BREAKER_EVENTS_HPP_INCLUDED
#define KEEL_CIRCUIT_BREAKER_CIRCUIT_BREAKER_EVENTS_HPP_INCLUDED

#include <optional>

#include "keel/circuit_breaker/circuit_breaker_options.hpp"
#include "keel/core/error.hpp"
#include "keel/core/observe.hpp"
#include "keel/core/time.hpp"

namespace keel {

/// Why a circuit opened.
enum class open_reason : unsigned char {
  consecutive_failures,  ///< the consecutive_failures rule
  failures_in_period,    ///< the failures_in_period rule
  failure_ratio,         ///< a failure_ratio_count / failure_ratio_time rule
  slow_call_ratio,       ///< the slow_calls rule
  probe_failed,          ///< a half-open probe failed so that closing became impossible
};

/// The circuit opened: calls are rejected for `open_for` from `at`.
struct circuit_opened {
  static constexpr event_kind kind = event_kind::circuit_opened;
  open_reason reason{};
  double failure_ratio = 0.0;  ///< failures / calls seen by the rule (1.0 for the counting rules)
  duration open_for{};         ///< how long it stays open (grown, or from a retry-after hint)
  time_point at{};             ///< when it opened
  event_source source{};       ///< the breaker (no pipeline: a transition belongs to no one call)
};

/// The open time was over: the circuit let its first probe through at `at`.
struct circuit_half_opened {
  static constexpr event_kind kind = event_kind::circuit_half_opened;
  time_point at{};
  event_source source{};  ///< the breaker (no pipeline: a transition belongs to no one call)
};

/// Enough probes succeeded (or reset() was called): the circuit closed at `at`.
struct circuit_closed {
  static constexpr event_kind kind = event_kind::circuit_closed;
  time_point at{};
  event_source source{};  ///< the breaker (no pipeline: a transition belongs to no one call)
};

/// Every transition, automatic or by hand (isolate, disable, reset), in one event.
struct circuit_state_changed {
  static constexpr event_kind kind = event_kind::circuit_state_changed;
  circuit_state from{};
  circuit_state to{};
  time_point at{};
  event_source source{};  ///< the breaker (no pipeline: a transition belongs to no one call)
};

/// A call was rejected without being made.
struct call_rejected {
  static constexpr event_kind kind = event_kind::call_rejected;
  errc code{};                            ///< circuit_open or circuit_isolated
  circuit_state state{};                  ///< open, half_open (no probe slot free) or isolated
  std::optional<duration> retry_after{};  ///< time until a probe may go, when known
  event_source source{};  ///< the breaker, and the pipeline of the call when run() rejected it
};

}  // namespace keel

#endif  // KEEL_CIRCUIT_BREAKER_CIRCUIT_BREAKER_EVENTS_HPP_INCLUDED

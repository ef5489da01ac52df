// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CIRCUIT_BREAKER_BREAKER_TYPES_HPP_INCLUDED
#define KEEL_CIRCUIT_BREAKER_BREAKER_TYPES_HPP_INCLUDED

// The vocabulary a circuit breaker's state machine and its drivers share:
// how a call ended, the answer to "may it go?", a change of state, and the
// metrics snapshot.

#include <cstdint>
#include <optional>

#include "keel/circuit_breaker/circuit_breaker_events.hpp"
#include "keel/circuit_breaker/circuit_breaker_options.hpp"
#include "keel/core/error.hpp"
#include "keel/core/time.hpp"

namespace keel {

/// How a call that was let through ended, as the breaker counts it.
enum class call_result : unsigned char {
  success,  ///< the dependency answered well
  failure,  ///< the dependency failed (counts toward the trip rule)
  ignored,  ///< says nothing about the dependency (cancelled, a 404, ...): counts as neither
};

/// One change of state, as reported by breaker_state_machine (emit_for turns
/// it into events). `reason`, `failure_ratio` and `open_for` are set when `to`
/// is open.
struct circuit_transition {
  circuit_state from{};
  circuit_state to{};
  time_point at{};
  open_reason reason{};
  double failure_ratio = 0.0;
  duration open_for{};
};

/// The answer of try_acquire: whether the call may go and, if it may, the
/// generation (epoch) it was admitted in. Results are recorded against it:
/// once the breaker has changed state, a result of an earlier generation is
/// ignored. Small and flat on purpose: it is built on every call.
struct circuit_admission {
  bool admitted = false;
  circuit_state state = circuit_state::closed;  ///< admitted in, or rejected by
  /// True when this call began a half-open round (from `previous`, at `at`):
  /// the open time was over, or the last round waited too long.
  bool began_round = false;
  circuit_state previous = circuit_state::closed;  ///< the state before, when began_round
  /// The epoch: 0 at construction, +1 at every transition and every
  /// isolate(), disable() or reset(); 64 bits, so it never comes back.
  std::uint64_t generation = 0;
  time_point at{};                        ///< when began_round: the time of the transition
  std::optional<duration> retry_after{};  ///< rejections: time until a probe may go

  explicit operator bool() const noexcept { return admitted; }
  /// True when the call is a half-open probe.
  bool is_probe() const noexcept { return admitted && state == circuit_state::half_open; }
  /// circuit_isolated when isolated by hand, circuit_open otherwise.
  errc rejection_code() const noexcept {
    return state == circuit_state::isolated ? errc::circuit_isolated : errc::circuit_open;
  }
  /// The transition this call made, if it began a half-open round.
  std::optional<circuit_transition> transition() const noexcept {
    if (!began_round) return std::nullopt;
    return circuit_transition{previous, circuit_state::half_open, at, {}, 0.0, {}};
  }
};

/// A rejection by an open circuit, decided on the closed path's look
/// (breaker_state_machine::reject_open): the time until a probe may go, or
/// nothing (false: not rejected there). One word, so that it stays in a register.
class open_rejection {
 public:
  open_rejection() = default;
  /// Rejected, `left` (> 0) before a probe may go.
  explicit open_rejection(duration left) noexcept : left_ns_(left.count()) {}
  /// True when the call was rejected.
  explicit operator bool() const noexcept { return left_ns_ > 0; }
  /// Time until a probe may go (>= 1 ns when rejected).
  duration retry_after() const noexcept { return duration(left_ns_); }
  /// The event circuit_breaker emits for it.
  call_rejected event() const noexcept {
    return {errc::circuit_open, circuit_state::open, retry_after()};
  }

 private:
  std::int64_t left_ns_ = 0;  // > 0 when rejected
};

/// A snapshot of a breaker, readable at any time without a listener.
struct circuit_metrics {
  circuit_state state = circuit_state::closed;
  std::uint64_t failures = 0;    ///< failures recorded since construction (late ones included)
  std::uint64_t slow_calls = 0;  ///< slow calls recorded since construction
  std::uint64_t rejections = 0;  ///< calls rejected since construction
  /// What the trip rule's window holds now. failure_ratio_count: the outcomes
  /// in the window (at most window_size); failure_ratio_time: the outcomes in
  /// the period's buckets; consecutive_failures: the failures of the run under
  /// way (0 when not closed); failures_in_period: the failures in the period.
  /// The two counting rules keep no per-success count (a shared store per call).
  std::uint64_t window_calls = 0;
  std::uint64_t window_failures = 0;  ///< failures in the rule's window
  std::uint64_t window_slow_calls = 0;
  double failure_ratio = 0.0;             ///< window_failures / window_calls, 0 without calls
  double slow_call_ratio = 0.0;           ///< window_slow_calls / window_calls, 0 without calls
  std::uint32_t probes_admitted = 0;      ///< half-open: probes out or decided in this round
  time_point last_transition{};           ///< time of the last change of state (time zero if none)
  std::optional<duration> retry_after{};  ///< open: time until a probe may go
};

}  // namespace keel

#endif  // KEEL_CIRCUIT_BREAKER_BREAKER_TYPES_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_TIMEOUT_TIMEOUT_OPTIONS_HPP_INCLUDED
#define KEEL_TIMEOUT_TIMEOUT_OPTIONS_HPP_INCLUDED

#include <chrono>

#include "keel/core/config_error.hpp"
#include "keel/core/time.hpp"

namespace keel {

/// Options of keel::timeout.
struct timeout_options {
  /// How long the call may take, from the moment the policy starts it. The
  /// deadline it sets is the earlier of now + timeout and any deadline already
  /// in the context. Default 30 s (as Polly); must be > 0.
  duration timeout = std::chrono::seconds(30);
  /// When the call returns after its deadline: false (default) discards its
  /// result and reports errc::timeout; true keeps whatever it returned (only a
  /// cancellation that the timeout itself requested still becomes errc::timeout).
  bool keep_late_result = false;
};

/// Checks timeout_options; the one source of truth, usable in static_assert.
constexpr validation_result validate(const timeout_options& o) noexcept {
  if (o.timeout <= duration::zero())
    return config_problem{"timeout_options.timeout", "must be > 0"};
  return std::nullopt;
}

}  // namespace keel

#endif  // KEEL_TIMEOUT_TIMEOUT_OPTIONS_HPP_INCLUDED

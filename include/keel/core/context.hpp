// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_CONTEXT_HPP_INCLUDED
#define KEEL_CORE_CONTEXT_HPP_INCLUDED

#include <chrono>
#include <stop_token>
#include <utility>

#include "keel/core/time.hpp"

namespace keel {

namespace detail {

/// A non-owning, type-erased reference to a clock, so that context::remaining()
/// reads the same (possibly virtual) clock that set the deadline.
struct clock_ref {
  const void* self = nullptr;
  time_point (*read)(const void*) = nullptr;

  template <class Clock>
  static clock_ref to(const Clock& clock) noexcept {
    return {&clock, [](const void* c) { return static_cast<const Clock*>(c)->now(); }};
  }

  time_point now() const {
    if (read != nullptr) return read(self);
    return std::chrono::time_point_cast<duration>(std::chrono::steady_clock::now());
  }
};

}  // namespace detail

/// What a guarded call knows about itself. A callable receives it when it takes
/// `const keel::context&` as its first parameter. Policies refine it on the way
/// in: retry sets the attempt, timeout tightens the deadline and the stop token.
class context {
 public:
  /// A context with no deadline and a stop token that can never be triggered.
  context() = default;

  /// A context whose stop token is the caller's.
  explicit context(std::stop_token token) noexcept : stop_token_(std::move(token)) {}

  /// 1-based number of this attempt in the innermost retry (1 without retry).
  int attempt() const noexcept { return attempt_; }

  /// When the call must be done; keel::no_deadline when there is none.
  time_point deadline() const noexcept { return deadline_; }
  bool has_deadline() const noexcept { return deadline_ != no_deadline; }

  /// The current time on the clock of the policy that set the deadline
  /// (std::chrono::steady_clock when none did).
  time_point now() const { return clock_.now(); }

  /// Time left until the deadline: zero once it has passed, duration::max()
  /// without one. Pass it to a socket or HTTP client timeout.
  duration remaining() const {
    if (!has_deadline()) return duration::max();
    return detail::time_until(now(), deadline_);
  }

  /// True when the deadline has passed.
  bool expired() const { return has_deadline() && now() >= deadline_; }

  /// Triggered when the caller or a timeout asks the call to stop.
  const std::stop_token& stop_token() const noexcept { return stop_token_; }
  bool stop_requested() const noexcept { return stop_token_.stop_requested(); }

  // --- for policies ---------------------------------------------------------

  /// Sets the attempt number (retry).
  void set_attempt(int attempt) noexcept { attempt_ = attempt; }

  /// Moves the deadline earlier (never later), read with `clock` from now on.
  template <class Clock>
  void tighten_deadline(time_point deadline, const Clock& clock) noexcept {
    if (deadline < deadline_) {
      deadline_ = deadline;
      clock_ = detail::clock_ref::to(clock);
    }
  }

  /// Replaces the stop token (a timeout hands its own, linked to the caller's).
  void set_stop_token(std::stop_token token) noexcept { stop_token_ = std::move(token); }

 private:
  int attempt_ = 1;
  time_point deadline_ = no_deadline;
  detail::clock_ref clock_{};
  std::stop_token stop_token_{};
};

}  // namespace keel

#endif  // KEEL_CORE_CONTEXT_HPP_INCLUDED

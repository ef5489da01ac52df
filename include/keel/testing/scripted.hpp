// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_TESTING_SCRIPTED_HPP_INCLUDED
#define KEEL_TESTING_SCRIPTED_HPP_INCLUDED

#include <algorithm>
#include <cstddef>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "keel/core/context.hpp"
#include "keel/core/time.hpp"
#include "keel/detail/config.hpp"
#include "keel/testing/manual_clock.hpp"

namespace keel::testing {

/// One step of a script: what the next call does.
template <class R>
class step {
  using stored = std::conditional_t<std::is_void_v<R>, std::nullptr_t, R>;

 public:
  /// The call returns `value` (for an expected-like R, a value or an error).
  static step returns(stored value)
    requires(!std::is_void_v<R>)
  {
    step s;
    s.action_ = [v = std::move(value)](const context&) -> R { return v; };
    return s;
  }

  /// The call returns normally (void).
  static step returns()
    requires std::is_void_v<R>
  {
    step s;
    s.action_ = [](const context&) {};
    return s;
  }

#if KEEL_HAS_EXCEPTIONS
  /// The call throws `e`.
  template <class E>
  static step throws(E e) {
    step s;
    s.action_ = [ep = std::make_exception_ptr(std::move(e))](const context&) -> R {
      std::rethrow_exception(ep);
    };
    return s;
  }
#endif

  /// The call runs `f(ctx)`.
  static step runs(std::function<R(const context&)> f) {
    step s;
    s.action_ = std::move(f);
    return s;
  }

  /// The call takes `latency` of virtual time before it does what the step says.
  step after(duration latency) && {
    latency_ = latency;
    return std::move(*this);
  }

  duration latency() const noexcept { return latency_; }
  R play(const context& ctx) const { return action_(ctx); }

 private:
  step() = default;
  std::function<R(const context&)> action_;
  duration latency_{};
};

/// What the scripted callable saw on one call.
struct call_record {
  time_point started;   ///< virtual time at which the call began
  int attempt;          ///< context::attempt()
  time_point deadline;  ///< context::deadline()
};

/// A callable that plays back a script of steps, one per call (the last step
/// repeats; an empty script is refused), advancing a manual_clock by each step's latency, and
/// records every call. Copies share the script and the record. Thread-safe.
///
///     scripted<int> dep(env.clock(), {step<int>::throws(std::runtime_error("down")),
///                                      step<int>::returns(7).after(20ms)});
template <class R>
class scripted {
 public:
  scripted(manual_clock clock, std::vector<step<R>> steps)
      : state_(std::make_shared<state>(std::move(clock), std::move(steps))) {}

  R operator()(const context& ctx) const {
    const step<R>* current = nullptr;
    {
      std::lock_guard lock(state_->mutex);
      const std::size_t i = std::min(state_->records.size(), state_->steps.size() - 1);
      current = &state_->steps.at(i);
      state_->records.push_back({state_->clock.now(), ctx.attempt(), ctx.deadline()});
    }
    state_->clock.advance(current->latency());
    return current->play(ctx);
  }

  /// Number of calls so far.
  std::size_t calls() const {
    std::lock_guard lock(state_->mutex);
    return state_->records.size();
  }

  /// Every call so far, in order.
  std::vector<call_record> records() const {
    std::lock_guard lock(state_->mutex);
    return state_->records;
  }

  /// Virtual start times of the calls, relative to time zero.
  std::vector<duration> start_times() const {
    std::vector<duration> times;
    for (const auto& r : records()) times.push_back(r.started.time_since_epoch());
    return times;
  }

 private:
  struct state {
    state(manual_clock c, std::vector<step<R>> s) : clock(std::move(c)), steps(std::move(s)) {
      if (steps.empty()) {
        keel::detail::throw_or_abort(std::invalid_argument("scripted: the script has no step"));
      }
    }
    manual_clock clock;
    std::vector<step<R>> steps;
    mutable std::mutex mutex;
    std::vector<call_record> records;
  };
  std::shared_ptr<state> state_;
};

}  // namespace keel::testing

#endif  // KEEL_TESTING_SCRIPTED_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_TESTING_MANUAL_CLOCK_HPP_INCLUDED
#define KEEL_TESTING_MANUAL_CLOCK_HPP_INCLUDED

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stop_token>
#include <utility>
#include <vector>

#include "keel/core/time.hpp"

namespace keel::testing {

/// A clock that moves only when told to. Copies share one time line, so a test
/// keeps a copy and advances the time a policy sees. Starts at time_point{}
/// (zero), so `clock.now() - time_point{}` reads as "virtual time elapsed".
/// Thread-safe.
class manual_clock {
 public:
  manual_clock() : now_(std::make_shared<std::atomic<std::int64_t>>(0)) {}

  time_point now() const noexcept {
    return time_point{duration{now_->load(std::memory_order_acquire)}};
  }

  /// Moves the time forward by d (d < 0 is ignored: time never runs backwards).
  void advance(duration d) const noexcept {
    if (d > duration::zero()) {
      std::int64_t current = now_->load(std::memory_order_relaxed);
      while (!now_->compare_exchange_weak(current,
                                          detail::saturating_add(duration{current}, d).count(),
                                          std::memory_order_acq_rel)) {
      }
    }
  }

  /// Virtual time since the clock was made.
  duration elapsed() const noexcept { return now().time_since_epoch(); }

 private:
  std::shared_ptr<std::atomic<std::int64_t>> now_;
};

/// A sleeper that advances a manual_clock instead of sleeping, and records
/// every requested sleep. Copies share the record. An optional hook runs at
/// the start of each sleep (a test can request stop there: the sleeper then
/// wakes at once without advancing the clock, returning false).
class manual_sleeper {
 public:
  explicit manual_sleeper(manual_clock clock)
      : clock_(std::move(clock)), state_(std::make_shared<state>()) {}

  bool sleep_for(duration d, const std::stop_token& token) const {
    std::function<void(duration)> hook;
    {
      std::lock_guard lock(state_->mutex);
      state_->sleeps.push_back(d);
      hook = state_->hook;
    }
    if (hook) hook(d);
    if (token.stop_requested()) return false;
    clock_.advance(d);
    return true;
  }

  /// Every sleep requested so far, in order.
  std::vector<duration> sleeps() const {
    std::lock_guard lock(state_->mutex);
    return state_->sleeps;
  }

  /// Runs `hook(d)` at the start of every sleep from now on.
  void on_sleep(std::function<void(duration)> hook) const {
    std::lock_guard lock(state_->mutex);
    state_->hook = std::move(hook);
  }

 private:
  struct state {
    mutable std::mutex mutex;
    std::vector<duration> sleeps;
    std::function<void(duration)> hook;
  };
  manual_clock clock_;
  std::shared_ptr<state> state_;
};

}  // namespace keel::testing

#endif  // KEEL_TESTING_MANUAL_CLOCK_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
// Small hand-written policies standing in for keel::retry and keel::circuit_breaker
// (written at the same time by others) in the fallback and timeout tests. They
// do only what those tests need, deterministically, through the environment.
#ifndef KEEL_TESTS_UNIT_FALLBACK_STAND_IN_POLICIES_HPP_INCLUDED
#define KEEL_TESTS_UNIT_FALLBACK_STAND_IN_POLICIES_HPP_INCLUDED

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include <keel/core.hpp>

namespace keel_test {

/// Retries any failure but a cancellation, up to max_attempts calls, sleeping
/// delays[i] (the last repeats) through the environment between attempts; never
/// sleeps past the context's deadline (then returns the last failure) unless
/// told to ignore it.
template <class Env>
class stand_in_retry : public keel::executable<stand_in_retry<Env>> {
 public:
  stand_in_retry(int max_attempts, std::vector<keel::duration> delays, Env env,
                 bool honour_deadline = true)
      : max_attempts_(max_attempts),
        delays_(std::move(delays)),
        env_(std::move(env)),
        honour_deadline_(honour_deadline) {}

  template <class R, class Next>
  keel::outcome<R> run(Next&& next, keel::context& ctx) const {
    for (int attempt = 1;; ++attempt) {
      ctx.set_attempt(attempt);
      keel::outcome<R> o = next(ctx);
      if (o.has_value() || keel::is_cancellation(o) || attempt >= max_attempts_) return o;
      const std::size_t i = std::min(static_cast<std::size_t>(attempt - 1), delays_.size() - 1);
      const keel::duration d = delays_[i];
      if (honour_deadline_ && ctx.has_deadline() && env_.now() + d >= ctx.deadline()) return o;
      if (!env_.sleep_for(d, ctx.stop_token()))
        return keel::outcome<R>::from_keel(keel::errc::cancelled);
    }
  }

 private:
  int max_attempts_;
  std::vector<keel::duration> delays_;
  Env env_;
  bool honour_deadline_;
};

/// Opens after `threshold` consecutive failures (cancellations not counted)
/// and then rejects every call with errc::circuit_open; no half-open. Shared by std::ref.
class stand_in_breaker : public keel::executable<stand_in_breaker> {
 public:
  explicit stand_in_breaker(int threshold) : threshold_(threshold) {}
  stand_in_breaker(const stand_in_breaker&) = delete;
  stand_in_breaker& operator=(const stand_in_breaker&) = delete;

  template <class R, class Next>
  keel::outcome<R> run(Next&& next, keel::context& ctx) const {
    if (failures_.load() >= threshold_) {
      rejected_.fetch_add(1);
      return keel::outcome<R>::from_keel(keel::errc::circuit_open);
    }
    keel::outcome<R> o = next(ctx);
    if (o.has_value()) {
      failures_.store(0);
    } else if (!keel::is_cancellation(o)) {
      failures_.fetch_add(1);
    }
    return o;
  }

  bool open() const { return failures_.load() >= threshold_; }
  int failures() const { return failures_.load(); }
  int rejected() const { return rejected_.load(); }

 private:
  int threshold_;
  mutable std::atomic<int> failures_{0};
  mutable std::atomic<int> rejected_{0};
};

/// Passes the call through and remembers the context it saw (deadline, stop token).
class context_probe : public keel::executable<context_probe> {
 public:
  template <class R, class Next>
  keel::outcome<R> run(Next&& next, keel::context& ctx) const {
    {
      std::lock_guard lock(state_->mutex);
      state_->seen.push_back(ctx);
    }
    return next(ctx);
  }

  std::vector<keel::context> seen() const {
    std::lock_guard lock(state_->mutex);
    return state_->seen;
  }

 private:
  struct state {
    std::mutex mutex;
    std::vector<keel::context> seen;
  };
  std::shared_ptr<state> state_ = std::make_shared<state>();
};

}  // namespace keel_test

#endif  // KEEL_TESTS_UNIT_FALLBACK_STAND_IN_POLICIES_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_TESTING_SEEDED_RANDOM_HPP_INCLUDED
#define KEEL_TESTING_SEEDED_RANDOM_HPP_INCLUDED

#include <atomic>
#include <cstdint>
#include <memory>

#include "keel/core/environment.hpp"

namespace keel::testing {

/// A reproducible random source: the same seed gives the same sequence.
/// splitmix64 over a shared atomic counter, so it is thread-safe and lock-free
/// (with several threads, which thread draws which number is up to the scheduler).
/// Copies share one sequence.
class seeded_random {
 public:
  explicit seeded_random(std::uint64_t seed = 42)
      : counter_(std::make_shared<std::atomic<std::uint64_t>>(seed)) {}

  double uniform() const noexcept {
    std::uint64_t state = counter_->fetch_add(0x9e3779b97f4a7c15ULL, std::memory_order_relaxed);
    return keel::detail::unit_interval(keel::detail::splitmix64(state));
  }

 private:
  std::shared_ptr<std::atomic<std::uint64_t>> counter_;
};

/// A source that always returns `value`: for tests that need an exact draw,
/// e.g. the bottom (0.0) or nearly the top (0.999...) of a jitter range.
class fixed_random {
 public:
  explicit fixed_random(double value) : value_(value) {}
  double uniform() const noexcept { return value_; }
  /// The value every draw returns.
  double value() const noexcept { return value_; }

 private:
  double value_;
};

}  // namespace keel::testing

#endif  // KEEL_TESTING_SEEDED_RANDOM_HPP_INCLUDED

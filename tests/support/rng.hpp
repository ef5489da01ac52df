// SPDX-License-Identifier: BSL-1.0
// A tiny seeded generator for randomized tests: the same seed means the same
// sequence on every platform (keel's own splitmix64 step).
#ifndef KEEL_TESTS_SUPPORT_RNG_HPP_INCLUDED
#define KEEL_TESTS_SUPPORT_RNG_HPP_INCLUDED

#include <cstdint>

#include <keel/core/environment.hpp>

namespace keel_test {

struct rng {
  std::uint64_t s;
  std::uint64_t next() { return keel::detail::splitmix64(s); }
  /// Uniform in [lo, hi] (the tiny modulo bias does not matter here).
  std::int64_t in(std::int64_t lo, std::int64_t hi) {
    return lo + static_cast<std::int64_t>(next() % static_cast<std::uint64_t>(hi - lo + 1));
  }
  /// Uniform in [0, 1).
  double unit() { return keel::detail::unit_interval(next()); }
  /// True with probability percent / 100.
  bool chance(int percent) { return in(0, 99) < percent; }
};

}  // namespace keel_test

#endif  // KEEL_TESTS_SUPPORT_RNG_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_TESTING_VIRTUAL_ENVIRONMENT_HPP_INCLUDED
#define KEEL_TESTING_VIRTUAL_ENVIRONMENT_HPP_INCLUDED

#include <cstdint>
#include <stop_token>
#include <vector>

#include "keel/core/environment.hpp"
#include "keel/testing/manual_clock.hpp"
#include "keel/testing/seeded_random.hpp"

namespace keel::testing {

/// Everything a policy needs, in virtual time: a manual_clock, a sleeper that
/// advances it, and a seeded random source. Copies share all three, so a test
/// keeps one and hands copies to policies and scripted callables.
///
///     keel::testing::virtual_environment env;
///     auto retry = keel::retry(options).with_environment(env);
///     ... env.advance(5s); CHECK(env.sleeps() == ...);
template <random_source Random = seeded_random>
class basic_virtual_environment {
 public:
  explicit basic_virtual_environment(Random random = Random{})
      : sleeper_(clock_), random_(std::move(random)) {}

  time_point now() const noexcept { return clock_.now(); }
  bool sleep_for(duration d, const std::stop_token& token) const {
    return sleeper_.sleep_for(d, token);
  }
  double uniform() const { return random_.uniform(); }

  /// Moves virtual time forward.
  void advance(duration d) const noexcept { clock_.advance(d); }
  /// Virtual time since the environment was made.
  duration elapsed() const noexcept { return clock_.elapsed(); }
  /// Every sleep requested so far.
  std::vector<duration> sleeps() const { return sleeper_.sleeps(); }

  const manual_clock& clock() const noexcept { return clock_; }
  const manual_sleeper& sleeper() const noexcept { return sleeper_; }
  const Random& random() const noexcept { return random_; }

 private:
  manual_clock clock_;
  manual_sleeper sleeper_;
  Random random_;
};

/// The usual virtual environment: seeded random numbers (seed 42 unless given).
using virtual_environment = basic_virtual_environment<seeded_random>;

}  // namespace keel::testing

#endif  // KEEL_TESTING_VIRTUAL_ENVIRONMENT_HPP_INCLUDED

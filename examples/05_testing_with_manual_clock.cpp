// 05_testing_with_manual_clock: test your own resilience code in virtual time: exact, instant,
// repeatable. SPDX-License-Identifier: BSL-1.0
//
// The code under test is `price_service`: it guards a dependency with a
// circuit breaker. The test replaces time with a virtual_environment and the
// dependency with a scripted callable, then checks exact virtual times. No
// real sleeping: the 30 s open period passes in a microsecond.
#include <chrono>
#include <stdexcept>
#include <vector>

#include <fmt/core.h>

#include <keel/circuit_breaker.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/scripted.hpp>
#include <keel/testing/virtual_environment.hpp>

using namespace std::chrono_literals;

namespace {

/// The code under test: generic over the breaker, so production passes a
/// real one and the test a virtual-time one.
template <class Breaker, class Dependency>
int price_or_zero(const Breaker& breaker, const Dependency& dependency) {
  const keel::outcome<int> r = breaker.try_execute(dependency);
  return r.has_value() ? r.value() : 0;
}

int failures = 0;
void check(bool condition, const char* what) {
  fmt::print("{} {}\n", condition ? "ok  " : "FAIL", what);
  if (!condition) ++failures;
}

}  // namespace

int main() {
  keel::testing::virtual_environment env;  // manual clock + sleeper + seeded random
  keel::testing::recording_listener<keel::circuit_opened, keel::circuit_half_opened,
                                    keel::circuit_closed>
      log;
  const auto breaker = keel::circuit_breaker({.trip = keel::consecutive_failures{.threshold = 2},
                                              .open_duration = 30s})
                           .with_environment(env)
                           .with_listener(log);

  // The dependency: two failures (each takes 100 ms), then answers 42 in 10 ms.
  using step = keel::testing::step<int>;
  const keel::testing::scripted<int> dependency(
      env.clock(),
      {step::throws(std::runtime_error("503")).after(100ms),
       step::throws(std::runtime_error("503")).after(100ms), step::returns(42).after(10ms)});

  check(price_or_zero(breaker, dependency) == 0, "first failure: no price");
  check(price_or_zero(breaker, dependency) == 0, "second failure trips the breaker");
  check(breaker.state() == keel::circuit_state::open, "the circuit is open");
  check(price_or_zero(breaker, dependency) == 0, "while open, no call reaches the dependency");
  check(dependency.calls() == 2, "exactly two calls were made");

  env.advance(30s - 1ns);
  (void)price_or_zero(breaker, dependency);
  check(dependency.calls() == 2, "1 ns before the open time is over: still rejected");

  env.advance(1ns);
  check(price_or_zero(breaker, dependency) == 42, "at exactly 30 s the probe goes through");
  check(breaker.state() == keel::circuit_state::closed, "and its success closes the circuit");

  // Exact virtual times: calls at 0 ms and 100 ms; the probe at 200 ms + 30 s.
  check(dependency.start_times() == std::vector<keel::duration>{0ms, 100ms, 30200ms},
        "calls started at 0 ms, 100 ms and 30.2 s");
  const auto opened = log.all<keel::circuit_opened>();
  check(
      opened.size() == 1 && opened[0].at == keel::time_point{} + 200ms && opened[0].open_for == 30s,
      "opened once, at 200 ms, for 30 s");
  check(log.count<keel::circuit_half_opened>() == 1 && log.count<keel::circuit_closed>() == 1,
        "half-opened once and closed once");
  fmt::print("virtual time elapsed: {} ms\n",
             std::chrono::duration_cast<std::chrono::milliseconds>(env.elapsed()).count());
  return failures == 0 ? 0 : 1;
}

// SPDX-License-Identifier: BSL-1.0
// 02_circuit_breaker: a breaker stops calling a failing dependency, then closes after a good probe.
//
// While open it rejects at once (no call is made) and says when to come back.
// The dependency is down for the first 25 s of virtual time, then recovers.
// Time is virtual (virtual_environment), so the example runs instantly and
// prints the same thing every time.
#include <chrono>
#include <stdexcept>

#include <fmt/core.h>

#include <keel/circuit_breaker.hpp>
#include <keel/testing/virtual_environment.hpp>

using namespace std::chrono_literals;

namespace {

long long ms(keel::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

/// Prints the breaker's transitions; a listener only writes the handlers it wants.
struct printer {
  void on(const keel::circuit_opened& e) const {
    fmt::print("  t={:>6} ms  circuit OPEN for {} ms\n", ms(e.at.time_since_epoch()),
               ms(e.open_for));
  }
  void on(const keel::circuit_half_opened& e) const {
    fmt::print("  t={:>6} ms  circuit HALF-OPEN: one probe goes through\n",
               ms(e.at.time_since_epoch()));
  }
  void on(const keel::circuit_closed& e) const {
    fmt::print("  t={:>6} ms  circuit CLOSED\n", ms(e.at.time_since_epoch()));
  }
};

}  // namespace

int main() {
  keel::testing::virtual_environment env;

  // Open after 3 failures in a row, for 10 s; then one probe decides.
  const auto breaker = keel::circuit_breaker({.trip = keel::consecutive_failures{.threshold = 3},
                                              .open_duration = 10s})
                           .with_environment(env)
                           .with_listener(printer{});

  int dependency_calls = 0;
  auto call_dependency = [&]() -> int {
    ++dependency_calls;
    if (env.elapsed() < 25s) throw std::runtime_error("connection refused");
    return 200;
  };

  int rejected = 0;
  int answered = 0;
  for (int second = 0; second < 40; ++second) {
    const keel::outcome<int> r = breaker.try_execute(call_dependency);
    if (r.is(keel::errc::circuit_open)) {
      ++rejected;  // no call was made: the caller learns at once, and when to come back
      if (second == 5)
        fmt::print("  t={:>6} ms  rejected; a probe may go in {} ms\n", second * 1000,
                   ms(*r.retry_after()));
    } else if (r.has_value()) {
      ++answered;
    }
    env.advance(1s);
  }

  const auto m = breaker.metrics();
  fmt::print("40 calls: {} reached the dependency, {} rejected at once, {} answered; failures {}\n",
             dependency_calls, rejected, answered, m.failures);

  // Trips at t=2 s; probes at 12 s and 22 s fail; the probe at 32 s succeeds.
  const bool as_expected = dependency_calls == 3 + 1 + 1 + 1 + 7 && rejected == 27 &&
                           answered == 8 && breaker.state() == keel::circuit_state::closed;
  return as_expected ? 0 : 1;
}

// SPDX-License-Identifier: BSL-1.0
// Shared by the circuit breaker tests: a value-channel dependency that succeeds
// or fails on demand, a listener that records every breaker event, and the
// set-ups the tests repeat (options for the consecutive rule, tripping a
// breaker and waiting out its open time).
#ifndef KEEL_TESTS_UNIT_CIRCUIT_BREAKER_BREAKER_TEST_SUPPORT_HPP_INCLUDED
#define KEEL_TESTS_UNIT_CIRCUIT_BREAKER_BREAKER_TEST_SUPPORT_HPP_INCLUDED

#include <chrono>
#include <optional>
#include <system_error>

#include <keel/circuit_breaker.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"
#include "support/expected.hpp"

namespace cb_test {

using namespace std::chrono_literals;

using result = keel_test::expected<int, std::error_code>;

inline result good() { return 1; }
inline result bad(std::errc e = std::errc::io_error) {
  return keel_test::unexpected<std::error_code>(std::make_error_code(e));
}

/// Every event a breaker emits, in order.
using event_log =
    keel::testing::recording_listener<keel::circuit_opened, keel::circuit_half_opened,
                                      keel::circuit_closed, keel::circuit_state_changed,
                                      keel::call_rejected>;

/// Options that open after `threshold` consecutive failures, for `open_for`
/// (default: the options' default, 30 s); every other option default.
inline keel::circuit_breaker_options consecutive(
    int threshold, keel::duration open_for = keel::circuit_breaker_options{}.open_duration) {
  return {.trip = keel::consecutive_failures{.threshold = threshold}, .open_duration = open_for};
}

/// A breaker on virtual time that logs its events.
inline auto make_breaker(const keel::circuit_breaker_options& o,
                         const keel::testing::virtual_environment& env,
                         const event_log& log = event_log()) {
  return keel::circuit_breaker{o}.with_environment(env).with_listener(log);
}

template <class B>
keel::outcome<result> succeed(const B& b) {
  return b.try_execute([] { return good(); });
}
template <class B>
keel::outcome<result> fail(const B& b) {
  return b.try_execute([] { return bad(); });
}

/// Opens closed breaker `b`, whose rule trips on one failure, with one failed
/// call, then lets its open time (options().open_duration) pass on `env`: the
/// next call is a probe. A failure reports `line`, by default the caller's.
template <class B>
void trip_and_wait(const B& b, const keel::testing::virtual_environment& env,
                   int line = __builtin_LINE()) {
  INFO("tripped at line " << line);
  REQUIRE(fail(b).has_error_value());
  REQUIRE(b.state() == keel::circuit_state::open);
  env.advance(b.options().open_duration);
}

/// Virtual time elapsed, for exact comparisons.
inline keel::duration at(const keel::testing::virtual_environment& env) { return env.elapsed(); }

inline keel::time_point tp(keel::duration d) { return keel::time_point(d); }

}  // namespace cb_test

#endif  // KEEL_TESTS_UNIT_CIRCUIT_BREAKER_BREAKER_TEST_SUPPORT_HPP_INCLUDED

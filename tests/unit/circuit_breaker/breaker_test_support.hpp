// SPDX-License-Identifier: BSL-1.0
// Shared by the circuit breaker tests: a value-channel dependency that succeeds
// or fails on demand, and a listener that records every breaker event.
#ifndef KEEL_TESTS_UNIT_CIRCUIT_BREAKER_BREAKER_TEST_SUPPORT_HPP_INCLUDED
#define KEEL_TESTS_UNIT_CIRCUIT_BREAKER_BREAKER_TEST_SUPPORT_HPP_INCLUDED

#include <chrono>
#include <optional>
#include <system_error>

#include <keel/circuit_breaker.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/virtual_environment.hpp>

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

/// Virtual time elapsed, for exact comparisons.
inline keel::duration at(const keel::testing::virtual_environment& env) { return env.elapsed(); }

inline keel::time_point tp(keel::duration d) { return keel::time_point(d); }

}  // namespace cb_test

#endif  // KEEL_TESTS_UNIT_CIRCUIT_BREAKER_BREAKER_TEST_SUPPORT_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#include <stdexcept>

#include <keel/circuit_breaker.hpp>

#include "breaker_test_support.hpp"
#include "support/catch.hpp"

using namespace cb_test;
using keel::circuit_state;

namespace {

template <class B>
keel::duration trip_from_half_open(const B& b, const keel::testing::virtual_environment& env) {
  env.advance(b.metrics().retry_after.value());
  auto probe = b.try_acquire();
  REQUIRE(probe.is_probe());
  probe.record_failure();
  return b.metrics().retry_after.value();
}

}  // namespace

TEST_CASE(
    "circuit_breaker: open time grows by the factor with each consecutive trip, up to the cap",
    "[circuit_breaker][open_duration]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker({.trip = keel::consecutive_failures{.threshold = 1},
                         .open_duration = 1s,
                         .open_duration_factor = 2.0,
                         .max_open_duration = 5s},
                        env, log);
  CHECK(fail(b).has_error_value());
  CHECK(b.metrics().retry_after == std::optional<keel::duration>(1s));
  CHECK(trip_from_half_open(b, env) == 2s);
  CHECK(trip_from_half_open(b, env) == 4s);
  CHECK(trip_from_half_open(b, env) == 5s);
  CHECK(trip_from_half_open(b, env) == 5s);
  std::vector<keel::duration> opens;
  for (const auto& e : log.all<keel::circuit_opened>()) opens.push_back(e.open_for);
  CHECK(opens == std::vector<keel::duration>{1s, 2s, 4s, 5s, 5s});
}

TEST_CASE("circuit_breaker: growth resets after a close that lasted growth_reset_after",
          "[circuit_breaker][open_duration]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker({.trip = keel::consecutive_failures{.threshold = 1},
                         .open_duration = 1s,
                         .open_duration_factor = 3.0,
                         .growth_reset_after = 60s},
                        env);
  CHECK(fail(b).has_error_value());
  CHECK(trip_from_half_open(b, env) == 3s);
  env.advance(3s);
  CHECK(succeed(b).has_value());  // the probe closes the circuit
  CHECK(b.state() == circuit_state::closed);
  env.advance(60s - 1ns);  // not stable yet: the next trip keeps growing
  CHECK(fail(b).has_error_value());
  CHECK(b.metrics().retry_after == std::optional<keel::duration>(9s));
  env.advance(9s);
  CHECK(succeed(b).has_value());
  env.advance(60s);  // stable: growth forgotten
  CHECK(fail(b).has_error_value());
  CHECK(b.metrics().retry_after == std::optional<keel::duration>(1s));
}

TEST_CASE("circuit_breaker: the open time comes from the failure's retry-after hint, capped",
          "[circuit_breaker][open_duration]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker({.trip = keel::consecutive_failures{.threshold = 1},
                         .open_duration = 10s,
                         .max_open_duration = 2min},
                        env, log);
  // A failure carrying a hint: a keel::error thrown by a nested client, say.
  CHECK(b.try_execute([]() -> int {
           throw keel::error(keel::errc::rate_limited, 45s);
         }).has_exception());
  CHECK(b.metrics().retry_after == std::optional<keel::duration>(45s));
  CHECK(log.all<keel::circuit_opened>()[0].open_for == 45s);
  b.reset();
  CHECK(b.try_execute([] {
           return keel::outcome<int>::from_keel(keel::errc::rate_limited, 1h).value();
         }).has_exception());
  CHECK(b.metrics().retry_after == std::optional<keel::duration>(2min));
  b.reset();
  auto permit = b.try_acquire();
  permit.record_failure({}, 90s);  // the two-step API takes the hint directly
  CHECK(b.metrics().retry_after == std::optional<keel::duration>(90s));
}

TEST_CASE("circuit_breaker: hints are ignored when honor_retry_after is false",
          "[circuit_breaker][open_duration]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker({.trip = keel::consecutive_failures{.threshold = 1},
                         .open_duration = 10s,
                         .honor_retry_after = false},
                        env);
  auto permit = b.try_acquire();
  permit.record_failure({}, 90s);
  CHECK(b.metrics().retry_after == std::optional<keel::duration>(10s));
}

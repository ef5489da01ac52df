// SPDX-License-Identifier: BSL-1.0
#include <string>

#include <keel/circuit_breaker.hpp>

#include "breaker_test_support.hpp"
#include "support/catch.hpp"

using namespace cb_test;

namespace {

std::string field_of(const keel::circuit_breaker_options& o) {
  const auto p = keel::validate(o);
  return p ? std::string(p->field) : std::string();
}

}  // namespace

TEST_CASE("circuit_breaker_options: defaults are valid and validation is constexpr",
          "[circuit_breaker][options]") {
  STATIC_REQUIRE(!keel::validate(keel::circuit_breaker_options{}));
  STATIC_REQUIRE(!keel::validate(keel::circuit_breaker_options{
      .trip = keel::failure_ratio_time{}, .slow_calls = keel::slow_call_ratio{}}));
  STATIC_REQUIRE(keel::validate(keel::circuit_breaker_options{.permitted_probes = 0}).has_value());
  const keel::circuit_breaker_options o;
  CHECK(std::get<keel::consecutive_failures>(o.trip).threshold == 5);
  CHECK(o.open_duration == 30s);
  CHECK(o.open_duration_factor == 1.0);
  CHECK(o.max_open_duration == 5min);
  CHECK(o.permitted_probes == 1);
  CHECK(o.success_threshold == 0);
  CHECK(o.max_wait_in_half_open == 30s);
  CHECK(o.honor_retry_after);
  CHECK(keel::failure_ratio_count{}.window_size == 100);
  CHECK(keel::failure_ratio_count{}.minimum_calls == 100);
  CHECK(keel::failure_ratio_count{}.ratio == 0.5);
  CHECK(keel::failure_ratio_time{}.period == 30s);
  CHECK(keel::failure_ratio_time{}.buckets == 10);
}

TEST_CASE("circuit_breaker_options: each invalid field is named", "[circuit_breaker][options]") {
  using keel::circuit_breaker_options;
  CHECK(field_of({.trip = keel::consecutive_failures{.threshold = 0}}) ==
        "consecutive_failures.threshold");
  CHECK(field_of({.trip = keel::failures_in_period{.threshold = 0}}) ==
        "failures_in_period.threshold");
  CHECK(field_of({.trip = keel::failures_in_period{.threshold = 2, .period = 0s}}) ==
        "failures_in_period.period");
  CHECK(field_of({.trip = keel::failure_ratio_count{.window_size = 0}}) ==
        "failure_ratio_count.window_size");
  CHECK(field_of({.trip = keel::failure_ratio_count{.window_size = 10, .minimum_calls = 11}}) ==
        "failure_ratio_count.minimum_calls");
  CHECK(field_of({.trip = keel::failure_ratio_count{.window_size = 10, .minimum_calls = 0}}) ==
        "failure_ratio_count.minimum_calls");
  CHECK(field_of({.trip = keel::failure_ratio_count{.window_size = 10,
                                                    .minimum_calls = 10,
                                                    .ratio = 0.0}}) == "failure_ratio_count.ratio");
  CHECK(field_of({.trip = keel::failure_ratio_count{.window_size = 10,
                                                    .minimum_calls = 10,
                                                    .ratio = 1.5}}) == "failure_ratio_count.ratio");
  CHECK(field_of({.trip = keel::failure_ratio_time{.buckets = 0}}) == "failure_ratio_time.buckets");
  CHECK(field_of({.trip = keel::failure_ratio_time{.period = 5ns, .buckets = 10}}) ==
        "failure_ratio_time.period");
  CHECK(field_of({.trip = keel::failure_ratio_time{.minimum_calls = 0}}) ==
        "failure_ratio_time.minimum_calls");
  CHECK(field_of({.trip = keel::failure_ratio_time{.ratio = -1.0}}) == "failure_ratio_time.ratio");
  CHECK(field_of({.slow_calls = keel::slow_call_ratio{}}) == "circuit_breaker_options.slow_calls");
  CHECK(field_of({.trip = keel::failure_ratio_count{},
                  .slow_calls = keel::slow_call_ratio{.ratio = 0.0}}) == "slow_call_ratio.ratio");
  CHECK(field_of({.trip = keel::failure_ratio_count{},
                  .slow_calls = keel::slow_call_ratio{.threshold = -1s}}) ==
        "slow_call_ratio.threshold");
  CHECK(field_of({.open_duration = -1s}) == "circuit_breaker_options.open_duration");
  CHECK(field_of({.open_duration_factor = 0.5}) == "circuit_breaker_options.open_duration_factor");
  CHECK(field_of({.max_open_duration = 1s}) == "circuit_breaker_options.max_open_duration");
  CHECK(field_of({.growth_reset_after = -1s}) == "circuit_breaker_options.growth_reset_after");
  CHECK(field_of({.permitted_probes = 1001}) == "circuit_breaker_options.permitted_probes");
  CHECK(field_of({.permitted_probes = 2, .success_threshold = 3}) ==
        "circuit_breaker_options.success_threshold");
  CHECK(field_of({.max_wait_in_half_open = 0s}) == "circuit_breaker_options.max_wait_in_half_open");
}

TEST_CASE("circuit_breaker: the constructor refuses invalid options with config_error",
          "[circuit_breaker][options]") {
  REQUIRE_THROWS_AS(keel::circuit_breaker({.permitted_probes = 0}), keel::config_error);
  REQUIRE_THROWS_WITH(keel::circuit_breaker({.trip = keel::consecutive_failures{.threshold = 0}}),
                      "keel: consecutive_failures.threshold: must be >= 1");
  REQUIRE_THROWS_AS(keel::breaker_state_machine({.open_duration_factor = 0.0}), keel::config_error);
}

// SPDX-License-Identifier: BSL-1.0
// `keel::circuit_breaker({})` and its like: `{}` as a policy's only argument
// means the default options (GCC used to find the call ambiguous between the
// options and a temporary policy to copy).
#include <chrono>

#include <keel/keel.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;
using venv = keel::testing::virtual_environment;

TEST_CASE("empty braces: every policy built from ({}) has the default options", "[core][options]") {
  keel::circuit_breaker breaker({});
  auto breaker2 = keel::circuit_breaker({});
  keel::circuit_breaker<keel::on::any_failure_t, keel::no_listener, venv> virtual_breaker({});
  const keel::circuit_breaker_options defaults;
  CHECK(breaker.options().open_duration == defaults.open_duration);
  CHECK(breaker.options().permitted_probes == defaults.permitted_probes);
  CHECK(breaker2.options().trip.index() == defaults.trip.index());
  CHECK(virtual_breaker.execute([] { return 1; }) == 1);

  const auto retry = keel::retry({});
  CHECK(retry.options().max_attempts == keel::retry_options().max_attempts);
  const keel::timeout timeout({});
  CHECK(timeout.options().timeout == keel::timeout_options().timeout);
  keel::last_known_good<int> cache({});
  CHECK(cache.options().capacity == keel::last_known_good_options().capacity);
  keel::retry_budget budget({});
  CHECK(budget.options().max_tokens == keel::retry_budget_options().max_tokens);
}

TEST_CASE("empty braces: other arguments keep their meaning", "[core][options]") {
  const auto retry = keel::retry({3});  // the options' first field
  CHECK(retry.options().max_attempts == 3);
  venv env;
  keel::circuit_breaker<keel::on::any_failure_t, keel::no_listener, venv> breaker(
      {.open_duration = 2s}, keel::on::any_failure, {}, env);
  CHECK(breaker.options().open_duration == 2s);
}

// SPDX-License-Identifier: BSL-1.0
// Cancellation end to end: the caller's std::stop_token reaches the callable,
// wakes a sleeping retry, is never retried, never becomes a timeout, and stops
// a fallback chain. Retry and breaker are stand-ins (see stand_in_policies.hpp).
#include <chrono>
#include <stdexcept>
#include <stop_token>
#include <system_error>

#include <keel/fallback.hpp>
#include <keel/pipeline.hpp>
#include <keel/testing/virtual_environment.hpp>
#include <keel/timeout.hpp>

#include "support/catch.hpp"
#include "support/expected.hpp"
#include "unit/fallback/stand_in_policies.hpp"

using namespace std::chrono_literals;

namespace {

using keel::errc;
using venv = keel::testing::virtual_environment;

}  // namespace

TEST_CASE("cancellation: the caller's token reaches the callable through every policy",
          "[cancellation]") {
  venv env;
  keel_test::context_probe probe;
  auto p = keel::pipeline(keel::fallback(0), keel::timeout{{.timeout = 1s}}.with_environment(env),
                          keel_test::stand_in_retry<venv>(3, {10ms}, env), probe);
  std::stop_source caller;
  bool same_token = false;
  CHECK(p.execute(caller.get_token(), [&](const keel::context& ctx) {
    same_token = ctx.stop_token() == caller.get_token();
    return 1;
  }) == 1);
  CHECK(same_token);
  REQUIRE(probe.seen().size() == 1);
  CHECK(probe.seen()[0].stop_token() == caller.get_token());
  CHECK(probe.seen()[0].deadline() == keel::time_point{} + 1s);
}

TEST_CASE("cancellation: a stop during a retry's sleep wakes it, and nothing degrades or times out",
          "[cancellation]") {
  venv env;
  std::stop_source caller;
  env.sleeper().on_sleep([&](keel::duration) { caller.request_stop(); });
  int calls = 0;
  int alternative_calls = 0;
  auto p = keel::pipeline(keel::fallback([&] {
                            ++alternative_calls;
                            return -1;
                          }),
                          keel::timeout{{.timeout = 1s}}.with_environment(env),
                          keel_test::stand_in_retry<venv>(5, {100ms}, env));
  auto failing = [&]() -> int {
    ++calls;
    throw std::runtime_error("down");
  };
  auto o = p.try_execute(caller.get_token(), failing);
  CHECK(o.is(errc::cancelled));
  CHECK(calls == 1);              // woken in its first sleep, not retried
  CHECK(alternative_calls == 0);  // cancellation is not a failure to degrade from
  CHECK(env.elapsed() == 0ms);    // the sleep did not run
  CHECK(env.sleeps() == std::vector<keel::duration>{100ms});
  try {
    (void)p.execute(caller.get_token(), failing);
    FAIL("no exception");
  } catch (const keel::error& e) {
    CHECK(e.code() == errc::cancelled);
    CHECK(e.code() == std::errc::operation_canceled);
  }
}

TEST_CASE("cancellation: a late cancelled call is a cancellation, not a timeout",
          "[cancellation]") {
  venv env;
  std::stop_source caller;
  auto p =
      keel::pipeline(keel::fallback(-1), keel::timeout{{.timeout = 10ms}}.with_environment(env));
  auto o = p.try_execute(caller.get_token(), [&](const keel::context& ctx) -> int {
    caller.request_stop();
    env.advance(20ms);  // past the deadline
    if (ctx.stop_requested()) {
      throw std::system_error(std::make_error_code(std::errc::operation_canceled));
    }
    return 1;
  });
  REQUIRE(o.has_exception());
  CHECK(keel::is_cancellation(o));
}

TEST_CASE("cancellation: a stop requested before the call means it never starts",
          "[cancellation]") {
  venv env;
  std::stop_source caller;
  caller.request_stop();
  int calls = 0;
  auto p =
      keel::pipeline(keel::fallback(-1), keel::timeout{{.timeout = 10ms}}.with_environment(env));
  auto o = p.try_execute(caller.get_token(), [&] { return ++calls; });
  CHECK(o.is(errc::cancelled));
  CHECK(calls == 0);
}

TEST_CASE("cancellation: expected-like results carry it back as their error", "[cancellation]") {
  using result = keel_test::expected<int, std::error_code>;
  using unexpected = keel_test::unexpected<std::error_code>;
  std::stop_source caller;
  int alternative_calls = 0;
  auto fb = keel::fallback([&] {
    ++alternative_calls;
    return result(-1);
  });
  const result r = fb.execute(caller.get_token(), [&](const keel::context& ctx) {
    caller.request_stop();
    return ctx.stop_requested()
               ? result(unexpected(std::make_error_code(std::errc::operation_canceled)))
               : result(1);
  });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == std::errc::operation_canceled);
  CHECK(alternative_calls == 0);

  venv env;
  auto t = keel::timeout{{.timeout = 10ms}}.with_environment(env);
  const result refused = t.execute(caller.get_token(), [] { return result(1); });
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error() == errc::cancelled);
}

TEST_CASE("cancellation: does not count against a (stand-in) breaker behind a fallback",
          "[cancellation]") {
  keel_test::stand_in_breaker breaker(1);
  std::stop_source caller;
  auto p = keel::pipeline(keel::fallback(-1), std::ref(breaker));
  auto o = p.try_execute(caller.get_token(), [&]() -> int {
    caller.request_stop();
    throw std::system_error(std::make_error_code(std::errc::operation_canceled));
  });
  CHECK(keel::is_cancellation(o));
  CHECK(breaker.failures() == 0);
}

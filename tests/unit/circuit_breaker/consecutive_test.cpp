// SPDX-License-Identifier: BSL-1.0
#include <stdexcept>

#include <keel/circuit_breaker.hpp>
#include <keel/testing/scripted.hpp>

#include "breaker_test_support.hpp"
#include "support/catch.hpp"

using namespace cb_test;
using keel::circuit_state;

TEST_CASE("circuit_breaker: is a policy with explicit CTAD and default options",
          "[circuit_breaker]") {
  keel::circuit_breaker b;
  STATIC_REQUIRE(keel::policy<keel::circuit_breaker<>>);
  STATIC_REQUIRE(std::is_same_v<decltype(b), keel::circuit_breaker<>>);
  STATIC_REQUIRE(!std::is_copy_constructible_v<keel::circuit_breaker<>>);
  STATIC_REQUIRE(!std::is_move_constructible_v<keel::circuit_breaker<>>);
  keel::circuit_breaker b2{{.trip = keel::consecutive_failures{.threshold = 3}}};
  CHECK(std::get<keel::consecutive_failures>(b2.options().trip).threshold == 3);
  CHECK(std::get<keel::consecutive_failures>(b.options().trip).threshold == 5);
  CHECK(b.options().open_duration == 30s);
  CHECK(b.state() == circuit_state::closed);
  CHECK(b.execute([] { return 41; }) == 41);
}

TEST_CASE("circuit_breaker: consecutive rule opens at exactly the threshold-th failure in a row",
          "[circuit_breaker][consecutive]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker(consecutive(3, 10s), env, log);

  CHECK(fail(b).has_error_value());
  CHECK(fail(b).has_error_value());
  CHECK(succeed(b).has_value());  // resets the run
  CHECK(fail(b).has_error_value());
  CHECK(fail(b).has_error_value());
  CHECK(b.state() == circuit_state::closed);
  CHECK(b.metrics().window_failures == 2);
  env.advance(7s);
  CHECK(fail(b).has_error_value());  // third in a row: opens at t = 7 s
  CHECK(b.state() == circuit_state::open);

  const auto opened = log.all<keel::circuit_opened>();
  REQUIRE(opened.size() == 1);
  CHECK(opened[0].reason == keel::open_reason::consecutive_failures);
  CHECK(opened[0].open_for == 10s);
  CHECK(opened[0].at == tp(7s));
  CHECK(opened[0].failure_ratio == 1.0);
}

TEST_CASE(
    "circuit_breaker: an open circuit rejects with circuit_open and the exact time until a probe",
    "[circuit_breaker][consecutive]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker(consecutive(1, 10s), env, log);
  int calls = 0;
  auto counted = [&] {
    ++calls;
    return good();
  };
  CHECK(fail(b).has_error_value());
  env.advance(4s);
  const auto r = b.try_execute(counted);
  CHECK(calls == 0);
  REQUIRE(r.has_keel_error());
  CHECK(r.is(keel::errc::circuit_open));
  CHECK(r.retry_after() == std::optional<keel::duration>(6s));
  REQUIRE(log.count<keel::call_rejected>() == 1);
  CHECK(log.all<keel::call_rejected>()[0].retry_after == std::optional<keel::duration>(6s));
  CHECK(log.all<keel::call_rejected>()[0].code == keel::errc::circuit_open);

  env.advance(6s - 1ns);  // one nanosecond before the open time is over: still rejected
  CHECK(b.try_execute(counted).retry_after() == std::optional<keel::duration>(1ns));
  env.advance(1ns);  // exactly over: the next call is the probe
  CHECK(b.try_execute(counted).has_value());
  CHECK(calls == 1);
  CHECK(b.state() == circuit_state::closed);
  CHECK(b.metrics().rejections == 2);
}

TEST_CASE("circuit_breaker: open -> half-open happens lazily at the next call, with no timer",
          "[circuit_breaker][consecutive]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker(consecutive(1, 5s), env, log);
  CHECK(fail(b).has_error_value());
  env.advance(1h);
  CHECK(b.state() == circuit_state::open);  // nothing happened while no one called
  CHECK(log.count<keel::circuit_half_opened>() == 0);
  auto permit = b.try_acquire();
  REQUIRE(permit);
  CHECK(permit.is_probe());
  CHECK(b.state() == circuit_state::half_open);
  REQUIRE(log.count<keel::circuit_half_opened>() == 1);
  CHECK(log.all<keel::circuit_half_opened>()[0].at == tp(1h));
  permit.record_failure();
  CHECK(b.state() == circuit_state::open);
  const auto opened = log.all<keel::circuit_opened>();
  REQUIRE(opened.size() == 2);
  CHECK(opened[1].reason == keel::open_reason::probe_failed);
  CHECK(opened[1].at == tp(1h));
}

TEST_CASE(
    "circuit_breaker: thrown exceptions count as failures and are rethrown unchanged by execute",
    "[circuit_breaker][exceptions]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(consecutive(2), env);
  keel::testing::scripted<int> dep(env.clock(),
                                   {keel::testing::step<int>::throws(std::runtime_error("down"))});
  CHECK_THROWS_AS(b.execute(dep), std::runtime_error);
  CHECK_THROWS_AS(b.execute(dep), std::runtime_error);
  CHECK(b.state() == circuit_state::open);
  CHECK(dep.calls() == 2);
  try {
    (void)b.execute(dep);
    FAIL("execute should have thrown keel::error");
  } catch (const keel::error& e) {
    CHECK(e.code() == keel::errc::circuit_open);
    CHECK(e.retry_after() == std::optional<keel::duration>(30s));
  }
  CHECK(dep.calls() == 2);
}

TEST_CASE(
    "circuit_breaker: execute returns the open circuit as the error of an expected-like result",
    "[circuit_breaker][values]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(consecutive(1), env);
  const result first = b.execute([] { return bad(); });
  CHECK(first.error() == std::errc::io_error);
  const result second = b.execute([] { return good(); });
  REQUIRE(!second.has_value());
  CHECK(second.error() == keel::errc::circuit_open);
}

TEST_CASE(
    "circuit_breaker: the handles predicate decides what is a failure; the rest counts as success",
    "[circuit_breaker][classify]") {
  keel::testing::virtual_environment env;
  auto b = keel::circuit_breaker{{.trip = keel::consecutive_failures{.threshold = 2}}}
               .with_environment(env)
               .handle(keel::on::result([](int status) { return status >= 500; }));
  CHECK(b.try_execute([] { return 503; }).has_value());
  CHECK(b.try_execute([] { return 404; }).has_value());  // not handled: a success, resets the run
  CHECK(b.try_execute([] { return 503; }).has_value());
  CHECK(b.state() == circuit_state::closed);
  CHECK(b.try_execute([] { return 500; }).has_value());
  CHECK(b.state() == circuit_state::open);
}

TEST_CASE(
    "circuit_breaker: ignored failures and cancellations count as neither success nor failure",
    "[circuit_breaker][classify]") {
  keel::testing::virtual_environment env;
  auto b = keel::circuit_breaker{{.trip = keel::consecutive_failures{.threshold = 2}}}
               .with_environment(env)
               .ignore(keel::on::error(
                   [](std::error_code e) { return e == std::errc::invalid_argument; }));
  CHECK(fail(b).has_error_value());
  // An ignored failure does not reset the run (it is not a success) and does not extend it.
  CHECK(b.try_execute([] { return bad(std::errc::invalid_argument); }).has_error_value());
  CHECK(b.try_execute([] { return bad(std::errc::operation_canceled); }).has_error_value());
  CHECK(b.try_execute([] {
           return keel::outcome<int>::from_keel(keel::errc::cancelled).value();
         }).has_exception());
  CHECK(b.state() == circuit_state::closed);
  CHECK(b.metrics().window_failures == 1);
  CHECK(b.metrics().failures == 1);
  CHECK(fail(b).has_error_value());
  CHECK(b.state() == circuit_state::open);
}

TEST_CASE("circuit_breaker: a closed-path success with no failures writes nothing",
          "[circuit_breaker][consecutive]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker({}, env);
  const auto before = b.metrics();
  for (int i = 0; i < 100; ++i) CHECK(succeed(b).has_value());
  const auto after = b.metrics();
  CHECK(after.failures == before.failures);
  CHECK(after.window_calls == 0);
  CHECK(after.last_transition == before.last_transition);
}

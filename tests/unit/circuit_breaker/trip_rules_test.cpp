// SPDX-License-Identifier: BSL-1.0
#include <keel/circuit_breaker.hpp>
#include <keel/testing/scripted.hpp>

#include "breaker_test_support.hpp"
#include "support/catch.hpp"

using namespace cb_test;
using keel::circuit_state;

TEST_CASE("circuit_breaker: failures_in_period opens on the threshold-th failure within the period",
          "[circuit_breaker][failures_in_period]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b =
      make_breaker({.trip = keel::failures_in_period{.threshold = 3, .period = 10s}}, env, log);
  CHECK(fail(b).has_error_value());  // t = 0
  env.advance(4s);
  CHECK(fail(b).has_error_value());                            // t = 4
  for (int i = 0; i < 50; ++i) CHECK(succeed(b).has_value());  // successes do not matter
  env.advance(6s);                   // t = 10: the failure at 0 has expired exactly now
  CHECK(fail(b).has_error_value());  // failures at 4, 10: two within (0, 10]
  CHECK(b.state() == circuit_state::closed);
  CHECK(b.metrics().window_failures == 2);
  env.advance(4s);                   // t = 14: the failure at 4 expires exactly now
  CHECK(fail(b).has_error_value());  // failures at 10, 14: two
  CHECK(b.state() == circuit_state::closed);
  CHECK(fail(b).has_error_value());  // 10, 14, 14: three within (4, 14]
  CHECK(b.state() == circuit_state::open);
  REQUIRE(log.count<keel::circuit_opened>() == 1);
  CHECK(log.all<keel::circuit_opened>()[0].reason == keel::open_reason::failures_in_period);
  CHECK(log.all<keel::circuit_opened>()[0].at == tp(14s));
}

TEST_CASE("circuit_breaker: failures_in_period with a threshold of 1 opens on the first failure",
          "[circuit_breaker][failures_in_period]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker({.trip = keel::failures_in_period{.threshold = 1, .period = 1s}}, env);
  CHECK(succeed(b).has_value());
  CHECK(fail(b).has_error_value());
  CHECK(b.state() == circuit_state::open);
}

TEST_CASE("circuit_breaker: failures_in_period exactly at the period boundary does not open",
          "[circuit_breaker][failures_in_period]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker({.trip = keel::failures_in_period{.threshold = 2, .period = 5s}}, env);
  CHECK(fail(b).has_error_value());
  env.advance(5s);  // the first failure expires at exactly 5 s
  CHECK(fail(b).has_error_value());
  CHECK(b.state() == circuit_state::closed);
  env.advance(5s - 1ns);
  CHECK(fail(b).has_error_value());
  CHECK(b.state() == circuit_state::open);
}

TEST_CASE("circuit_breaker: failure_ratio_count makes no decision below minimum_calls",
          "[circuit_breaker][failure_ratio_count]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker(
      {.trip = keel::failure_ratio_count{.window_size = 10, .minimum_calls = 5, .ratio = 0.5}}, env,
      log);
  for (int i = 0; i < 4; ++i) CHECK(fail(b).has_error_value());  // 4 of 4 failed, but 4 < 5 calls
  CHECK(b.state() == circuit_state::closed);
  CHECK(b.metrics().window_calls == 4);
  CHECK(b.metrics().failure_ratio == 1.0);
  CHECK(fail(b).has_error_value());  // 5 of 5: opens on the 5th call
  CHECK(b.state() == circuit_state::open);
  REQUIRE(log.count<keel::circuit_opened>() == 1);
  CHECK(log.all<keel::circuit_opened>()[0].reason == keel::open_reason::failure_ratio);
  CHECK(log.all<keel::circuit_opened>()[0].failure_ratio == 1.0);
}

TEST_CASE(
    "circuit_breaker: failure_ratio_count opens when failures / calls reaches the ratio, not "
    "before",
    "[circuit_breaker][failure_ratio_count]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker(
      {.trip = keel::failure_ratio_count{.window_size = 10, .minimum_calls = 10, .ratio = 0.4}},
      env, log);
  for (int i = 0; i < 7; ++i) CHECK(succeed(b).has_value());
  CHECK(fail(b).has_error_value());
  CHECK(fail(b).has_error_value());
  CHECK(fail(b).has_error_value());  // 10 calls, 3 failures: 0.3 < 0.4
  CHECK(b.state() == circuit_state::closed);
  CHECK(b.metrics().window_calls == 10);
  CHECK(b.metrics().window_failures == 3);
  // The window slides: this failure replaces the oldest success: 4 of 10 = 0.4 >= 0.4.
  CHECK(fail(b).has_error_value());
  CHECK(b.state() == circuit_state::open);
  CHECK(log.all<keel::circuit_opened>()[0].failure_ratio == Approx(0.4));
}

TEST_CASE("circuit_breaker: failure_ratio_count forgets outcomes older than window_size calls",
          "[circuit_breaker][failure_ratio_count]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(
      {.trip = keel::failure_ratio_count{.window_size = 4, .minimum_calls = 4, .ratio = 0.75}},
      env);
  CHECK(fail(b).has_error_value());
  CHECK(fail(b).has_error_value());
  CHECK(succeed(b).has_value());
  CHECK(succeed(b).has_value());  // F F S S
  CHECK(succeed(b).has_value());  // F S S S (the first failure dropped out)
  CHECK(b.metrics().window_failures == 1);
  CHECK(fail(b).has_error_value());  // S S S F
  CHECK(fail(b).has_error_value());  // S S F F
  CHECK(fail(b).has_error_value());  // S F F F: 0.75
  CHECK(b.state() == circuit_state::open);
}

TEST_CASE(
    "circuit_breaker: failure_ratio_time counts only calls inside the window, buckets expire at "
    "exact boundaries",
    "[circuit_breaker][failure_ratio_time]") {
  keel::testing::virtual_environment env;
  event_log log;
  // 10 s in 10 buckets of 1 s; bucket [k, k+1) expires at exactly k + 10 s.
  auto b = make_breaker({.trip =
                             keel::failure_ratio_time{
                                 .period = 10s, .buckets = 10, .minimum_calls = 4, .ratio = 0.5}},
                        env, log);
  env.advance(500ms);  // t = 0.5 s: bucket 0
  CHECK(succeed(b).has_value());
  CHECK(succeed(b).has_value());
  CHECK(succeed(b).has_value());
  env.advance(1s);                   // t = 1.5 s: bucket 1
  CHECK(fail(b).has_error_value());  // 1 of 4
  CHECK(b.metrics().window_calls == 4);
  env.advance(8s + 500ms - 1ns);  // t = 10 s - 1 ns: bucket 0 is still inside
  CHECK(b.metrics().window_calls == 4);
  env.advance(1ns);  // t = 10 s: bucket 0 expired exactly now
  CHECK(b.metrics().window_calls == 1);
  CHECK(b.metrics().window_failures == 1);
  CHECK(succeed(b).has_value());
  CHECK(fail(b).has_error_value());  // bucket 1: F, bucket 10: S F -> 2 of 3 calls, below minimum
  CHECK(b.state() == circuit_state::closed);
  CHECK(fail(b).has_error_value());  // 3 of 4 >= 0.5 with 4 calls
  CHECK(b.state() == circuit_state::open);
  REQUIRE(log.count<keel::circuit_opened>() == 1);
  CHECK(log.all<keel::circuit_opened>()[0].failure_ratio == Approx(0.75));
  CHECK(log.all<keel::circuit_opened>()[0].at == tp(10s));
}

TEST_CASE("circuit_breaker: failure_ratio_time drops everything after a full idle period",
          "[circuit_breaker][failure_ratio_time]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(
      {.trip =
           keel::failure_ratio_time{.period = 4s, .buckets = 4, .minimum_calls = 3, .ratio = 0.5}},
      env);
  CHECK(fail(b).has_error_value());
  CHECK(fail(b).has_error_value());
  env.advance(100s);
  CHECK(b.metrics().window_calls == 0);
  CHECK(fail(b).has_error_value());  // 1 call in the window: below minimum
  CHECK(b.state() == circuit_state::closed);
}

TEST_CASE("circuit_breaker: slow calls open the circuit through the slow-call ratio",
          "[circuit_breaker][slow_calls]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker(
      {.trip = keel::failure_ratio_count{.window_size = 4, .minimum_calls = 4, .ratio = 1.0},
       .slow_calls = keel::slow_call_ratio{.threshold = 2s, .ratio = 0.5}},
      env, log);
  using keel::testing::step;
  keel::testing::scripted<result> dep(
      env.clock(),
      {step<result>::returns(good()).after(1s),
       step<result>::returns(good()).after(2s),  // not slow: > only
       step<result>::returns(good()).after(2s + 1ns), step<result>::returns(good()).after(3s)});
  CHECK(b.try_execute(dep).has_value());
  CHECK(b.try_execute(dep).has_value());
  CHECK(b.try_execute(dep).has_value());  // slow 1 of 3, below minimum
  CHECK(b.metrics().slow_calls == 1);
  CHECK(b.state() == circuit_state::closed);
  CHECK(b.try_execute(dep).has_value());  // slow 2 of 4 = 0.5: opens, though every call succeeded
  CHECK(b.state() == circuit_state::open);
  REQUIRE(log.count<keel::circuit_opened>() == 1);
  CHECK(log.all<keel::circuit_opened>()[0].reason == keel::open_reason::slow_call_ratio);
  CHECK(log.all<keel::circuit_opened>()[0].failure_ratio == 0.0);
  CHECK(log.all<keel::circuit_opened>()[0].at == tp(1s + 2s + 2s + 1ns + 3s));
}

TEST_CASE("circuit_breaker: slow calls work with the time window and a slow failure counts as both",
          "[circuit_breaker][slow_calls]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(
      {.trip =
           keel::failure_ratio_time{.period = 10s, .buckets = 5, .minimum_calls = 2, .ratio = 0.9},
       .slow_calls = keel::slow_call_ratio{.threshold = 1s, .ratio = 0.9}},
      env);
  using keel::testing::step;
  keel::testing::scripted<result> dep(env.clock(), {step<result>::returns(bad()).after(5s)});
  CHECK(b.try_execute(dep).has_error_value());
  const auto m = b.metrics();
  CHECK(m.failures == 1);
  CHECK(m.slow_calls == 1);
  CHECK(m.window_slow_calls == 1);
  CHECK(m.window_calls == 1);
  CHECK(b.try_execute(dep).has_error_value());
  CHECK(b.state() == circuit_state::open);
}

TEST_CASE("circuit_breaker: without a slow-call rule the clock is not read around a closed call",
          "[circuit_breaker][slow_calls]") {
  struct counting_clock_env {
    keel::testing::virtual_environment env;
    std::shared_ptr<int> reads = std::make_shared<int>(0);
    keel::time_point now() const {
      ++*reads;
      return env.now();
    }
    bool sleep_for(keel::duration d, const std::stop_token& t) const { return env.sleep_for(d, t); }
    double uniform() const { return env.uniform(); }
  };
  counting_clock_env e;
  auto consecutive = keel::circuit_breaker{}.with_environment(e);
  for (int i = 0; i < 10; ++i) CHECK(succeed(consecutive).has_value());
  CHECK(fail(consecutive).has_error_value());
  CHECK(*e.reads == 0);
  auto counting = keel::circuit_breaker{{.trip = keel::failure_ratio_count{}}}.with_environment(e);
  for (int i = 0; i < 10; ++i) CHECK(succeed(counting).has_value());
  CHECK(*e.reads == 0);
  auto slow = keel::circuit_breaker{{.trip = keel::failure_ratio_count{},
                                     .slow_calls = keel::slow_call_ratio{}}}
                  .with_environment(e);
  CHECK(succeed(slow).has_value());
  CHECK(*e.reads == 2);
}

TEST_CASE("circuit_breaker: a disabled breaker lets everything through and still counts",
          "[circuit_breaker][manual]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(
      {.trip = keel::failure_ratio_count{.window_size = 5, .minimum_calls = 1, .ratio = 0.5}}, env);
  b.disable();
  CHECK(b.state() == circuit_state::disabled);
  for (int i = 0; i < 5; ++i) CHECK(fail(b).has_error_value());
  CHECK(b.state() == circuit_state::disabled);
  CHECK(b.metrics().window_failures == 5);
  CHECK(b.metrics().failure_ratio == 1.0);
  b.reset();
  CHECK(b.state() == circuit_state::closed);
  CHECK(b.metrics().window_calls == 0);
  CHECK(fail(b).has_error_value());
  CHECK(b.state() == circuit_state::open);
}

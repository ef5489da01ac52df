// SPDX-License-Identifier: BSL-1.0
// Regression tests named after the bugs the anchors' users reported (the
// ones docs/circuit_breaker.md names): each reproduces the scenario and shows
// keel does not have the bug.
#include <atomic>
#include <latch>
#include <stdexcept>
#include <thread>
#include <vector>

#include <keel/circuit_breaker.hpp>

#include "breaker_test_support.hpp"
#include "support/catch.hpp"

using namespace cb_test;
using keel::circuit_state;

// Polly #216: while the first half-open probe was still running, HalfOpen let
// every other call through too (a stampede on a dependency that just failed).
TEST_CASE("circuit_breaker: regression Polly #216, no half-open stampede while the probe runs",
          "[circuit_breaker][regression]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(consecutive(1, 5s), env);
  trip_and_wait(b, env);
  int inner_calls = 0;
  int rejected = 0;
  const auto outer = b.try_execute([&] {
    // The probe is in flight: every concurrent caller must be rejected at once.
    for (int i = 0; i < 100; ++i) {
      const auto r = b.try_execute([&] {
        ++inner_calls;
        return good();
      });
      if (r.is(keel::errc::circuit_open)) ++rejected;
    }
    return good();
  });
  CHECK(outer.has_value());
  CHECK(inner_calls == 0);
  CHECK(rejected == 100);
  CHECK(b.state() == circuit_state::closed);
}

// resilience4j #903 / #935: a half-open permit acquired but never released (the
// call threw, or was cancelled, or its result was never reported) left the
// breaker stuck in HALF_OPEN forever.
TEST_CASE(
    "circuit_breaker: regression resilience4j #903 #935, probe permits are released on every path",
    "[circuit_breaker][regression]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(consecutive(1, 1s), env);
  trip_and_wait(b, env);

  SECTION("the probe throws: it is a failure, the circuit reopens, and probes again later") {
    CHECK(b.try_execute([]() -> int { throw std::runtime_error("boom"); }).has_exception());
    CHECK(b.state() == circuit_state::open);
    env.advance(1s);
    CHECK(succeed(b).has_value());
  }
  SECTION("the probe is cancelled: its slot is freed, the next call probes") {
    CHECK(b.try_execute([] { return bad(std::errc::operation_canceled); }).has_error_value());
    CHECK(b.state() == circuit_state::half_open);
    CHECK(succeed(b).has_value());
  }
  SECTION("the probe throws a cancellation exception: its slot is freed") {
    CHECK(b.try_execute([]() -> int { throw keel::error(keel::errc::cancelled); }).has_exception());
    CHECK(succeed(b).has_value());
  }
  SECTION("the two-step permit is dropped without a result: its slot is freed") {
    static_cast<void>(b.try_acquire());  // the permit dies at the end of the statement
    CHECK(succeed(b).has_value());
  }
  SECTION("the probe's caller hangs forever: after max_wait_in_half_open another probe goes") {
    auto hung = b.try_acquire();
    CHECK(succeed(b).is(keel::errc::circuit_open));
    env.advance(b.options().max_wait_in_half_open);
    CHECK(succeed(b).has_value());
  }
  CHECK(b.state() == circuit_state::closed);
}

// resilience4j #1432: during the OPEN -> HALF_OPEN race, more calls were let
// through than permittedNumberOfCallsInHalfOpenState.
TEST_CASE(
    "circuit_breaker: regression resilience4j #1432, never more probes than permitted in the open "
    "to half-open race",
    "[circuit_breaker][regression]") {
  constexpr int threads = 8;
  constexpr int permitted = 3;
  for (int round = 0; round < 50; ++round) {
    keel::testing::virtual_environment env;
    event_log log;
    auto b = make_breaker({.trip = keel::consecutive_failures{.threshold = 1},
                           .open_duration = 1s,
                           .permitted_probes = permitted},
                          env, log);
    trip_and_wait(b, env);  // every thread sees an open circuit whose time is over
    std::latch start(threads);
    std::latch hold(threads);
    std::atomic<int> admitted{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        start.arrive_and_wait();
        auto p = b.try_acquire();  // held until every thread has tried
        if (p) admitted.fetch_add(1);
        hold.arrive_and_wait();
      });
    }
    for (auto& th : pool) th.join();
    CHECK(admitted.load() == permitted);
    CHECK(log.count<keel::circuit_half_opened>() == 1);  // one thread made the transition
    CHECK(log.count<keel::call_rejected>() == threads - permitted);
  }
}

// opossum #385: concurrent failures cancelled the timer that should move the
// circuit to half-open, so it never half-opened again.
TEST_CASE(
    "circuit_breaker: regression opossum #385, half-opens after concurrent failures (no timer to "
    "lose)",
    "[circuit_breaker][regression]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker(consecutive(3, 2s), env, log);
  constexpr int threads = 8;
  std::latch start(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < 50; ++i) (void)fail(b);
    });
  }
  for (auto& th : pool) th.join();
  CHECK(b.state() == circuit_state::open);
  CHECK(log.count<keel::circuit_opened>() == 1);  // one trip, however many threads failed at once
  env.advance(2s);
  CHECK(succeed(b).has_value());
  CHECK(b.state() == circuit_state::closed);
  CHECK(log.count<keel::circuit_half_opened>() == 1);
  CHECK(log.count<keel::circuit_closed>() == 1);
}

// gobreaker #21: a fixed window that clears every Interval distorts the error
// rate: failures just before the reset are forgotten at once, so a dependency
// failing half the time never trips. keel's windows slide.
TEST_CASE(
    "circuit_breaker: regression gobreaker #21, a sliding time window keeps failures across bucket "
    "boundaries",
    "[circuit_breaker][regression]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker({.trip =
                             keel::failure_ratio_time{
                                 .period = 10s, .buckets = 10, .minimum_calls = 4, .ratio = 0.5}},
                        env, log);
  env.advance(500ms);
  for (int i = 0; i < 4; ++i) CHECK(succeed(b).has_value());  // t = 0.5 s
  env.advance(9s);
  for (int i = 0; i < 3; ++i) CHECK(fail(b).has_error_value());  // t = 9.5 s: 3 of 7
  CHECK(b.state() == circuit_state::closed);
  env.advance(1s);  // t = 10.5 s: a fixed 10 s window would have cleared everything here
  CHECK(b.metrics().window_failures == 3);  // the successes at 0.5 s aged out, the failures did not
  CHECK(succeed(b).has_value());            // 3 of 4
  CHECK(b.state() == circuit_state::closed);
  CHECK(fail(b).has_error_value());  // 4 of 5 >= 0.5 (fixed window: 1 of 2, after the reset)
  CHECK(b.state() == circuit_state::open);
  REQUIRE(log.count<keel::circuit_opened>() == 1);
  CHECK(log.all<keel::circuit_opened>()[0].failure_ratio == Approx(0.8));
  CHECK(log.all<keel::circuit_opened>()[0].at == tp(10s + 500ms));
}

// keel's own: reset() marked a failure_ratio_time bucket unused without
// zeroing it, and the window then counted unused buckets while the clock was
// still in its first period (virtual time starts at zero): the stale calls
// came back, and a later failure could trip on them.
TEST_CASE("circuit_breaker: regression, reset empties a time window early in the clock",
          "[circuit_breaker][regression]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker({.trip =
                             keel::failure_ratio_time{
                                 .period = 10s, .buckets = 10, .minimum_calls = 5, .ratio = 0.5}},
                        env);
  for (int i = 0; i < 3; ++i) CHECK(fail(b).has_error_value());
  CHECK(b.metrics().window_calls == 3);
  b.reset();
  CHECK(b.metrics().window_calls == 0);
  CHECK(b.metrics().window_failures == 0);
  env.advance(1s);
  for (int i = 0; i < 2; ++i) CHECK(fail(b).has_error_value());
  CHECK(b.metrics().window_calls == 2);
  CHECK(b.state() == circuit_state::closed);  // 2 calls: under minimum_calls
}

// keel's own, found by the reference model: an outcome the breaker does not
// handle (a success to it) that was slow opened the circuit by the slow-call
// rule for the retry-after hint that outcome carried. Hints come from failures only.
TEST_CASE("circuit_breaker: regression, a slow unhandled outcome's hint does not set the open time",
          "[circuit_breaker][regression]") {
  keel::testing::virtual_environment env;
  const auto b =
      keel::circuit_breaker{
          {.trip = keel::failure_ratio_count{.window_size = 1, .minimum_calls = 1, .ratio = 1.0},
           .slow_calls = keel::slow_call_ratio{.threshold = 1s, .ratio = 1.0},
           .open_duration = 1s,
           .open_duration_factor = 1.0}}
          .handle(keel::on::any_failure && !keel::on::code(keel::errc::all_fallbacks_failed))
          .with_environment(env);
  auto p = b.try_acquire();
  p.record(keel::outcome<int>::from_keel(keel::errc::all_fallbacks_failed, 5s),
           2s);  // slow, unhandled
  REQUIRE(b.state() == circuit_state::open);
  CHECK(b.metrics().failures == 0);
  CHECK(b.metrics().retry_after == 1s);  // open_duration, not the 5 s hint

  env.advance(1s);
  auto probe = b.try_acquire();
  REQUIRE(probe.is_probe());
  probe.record(keel::outcome<int>::from_keel(keel::errc::all_fallbacks_failed, 7s),
               2s);  // a slow probe
  REQUIRE(b.state() == circuit_state::open);
  CHECK(b.metrics().retry_after == 1s);
}

// A policy inside the breaker that refuses a call (a full bulkhead, an
// adaptive limit, a throttle) never asked the dependency: its rejection,
// thrown-free keel failure or error value alike, is ignored, not a failure.
TEST_CASE("circuit_breaker: an inner policy's rejection is not a dependency failure",
          "[circuit_breaker][regression]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(consecutive(1, 5s), env);
  using coded = keel_test::expected<int, std::error_code>;
  for (const keel::errc e : {keel::errc::bulkhead_full, keel::errc::rate_limited,
                             keel::errc::throttled, keel::errc::circuit_open}) {
    const auto r =
        b.try_execute([e]() -> coded { return keel_test::unexpected(keel::make_error_code(e)); });
    CHECK(keel::is_rejection(r));
  }
  CHECK(b.state() == circuit_state::closed);
  CHECK(b.metrics().failures == 0);
  (void)b.try_execute([]() -> coded {
    return keel_test::unexpected(std::make_error_code(std::errc::connection_refused));
  });
  CHECK(b.state() == circuit_state::open);  // a real failure still counts
}

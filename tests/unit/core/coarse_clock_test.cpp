// SPDX-License-Identifier: BSL-1.0
// The coarse clock reads real time (it is a clock); no test here waits for it.
#include <chrono>
#include <stdexcept>

#include <keel/circuit_breaker.hpp>
#include <keel/core/coarse_clock.hpp>
#include <keel/timeout.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

static_assert(keel::clock<keel::coarse_steady_clock>);
static_assert(keel::environment<keel::coarse_environment>);

TEST_CASE("coarse clock: never ahead of steady_clock, never backwards, a tick of at most 10 ms",
          "[core][environment]") {
  const keel::duration tick = keel::coarse_steady_clock::resolution();
  CHECK(tick > keel::duration::zero());
#if KEEL_DETAIL_HAS_COARSE_CLOCK
  CHECK(tick <= 10ms);  // Linux: 1 / CONFIG_HZ, from 1 ms to 10 ms
#else
  CHECK(tick == keel::duration(1));
#endif
  const keel::coarse_steady_clock coarse;
  const keel::steady_clock fine;
  keel::time_point last = coarse.now();
  for (int i = 0; i < 100'000; ++i) {
    const keel::time_point c = coarse.now();
    const keel::time_point f = fine.now();
    REQUIRE(c >= last);  // monotonic
    REQUIRE(c <= f);     // the last tick, read before `f`: not after it
    last = c;
  }
}

TEST_CASE("coarse clock: policies run on coarse_environment", "[core][environment]") {
  auto breaker =
      keel::circuit_breaker{
          keel::circuit_breaker_options{
              .trip = keel::failure_ratio_time{.period = 10s, .minimum_calls = 2, .ratio = 0.5},
              .slow_calls = keel::slow_call_ratio{.threshold = 1s}}}
          .with_environment(keel::coarse_environment{});
  CHECK(breaker.try_execute([] { return 1; }).value() == 1);
  CHECK(breaker.try_execute([]() -> int { throw std::runtime_error("down"); }).has_exception());
  CHECK(breaker.metrics().window_calls == 2);
  CHECK(breaker.state() == keel::circuit_state::open);  // 1 of 2 failed: ratio 0.5
  const auto t = keel::timeout({.timeout = 1h}).with_environment(keel::coarse_environment{});
  CHECK(t.try_execute([] { return 2; }).value() == 2);
}

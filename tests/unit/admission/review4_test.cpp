// SPDX-License-Identifier: BSL-1.0
// Fourth adversarial review of admission control (issue 15): the adaptive
// throttle's per-thread rings (11e3da4), the rate limiter's waiter protocol
// after the third review, and rate_limiter over sliding windows.
#include <chrono>
#include <cstdint>

#include <keel/admission/adaptive_throttle.hpp>

#include "support/catch.hpp"

namespace {

using namespace std::chrono_literals;
using keel::throttle_result;

keel::time_point at(keel::duration d) { return keel::time_point(d); }

}  // namespace

// T1. A slot idle for 2^23 to 2^24 buckets holds a word whose 24-bit epoch
// reads as "later" than now: requests joined it (the clock went back, it
// assumed), accepts and forgets were dropped, and the sum, which covers a
// window either side of now, saw none of them. With 1 ms buckets that is an
// idle spell of 2.3 to 4.7 hours, followed by up to 2.3 hours of a blind
// throttle (p stays 0 whatever the dependency answers).
TEST_CASE("review4 T1: after an idle spell of 2^23..2^24 buckets, counts vanish (24-bit epoch)",
          "[review4][adaptive_throttle]") {
  keel::adaptive_throttle_core core({.window = 1s, .buckets = 1000});  // 1 ms buckets
  const auto t0 = at(10s);
  for (int i = 0; i < 10; ++i) {
    const auto a = core.try_acquire(t0, 0.0);
    core.finish(a, throttle_result::accepted, t0);
  }
  const auto c1 = core.try_acquire(t0, 0.0);
  core.finish(c1, throttle_result::ignored, t0);
  CHECK(core.counts(t0).requests == 10);
  CHECK(core.counts(t0).accepts == 10);
  // Three hours later (10.8e6 buckets: 2^23 <= 10.8e6 < 2^24), the same slots.
  const auto t1 = t0 + 3h;
  for (int i = 0; i < 4; ++i) {
    const auto a = core.try_acquire(t1, 0.0);
    core.finish(a, throttle_result::accepted, t1);
  }
  const auto c2 = core.try_acquire(t1, 0.0);
  core.finish(c2, throttle_result::ignored, t1);
  for (int i = 0; i < 20; ++i) {
    const auto a = core.try_acquire(t1, 0.0);
    core.finish(a, throttle_result::refused, t1);
  }
  CHECK(core.counts(t1).requests == 24);
  CHECK(core.counts(t1).accepts == 4);
  CHECK(core.probability() == Approx((24.0 - 8.0) / 25.0));
}

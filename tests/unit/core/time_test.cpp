// SPDX-License-Identifier: BSL-1.0
#include <chrono>
#include <limits>

#include <keel/core/time.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;
using keel::duration;
using keel::time_point;
namespace d = keel::detail;

TEST_CASE("time: addition saturates instead of overflowing", "[core][time]") {
  CHECK(d::saturating_add(1s, 2s) == 3s);
  CHECK(d::saturating_add(duration::max(), 1ns) == duration::max());
  CHECK(d::saturating_add(duration::max() - 5ns, 1s) == duration::max());
  CHECK(d::saturating_add(duration::min(), -1ns) == duration::min());
  CHECK(d::saturating_add(time_point{} + 1s, 1s) == time_point{} + 2s);
  CHECK(d::saturating_add(time_point{} + 1h, duration::max()) == keel::no_deadline);
}

TEST_CASE("time: multiplication saturates and treats NaN as zero", "[core][time]") {
  CHECK(d::saturating_mul(100ms, 2.0) == 200ms);
  CHECK(d::saturating_mul(100ms, 0.0) == 0ms);
  CHECK(d::saturating_mul(1s, 1e300) == duration::max());
  CHECK(d::saturating_mul(1s, std::numeric_limits<double>::infinity()) == duration::max());
  CHECK(d::saturating_mul(1s, std::numeric_limits<double>::quiet_NaN()) == 0ns);
  CHECK(d::saturating_mul(duration::max(), 1.0) == duration::max());
  CHECK(d::saturating_mul(1s, -1e300) == duration::min());
}

TEST_CASE("time: seconds_to_duration clamps to [0, max]", "[core][time]") {
  CHECK(d::seconds_to_duration(1.5) == 1500ms);
  CHECK(d::seconds_to_duration(-3.0) == 0ns);
  CHECK(d::seconds_to_duration(std::numeric_limits<double>::quiet_NaN()) == 0ns);
  CHECK(d::seconds_to_duration(1e30) == duration::max());
}

TEST_CASE("time: time_until is never negative and never overflows", "[core][time]") {
  CHECK(d::time_until(time_point{} + 1s, time_point{} + 3s) == 2s);
  CHECK(d::time_until(time_point{} + 3s, time_point{} + 1s) == 0ns);
  CHECK(d::time_until(time_point{} + 3s, time_point{} + 3s) == 0ns);
  CHECK(d::time_until(time_point::min(), time_point::max()) == duration::max());
}

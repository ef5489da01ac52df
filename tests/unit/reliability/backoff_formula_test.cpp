// SPDX-License-Identifier: BSL-1.0
// Every retry delay formula against a direct transcription of its published
// form (long double, no saturation tricks), for seeded random parameters, a
// fixed-value random source, whole delay sequences and huge attempt numbers:
// the delays agree (to rounding), stay within their documented bounds, and
// never hit undefined behaviour (run this binary under UBSan).
#include <algorithm>
#include <array>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include <keel/retry/backoff.hpp>
#include <keel/testing/seeded_random.hpp>

#include "support/catch.hpp"
#include "support/rng.hpp"

namespace {

using keel::duration;
using keel::testing::fixed_random;

using keel_test::rng;

using ld = long double;
constexpr ld max_ns = 9223372036854775807.0L;

/// The reference's conversion back to a duration: clamp to [0, max], truncate.
duration to_ns(ld x) {
  if (!(x > 0)) return duration::zero();
  if (x >= max_ns) return duration::max();
  return duration(static_cast<std::int64_t>(x));
}
ld ns(duration d) { return static_cast<ld>(d.count()); }

/// min(cap, base·factor^(r-1)), written as the sources write it.
ld expo(duration base, ld factor, int r, duration cap) {
  if (base == duration::zero()) return 0;  // 0·factor^n is 0, even when factor^n is inf
  return std::min(ns(cap), ns(base) * std::pow(factor, static_cast<ld>(r - 1)));
}

/// The two agree to rounding: within 1e-9 relative or 2 ns (double vs long double).
bool close(duration a, duration b) {
  const ld x = ns(a), y = ns(b);
  const ld diff = x > y ? x - y : y - x;
  return diff <= 2 || diff <= 1e-9L * std::max(x, y);
}

duration any_duration(rng& g) {
  switch (g.in(0, 3)) {
    case 0:
      return duration(g.in(0, 1000));  // nanoseconds
    case 1:
      return duration(g.in(0, 60'000'000'000));  // up to a minute
    case 2:
      return duration(g.in(0, INT64_MAX / 2));  // enormous
    default:
      return duration(INT64_MAX - g.in(0, 1000));  // at the top
  }
}
double any_jitter(rng& g) {
  static constexpr std::array<double, 5> j{0.0, 0.2, 0.25, 0.5, 1.0};
  return g.in(0, 4) < 4 ? j[static_cast<std::size_t>(g.in(0, 4))] : g.unit();
}
double any_factor(rng& g) {
  static constexpr std::array<double, 5> f{1.0, 1.5, 2.0, 3.0, 1000.0};
  return f[static_cast<std::size_t>(g.in(0, 4))];
}
double any_u(rng& g) {
  static constexpr std::array<double, 5> u{0.0, 0.25, 0.5, 0.75, 0.99999999999999989};
  return g.in(0, 1) == 0 ? u[static_cast<std::size_t>(g.in(0, 4))] : g.unit();
}
/// Attempts that matter: the first few, the ones where doubles run out, and int's end.
int any_attempt(rng& g) {
  switch (g.in(0, 3)) {
    case 0:
      return static_cast<int>(g.in(1, 10));
    case 1:
      return static_cast<int>(g.in(60, 70));
    case 2:
      return static_cast<int>(g.in(1000, 1100));
    default:
      return INT_MAX - static_cast<int>(g.in(0, 3));
  }
}

}  // namespace

TEST_CASE("backoff formulas: constant, linear and exponential match their transcription",
          "[reliability][retry][backoff]") {
  rng g{7};
  std::uint64_t compared = 0;
  for (int i = 0; i < 20'000; ++i) {
    const std::uint64_t seed = g.s;
    INFO("iteration " << i << " rng state " << seed);
    const fixed_random rnd{any_u(g)};
    const int r = any_attempt(g);
    const double f = any_jitter(g);
    const ld spread = 1 + static_cast<ld>(f) * (2 * static_cast<ld>(rnd.value()) - 1);
    keel::backoff_state st;
    const auto kind = g.in(0, 2);
    duration expected{}, lo{}, hi{};
    keel::backoff b;
    if (kind == 0) {
      const duration d = any_duration(g);
      b = keel::constant_backoff{d, f};
      expected = to_ns(ns(d) * spread);
      lo = to_ns(ns(d) * (1 - static_cast<ld>(f)));
      hi = to_ns(ns(d) * (1 + static_cast<ld>(f)));
    } else if (kind == 1) {
      const duration initial = any_duration(g), increment = any_duration(g);
      const duration cap = std::max(initial, any_duration(g));
      b = keel::linear_backoff{initial, increment, cap, f};
      const ld v = std::min(ns(cap), ns(initial) + ns(increment) * static_cast<ld>(r - 1));
      expected = to_ns(v * spread);
      lo = to_ns(v * (1 - static_cast<ld>(f)));
      hi = to_ns(v * (1 + static_cast<ld>(f)));
    } else {
      const duration initial = any_duration(g);
      const double factor = any_factor(g);
      const duration cap = std::max(initial, any_duration(g));
      b = keel::exponential_backoff{initial, factor, cap, f};
      const ld v = expo(initial, factor, r, cap);
      expected = to_ns(v * spread);
      lo = to_ns(v * (1 - static_cast<ld>(f)));
      hi = to_ns(v * (1 + static_cast<ld>(f)));
    }
    REQUIRE_FALSE(keel::validate(b));
    const duration got = b.next(r, st, rnd);
    INFO("kind " << kind << " r " << r << " jitter " << f << " u " << rnd.value() << ": got "
                 << got.count() << " expected " << expected.count());
    REQUIRE(close(got, expected));
    REQUIRE(got >= duration::zero());
    // Within [v(1-f), v(1+f)], allowing the same rounding.
    REQUIRE((got >= lo || close(got, lo)));
    REQUIRE((got <= hi || close(got, hi)));
    ++compared;
  }
  CHECK(compared == 20'000u);
}

TEST_CASE("backoff formulas: AWS full and equal jitter match their transcription",
          "[reliability][retry][backoff]") {
  rng g{11};
  for (int i = 0; i < 20'000; ++i) {
    INFO("iteration " << i);
    const fixed_random rnd{any_u(g)};
    const int r = any_attempt(g);
    const duration base = any_duration(g);
    const double factor = any_factor(g);
    const duration cap = std::max(base, any_duration(g));
    const ld top = expo(base, factor, r, cap);
    keel::backoff_state st;
    const ld u = static_cast<ld>(rnd.value());
    INFO("r " << r << " base " << base.count() << " factor " << factor << " cap " << cap.count()
              << " u " << rnd.value());
    if (g.in(0, 1) == 0) {
      const keel::backoff b = keel::full_jitter_backoff{base, factor, cap};
      REQUIRE_FALSE(keel::validate(b));
      const duration got = b.next(r, st, rnd);
      REQUIRE(close(got, to_ns(u * top)));  // sleep = random_between(0, min(cap, base·2^n))
      REQUIRE(got >= duration::zero());
      REQUIRE(got <= cap);
    } else {
      const keel::backoff b = keel::equal_jitter_backoff{base, factor, cap};
      REQUIRE_FALSE(keel::validate(b));
      const duration got = b.next(r, st, rnd);
      REQUIRE(close(got, to_ns(top / 2 + u * top / 2)));  // v/2 + random_between(0, v/2)
      REQUIRE((got >= to_ns(top / 2) || close(got, to_ns(top / 2))));
      REQUIRE(got <= cap);
    }
  }
}

TEST_CASE("backoff formulas: AWS decorrelated jitter sequences match their transcription",
          "[reliability][retry][backoff]") {
  rng g{13};
  for (int i = 0; i < 2'000; ++i) {
    INFO("sequence " << i);
    const duration base = g.in(0, 3) == 0 ? any_duration(g) : duration(g.in(0, 1'000'000'000));
    const duration cap = std::max(base, any_duration(g));
    const keel::backoff b = keel::decorrelated_jitter_backoff{base, cap};
    REQUIRE_FALSE(keel::validate(b));
    keel::backoff_state st;
    ld prev = ns(base);  // sleep = min(cap, random_between(base, sleep * 3)), sleep0 = base
    for (int r = 1; r <= 40; ++r) {
      const fixed_random rnd{any_u(g)};
      const duration got = b.next(r, st, rnd);
      const ld lo = ns(base), hi = 3 * prev;
      const duration expected = std::min(cap, to_ns(lo + static_cast<ld>(rnd.value()) * (hi - lo)));
      INFO("r " << r << " u " << rnd.value() << " got " << got.count() << " expected "
                << expected.count());
      REQUIRE(close(got, expected));
      REQUIRE(got >= base);
      REQUIRE(got <= cap);
      // Continue the reference from keel's own value so rounding cannot accumulate.
      prev = ns(got) > 0 ? ns(got) : ns(base);
    }
  }
}

TEST_CASE("backoff formulas: Polly V2 decorrelated jitter sequences match their transcription",
          "[reliability][retry][backoff]") {
  rng g{17};
  for (int i = 0; i < 2'000; ++i) {
    INFO("sequence " << i);
    const duration base = duration(g.in(0, 10'000'000'000));
    const duration cap = std::max(base, any_duration(g));
    const keel::backoff b = keel::decorrelated_jitter_v2_backoff{base, cap};
    REQUIRE_FALSE(keel::validate(b));
    keel::backoff_state st;
    // Polly RetryHelper.DecorrelatedJitterBackoffV2: t = attempt + U,
    // next = 2^t · tanh(sqrt(4t)), delay = (next - prev) / 1.4 · base.
    double prev = 0.0;
    const int start = g.in(0, 3) == 0 ? static_cast<int>(g.in(1000, 1030)) : 1;
    for (int r = start; r < start + 30; ++r) {
      const fixed_random rnd{any_u(g)};
      const duration got = b.next(r, st, rnd);
      const double t = static_cast<double>(r - 1) + rnd.value();
      const double next = std::pow(2.0, t) * std::tanh(std::sqrt(4.0 * t));
      duration expected{};
      if (!std::isfinite(next)) {
        expected = cap;  // Polly: TimeSpan.MaxValue, capped
      } else {
        expected = std::min(cap, to_ns(static_cast<ld>(next - prev) / 1.4L * ns(base)));
      }
      prev = next;
      INFO("r " << r << " u " << rnd.value() << " got " << got.count() << " expected "
                << expected.count());
      REQUIRE(close(got, expected));
      REQUIRE(got >= duration::zero());
      REQUIRE(got <= cap);
    }
  }
}

TEST_CASE("backoff formulas: huge and out-of-range attempt numbers stay within bounds",
          "[reliability][retry][backoff]") {
  using namespace std::chrono_literals;
  const std::array<keel::backoff, 7> all{
      keel::constant_backoff{1s, 1.0},
      keel::linear_backoff{1s, duration::max(), duration::max(), 1.0},
      keel::exponential_backoff{1ns, 1000.0, duration::max(), 1.0},
      keel::full_jitter_backoff{1ns, 1000.0, duration::max()},
      keel::equal_jitter_backoff{1ns, 1000.0, duration::max()},
      keel::decorrelated_jitter_backoff{duration::max() / 2, duration::max()},
      keel::decorrelated_jitter_v2_backoff{duration::max(), duration::max()},
  };
  for (const keel::backoff& b : all) {
    REQUIRE_FALSE(keel::validate(b));
    for (const double u : {0.0, 0.5, 0.99999999999999989}) {
      keel::backoff_state st;
      for (const int r : {INT_MIN, -1, 0, 1, 2, 63, 64, 1023, 1024, 1025, INT_MAX - 1, INT_MAX}) {
        const duration d = b.next(r, st, fixed_random{u});
        INFO("formula " << b.get().index() << " r " << r << " u " << u << " -> " << d.count());
        CHECK(d >= duration::zero());
        CHECK(d <= duration::max());
      }
    }
  }
  // Attempts below 1 are attempt 1.
  keel::backoff_state st;
  const keel::backoff e = keel::exponential_backoff{100ms, 2.0, 10s, 0.0};
  CHECK(e.next(INT_MIN, st, fixed_random{0.0}) == 100ms);
  CHECK(e.next(0, st, fixed_random{0.0}) == 100ms);
  CHECK(e.next(INT_MAX, st, fixed_random{0.0}) == 10s);
}

TEST_CASE("backoff formulas: rounding never takes a jittered delay outside its range (regression)",
          "[reliability][retry][backoff][regression]") {
  // Found by the transcription test: the double arithmetic rounded the AWS
  // equal-jitter delay 114 ns above max_delay, and the AWS decorrelated delay
  // 325 ns below base, for durations near 2^60..2^63 ns.
  const fixed_random almost_one{0.99999999999999989};
  keel::backoff_state st;
  const duration big(1553985490786205070);
  const keel::backoff equal = keel::equal_jitter_backoff{big, 1.0, big};
  CHECK(equal.next(1010, st, almost_one) <= big);
  CHECK(equal.next(1, st, fixed_random{0.0}) >= big / 2);
  const keel::backoff full = keel::full_jitter_backoff{big, 1.0, big};
  CHECK(full.next(1, st, almost_one) <= big);
  const duration near_max(9223372036854775109);
  const keel::backoff decorrelated = keel::decorrelated_jitter_backoff{near_max, duration::max()};
  CHECK(decorrelated.next(1, st, fixed_random{0.0}) == near_max);
}

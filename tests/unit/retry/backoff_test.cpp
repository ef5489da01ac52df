// SPDX-License-Identifier: BSL-1.0
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <keel/retry/backoff.hpp>
#include <keel/testing/seeded_random.hpp>

#include "support/catch.hpp"

namespace {

using namespace std::chrono_literals;
using keel::duration;
using keel::testing::fixed_random;
using keel::testing::seeded_random;

/// The first `n` delays of a fresh call (one backoff_state, as the retry loop keeps).
template <class Random>
std::vector<duration> delays(const keel::backoff& b, int n, const Random& random) {
  keel::backoff_state state;
  std::vector<duration> out;
  for (int r = 1; r <= n; ++r) out.push_back(b.next(r, state, random));
  return out;
}

std::vector<duration> ms(std::initializer_list<double> values) {
  std::vector<duration> out;
  for (double v : values) out.push_back(duration{static_cast<std::int64_t>(v * 1'000'000)});
  return out;
}

struct stats {
  double min = std::numeric_limits<double>::max();
  double max = 0;
  double mean = 0;
};

/// 10,000 first-to-`r`th delays, each from a fresh state, in milliseconds.
stats draw(const keel::backoff& b, int r, std::uint64_t seed = 7) {
  const seeded_random random(seed);
  stats s;
  double sum = 0;
  for (int i = 0; i < 10'000; ++i) {
    keel::backoff_state state;
    duration d{};
    for (int k = 1; k <= r; ++k) d = b.next(k, state, random);
    const double v = static_cast<double>(d.count()) / 1e6;
    s.min = std::min(s.min, v);
    s.max = std::max(s.max, v);
    sum += v;
  }
  s.mean = sum / 10'000;
  return s;
}

}  // namespace

TEST_CASE("backoff: constant waits the same delay before every retry", "[retry][backoff]") {
  const keel::backoff b = keel::constant_backoff{.delay = 250ms};
  CHECK(delays(b, 4, fixed_random(0.9)) == ms({250, 250, 250, 250}));
}

TEST_CASE("backoff: linear grows by the increment up to max_delay", "[retry][backoff]") {
  const keel::backoff b =
      keel::linear_backoff{.initial = 100ms, .increment = 50ms, .max_delay = 300ms};
  CHECK(delays(b, 7, fixed_random(0.5)) == ms({100, 150, 200, 250, 300, 300, 300}));
}

TEST_CASE("backoff: linear with initial == increment is Polly's (n+1)·d", "[retry][backoff]") {
  const keel::backoff b = keel::linear_backoff{.initial = 2s, .increment = 2s, .max_delay = 1h};
  CHECK(delays(b, 3, fixed_random(0.5)) == ms({2000, 4000, 6000}));
}

TEST_CASE("backoff: exponential multiplies by the factor up to max_delay", "[retry][backoff]") {
  const keel::backoff b =
      keel::exponential_backoff{.initial = 100ms, .factor = 2.0, .max_delay = 1s};
  CHECK(delays(b, 6, fixed_random(0.5)) == ms({100, 200, 400, 800, 1000, 1000}));
  const keel::backoff r4j =
      keel::exponential_backoff{.initial = 500ms, .factor = 1.5, .max_delay = 10s};
  CHECK(delays(r4j, 4, fixed_random(0.5)) == ms({500, 750, 1125, 1687.5}));
}

TEST_CASE("backoff: the default is 100 ms doubling to 10 s without jitter", "[retry][backoff]") {
  const keel::backoff b;
  CHECK(delays(b, 9, fixed_random(0.3)) ==
        ms({100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000}));
}

TEST_CASE("backoff: proportional jitter spans exactly [d(1-f), d(1+f))", "[retry][backoff]") {
  const keel::backoff b = keel::constant_backoff{.delay = 1s, .jitter = 0.25};
  CHECK(delays(b, 1, fixed_random(0.0)) == ms({750}));    // U = 0: d(1 - f)
  CHECK(delays(b, 1, fixed_random(0.5)) == ms({1000}));   // U = 1/2: d
  CHECK(delays(b, 1, fixed_random(0.75)) == ms({1125}));  // d(1 + f/2)
  // gRPC A6: min(initial·mult^(n-1), max)·U(0.8, 1.2), jitter applied after the cap.
  const keel::backoff grpc =
      keel::exponential_backoff{.initial = 1s, .factor = 2.0, .max_delay = 3s, .jitter = 0.2};
  // 0.8 and 1.1 are not exact in binary: compare to the nanosecond.
  const auto low = delays(grpc, 3, fixed_random(0.0));
  const auto high = delays(grpc, 3, fixed_random(0.75));
  const double low_ms[] = {800, 1600, 2400}, high_ms[] = {1100, 2200, 3300};
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(static_cast<double>(low[i].count()) == Approx(low_ms[i] * 1e6).margin(1.0));
    CHECK(static_cast<double>(high[i].count()) == Approx(high_ms[i] * 1e6).margin(1.0));
  }
}

TEST_CASE("backoff: AWS full and equal jitter follow expo = min(cap, base·2^n)",
          "[retry][backoff]") {
  const keel::backoff full = keel::full_jitter_backoff{.base = 100ms, .max_delay = 300ms};
  CHECK(delays(full, 5, fixed_random(0.5)) == ms({50, 100, 150, 150, 150}));
  CHECK(delays(full, 3, fixed_random(0.0)) == ms({0, 0, 0}));
  const keel::backoff equal = keel::equal_jitter_backoff{.base = 100ms, .max_delay = 1s};
  CHECK(delays(equal, 4, fixed_random(0.5)) == ms({75, 150, 300, 600}));
  CHECK(delays(equal, 4, fixed_random(0.0)) == ms({50, 100, 200, 400}));
}

TEST_CASE("backoff: AWS decorrelated jitter draws from [base, 3·previous), capped",
          "[retry][backoff]") {
  const keel::backoff b = keel::decorrelated_jitter_backoff{.base = 100ms, .max_delay = 1s};
  // U = 1/2: 100 + (300-100)/2 = 200; 100 + (600-100)/2 = 350; 575; 912.5; then the cap.
  CHECK(delays(b, 6, fixed_random(0.5)) == ms({200, 350, 575, 912.5, 1000, 1000}));
  CHECK(delays(b, 3, fixed_random(0.0)) == ms({100, 100, 100}));
}

TEST_CASE("backoff: Polly's decorrelated jitter V2 matches its formula", "[retry][backoff]") {
  // Reference values computed independently (Python) for U = 0.5, base = 1 s:
  // t = n + 0.5, next = 2^t·tanh(sqrt(4t)), delay = (next - prev)/1.4.
  const keel::backoff b = keel::decorrelated_jitter_v2_backoff{.base = 1s, .max_delay = 1h};
  const std::vector<double> expected_ns{897404935.58, 1093003547.38, 2035747962.62, 4045979422.78,
                                        8083631609.82};
  const auto got = delays(b, 5, fixed_random(0.5));
  for (std::size_t i = 0; i < expected_ns.size(); ++i) {
    CHECK(static_cast<double>(got[i].count()) == Approx(expected_ns[i]).margin(2.0));
  }
  const keel::backoff capped = keel::decorrelated_jitter_v2_backoff{.base = 1s, .max_delay = 3s};
  CHECK(delays(capped, 5, fixed_random(0.5))[4] == 3s);
}

TEST_CASE("backoff: decorrelated state belongs to one call, never to the backoff",
          "[retry][backoff]") {
  const keel::backoff b = keel::decorrelated_jitter_backoff{.base = 100ms, .max_delay = 10s};
  const fixed_random half(0.5);
  keel::backoff_state first, second;
  CHECK(b.next(1, first, half) == 200ms);
  CHECK(b.next(2, first, half) == 350ms);
  CHECK(b.next(1, second, half) == 200ms);  // a new call starts from base again
}

TEST_CASE("backoff: 10,000 proportional-jitter draws stay within ±f with mean d",
          "[retry][backoff][jitter]") {
  const stats s = draw(keel::constant_backoff{.delay = 1s, .jitter = 0.25}, 1);
  CHECK(s.min >= 750.0);
  CHECK(s.max < 1250.0);
  CHECK(s.mean == Approx(1000.0).epsilon(0.01));
  const stats g = draw(
      keel::exponential_backoff{.initial = 100ms, .factor = 2, .max_delay = 10s, .jitter = 0.2}, 3);
  CHECK(g.min >= 320.0);
  CHECK(g.max < 480.0);
  CHECK(g.mean == Approx(400.0).epsilon(0.01));
  const stats l = draw(
      keel::linear_backoff{.initial = 100ms, .increment = 100ms, .max_delay = 10s, .jitter = 0.5},
      2);
  CHECK(l.min >= 100.0);
  CHECK(l.max < 300.0);
  CHECK(l.mean == Approx(200.0).epsilon(0.015));
}

TEST_CASE("backoff: 10,000 full-jitter draws lie in [0, expo) with mean expo/2",
          "[retry][backoff][jitter]") {
  const stats s = draw(keel::full_jitter_backoff{.base = 100ms, .max_delay = 10s}, 4);  // expo 800
  CHECK(s.min >= 0.0);
  CHECK(s.max < 800.0);
  CHECK(s.mean == Approx(400.0).epsilon(0.02));
}

TEST_CASE("backoff: 10,000 equal-jitter draws lie in [expo/2, expo) with mean 3/4·expo",
          "[retry][backoff][jitter]") {
  const stats s = draw(keel::equal_jitter_backoff{.base = 100ms, .max_delay = 10s}, 4);
  CHECK(s.min >= 400.0);
  CHECK(s.max < 800.0);
  CHECK(s.mean == Approx(600.0).epsilon(0.01));
}

TEST_CASE("backoff: 10,000 decorrelated-jitter chains stay in [base, min(cap, 3·prev)]",
          "[retry][backoff][jitter]") {
  const keel::backoff b = keel::decorrelated_jitter_backoff{.base = 100ms, .max_delay = 2s};
  const stats first = draw(b, 1);
  CHECK(first.min >= 100.0);
  CHECK(first.max < 300.0);
  CHECK(first.mean == Approx(200.0).epsilon(0.015));

  const seeded_random random(11);
  bool in_bounds = true;
  for (int i = 0; i < 10'000; ++i) {
    keel::backoff_state state;
    duration prev = 100ms;
    for (int r = 1; r <= 8; ++r) {
      const duration d = b.next(r, state, random);
      in_bounds = in_bounds && d >= 100ms && d <= std::min<duration>(2s, 3 * prev);
      prev = d;
    }
  }
  CHECK(in_bounds);
}

TEST_CASE("backoff: 10,000 V2 draws are bounded and their sums telescope",
          "[retry][backoff][jitter]") {
  const auto f = [](double t) { return std::pow(2.0, t) * std::tanh(std::sqrt(4.0 * t)); };
  const keel::backoff b = keel::decorrelated_jitter_v2_backoff{.base = 1s, .max_delay = 1h};
  // First delay: f(U)/1.4·base, U in [0, 1): in [0, f(1)/1.4); mean by midpoint rule.
  const stats s = draw(b, 1);
  CHECK(s.min >= 0.0);
  CHECK(s.max < f(1.0) / 1.4 * 1000.0);
  double integral = 0;
  for (int i = 0; i < 100'000; ++i) integral += f((i + 0.5) / 100'000);
  CHECK(s.mean == Approx(integral / 100'000 / 1.4 * 1000.0).epsilon(0.02));  // ≈ 871 ms

  // Sum of the first five delays = f(t5)/1.4·base with t5 in [4, 5) (minus truncation).
  const seeded_random random(3);
  bool bounded = true;
  for (int i = 0; i < 10'000; ++i) {
    keel::backoff_state state;
    double sum_s = 0;
    for (int r = 1; r <= 5; ++r)
      sum_s += static_cast<double>(b.next(r, state, random).count()) / 1e9;
    bounded = bounded && sum_s >= f(4.0) / 1.4 - 1e-6 && sum_s < f(5.0) / 1.4;
  }
  CHECK(bounded);
}

TEST_CASE("backoff: huge attempt numbers saturate at max_delay, never overflow",
          "[retry][backoff]") {
  const fixed_random half(0.5);
  keel::backoff_state state;
  const keel::backoff e =
      keel::exponential_backoff{.initial = 100ms, .factor = 2, .max_delay = 10s};
  CHECK(e.next(10'000, state, half) == 10s);
  CHECK(e.next(std::numeric_limits<int>::max(), state, half) == 10s);
  const keel::backoff unbounded = keel::exponential_backoff{
      .initial = 1ns, .factor = 2, .max_delay = duration::max(), .jitter = 1.0};
  CHECK(unbounded.next(10'000, state, keel::testing::fixed_random(0.999)) == duration::max());
  const keel::backoff linear =
      keel::linear_backoff{.initial = 1h, .increment = 1h, .max_delay = duration::max()};
  CHECK(linear.next(1000, state, half) == 1000h);
  CHECK(linear.next(std::numeric_limits<int>::max(), state, half) == duration::max());
  const keel::backoff huge_linear = keel::linear_backoff{.initial = duration::max() / 2,
                                                         .increment = duration::max() / 2,
                                                         .max_delay = duration::max()};
  CHECK(huge_linear.next(10'000, state, half) == duration::max());
  const keel::backoff full = keel::full_jitter_backoff{.base = 100ms, .max_delay = 5s};
  CHECK(full.next(10'000, state, half) == 2500ms);
  const keel::backoff v2 = keel::decorrelated_jitter_v2_backoff{.base = 1s, .max_delay = 30s};
  keel::backoff_state v2_state;
  CHECK(v2.next(1100, v2_state, half) == 30s);  // 2^1100 is infinite in a double
  CHECK(v2.next(1101, v2_state, half) == 30s);
  CHECK(v2.next(0, v2_state, half) >= duration::zero());  // r < 1 is read as 1
}

TEST_CASE("backoff: validate names the offending field", "[retry][backoff][config]") {
  STATIC_REQUIRE(!keel::validate(keel::backoff{}));
  STATIC_REQUIRE(keel::validate(keel::exponential_backoff{.factor = 0.5})->field ==
                 "backoff.factor");
  STATIC_REQUIRE(keel::validate(keel::exponential_backoff{.initial = 2s, .max_delay = 1s})->field ==
                 "backoff.max_delay");
  STATIC_REQUIRE(keel::validate(keel::constant_backoff{.delay = -1ms})->field == "backoff.delay");
  STATIC_REQUIRE(keel::validate(keel::constant_backoff{.jitter = 1.5})->field == "backoff.jitter");
  STATIC_REQUIRE(keel::validate(keel::linear_backoff{.increment = -1ms})->field ==
                 "backoff.increment");
  STATIC_REQUIRE(keel::validate(keel::full_jitter_backoff{.base = -1ms})->field == "backoff.base");
  STATIC_REQUIRE(keel::validate(keel::equal_jitter_backoff{.factor = 0.0})->field ==
                 "backoff.factor");
  STATIC_REQUIRE(
      keel::validate(keel::decorrelated_jitter_backoff{.base = 2s, .max_delay = 1s})->field ==
      "backoff.max_delay");
  STATIC_REQUIRE(!keel::validate(keel::decorrelated_jitter_v2_backoff{}));
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK(keel::validate(keel::exponential_backoff{.factor = nan})->field == "backoff.factor");
  CHECK(keel::validate(keel::exponential_backoff{.jitter = nan})->field == "backoff.jitter");
  CHECK(keel::validate(keel::exponential_backoff{.factor = std::numeric_limits<double>::infinity()})
            ->field == "backoff.factor");
}

TEST_CASE("backoff: factor 2 gives, exactly, base times pow(2, r - 1), capped",
          "[retry][backoff]") {
  // Factor 2 is computed by scaling the exponent; it must be the same double
  // as the product with pow, up to and past overflow to the cap.
  const keel::duration cap = keel::duration::max();
  for (const std::int64_t base :
       {std::int64_t{1}, std::int64_t{3}, std::int64_t{100'000'000}, std::int64_t{999'999'937},
        std::int64_t{1} << 52, (std::int64_t{1} << 62) + 12345}) {
    for (int r = 1; r <= 1100; ++r) {
      const double scaled = static_cast<double>(base) * std::pow(2.0, r - 1);
      const keel::duration want =
          !(scaled < static_cast<double>(cap.count())) ? cap : keel::detail::clamp_ns(scaled);
      INFO("base " << base << " r " << r);
      REQUIRE(keel::detail::capped_exponential(keel::duration(base), 2.0, r, cap) == want);
    }
  }
}

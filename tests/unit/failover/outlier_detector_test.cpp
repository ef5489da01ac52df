// SPDX-License-Identifier: BSL-1.0
// Passive outlier detection in virtual time: Envoy's and gRPC A50's semantics,
// and the anchors' known faults (envoy #3263, #17504, #26758, #26877, #27066,
// #40697, envoyproxy/gateway #8140, grpc-java #12537), each a test case here.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

#include <keel/failover/outlier_detector.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;
using keel::ejection_reason;
using keel::outlier_change;
using keel::outlier_detection_options;
using keel::outlier_detector;
using keel::time_point;

namespace {
const time_point t0{};

struct change_log {
  std::vector<outlier_change> changes;
  auto sink() {
    return [this](const outlier_change& c) { changes.push_back(c); };
  }
};

/// Options with only the consecutive-failures detector and no cap.
outlier_detection_options consecutive_only(std::uint32_t max_percent = 100) {
  outlier_detection_options o;
  o.success_rate = std::nullopt;
  o.max_ejection_percent = max_percent;
  return o;
}

void fail(outlier_detector& d, std::size_t i, int times, time_point now,
          change_log* log = nullptr) {
  for (int k = 0; k < times; ++k) {
    if (log != nullptr) {
      d.record(i, true, now, log->sink());
    } else {
      d.record(i, true, now);
    }
  }
}

/// Options with the rate detectors only (success rate on by default) and no cap.
outlier_detection_options rates_only() {
  outlier_detection_options o;
  o.consecutive_failures = 0;
  o.max_ejection_percent = 100;
  return o;
}

/// One interval of traffic: ok successes and bad failures on endpoint i.
void traffic(outlier_detector& d, std::size_t i, int ok, int bad, time_point now, change_log& log) {
  for (int k = 0; k < ok; ++k) d.record(i, false, now, log.sink());
  for (int k = 0; k < bad; ++k) d.record(i, true, now, log.sink());
}

/// Endpoints 0 .. count-1 each answer `calls` successes.
void healthy(outlier_detector& d, std::size_t count, int calls, time_point now, change_log& log) {
  for (std::size_t i = 0; i < count; ++i) traffic(d, i, calls, 0, now, log);
}
}  // namespace

TEST_CASE("outlier: five failures in a row eject at once, for base_ejection_time exactly",
          "[failover][outlier]") {
  outlier_detector d(4, consecutive_only());
  change_log log;
  fail(d, 2, 4, t0 + 1s, &log);
  CHECK_FALSE(d.ejected(2));
  d.record(2, true, t0 + 2s, log.sink());
  REQUIRE(d.ejected(2));
  CHECK(d.ejected_until(2) == t0 + 32s);
  CHECK(d.ejected_count() == 1);
  REQUIRE(log.changes.size() == 1);
  CHECK(log.changes[0].endpoint == 2);
  CHECK(log.changes[0].ejected);
  CHECK(log.changes[0].reason == ejection_reason::consecutive_failures);
  CHECK(log.changes[0].until == t0 + 32s);

  d.sweep(t0 + 32s - 1ns, log.sink());
  CHECK(d.ejected(2));
  d.sweep(t0 + 32s, log.sink());  // returned at the first look at or after its time
  CHECK_FALSE(d.ejected(2));
  CHECK(d.ejected_count() == 0);
  REQUIRE(log.changes.size() == 2);
  CHECK_FALSE(log.changes[1].ejected);
  CHECK(log.changes[1].until == t0 + 32s);
  CHECK(log.changes[1].reason == ejection_reason::consecutive_failures);
}

TEST_CASE("outlier: a success breaks the run", "[failover][outlier]") {
  outlier_detector d(2, consecutive_only());
  fail(d, 0, 4, t0);
  d.record(0, false, t0);
  fail(d, 0, 4, t0);
  CHECK_FALSE(d.ejected(0));
  d.record(0, true, t0);
  CHECK(d.ejected(0));
}

TEST_CASE("outlier: the run starts again after an ejection (envoy #40697)", "[failover][outlier]") {
  outlier_detector d(2, consecutive_only());
  fail(d, 0, 5, t0);
  REQUIRE(d.ejected(0));
  fail(d, 0, 3, t0 + 1s);  // late results of calls made before the ejection
  d.sweep(t0 + 30s);
  REQUIRE_FALSE(d.ejected(0));
  fail(d, 0, 1, t0 + 30s);  // one failure after the return does not eject again
  CHECK_FALSE(d.ejected(0));
  fail(d, 0, 4, t0 + 30s);
  CHECK(d.ejected(0));
}

TEST_CASE("outlier: each ejection in a row lasts longer, up to the maximum, and decays",
          "[failover][outlier]") {
  auto o = consecutive_only();
  o.interval = 10s;
  o.base_ejection_time = 30s;
  o.max_ejection_time = 100s;
  outlier_detector d(2, o);
  time_point now = t0;
  const std::vector<std::chrono::seconds> expected = {30s, 60s, 90s, 100s, 100s};
  for (const auto length : expected) {
    fail(d, 0, 5, now);
    REQUIRE(d.ejected(0));
    CHECK(*d.ejected_until(0) - now == length);
    now = *d.ejected_until(0);
    d.sweep(now);
    REQUIRE_FALSE(d.ejected(0));
  }
  CHECK(d.multiplier(0) == 5);
  // Each sweep that finds it not ejected takes one off: three sweeps, 2 left.
  for (int k = 1; k <= 3; ++k) d.sweep(now + k * 10s);
  CHECK(d.multiplier(0) == 2);
  fail(d, 0, 5, now + 30s);
  CHECK(*d.ejected_until(0) - (now + 30s) == 90s);
}

TEST_CASE("outlier: a max below base lasts base (A50: min(base * k, max(base, max)))",
          "[failover][outlier]") {
  auto o = consecutive_only();
  o.base_ejection_time = 30s;
  o.max_ejection_time = 10s;
  outlier_detector d(2, o);
  fail(d, 0, 5, t0);
  CHECK(d.ejected_until(0) == t0 + 30s);
  d.sweep(t0 + 30s);
  fail(d, 0, 5, t0 + 30s);
  CHECK(d.ejected_until(0) == t0 + 60s);
}

TEST_CASE(
    "outlier: the cap is exact for every pool size from 1 to 10 (envoy #26877, #27066, "
    "gateway #8140, envoy #17504)",
    "[failover][outlier]") {
  for (std::uint32_t percent : {10u, 20u, 34u, 50u, 100u}) {
    for (bool one : {false, true}) {
      for (std::size_t n = 1; n <= 10; ++n) {
        auto o = consecutive_only(percent);
        o.always_eject_one = one;
        outlier_detector d(n, o);
        for (std::size_t i = 0; i < n; ++i) fail(d, i, 5, t0);
        std::size_t allowed = static_cast<std::size_t>(percent) * n / 100;  // floor
        if (one && allowed == 0) allowed = 1;
        INFO("n = " << n << ", max_ejection_percent = " << percent
                    << ", always_eject_one = " << one);
        CHECK(d.ejected_count() == allowed);
        std::size_t marked = 0;
        for (std::size_t i = 0; i < n; ++i) marked += d.ejected(i) ? 1 : 0;
        CHECK(marked == allowed);
        CHECK_FALSE(d.may_eject());
      }
    }
  }
}

TEST_CASE("outlier: a return makes room under the cap for the next endpoint",
          "[failover][outlier]") {
  outlier_detector d(10, consecutive_only(10));
  fail(d, 3, 5, t0);
  fail(d, 7, 5, t0 + 1s);
  CHECK(d.ejected(3));
  CHECK_FALSE(d.ejected(7));  // the cap (1 of 10) held
  d.sweep(t0 + 30s);
  CHECK_FALSE(d.ejected(3));
  fail(d, 7, 5, t0 + 30s);  // its run went on; five more eject it now
  CHECK(d.ejected(7));
}

TEST_CASE("outlier: success rate ejects the endpoint below mean - 1.9 stdev at the sweep",
          "[failover][outlier]") {
  outlier_detector d(5, rates_only());
  change_log log;
  // Rates 1, 1, 1, 1, 0.5: mean 0.9, stdev 0.2, threshold 0.52.
  healthy(d, 4, 100, t0 + 1s, log);
  traffic(d, 4, 50, 50, t0 + 1s, log);
  CHECK(log.changes.empty());  // nothing before the sweep
  d.sweep(t0 + 10s - 1ns, log.sink());
  CHECK(log.changes.empty());
  d.sweep(t0 + 10s, log.sink());
  REQUIRE(log.changes.size() == 1);
  CHECK(log.changes[0].endpoint == 4);
  CHECK(log.changes[0].reason == ejection_reason::success_rate);
  CHECK(log.changes[0].until == t0 + 40s);
}

TEST_CASE("outlier: success rate just above the threshold stays", "[failover][outlier]") {
  auto o = rates_only();
  o.success_rate->stdev_factor = 2.0;
  outlier_detector d(5, o);
  change_log log;
  // Rates 1, 1, 1, 1, 0.5 again: threshold 0.9 - 2 * 0.2 = 0.5, and 0.5 is not below it.
  healthy(d, 4, 100, t0, log);
  traffic(d, 4, 50, 50, t0, log);
  d.sweep(t0 + 10s, log.sink());
  CHECK(log.changes.empty());
}

TEST_CASE("outlier: success rate needs minimum_hosts endpoints with request_volume calls",
          "[failover][outlier]") {
  outlier_detector d(5, rates_only());
  change_log log;
  healthy(d, 3, 100, t0, log);
  traffic(d, 3, 99, 0, t0, log);  // one call short of taking part
  traffic(d, 4, 0, 100, t0, log);
  d.sweep(t0 + 10s, log.sink());
  CHECK(log.changes.empty());  // 4 endpoints took part, 5 needed
}

TEST_CASE(
    "outlier: an endpoint with no success is ejected however large the stdev "
    "(grpc-java #12537)",
    "[failover][outlier]") {
  outlier_detector d(5, rates_only());
  change_log log;
  // Rates 1, 1, 1, 0, 0: mean 0.6, stdev 0.49, threshold 0.6 - 0.93 < 0.
  healthy(d, 3, 100, t0, log);
  traffic(d, 3, 0, 100, t0, log);
  traffic(d, 4, 0, 100, t0, log);
  d.sweep(t0 + 10s, log.sink());
  REQUIRE(log.changes.size() == 2);
  CHECK(log.changes[0].endpoint == 3);
  CHECK(log.changes[1].endpoint == 4);
}

TEST_CASE("outlier: counts are per interval; the sweep after a quiet interval sees none",
          "[failover][outlier]") {
  outlier_detector d(5, rates_only());
  change_log log;
  healthy(d, 4, 100, t0, log);
  traffic(d, 4, 50, 50, t0, log);
  d.sweep(t0 + 10s, log.sink());
  REQUIRE(log.changes.size() == 1);  // endpoint 4, back at 40 s
  d.sweep(t0 + 40s, log.sink());     // returned; the 10 s .. 40 s intervals had no calls
  REQUIRE(log.changes.size() == 2);
  d.sweep(t0 + 50s, log.sink());
  CHECK(log.changes.size() == 2);
}

TEST_CASE(
    "outlier: failure percentage ejects at the threshold, not below, and grows too "
    "(envoy #26758)",
    "[failover][outlier]") {
  auto o = rates_only();
  o.success_rate = std::nullopt;
  o.failure_percentage = keel::failure_percentage_ejection{};
  outlier_detector d(6, o);
  change_log log;
  healthy(d, 4, 50, t0, log);
  traffic(d, 4, 15, 85, t0, log);  // 85 %: ejected
  traffic(d, 5, 16, 84, t0, log);  // 84 %: stays
  d.sweep(t0 + 10s, log.sink());
  REQUIRE(log.changes.size() == 1);
  CHECK(log.changes[0].endpoint == 4);
  CHECK(log.changes[0].reason == ejection_reason::failure_percentage);
  CHECK(log.changes[0].until == t0 + 40s);
  d.sweep(t0 + 40s, log.sink());
  REQUIRE_FALSE(d.ejected(4));
  healthy(d, 4, 50, t0 + 41s, log);
  traffic(d, 4, 0, 50, t0 + 41s, log);
  d.sweep(t0 + 50s, log.sink());
  REQUIRE(d.ejected(4));
  CHECK(d.ejected_until(4) == t0 + 50s + 60s);  // the second in a row lasts twice as long
}

TEST_CASE("outlier: restore returns an ejected endpoint at once (a passed health check)",
          "[failover][outlier]") {
  outlier_detector d(2, consecutive_only());
  change_log log;
  fail(d, 1, 5, t0);
  d.restore(1, t0 + 3s, log.sink());
  CHECK_FALSE(d.ejected(1));
  REQUIRE(log.changes.size() == 1);
  CHECK(log.changes[0].until == t0 + 3s);
  d.restore(1, t0 + 4s, log.sink());  // not ejected: nothing
  CHECK(log.changes.size() == 1);
  CHECK(d.ejected_count() == 0);
}

TEST_CASE("outlier: a sink that throws changes nothing the detector decided",
          "[failover][outlier]") {
  outlier_detector d(2, consecutive_only());
  const auto throws = [](const outlier_change&) { throw std::runtime_error("listener bug"); };
  for (int k = 0; k < 5; ++k) d.record(0, true, t0, throws);
  CHECK(d.ejected(0));
  CHECK(d.ejected_count() == 1);
  d.sweep(t0 + 30s, throws);
  CHECK_FALSE(d.ejected(0));
  CHECK(d.ejected_count() == 0);
}

TEST_CASE(
    "outlier: a clock that jumps back runs nothing early; one near the end of time "
    "saturates",
    "[failover][outlier]") {
  outlier_detector d(2, consecutive_only(), t0 + 100s);
  fail(d, 0, 5, t0 + 100s);
  REQUIRE(d.ejected_until(0) == t0 + 130s);
  d.sweep(t0);  // backwards: nothing is due
  CHECK(d.ejected(0));
  const time_point late = time_point::max() - 1s;
  fail(d, 1, 5, late);  // cap 100 %: ejected until the end of time, not wrapped
  CHECK(d.ejected_until(1) == time_point::max());
}

TEST_CASE("outlier: invalid options name their field", "[failover][outlier]") {
  const auto field_of = [](const outlier_detection_options& o) {
    try {
      outlier_detector d(3, o);
    } catch (const keel::config_error& e) {
      return e.field();
    }
    return std::string("none");
  };
  outlier_detection_options o;
  o.interval = 0s;
  CHECK(field_of(o) == "outlier_detection_options.interval");
  o = {};
  o.base_ejection_time = -1s;
  CHECK(field_of(o) == "outlier_detection_options.base_ejection_time");
  o = {};
  o.max_ejection_percent = 101;
  CHECK(field_of(o) == "outlier_detection_options.max_ejection_percent");
  o = {};
  o.success_rate->stdev_factor = -0.5;
  CHECK(field_of(o) == "outlier_detection_options.success_rate.stdev_factor");
  o = {};
  o.failure_percentage = keel::failure_percentage_ejection{.threshold = 120};
  CHECK(field_of(o) == "outlier_detection_options.failure_percentage.threshold");
  CHECK(field_of(outlier_detection_options{}) == "none");
}

TEST_CASE("outlier: under concurrent failures the cap holds at every moment",
          "[failover][outlier][stress]") {
  constexpr std::size_t n = 10;
  constexpr int threads = 4;
  auto o = consecutive_only(30);  // at most 3 of 10
  o.base_ejection_time = 1ms;
  o.max_ejection_time = 1ms;
  outlier_detector d(n, o);
  std::atomic<bool> done{false};
  std::atomic<std::int64_t> clock_ns{0};
  std::atomic<int> over_cap{0};
  std::atomic<int> changes{0};
  std::thread watcher([&] {
    while (!done.load()) {
      std::size_t marked = 0;
      for (std::size_t i = 0; i < n; ++i) marked += d.ejected(i) ? 1 : 0;
      if (d.ejected_count() > 3 || marked > 3 + threads) over_cap.fetch_add(1);
    }
  });
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      const auto sink = [&](const outlier_change&) { changes.fetch_add(1); };
      for (int k = 0; k < 20000; ++k) {
        const auto i = static_cast<std::size_t>((k * 7 + t) % static_cast<int>(n));
        const time_point now{std::chrono::nanoseconds(clock_ns.fetch_add(100))};
        d.record(i, (k + t) % 5 != 0, now, sink);
      }
    });
  }
  for (auto& th : pool) th.join();
  done.store(true);
  watcher.join();
  CHECK(over_cap.load() == 0);
  std::size_t marked = 0;
  for (std::size_t i = 0; i < n; ++i) marked += d.ejected(i) ? 1 : 0;
  CHECK(marked == d.ejected_count());
  CHECK(d.ejected_count() <= 3);
  CHECK(changes.load() > 0);
  d.sweep(time_point::max());
  CHECK(d.ejected_count() == 0);
}

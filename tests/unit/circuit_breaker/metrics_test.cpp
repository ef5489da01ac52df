// SPDX-License-Identifier: BSL-1.0
// metrics() read while other threads call: its failure count is a counter
// that a monitoring system samples, so it must never go backwards, and it
// must be exact once the calls are done.
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include <keel/circuit_breaker.hpp>

#include "breaker_test_support.hpp"
#include "support/catch.hpp"

using namespace cb_test;

// Found by the reliability stress test: under consecutive_failures a run of
// failures lives in the state word and reaches the counter just after the CAS
// that ends it, so a metrics() in between saw neither and the count dropped.
TEST_CASE("circuit_breaker: metrics().failures never goes backwards while calls run",
          "[circuit_breaker][stress][regression]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(consecutive(1'000'000), env);
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> failures{0};
  std::vector<std::thread> callers;
  for (int i = 0; i < 3; ++i) {
    callers.emplace_back([&, i] {
      std::uint64_t mine = 0;
      for (std::uint32_t n = 0; !done.load(std::memory_order_relaxed); ++n) {
        const bool fails = (n + static_cast<std::uint32_t>(i)) % 3 != 0;  // runs of two failures
        (void)(fails ? fail(b) : succeed(b));
        mine += fails ? 1 : 0;
      }
      failures.fetch_add(mine);
    });
  }
  std::uint64_t last = 0;
  int drops = 0;
  for (int i = 0; i < 1'000'000; ++i) {
    const std::uint64_t now = b.metrics().failures;
    if (now < last) ++drops;
    last = now;
  }
  done = true;
  for (std::thread& t : callers) t.join();
  CHECK(drops == 0);
  CHECK(b.metrics().failures == failures.load());
}

// The time window is striped per thread, with threads moving to another
// stripe when they collide: whatever stripes they end on, the window must
// count every call exactly once.
TEST_CASE("circuit_breaker: a time window shared by 4 threads counts every call exactly",
          "[circuit_breaker][stress]") {
  keel::testing::virtual_environment env;
  auto b =
      make_breaker({.trip =
                        keel::failure_ratio_time{
                            .period = 60s, .buckets = 6, .minimum_calls = 1'000'000, .ratio = 1.0}},
                   env);
  constexpr std::uint32_t threads = 4;
  constexpr std::uint32_t calls = 100'000;
  std::vector<std::thread> callers;
  for (std::uint32_t t = 0; t < threads; ++t) {
    callers.emplace_back([&b] {
      for (std::uint32_t i = 0; i < calls; ++i) (void)(i % 10 == 0 ? fail(b) : succeed(b));
    });
  }
  for (std::thread& t : callers) t.join();
  const keel::circuit_metrics m = b.metrics();
  CHECK(m.state == keel::circuit_state::closed);
  CHECK(m.window_calls == threads * calls);
  CHECK(m.window_failures == threads * calls / 10);
  CHECK(m.failures == std::uint64_t{threads} * calls / 10);
}

// Rejections are counted on stripes owned by one thread each, and on a shared
// counter by the threads whose stripe another owns: more threads than stripes
// (at most 8) exercise both, and the total must be exact.
TEST_CASE("circuit_breaker: rejections by 12 threads are counted exactly",
          "[circuit_breaker][stress]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(consecutive(1, 5min), env);
  CHECK(fail(b).has_error_value());
  REQUIRE(b.state() == keel::circuit_state::open);
  constexpr std::uint64_t threads = 12;
  constexpr std::uint64_t calls = 20'000;
  std::atomic<std::uint64_t> rejected{0};
  std::vector<std::thread> callers;
  for (std::uint64_t t = 0; t < threads; ++t) {
    callers.emplace_back([&b, &rejected] {
      std::uint64_t mine = 0;
      for (std::uint64_t i = 0; i < calls; ++i) {
        if (succeed(b).is(keel::errc::circuit_open)) ++mine;
      }
      rejected.fetch_add(mine);
    });
  }
  for (std::thread& t : callers) t.join();
  CHECK(rejected.load() == threads * calls);
  CHECK(b.metrics().rejections == threads * calls);
}

// Found by the stress test under -fsanitize=integer (asan preset): a reset
// stores the window's start from the cursor, so a caller that loaded the
// cursor just before another caller's record could then see a start past it,
// and `cursor - start` wrapped to "a full window" (its success then went
// unrecorded). The race cannot be replayed at will; the arithmetic that meets
// it can, with the values the sanitizer reported.
TEST_CASE("count window: a start read past the cursor is an empty window, not a wrap",
          "[circuit_breaker][regression]") {
  using keel::detail::holds_at_least;
  using keel::detail::recorded_between;
  CHECK(recorded_between(5, 7) == 2);
  CHECK(recorded_between(7, 7) == 0);
  CHECK(recorded_between(154019, 153864) == 0);  // start past the cursor
  CHECK(recorded_between(0, UINT64_MAX) == UINT64_MAX);
  CHECK(holds_at_least(5, 9, 4));
  CHECK_FALSE(holds_at_least(5, 8, 4));
  CHECK_FALSE(holds_at_least(154019, 153864, 100));  // the subtraction read this as full
  CHECK(holds_at_least(7, 7, 0));
}

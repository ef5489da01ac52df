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
  auto b = make_breaker({.trip = keel::consecutive_failures{.threshold = 1'000'000}}, env);
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

// SPDX-License-Identifier: BSL-1.0
// Fifth adversarial review (issue 14: round robin's per-thread pins, branch
// review14e). Each test is named after the defect it shows (R14E-n), or after
// the attack it survived; see the review's report for the details.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <keel/failover/endpoint_pool.hpp>

#include "pool_test_support.hpp"
#include "support/catch.hpp"

using keel::detail::pool_test_access;
using strings = std::vector<std::string>;

namespace {

using pool_t = keel::endpoint_pool<std::string>;

}  // namespace

// docs/failover.md, replace: a removed endpoint "is freed at the next
// replace() after its calls end", and replace returns false only when the new
// ones "fit only once removed endpoints' calls end". A reclaim that meets any
// stripe's flag up (a caller on ANY endpoint between its flag and its count)
// kept every removed slot, so on a busy pool replace() failed for endpoints
// that no call held, for as long as some thread happened to be picking.
TEST_CASE("R14E-1: replace() frees an idle removed endpoint while other threads pick",
          "[failover][pool][pins][replace][review5][threads]") {
  pool_t pool(strings{"a", "b"}, {.capacity = 3});
  REQUIRE(pool_test_access::striped(pool));
  std::atomic<bool> stop{false};
  std::vector<std::thread> callers;
  for (int t = 0; t < 2; ++t)
    callers.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed))
        pool.execute([](const keel::context&) { return 0; });
    });
  int failed = 0;
  for (int round = 0; round < 2000; ++round) {
    // a stays; b and c take turns. capacity 3: the one that comes needs the
    // slot of the one that left last round, whose calls have all ended.
    const std::string coming = round % 2 == 0 ? "c" : "b";
    const std::string leaving = round % 2 == 0 ? "b" : "c";
    const std::size_t gone = pool.index_of(leaving).value();
    if (!pool.replace(strings{"a", coming})) {
      ++failed;
      while (!pool.replace(strings{"a", coming})) std::this_thread::yield();
    }
    // Its calls end (status() counts the stripes too); no new one starts.
    while (pool.status(gone).in_flight != 0) std::this_thread::yield();
  }
  stop.store(true);
  for (auto& t : callers) t.join();
  CHECK(failed == 0);
}

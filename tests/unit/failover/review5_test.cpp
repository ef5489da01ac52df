// SPDX-License-Identifier: BSL-1.0
// Fifth adversarial review (issue 14: round robin's per-thread pins, branch
// review14e). Each test is named after the defect it shows (R14E-n), or after
// the attack it survived; see the review's report for the details.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
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

namespace {

/// A layer that runs a hook (which may call the pool again) at one slot,
/// then refuses there (a rejection: nothing sent, the call moves on).
struct hook_layers {
  std::size_t at = keel::target::none;
  std::function<void()>* hook = nullptr;
  struct layer {
    bool here;
    std::function<void()>* hook;
    template <class R, class Next>
    keel::outcome<R> run(Next&& next, keel::context& ctx) const {
      if (!here) return next(ctx);
      if (hook != nullptr && *hook) (*hook)();
      return keel::outcome<R>::from_keel(keel::errc::bulkhead_full);
    }
  };
  layer operator()(const std::string&, std::size_t slot) const { return layer{slot == at, hook}; }
};

template <class Pool>
std::uint32_t all_in_flight(const Pool& pool) {
  std::uint32_t n = 0;
  for (std::size_t s = 0; s < pool.capacity(); ++s) {
    n += pool.status(s).in_flight;
    for (std::size_t i = 0; i < pool_test_access::pin_stripes; ++i)
      n += pool_test_access::striped_count(pool, i, s);
  }
  return n;
}

}  // namespace

// Held: an owned pin is let go once, on the stripe's count, when the layer
// calls the pool again (a nested call on the same stripe), removes its own
// endpoint through replace() (kept: its own pin is seen) and then refuses
// (the call moves to the slow path, which pins the shared count).
TEST_CASE("R14E held: a layer that re-enters, removes its own endpoint and refuses lets go once",
          "[failover][pool][pins][replace][review5]") {
  std::function<void()> hook;
  keel::endpoint_pool pool(strings{"a", "b", "x"}, {.capacity = 4}, hook_layers{2, &hook});
  REQUIRE(pool_test_access::striped(pool));
  int nested = 0;
  bool fired = false;
  hook = [&] {
    if (fired) return;  // once
    fired = true;
    pool.execute([&](const keel::context&) { return ++nested; });  // same stripe, nested
    CHECK(pool.replace(strings{"a", "b"}));  // x leaves while this call holds it
    CHECK(pool.status(2).in_flight == 1);    // its own pin, seen by the reclaim
  };
  pool_test_access::set_cursor(pool, 2);  // the next turn is x
  std::string reached;
  const auto out = pool.try_execute([&](const keel::context& ctx) {
    reached = pool_test::name_of(ctx);
    return 0;
  });
  CHECK(out.has_value());
  CHECK(nested == 1);
  CHECK((reached == "a" || reached == "b"));
  CHECK(all_in_flight(pool) == 0);                   // no pin left, none let go twice (no wrap)
  CHECK(pool.replace(strings{"a", "b", "y", "z"}));  // x's slot was freed
}

// Held (wrap points): the last slot of the largest striped pool, and a pool
// whose counts cross a line, pin and let go on their own counts (run under
// ASan: every stripe's counts lie inside the one array).
TEST_CASE("R14E held: the last slots of striped pools of 1, 17 and 4096 endpoints pin exactly",
          "[failover][pool][pins][review5]") {
  for (const std::size_t n : {std::size_t{1}, std::size_t{17}, std::size_t{4096}}) {
    strings names;
    for (std::size_t i = 0; i < n; ++i) names.push_back("e" + std::to_string(i));
    pool_t pool(names, {.capacity = n});
    REQUIRE(pool_test_access::striped(pool));
    pool_test_access::set_cursor(pool, static_cast<std::uint32_t>(n - 1));
    pool.execute([&](const keel::context& ctx) {
      CHECK(pool_test::name_of(ctx) == names.back());
      CHECK(pool.status(n - 1).in_flight == 1);
      if (n > 1) CHECK(pool.status(n - 2).in_flight == 0);
      return 0;
    });
    CHECK(pool.status(n - 1).in_flight == 0);
  }
}

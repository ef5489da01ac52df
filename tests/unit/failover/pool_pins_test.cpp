// SPDX-License-Identifier: BSL-1.0
// Round robin's per-thread pins: a call holds its endpoint through a count
// in its thread's own stripe (a plain store), a thread whose stripe another
// owns falls back to the endpoint's shared count, a pick racing a removal
// backs out, a stripe's flag holds a reclaim, and a thread's stripes and
// small number are given back when it ends.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <keel/failover/endpoint_pool.hpp>

#include "pool_test_support.hpp"
#include "support/catch.hpp"

using keel::detail::pool_test_access;
using pool_test::name_of;
using strings = std::vector<std::string>;

namespace {

using pool_t = keel::endpoint_pool<std::string>;

/// Sums slot s's counts over every stripe.
std::uint32_t striped_total(const pool_t& pool, std::size_t s) {
  std::uint32_t n = 0;
  for (std::size_t i = 0; i < pool_test_access::pin_stripes; ++i)
    n += pool_test_access::striped_count(pool, i, s);
  return n;
}

/// Stripes that some thread owns.
std::size_t owned_stripes(const pool_t& pool) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < pool_test_access::pin_stripes; ++i)
    n += pool_test_access::stripe_owner(pool, i).load() != 0 ? 1 : 0;
  return n;
}

}  // namespace

TEST_CASE("pool pins: round robin holds a call in the thread's own stripe",
          "[failover][pool][pins]") {
  pool_t pool(strings{"a", "b", "c"}, {.capacity = 4});
  REQUIRE(pool_test_access::striped(pool));
  pool.execute([&](const keel::context& ctx) {
    CHECK(name_of(ctx) == "a");
    const std::size_t mine = pool_test_access::my_stripe();
    CHECK(pool_test_access::stripe_owner(pool, mine).load() ==
          keel::detail::this_thread_identity().id);
    CHECK(pool_test_access::striped_count(pool, mine, 0) == 1);
    CHECK(pool_test_access::shared_count(pool, 0) == 0);  // no locked add
    CHECK(pool.status(0).in_flight == 1);
    // Nested: the same stripe counts both.
    pool.execute([&](const keel::context& inner) {
      CHECK(name_of(inner) == "b");
      CHECK(pool.status(1).in_flight == 1);
      CHECK(pool_test_access::striped_count(pool, mine, 1) == 1);
      return 0;
    });
    return 0;
  });
  for (std::size_t s = 0; s < 3; ++s) {
    CHECK(pool.status(s).in_flight == 0);
    CHECK(striped_total(pool, s) == 0);
  }
  // Other strategies keep per-endpoint counts (their picks read them).
  pool_t loaded(strings{"a", "b"}, {.strategy = keel::balance::least_loaded});
  CHECK_FALSE(pool_test_access::striped(loaded));
  // Above 4096 slots round robin keeps them too (the stripes' memory is bounded).
  pool_t wide(strings{"a", "b"}, {.capacity = 4097});
  CHECK_FALSE(pool_test_access::striped(wide));
  wide.execute([&](const keel::context&) {
    CHECK(wide.status(0).in_flight == 1);
    CHECK(pool_test_access::shared_count(wide, 0) == 1);
    return 0;
  });
  CHECK(wide.status(0).in_flight == 0);
}

TEST_CASE("pool pins: a removed endpoint stays until the owned pin lets go",
          "[failover][pool][pins][replace]") {
  pool_t pool(strings{"a", "b", "x"}, {.capacity = 4});
  pool_test_access::set_cursor(pool, 2);  // the next turn is x
  pool.execute([&](const keel::context& ctx) {
    REQUIRE(name_of(ctx) == "x");
    REQUIRE(pool.replace(strings{"a", "b"}));  // x leaves; its call is still running
    CHECK_FALSE(pool.status(2).present);
    CHECK(pool.status(2).in_flight == 1);
    // x's slot is held: "y" and "z" need two free slots, and only one is.
    CHECK_FALSE(pool.replace(strings{"a", "b", "y", "z"}));
    CHECK(name_of(ctx) == "x");  // x itself is still readable
    return 0;
  });
  CHECK(pool.status(2).in_flight == 0);
  CHECK(pool.replace(strings{"a", "b", "y", "z"}));  // x's slot was freed
  CHECK(pool.size() == 4);
}

TEST_CASE("pool pins: a thread whose stripe another owns pins the shared count",
          "[failover][pool][pins]") {
  pool_t pool(strings{"a", "b"});
  pool.execute([](const keel::context&) { return 0; });  // numbers this thread, claims its stripe
  const std::size_t mine = pool_test_access::my_stripe();
  auto& owner = pool_test_access::stripe_owner(pool, mine);
  const std::uint64_t me = owner.load();
  REQUIRE(me == keel::detail::this_thread_identity().id);
  owner.store(me + 1);  // another (live) thread's now
  std::string seen;
  pool.execute([&](const keel::context& ctx) {
    seen += name_of(ctx);
    CHECK(pool_test_access::shared_count(pool, 1) == 1);
    CHECK(striped_total(pool, 1) == 0);
    CHECK(pool.status(1).in_flight == 1);
    return 0;
  });
  pool.execute([&](const keel::context& ctx) {
    seen += name_of(ctx);
    return 0;
  });
  CHECK(seen == "ba");  // the turn goes on: the same cursor
  CHECK(pool_test_access::shared_count(pool, 1) == 0);
  CHECK(owner.load() == me + 1);  // never taken over from a live owner
  owner.store(me);
}

TEST_CASE("pool pins: a pick that finds its endpoint removed backs out",
          "[failover][pool][pins][race]") {
  // The layout still lists b, as for a caller that read it before b's
  // removal: the pin goes up, the state says removed, and the pin comes back
  // down before the slow path picks another endpoint.
  pool_t pool(strings{"a", "b", "c"}, {.capacity = 4});
  pool.execute([](const keel::context&) { return 0; });  // a; claims the stripe
  const std::size_t mine = pool_test_access::my_stripe();
  pool_test_access::set_state(pool, 1, 2);  // b: removed, behind the layout's back
  std::string seen;
  pool.execute([&](const keel::context& ctx) {
    seen = name_of(ctx);
    CHECK(pool_test_access::striped_count(pool, mine, 1) == 0);  // backed out
    return 0;
  });
  CHECK(seen != "b");
  CHECK_FALSE(seen.empty());
  CHECK(striped_total(pool, 1) == 0);
  CHECK(pool_test_access::shared_count(pool, 1) == 0);
  pool_test_access::set_state(pool, 1, 1);
}

TEST_CASE("pool pins: a stripe's raised flag holds a reclaim until it drops",
          "[failover][pool][pins][replace]") {
  pool_t pool(strings{"a", "b", "x"}, {.capacity = 4});
  auto& flag = pool_test_access::stripe_picking(pool, 5);
  flag.store(1);  // an owner between its flag and its count: it may be picking x
  REQUIRE(pool.replace(strings{"a", "b"}));
  CHECK_FALSE(pool.status(2).present);
  CHECK_FALSE(pool.replace(strings{"a", "b", "y", "z"}));  // x's slot is not freed
  flag.store(0);
  CHECK(pool.replace(strings{"a", "b", "y", "z"}));  // now it is
  CHECK(pool.size() == 4);
}

TEST_CASE("pool pins: a thread's stripes and small number are given back when it ends",
          "[failover][pool][pins][threads]") {
  pool_t pool(strings{"a", "b"});
  std::uint64_t first_id = 0;
  unsigned first_number = 0;
  std::size_t first_stripe = 0;
  std::thread([&] {
    pool.execute([](const keel::context&) { return 0; });
    first_id = keel::detail::this_thread_identity().id;
    first_number = keel::detail::this_thread_identity().small;
    first_stripe = pool_test_access::my_stripe();
    CHECK(pool_test_access::stripe_owner(pool, first_stripe).load() == first_id);
  }).join();
  CHECK(first_number != 0);
  CHECK(pool_test_access::stripe_owner(pool, first_stripe).load() == 0);  // given back
  // The next thread gets the lowest free number: the one just given back,
  // and with it the same stripe.
  std::thread([&] {
    pool.execute([](const keel::context&) { return 0; });
    CHECK(keel::detail::this_thread_identity().small == first_number);
    CHECK(pool_test_access::my_stripe() == first_stripe);
    CHECK(pool_test_access::stripe_owner(pool, first_stripe).load() ==
          keel::detail::this_thread_identity().id);
  }).join();
  CHECK(pool_test_access::stripe_owner(pool, first_stripe).load() == 0);
}

TEST_CASE("pool pins: a thread outlives the pools it owned stripes in",
          "[failover][pool][pins][threads][lifetime]") {
  // Ten pools (more than the leases kept in place): each destroyed while
  // the thread lives; the thread's end must not touch them.
  std::atomic<int> step{0};
  std::vector<std::unique_ptr<pool_t>> pools;
  for (int i = 0; i < 10; ++i)
    pools.push_back(std::make_unique<pool_t>(strings{"a", "b"}, keel::endpoint_pool_options{}));
  std::size_t claimed = 0;
  std::thread t([&] {
    for (auto& p : pools) p->execute([](const keel::context&) { return 0; });
    for (auto& p : pools) claimed += owned_stripes(*p);
    step.store(1);
    while (step.load() != 2) std::this_thread::yield();
    // Pools made after the others went reuse the leases' places.
    pool_t later(strings{"c"});
    later.execute([](const keel::context&) { return 0; });
    CHECK(owned_stripes(later) == 1);
  });
  while (step.load() != 1) std::this_thread::yield();
  CHECK(claimed == 10);
  pools.clear();
  step.store(2);
  t.join();  // under ASan, a write to a freed pool would show here
}

namespace {

// A thread_local of the user's, built before keel's own (so destroyed after
// it), whose destructor calls the pool once more.
struct late_caller {
  const pool_t* pool = nullptr;
  std::string* seen = nullptr;
  ~late_caller() {
    if (pool == nullptr) return;
    pool->execute([&](const keel::context& ctx) {
      *seen += name_of(ctx);
      return 0;
    });
  }
};

}  // namespace

TEST_CASE("pool pins: a call from a thread_local destructor after the thread's stripes went",
          "[failover][pool][pins][threads][lifetime]") {
  pool_t pool(strings{"a", "b"});
  std::string seen;
  std::size_t stripe = 0;
  std::thread([&] {
    thread_local late_caller late;  // built first: destroyed after keel's thread_exit
    late.pool = &pool;
    late.seen = &seen;
    pool.execute([&](const keel::context& ctx) {
      seen += name_of(ctx);
      return 0;
    });
    stripe = pool_test_access::my_stripe();
  }).join();
  CHECK(seen == "ab");  // the late call ran, pinned by the shared count
  CHECK(pool_test_access::stripe_owner(pool, stripe).load() == 0);  // and claimed nothing
  CHECK(pool.status(1).in_flight == 0);
}

TEST_CASE("pool pins: small numbers are the lowest free, then spread past the range",
          "[failover][pool][pins]") {
  keel::detail::small_numbers numbers;
  CHECK(numbers.take(7) == 1u);
  CHECK(numbers.take(8) == 2u);
  CHECK(numbers.take(9) == 3u);
  numbers.give_back(2);
  CHECK(numbers.take(10) == 2u);  // the lowest free again
  numbers.give_back(0);           // not a number it gives: ignored
  numbers.give_back(5000);
  for (unsigned i = 4; i <= keel::detail::small_numbers::count; ++i) CHECK(numbers.take(i) == i);
  // All taken: past the range, by spread (a stripe is shared, never owned twice).
  CHECK(numbers.take(3) == keel::detail::small_numbers::count + 4);
  numbers.give_back(700);
  CHECK(numbers.take(11) == 700u);
}

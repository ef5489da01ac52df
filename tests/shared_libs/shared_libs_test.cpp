// SPDX-License-Identifier: BSL-1.0
// One rejection counter, and one breaker, used at once from two shared
// libraries built with -fvisibility=hidden (shared_adder.hpp): each library
// has its own copy of keel's inline functions and function-local statics, so
// whatever tells threads apart must not depend on those copies being merged.
// It did: each copy numbered its threads from 1, a thread in each library
// took the same stripe as its owner, and their plain increments overwrote
// each other (40 M rejections made, 23.8 M counted).
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <latch>
#include <thread>
#include <vector>

#include <keel/circuit_breaker/breaker_core.hpp>
#include <keel/circuit_breaker/detail/windows.hpp>

#include "shared_adder.hpp"
#include "support/catch.hpp"

namespace {

using add_fn = void (*)(keel::detail::owned_counter&, std::uint64_t);
using reject_fn = std::uint64_t (*)(keel::breaker_state_machine&, std::uint64_t, keel::time_point);

// Two threads in each library, started together: every stripe that a
// library's first or second thread picks is also picked by the other
// library's thread of the same rank.
constexpr int threads_per_library = 2;

}  // namespace

TEST_CASE("owned_counter: threads adding through two hidden-visibility libraries count exactly",
          "[shared_libs][regression]") {
  constexpr std::uint64_t adds = 2'000'000;
  keel::detail::owned_counter counter;
  counter.configure();
  std::latch start(2 * threads_per_library);
  std::vector<std::thread> threads;
  for (const add_fn add : {&keel_shared_add_a, &keel_shared_add_b}) {
    for (int t = 0; t < threads_per_library; ++t) {
      threads.emplace_back([&counter, &start, add] {
        start.arrive_and_wait();
        add(counter, adds);
      });
    }
  }
  for (std::thread& t : threads) t.join();
  CHECK(counter.total() == 2 * threads_per_library * adds);
}

TEST_CASE(
    "breaker_state_machine: rejections made through two hidden-visibility libraries count exactly",
    "[shared_libs][regression]") {
  constexpr std::uint64_t calls = 500'000;
  const keel::time_point now{std::chrono::seconds(1)};
  keel::breaker_state_machine core;
  (void)core.isolate(now);
  std::latch start(2 * threads_per_library);
  std::vector<std::thread> threads;
  std::vector<std::uint64_t> rejected(2 * threads_per_library);
  std::size_t slot = 0;
  for (const reject_fn reject : {&keel_shared_reject_a, &keel_shared_reject_b}) {
    for (int t = 0; t < threads_per_library; ++t) {
      threads.emplace_back([&core, &start, &out = rejected[slot++], reject, now] {
        start.arrive_and_wait();
        out = reject(core, calls, now);
      });
    }
  }
  for (std::thread& t : threads) t.join();
  for (const std::uint64_t r : rejected) CHECK(r == calls);
  CHECK(core.metrics(now).rejections == 2 * threads_per_library * calls);
}

TEST_CASE(
    "context slots: a target and a user value set in one hidden-visibility library are "
    "read in another",
    "[shared_libs][context]") {
  const shared_endpoint ep{8080};
  keel::context ctx;
  keel_shared_set_target_a(ctx, 3, ep, 77);
  std::uint64_t v = 0;
  const shared_endpoint* got = keel_shared_get_target_b(ctx, v);
#if defined(__cpp_rtti) || defined(__GXX_RTTI)
  CHECK(got == &ep);  // std::type_info compares equal across the two
  CHECK(v == 77);
#else
  CHECK(got == nullptr);  // without RTTI: found nothing, never the wrong type
  CHECK(v == 0);
#endif
  CHECK(ctx.target().index() == 3);
  CHECK(keel_shared_get_target_a(ctx, v) == &ep);
}

namespace {

using pool_call_fn = int (*)(const shared_pool&, void (*)(void*), void*);

struct nested_call {
  const shared_pool* pool = nullptr;
  pool_call_fn call = nullptr;  // the other library's
  int port = 0;
  std::uint32_t flying = 0;
};

std::uint32_t in_flight(const shared_pool& pool) {
  std::uint32_t n = 0;
  for (std::size_t i = 0; i < pool.capacity(); ++i) n += pool.status(i).in_flight;
  return n;
}

void call_other(void* p) {
  auto* n = static_cast<nested_call*>(p);
  n->port = n->call(
      *n->pool,
      [](void* q) {
        auto* m = static_cast<nested_call*>(q);
        m->flying = in_flight(*m->pool);
      },
      p);
}

}  // namespace

TEST_CASE(
    "endpoint_pool: round robin calls through two hidden-visibility libraries pin and unpin "
    "exactly",
    "[shared_libs][pool]") {
  // Each library has its own thread identities and small numbers: one thread
  // is two callers, which may pick the same stripe; only one may own it.
  const std::vector<shared_endpoint> first{shared_endpoint(1), shared_endpoint(2),
                                           shared_endpoint(3)};
  const std::vector<shared_endpoint> second{shared_endpoint(1), shared_endpoint(4),
                                            shared_endpoint(5)};
  shared_pool pool(first, {.capacity = 8});
  nested_call n{&pool, &keel_shared_pool_call_b};
  CHECK(keel_shared_pool_call_a(pool, &call_other, &n) == 1);
  CHECK(n.port == 2);
  CHECK(n.flying == 2);  // the outer call (a) and the inner one (b)
  CHECK(in_flight(pool) == 0);

  // Threads in both libraries, each nesting a call through the other, while
  // the set changes: no endpoint is freed under a call, every pin comes back.
  constexpr int calls = 20'000;
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> bad{0};
  int replaced = 0;
  std::latch start(2 * threads_per_library + 1);
  std::vector<std::thread> threads;
  for (const pool_call_fn call : {&keel_shared_pool_call_a, &keel_shared_pool_call_b}) {
    const pool_call_fn other =
        call == &keel_shared_pool_call_a ? &keel_shared_pool_call_b : &keel_shared_pool_call_a;
    for (int t = 0; t < threads_per_library; ++t) {
      threads.emplace_back([&, call, other] {
        start.arrive_and_wait();
        for (int i = 0; i < calls; ++i) {
          nested_call inner{&pool, other};
          const int port = call(pool, i % 4 == 0 ? &call_other : nullptr, &inner);
          if (port == -1 || inner.port == -1) bad.fetch_add(1);
        }
      });
    }
  }
  std::thread mutator([&] {
    start.arrive_and_wait();
    int round = 0;
    while (!done.load()) {
      replaced += pool.replace(round++ % 2 == 0 ? second : first) ? 1 : 0;
      std::this_thread::yield();
    }
  });
  for (std::thread& t : threads) t.join();
  done.store(true);
  mutator.join();
  CHECK(bad.load() == 0);
  CHECK(replaced > 1);
  CHECK(in_flight(pool) == 0);
}

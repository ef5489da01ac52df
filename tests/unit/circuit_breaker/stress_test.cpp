// SPDX-License-Identifier: BSL-1.0
// 8 threads share one breaker in front of a dependency that flaps on a script
// (healthy, then failing, in turns of virtual time). Invariants are checked
// throughout: never more probes of one half-open round in flight than
// permitted; every call ends as exactly one of success, failure, rejection or
// abandoned; the breaker's own counters agree. Bounded: a few thousand calls
// per thread, well under a second without TSan and a few seconds with it.
#include <array>
#include <atomic>
#include <cstdint>
#include <latch>
#include <thread>
#include <vector>

#include <keel/circuit_breaker.hpp>

#include "breaker_test_support.hpp"
#include "support/catch.hpp"
#include "support/rng.hpp"

using namespace cb_test;

namespace {

struct tally {
  std::atomic<std::uint64_t> calls{0}, successes{0}, failures{0}, rejections{0}, abandoned{0};
  std::atomic<int> violations{0};
  std::atomic<int> max_in_flight{0};
  std::array<std::atomic<int>, 4096> probes_in_flight{};  // per generation (mod 4096)
};

template <class B>
void hammer(const B& b, const keel::testing::virtual_environment& env, tally& t, int thread_index,
            int iterations, int permitted) {
  keel_test::rng rng{static_cast<std::uint64_t>(thread_index)};
  for (int i = 0; i < iterations; ++i) {
    const bool gives_up = rng.next() % 16 == 0;
    t.calls.fetch_add(1, std::memory_order_relaxed);
    env.advance(100us);                          // time passes for rejected callers too
    if (i % 64 == 0) std::this_thread::yield();  // interleave the threads more on few cores
    auto permit = b.try_acquire();
    if (!permit) {
      t.rejections.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    std::atomic<int>* slot = nullptr;
    if (permit.is_probe()) {
      slot = &t.probes_in_flight[permit.generation() % 4096];
      const int now_in_flight = slot->fetch_add(1) + 1;
      if (now_in_flight > permitted) t.violations.fetch_add(1);
      int seen = t.max_in_flight.load();
      while (now_in_flight > seen && !t.max_in_flight.compare_exchange_weak(seen, now_in_flight)) {
      }
    }
    // The dependency: healthy for 40 ms of virtual time, then failing for 40 ms.
    env.advance(1ms);
    const bool healthy = (env.elapsed() / 40ms) % 2 == 0;
    if (slot != nullptr) slot->fetch_sub(1);
    if (gives_up) {
      permit.release();  // the caller gave up: counts as neither
      t.abandoned.fetch_add(1, std::memory_order_relaxed);
    } else if (healthy) {
      permit.record_success(1ms);
      t.successes.fetch_add(1, std::memory_order_relaxed);
    } else {
      permit.record_failure(1ms);
      t.failures.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

template <class B>
void run_stress(const B& b, const keel::testing::virtual_environment& env, int permitted) {
  constexpr int threads = 8;
  constexpr int iterations = 4000;
  tally t;
  std::latch start(threads);
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      start.arrive_and_wait();
      hammer(b, env, t, i, iterations, permitted);
    });
  }
  for (auto& th : pool) th.join();
  CHECK(t.violations.load() == 0);
  CHECK(t.max_in_flight.load() <= permitted);
  CHECK(t.calls.load() == std::uint64_t{threads} * iterations);
  CHECK(t.successes + t.failures + t.rejections + t.abandoned == t.calls);
  const auto m = b.metrics();
  CHECK(m.failures == t.failures.load());
  CHECK(m.rejections == t.rejections.load());
  CHECK(t.rejections.load() > 0);  // the circuit did open
  CHECK(t.successes.load() > 0);   // and did close again
}

}  // namespace

TEST_CASE("circuit_breaker: stress, 8 threads, consecutive rule, flapping dependency",
          "[circuit_breaker][stress]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker({.trip = keel::consecutive_failures{.threshold = 5},
                         .open_duration = 20ms,
                         .permitted_probes = 3,
                         .success_threshold = 2,
                         .max_wait_in_half_open = 50ms},
                        env, log);
  run_stress(b, env, 3);
  CHECK(log.count<keel::circuit_opened>() > 0);
  CHECK(log.count<keel::circuit_closed>() > 0);
}

TEST_CASE("circuit_breaker: stress, 8 threads, count window with slow calls",
          "[circuit_breaker][stress]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(
      {.trip = keel::failure_ratio_count{.window_size = 50, .minimum_calls = 20, .ratio = 0.5},
       .slow_calls = keel::slow_call_ratio{.threshold = 1s, .ratio = 1.0},
       .open_duration = 20ms,
       .permitted_probes = 2},
      env);
  run_stress(b, env, 2);
}

TEST_CASE("circuit_breaker: stress, 8 threads, time window and failures in period",
          "[circuit_breaker][stress]") {
  keel::testing::virtual_environment env;
  SECTION("failure_ratio_time") {
    auto b = make_breaker({.trip =
                               keel::failure_ratio_time{
                                   .period = 20ms, .buckets = 4, .minimum_calls = 10, .ratio = 0.5},
                           .open_duration = 20ms,
                           .permitted_probes = 4,
                           .success_threshold = 1},
                          env);
    run_stress(b, env, 4);
  }
  SECTION("failures_in_period") {
    auto b = make_breaker(
        {.trip = keel::failures_in_period{.threshold = 3, .period = 5ms}, .open_duration = 20ms},
        env);
    run_stress(b, env, 1);
  }
}

// SPDX-License-Identifier: BSL-1.0
// The adaptive limiter and throttle under threads (run it under TSan):
// invariants checked while the threads run, exact counts at the end.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <keel/admission.hpp>
#include <keel/keel.hpp>
#include <keel/testing/manual_clock.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

TEST_CASE(
    "adaptive_limiter under threads: in flight never above the limit, every slot given "
    "back, the limit within its bounds",
    "[adaptive_limiter][stress]") {
  keel::testing::manual_clock clock;
  keel::adaptive_limiter_core<keel::gradient2_limit> core(
      keel::gradient2_limit({.initial_limit = 8, .min_limit = 2, .max_limit = 16}),
      {.min_window = 10ms, .max_window = 10ms, .min_window_samples = 4});
  constexpr int threads = 6;
  constexpr int calls = 20000;
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> admitted{0}, refused{0}, violations{0};
  std::thread monitor([&] {
    while (!done.load()) {
      const std::uint32_t l = core.limit();
      if (l < 2 || l > 16 || core.in_flight() > 16) violations.fetch_add(1);
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937 rng(static_cast<std::uint32_t>(t));
      for (int i = 0; i < calls; ++i) {
        const auto a = core.try_acquire(clock.now());
        if (!a) {
          refused.fetch_add(1);
          continue;
        }
        admitted.fetch_add(1);
        if (a.in_flight > a.limit) violations.fetch_add(1);
        clock.advance(std::chrono::microseconds(200 + rng() % 300));
        const auto pick = rng() % 10;
        const auto r = pick < 6   ? keel::limiter_result::measured
                       : pick < 8 ? keel::limiter_result::dropped
                                  : keel::limiter_result::ignored;
        if (r == keel::limiter_result::ignored && pick == 9) {
          core.forget(a);
        } else {
          core.finish(a, r, clock.now(), [&] { return 0.5; });
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  done.store(true);
  monitor.join();
  CHECK(violations.load() == 0);
  CHECK(admitted.load() + refused.load() == std::uint64_t{threads} * calls);
  CHECK(core.in_flight() == 0);
  CHECK(core.limit() >= 2);
  CHECK(core.limit() <= 16);
}

TEST_CASE("adaptive_throttle under threads: exact requests and accepts, p within its bounds",
          "[adaptive_throttle][stress]") {
  keel::testing::manual_clock clock;
  keel::adaptive_throttle_core core({.max_rejection = 0.8});
  constexpr int threads = 6;
  constexpr int calls = 20000;
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> requests{0}, accepts{0}, shed{0}, violations{0};
  std::thread monitor([&] {
    while (!done.load()) {
      const double p = core.probability();
      if (p < 0.0 || p > 0.8) violations.fetch_add(1);
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(t) + 100);
      for (int i = 0; i < calls; ++i) {
        // 120 000 calls over 96 s of a 120 s window: none ages out.
        if (t == 0 && i % 250 == 0) clock.advance(1s);
        const auto a = core.try_acquire(
            clock.now(), [&] { return static_cast<double>(rng() >> 11) * 0x1.0p-53; });
        requests.fetch_add(1);
        if (!a) {
          shed.fetch_add(1);
          continue;
        }
        const auto pick = rng() % 10;
        const auto r = pick < 4   ? keel::throttle_result::accepted
                       : pick < 8 ? keel::throttle_result::refused
                                  : keel::throttle_result::ignored;
        if (r == keel::throttle_result::accepted) accepts.fetch_add(1);
        if (r == keel::throttle_result::ignored) requests.fetch_sub(1);
        core.finish(a, r, [&] { return clock.now(); });
      }
    });
  }
  for (auto& th : pool) th.join();
  done.store(true);
  monitor.join();
  CHECK(violations.load() == 0);
  const auto c = core.counts(clock.now());
  CHECK(c.requests == requests.load());
  CHECK(c.accepts == accepts.load());
  CHECK(shed.load() > 0);
}

TEST_CASE(
    "adaptive_throttle under threads: more threads than stripes, calls finished on other "
    "threads, buckets crossed; exact counts",
    "[adaptive_throttle][stress]") {
  // 12 admitting threads (more than the 8 stripes at most: some count in the
  // shared rings) hand every admission to one of 3 finishing threads.
  keel::testing::manual_clock clock;
  // In-flight calls are requests without accepts: max_rejection 0 keeps every call admitted.
  keel::adaptive_throttle_core core({.window = 120s, .buckets = 24, .max_rejection = 0.0});
  constexpr int admitters = 12;
  constexpr int finishers = 3;
  constexpr int calls = 4000;
  std::mutex m;
  std::condition_variable cv;
  std::deque<keel::throttle_admission> queue;
  int admitters_left = admitters;
  std::atomic<std::uint64_t> requests{0}, accepts{0}, forgotten{0}, violations{0};
  std::vector<std::thread> pool;
  for (int f = 0; f < finishers; ++f) {
    pool.emplace_back([&, f] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(f) + 7);
      for (;;) {
        keel::throttle_admission a;
        {
          std::unique_lock lock(m);
          cv.wait(lock, [&] { return !queue.empty() || admitters_left == 0; });
          if (queue.empty()) return;
          a = queue.front();
          queue.pop_front();
        }
        const bool accept = rng() % 4 != 0;
        if (accept)
          accepts.fetch_add(1);
        else
          forgotten.fetch_add(1);
        core.finish(a, accept ? keel::throttle_result::accepted : keel::throttle_result::ignored,
                    [&] { return clock.now(); });
        // Never more accepts than requests, whatever is in flight.
        const auto c = core.counts(clock.now());
        if (c.accepts > c.requests + admitters) violations.fetch_add(1);
      }
    });
  }
  for (int t = 0; t < admitters; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < calls; ++i) {
        // 48 000 calls over 96 s: every bucket is crossed, none ages out.
        if (t == 0 && i % 200 == 0) clock.advance(1s);
        const auto a = core.try_acquire(clock.now(), 0.0);
        requests.fetch_add(1);
        if (!a) violations.fetch_add(1);
        std::lock_guard lock(m);
        queue.push_back(a);
        cv.notify_one();
      }
      std::lock_guard lock(m);
      if (--admitters_left == 0) cv.notify_all();
    });
  }
  for (auto& th : pool) th.join();
  CHECK(violations.load() == 0);
  const auto c = core.counts(clock.now());
  CHECK(c.requests == requests.load() - forgotten.load());
  CHECK(c.accepts == accepts.load());
  CHECK(core.probability() == 0.0);
}

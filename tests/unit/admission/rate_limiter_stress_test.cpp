// SPDX-License-Identifier: BSL-1.0
// Threads share one limit (run under TSan by the tsan preset):
//  1. the decision core with waits, cancelled waits and settlements below the
//     estimate, while the virtual clock moves: a watcher checks throughout
//     that the TAT never runs further ahead than tau + max_wait, and at the
//     end the units sent, at the times they went, stay within
//     burst + d / T over every interval;
//  2. two limits at one frozen instant, admitted by both or neither: every
//     rollback is exact, so each limit has charged exactly the calls admitted;
//  3. the policy's deadline-aware wait with stops requested from another
//     thread: every call ends as exactly one of sent, refused or cancelled,
//     a cancelled call never runs, and its slot comes back.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <latch>
#include <mutex>
#include <stop_token>
#include <thread>
#include <vector>

#include <keel/admission/rate_limiter.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"
#include "support/rate_bound.hpp"
#include "support/rng.hpp"

namespace {

using namespace std::chrono_literals;
using keel::duration;
using keel::time_point;

using keel_test::sent_unit;
using keel_test::worst_excess;

}  // namespace

TEST_CASE("rate_limiter stress: the bound holds with waits, cancellations and settlements",
          "[rate_limiter][stress]") {
  constexpr int threads = 4;
  constexpr int iterations = 1500;
  keel::testing::manual_clock clock;
  keel::gcra_limit l({.limit = 1000, .period = 1s, .burst = 8});  // T = 1 ms, tau = 8 ms
  const duration max_wait = 5ms;
  const std::int64_t t = l.emission_interval().count();
  std::mutex m;
  std::vector<sent_unit> sent;
  std::atomic<bool> done{false};
  std::atomic<int> violations{0};
  std::latch start(threads + 1);
  std::thread watcher([&] {
    start.arrive_and_wait();
    while (!done.load()) {
      // The TAT first, then the clock: an admission read the clock before it
      // moved the TAT, so the later read bounds the time it was admitted at
      // (read the other way round, a caller could read a newer clock in between).
      const time_point tat = l.tat();
      std::atomic_thread_fence(std::memory_order_acquire);
      const time_point now = clock.now();
      if (tat > now + l.tolerance() + max_wait) violations.fetch_add(1);
      if (l.available(now) > 8) violations.fetch_add(1);
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      keel_test::rng rng{static_cast<std::uint64_t>(i) + 101};
      std::vector<sent_unit> mine;
      start.arrive_and_wait();
      for (int k = 0; k < iterations; ++k) {
        if (rng.chance(30)) clock.advance(duration(rng.in(0, t)));
        const auto cost = static_cast<std::uint64_t>(rng.in(1, 3));
        const time_point now = clock.now();
        const auto d = l.try_acquire(cost, now, rng.chance(50) ? max_wait : 0ns);
        if (!d.admitted) continue;
        const int what = static_cast<int>(rng.in(0, 9));
        if (what < 2) {
          l.refund_all(d.ticket, clock.now());  // cancelled: never left
        } else if (what < 4) {
          const auto actual =
              static_cast<std::uint64_t>(rng.in(0, static_cast<std::int64_t>(cost)));
          if (actual > 0) mine.push_back({(now + d.wait).time_since_epoch().count(), actual});
          l.settle(d.ticket, cost, actual, clock.now());
        } else {
          mine.push_back({(now + d.wait).time_since_epoch().count(), cost});
        }
      }
      std::lock_guard lock(m);
      sent.insert(sent.end(), mine.begin(), mine.end());
    });
  }
  for (auto& th : pool) th.join();
  done = true;
  watcher.join();
  CHECK(violations.load() == 0);
  CHECK(sent.size() > 500);
  CHECK(worst_excess(sent, 8, t, 64 * t) <= 0);  // far intervals are looser
}

TEST_CASE("rate_limiter stress: two limits admit a call together or not at all, exactly",
          "[rate_limiter][stress]") {
  constexpr int threads = 4;
  keel::testing::virtual_environment env;  // frozen: nobody advances it
  const auto limiter =
      keel::rate_limits(keel::rate_limit_options{.limit = 300, .period = 1s},
                        keel::rate_limit_options{.limit = 1000, .period = 1s})
          .with_environment(env)
          .with_cost([](const keel::context& c) {
            return std::array<std::uint64_t, 2>{1, c.user_value<keel::rate_cost>()->units};
          });
  std::atomic<std::uint64_t> admitted{0}, tokens{0}, refused{0};
  std::latch start(threads);
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      keel_test::rng rng{static_cast<std::uint64_t>(i) + 7};
      start.arrive_and_wait();
      for (int k = 0; k < 400; ++k) {
        keel::context ctx;
        const auto n = static_cast<std::uint64_t>(rng.in(1, 12));
        ctx.set_user_value(keel::rate_cost{n});
        if (limiter.try_execute(ctx, [] { return 0; }).has_value()) {
          admitted.fetch_add(1);
          tokens.fetch_add(n);
        } else {
          refused.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  CHECK(admitted + refused == 4 * 400);
  CHECK(refused > 0);
  CHECK(limiter.limit(0).available(env.now()) == 300 - admitted.load());
  CHECK(limiter.limit(1).available(env.now()) == 1000 - tokens.load());
}

TEST_CASE("rate_limiter stress: deadline-aware waits with stops from another thread",
          "[rate_limiter][stress]") {
  constexpr int threads = 4;
  constexpr int iterations = 300;
  keel::testing::virtual_environment env;
  const auto limiter =
      keel::rate_limiter({.limit = 1000, .period = 1s, .burst = 4, .max_wait = 20ms})
          .with_environment(env);
  std::atomic<int> ran{0}, ok{0}, refused{0}, cancelled{0}, other{0};
  std::latch start(threads + 1);
  std::atomic<bool> done{false};
  std::mutex sources_mutex;
  std::vector<std::stop_source> sources;
  std::thread stopper([&] {
    keel_test::rng rng{99};
    start.arrive_and_wait();
    while (!done.load()) {
      std::lock_guard lock(sources_mutex);
      if (!sources.empty() && rng.chance(50)) {
        sources[static_cast<std::size_t>(rng.in(0, static_cast<std::int64_t>(sources.size()) - 1))]
            .request_stop();
      }
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      keel_test::rng rng{static_cast<std::uint64_t>(i) + 31};
      start.arrive_and_wait();
      for (int k = 0; k < iterations; ++k) {
        std::stop_source source;
        {
          std::lock_guard lock(sources_mutex);
          sources.push_back(source);
          if (sources.size() > 16) sources.erase(sources.begin());
        }
        keel::context ctx(source.get_token());
        ctx.tighten_deadline(env.now() + duration(rng.in(0, 30'000'000)), env);
        const auto o = limiter.try_execute(ctx, [&] {
          ran.fetch_add(1);
          return 1;
        });
        if (o.has_value()) {
          ok.fetch_add(1);
        } else if (o.is(keel::errc::rate_limited)) {
          refused.fetch_add(1);
        } else if (o.is(keel::errc::cancelled)) {
          cancelled.fetch_add(1);
        } else {
          other.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  done = true;
  stopper.join();
  CHECK(other.load() == 0);
  CHECK(ok.load() == ran.load());
  CHECK(ok + refused + cancelled == threads * iterations);
  CHECK(ok.load() > 0);
  // No slot runs further ahead than tau + max_wait; once the clock passes
  // them all, the bucket is full again.
  CHECK(limiter.limit().tat() <= env.now() + limiter.limit().tolerance() + 20ms);
  env.advance(1s);
  CHECK(limiter.limit().available(env.now()) == 4);
}

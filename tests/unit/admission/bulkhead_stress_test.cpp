// SPDX-License-Identifier: BSL-1.0
// keel::bulkhead under threads (run under TSan in CI): callers that wait,
// time out in virtual time and are cancelled at random, racing every grant
// (failsafe-go #393: a permit lost when a waiter times out as it is granted).
// While they run, no more calls than the limit ever hold a permit; after
// every round, in-flight and queued are back to zero and every permit is free.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <stop_token>
#include <thread>
#include <vector>

#include <keel/admission/bulkhead.hpp>
#include <keel/detail/config.hpp>
#include <keel/testing/manual_clock.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

namespace {

// The test's own generator: per thread, deterministic per seed.
struct lcg {
  std::uint64_t s;
  KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP std::uint32_t next() {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<std::uint32_t>(s >> 33);
  }
};

// Virtual time that a ticker thread moves; a sleep waits (yielding, never
// sleeping for real) until its virtual end or its token's stop.
struct ticking_environment {
  keel::testing::manual_clock clock;
  keel::time_point now() const noexcept { return clock.now(); }
  bool sleep_for(keel::duration d, const std::stop_token& token) const {
    const keel::time_point end = keel::saturating_add(clock.now(), d);
    while (clock.now() < end) {
      if (token.stop_requested()) return false;
      std::this_thread::yield();
    }
    return !token.stop_requested();
  }
  double uniform() const noexcept { return 0.5; }
};

constexpr int threads = 6;

// One caller's stop source, which the canceller may stop at any moment.
struct cancel_slot {
  std::mutex mutex;
  std::stop_source source;
};

void stress(keel::queue_order order, bool change_limit) {
  ticking_environment env;
  constexpr std::uint32_t max_permits = 3;
  keel::bulkhead_options o;
  o.max_concurrent = max_permits;
  o.max_queue = 4;
  o.max_wait = 40us;
  o.order = order;
  const auto b = keel::bulkhead<>(o).with_environment(env);
  std::array<cancel_slot, threads> slots;
  for (int round = 0; round < 12; ++round) {
    std::atomic<bool> stop{false};
    std::atomic<int> running{0};
    std::atomic<int> violations{0};
    std::atomic<int> ok{0};
    std::atomic<int> refused{0};
    std::atomic<int> cancelled{0};
    std::atomic<std::uint32_t> limit_ceiling{max_permits};
    std::vector<std::thread> callers;
    for (int t = 0; t < threads; ++t) {
      callers.emplace_back([&, t] {
        lcg rng{static_cast<std::uint64_t>(round * 977 + t + 1)};
        for (int i = 0; i < 150; ++i) {
          std::stop_token token;
          {
            std::lock_guard lock(slots[static_cast<std::size_t>(t)].mutex);
            slots[static_cast<std::size_t>(t)].source = std::stop_source();
            token = slots[static_cast<std::size_t>(t)].source.get_token();
          }
          keel::context ctx(token);
          if (rng.next() % 4 == 0) {  // a shorter deadline, sometimes
            ctx.tighten_deadline(env.now() + keel::duration(rng.next() % 30'000), env);
          }
          const std::uint32_t spins = rng.next() % 20;
          const auto out = b.try_execute(ctx, [&] {
            const int n = running.fetch_add(1) + 1;
            if (n > static_cast<int>(limit_ceiling.load())) violations.fetch_add(1);
            if (b.in_flight() > limit_ceiling.load()) violations.fetch_add(1);
            for (std::uint32_t k = 0; k < spins; ++k) std::this_thread::yield();
            running.fetch_sub(1);
            return 1;
          });
          if (out.has_value()) {
            ok.fetch_add(1);
          } else if (out.is(keel::errc::cancelled)) {
            cancelled.fetch_add(1);
          } else if (out.is(keel::errc::bulkhead_full)) {
            refused.fetch_add(1);
          } else {
            violations.fetch_add(1);
          }
        }
      });
    }
    std::thread ticker([&] {
      while (!stop.load()) {
        env.clock.advance(1us);
        std::this_thread::yield();
      }
    });
    std::thread canceller([&] {
      lcg rng{static_cast<std::uint64_t>(round + 4242)};
      while (!stop.load()) {
        auto& slot = slots[rng.next() % threads];
        std::stop_source victim;
        {
          std::lock_guard lock(slot.mutex);
          victim = slot.source;
        }
        victim.request_stop();
        for (std::uint32_t k = rng.next() % 8; k > 0; --k) std::this_thread::yield();
      }
    });
    std::thread watcher([&] {  // the invariant, checked while they run
      lcg rng{static_cast<std::uint64_t>(round + 99)};
      while (!stop.load()) {
        if (b.in_flight() > limit_ceiling.load()) violations.fetch_add(1);
        if (b.queued() > o.max_queue) violations.fetch_add(1);
        if (change_limit && rng.next() % 16 == 0) {
          // Lowered, the running calls finish above the new limit: the
          // ceiling stays the highest limit ever set this round.
          b.set_limit(1 + rng.next() % max_permits);
        }
        std::this_thread::yield();
      }
    });
    for (auto& c : callers) c.join();
    stop = true;
    ticker.join();
    canceller.join();
    watcher.join();
    INFO("round " << round);
    CHECK(violations.load() == 0);
    CHECK(ok.load() + refused.load() + cancelled.load() == threads * 150);
    CHECK(ok.load() > 0);
    // Every permit came back: none lost to a cancelled or expired waiter.
    CHECK(b.in_flight() == 0);
    CHECK(b.queued() == 0);
    b.set_limit(max_permits);
    CHECK(b.available() == max_permits);
    std::vector<keel::bulkhead<keel::no_listener, ticking_environment>::permit> all;
    for (std::uint32_t k = 0; k < max_permits; ++k) all.push_back(b.try_acquire());
    for (const auto& p : all) CHECK(p);
    CHECK_FALSE(b.try_acquire());
  }
}

}  // namespace

TEST_CASE("bulkhead stress: FIFO waiters cancelled and timing out at random lose no permit",
          "[admission][bulkhead][stress]") {
  stress(keel::queue_order::fifo, false);
}

TEST_CASE("bulkhead stress: LIFO, with the limit changed at random while calls run",
          "[admission][bulkhead][stress]") {
  stress(keel::queue_order::lifo, true);
}

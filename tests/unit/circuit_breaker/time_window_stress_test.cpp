// SPDX-License-Identifier: BSL-1.0
// failure_ratio_time's window under contention: each stripe's owned ring
// (one thread counts in it with a plain load and store) and its shared ring
// (every other thread, with read-modify-writes). Threads record at times
// spread over one window, so that no bucket expires and every record must
// be counted: a reader checks while they run that the sums never fall and
// never exceed what was recorded, and once they are joined the sums are
// exact. Threads alternate between two windows (a thread's stripe hint is
// shared by every window it records in) and later threads reuse ended ones'
// thread-local addresses, hence their identities.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <thread>
#include <vector>

#include <keel/circuit_breaker/breaker_core.hpp>
#include <keel/detail/config.hpp>

#include "support/catch.hpp"

namespace {

using namespace std::chrono_literals;
using keel::detail::time_window;

constexpr std::int64_t period_ns = 1'000'000;
constexpr int buckets = 4;
// Aligned on a bucket, so that the window ending at t0 + period - 1 holds
// every bucket of [t0, t0 + period).
constexpr std::int64_t t0 = 1000 * period_ns;

keel::time_point at(std::int64_t ns) { return keel::time_point(keel::duration(ns)); }

struct made_counts {
  std::atomic<std::uint64_t> calls{0};
  std::atomic<std::uint64_t> failures{0};
};

// A linear congruential step: the unsigned arithmetic wraps on purpose.
KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP std::uint64_t lcg(std::uint64_t x, std::uint64_t a,
                                                        std::uint64_t c) {
  return x * a + c;
}

// Records `n` outcomes into `w`, a failure every third, at times inside the window.
void record_into(time_window& w, made_counts& made, std::uint64_t seed, int n) {
  std::uint64_t x = lcg(seed, 0x9e3779b97f4a7c15u, 1);
  for (int i = 0; i < n; ++i) {
    x = lcg(x, 6364136223846793005u, 1442695040888963407u);
    const std::int64_t t = t0 + static_cast<std::int64_t>((x >> 11) % period_ns);
    const bool failed = i % 3 == 0;
    // Counted before the record: `made` is an upper bound for a reader.
    made.calls.fetch_add(1);
    if (failed) made.failures.fetch_add(1);
    if (failed) {
      w.record(at(t), true, false);
    } else {
      w.record_success(at(t));
    }
  }
}

}  // namespace

TEST_CASE("failure_ratio_time: owned and shared rings lose no record under contention",
          "[circuit_breaker][failure_ratio_time][stress]") {
  time_window w[2];
  made_counts made[2];
  for (time_window& x : w) x.configure(std::chrono::nanoseconds(period_ns), buckets);
  const keel::time_point end = at(t0 + period_ns - 1);

  constexpr int threads = 6;
  constexpr int per_thread = 20'000;
  std::atomic<int> running{threads};
  std::atomic<std::uint64_t> fell{0}, too_high{0}, reads{0};
  std::thread reader([&] {
    std::uint64_t last_calls[2] = {0, 0}, last_failures[2] = {0, 0};
    while (running.load() > 0) {
      for (int k = 0; k < 2; ++k) {
        const keel::detail::window_counts c = w[k].counts(end);
        const std::uint64_t calls = made[k].calls.load(), failures = made[k].failures.load();
        if (c.calls > calls || c.failures > failures) too_high.fetch_add(1);
        if (c.calls < last_calls[k] || c.failures < last_failures[k]) fell.fetch_add(1);
        last_calls[k] = c.calls;
        last_failures[k] = c.failures;
        reads.fetch_add(1);
      }
    }
  });
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      for (int round = 0; round < 10; ++round) {
        const int k = (i + round) % 2;
        record_into(w[k], made[k], static_cast<std::uint64_t>(i * 10 + round), per_thread / 10);
      }
      running.fetch_sub(1);
    });
  }
  for (std::thread& t : pool) t.join();
  reader.join();

  INFO(reads.load() << " reads");
  CHECK(too_high.load() == 0);
  CHECK(fell.load() == 0);
  for (int k = 0; k < 2; ++k) {
    const keel::detail::window_counts c = w[k].counts(end);
    CHECK(c.calls == made[k].calls.load());
    CHECK(c.failures == made[k].failures.load());
    CHECK(c.slow == 0);
  }
  CHECK(made[0].calls.load() + made[1].calls.load() == std::uint64_t{threads} * per_thread);
}

TEST_CASE("failure_ratio_time: a thread that reuses an ended owner's identity counts on",
          "[circuit_breaker][failure_ratio_time][stress]") {
  time_window w;
  made_counts made;
  w.configure(std::chrono::nanoseconds(period_ns), buckets);
  // One at a time: each new thread may get the thread-local address, and so
  // the identity, of the one before, and own its stripes.
  for (int i = 0; i < 16; ++i) {
    std::thread t([&, i] { record_into(w, made, static_cast<std::uint64_t>(i), 1000); });
    t.join();
    const keel::detail::window_counts c = w.counts(at(t0 + period_ns - 1));
    REQUIRE(c.calls == made.calls.load());
    REQUIRE(c.failures == made.failures.load());
  }
  // Two at once, each also alive while the other records.
  for (int i = 0; i < 8; ++i) {
    std::thread a([&, i] { record_into(w, made, static_cast<std::uint64_t>(100 + i), 2000); });
    std::thread b([&, i] { record_into(w, made, static_cast<std::uint64_t>(200 + i), 2000); });
    a.join();
    b.join();
  }
  const keel::detail::window_counts c = w.counts(at(t0 + period_ns - 1));
  CHECK(c.calls == made.calls.load());
  CHECK(c.failures == made.failures.load());
}

TEST_CASE("failure_ratio_time: a success by the owner at time 0 or before lands in bucket 0",
          "[circuit_breaker][failure_ratio_time]") {
  for (int n : {1, 3}) {
    time_window w;
    w.configure(std::chrono::nanoseconds(300), n);
    w.record(at(0), true, false);  // this thread now owns its stripe
    w.record_success(at(-5));
    w.record_success(at(std::numeric_limits<std::int64_t>::min()));
    w.record_success(at(0));
    const keel::detail::window_counts c = w.counts(at(0));
    CHECK(c.calls == 4);
    CHECK(c.failures == 1);
    // Bucket 0 expires when the window's oldest bucket is 1.
    const std::int64_t len = 300 / n;
    CHECK(w.counts(at(n * len - 1)).calls == 4);
    CHECK(w.counts(at(n * len)).calls == 0);
  }
}

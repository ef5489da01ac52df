// SPDX-License-Identifier: BSL-1.0
// The retry budget's documented guarantee checked while threads run: its
// tokens stay within [0, max_tokens], a retry is granted only while tokens
// exceed max_tokens·retry_threshold, and no update is lost, so the books
// balance exactly at the end. Atomics only: ThreadSanitizer sees every access.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <latch>
#include <thread>
#include <vector>

#include <keel/retry/retry_budget.hpp>

#include "support/catch.hpp"

TEST_CASE("retry_budget: threads taking and refunding retries keep the bucket exact",
          "[reliability][retry][budget][threads]") {
  // Grants cost 1 token (3 after a timeout) and are granted only above 25 of
  // 100 tokens; a success after a retry refunds its cost. Nothing else moves
  // the tokens, and a refund never returns more than was taken, so no update
  // is clamped: the end is exactly max - the cost of the unrefunded grants.
  keel::retry_budget budget({.max_tokens = 100,
                             .token_ratio = 0,
                             .failure_cost = 0,
                             .retry_cost = 1,
                             .timeout_retry_cost = 3,
                             .retry_threshold = 0.25,
                             .refund_on_success = true});
  constexpr std::int64_t max = 100'000, threshold = 25'000, cost = 1'000, timeout_cost = 3'000;
  constexpr int threads = 4;
  constexpr int rounds = 50'000;

  std::atomic<bool> stop{false};
  std::atomic<std::int64_t> lowest{max}, highest{0};
  std::thread watcher([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      const std::int64_t t = budget.milli_tokens();
      if (t < lowest.load(std::memory_order_relaxed)) lowest.store(t, std::memory_order_relaxed);
      if (t > highest.load(std::memory_order_relaxed)) highest.store(t, std::memory_order_relaxed);
    }
  });

  struct books {
    std::int64_t granted = 0, granted_after_timeout = 0, kept = 0, refused = 0;
    std::int64_t lowest_after_grant = max;
  };
  std::vector<books> per_thread(threads);
  std::latch start(threads);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      books& b = per_thread[static_cast<std::size_t>(t)];
      start.arrive_and_wait();
      for (int i = 0; i < rounds; ++i) {
        const bool after_timeout = (i + t) % 3 == 0;
        if (!budget.try_acquire(after_timeout)) {
          ++b.refused;
          continue;
        }
        const std::int64_t left = budget.milli_tokens();
        if (left < b.lowest_after_grant) b.lowest_after_grant = left;
        ++(after_timeout ? b.granted_after_timeout : b.granted);
        // Refund three grants in four: the bucket drifts down to its
        // threshold and then hovers there, refusing and granting in turn.
        if ((i + t) % 4 != 0) {
          budget.record_success(true, after_timeout);
        } else {
          b.kept += after_timeout ? timeout_cost : cost;
        }
      }
    });
  }
  for (std::thread& w : workers) w.join();
  stop.store(true);
  watcher.join();

  std::int64_t kept = 0, granted = 0, refused = 0, lowest_after_grant = max;
  for (const books& b : per_thread) {
    kept += b.kept;
    granted += b.granted + b.granted_after_timeout;
    refused += b.refused;
    lowest_after_grant = std::min(lowest_after_grant, b.lowest_after_grant);
  }
  CHECK(granted + refused == std::int64_t{threads} * rounds);
  CHECK(granted > 0);
  CHECK(refused > 0);  // the threshold was reached
  // Within [0, max] at every moment the watcher looked, and a grant never
  // took the bucket to or below threshold - cost (it needs tokens > threshold).
  CHECK(lowest.load() >= 0);
  CHECK(lowest.load() > threshold - timeout_cost);
  CHECK(highest.load() <= max);
  CHECK(lowest_after_grant > threshold - timeout_cost);
  // Exact: every grant, and every refund, counted once.
  CHECK(budget.milli_tokens() == max - kept);
  // And the model goes on from there: grants of 1 token while above 25.
  std::int64_t tokens = budget.milli_tokens(), more = 0, expected = 0;
  while (budget.try_acquire()) ++more;
  for (; tokens > threshold && tokens >= cost; tokens -= cost) ++expected;
  CHECK(more == expected);
  CHECK(budget.milli_tokens() == tokens);
}

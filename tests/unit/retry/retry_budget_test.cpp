// SPDX-License-Identifier: BSL-1.0
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include <keel/retry/retry_budget.hpp>

#include "support/catch.hpp"

namespace {
/// Runs body(t) on 8 threads at once, t = 0..7, and joins them.
template <class Body>
void on_8_threads(Body body) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) threads.emplace_back(body, t);
  for (auto& t : threads) t.join();
}
}  // namespace

TEST_CASE("retry_budget: gRPC model retries only while tokens exceed half of max",
          "[retry][budget]") {
  keel::retry_budget budget(keel::retry_budget_options::grpc(10, 0.1));
  CHECK(budget.milli_tokens() == 10'000);  // starts full
  for (int i = 0; i < 4; ++i) budget.record_failure();
  CHECK(budget.milli_tokens() == 6'000);
  CHECK(budget.try_acquire());            // 6 > 5
  CHECK(budget.milli_tokens() == 6'000);  // gRPC retries cost nothing themselves
  budget.record_failure();
  CHECK(budget.milli_tokens() == 5'000);
  CHECK_FALSE(budget.try_acquire());  // 5 is not > 5
  CHECK_FALSE(budget.retries_allowed());
  budget.record_success();
  CHECK(budget.milli_tokens() == 5'100);  // + token_ratio, exactly
  CHECK(budget.try_acquire());
  CHECK(budget.tokens() == Approx(5.1));
}

TEST_CASE("retry_budget: tokens stay within [0, max_tokens]", "[retry][budget]") {
  keel::retry_budget budget(keel::retry_budget_options::grpc(3, 0.5));
  for (int i = 0; i < 10; ++i) budget.record_success();
  CHECK(budget.milli_tokens() == 3'000);
  for (int i = 0; i < 10; ++i) budget.record_failure();
  CHECK(budget.milli_tokens() == 0);
  budget.record_success();
  CHECK(budget.milli_tokens() == 500);
}

TEST_CASE("retry_budget: token_ratio keeps three decimals exactly", "[retry][budget]") {
  keel::retry_budget budget(keel::retry_budget_options::grpc(1000, 0.001));
  for (int i = 0; i < 500; ++i) budget.record_failure();
  for (int i = 0; i < 1234; ++i) budget.record_success();
  CHECK(budget.milli_tokens() == 500'000 + 1'234);
}

TEST_CASE("retry_budget: the AWS quota charges retries, more after timeouts, and refunds",
          "[retry][budget]") {
  keel::retry_budget budget(keel::retry_budget_options::aws_standard());
  CHECK(budget.milli_tokens() == 500'000);
  budget.record_failure();  // failures themselves cost nothing
  CHECK(budget.milli_tokens() == 500'000);
  int granted = 0;
  while (budget.try_acquire()) ++granted;
  CHECK(granted == 100);  // 500 / 5, the last one taking the quota to exactly zero
  CHECK(budget.milli_tokens() == 0);
  budget.record_success(true, false);  // success after a retry: its 5 come back
  CHECK(budget.milli_tokens() == 5'000);
  budget.record_success(true, true);  // after a timeout retry: 10 come back
  CHECK(budget.milli_tokens() == 15'000);
  budget.record_success();  // a first-try success adds 1
  CHECK(budget.milli_tokens() == 16'000);
  CHECK(budget.try_acquire(true));  // a retry after a timeout costs 10
  CHECK(budget.milli_tokens() == 6'000);
  CHECK_FALSE(budget.try_acquire(true));
  CHECK(budget.try_acquire(false));
  CHECK(budget.milli_tokens() == 1'000);
}

TEST_CASE("retry_budget: validate names the offending field", "[retry][budget][config]") {
  using o = keel::retry_budget_options;
  STATIC_REQUIRE(!keel::validate(o{}));
  STATIC_REQUIRE(!keel::validate(o::aws_standard()));
  STATIC_REQUIRE(keel::validate(o{.max_tokens = 0})->field == "retry_budget_options.max_tokens");
  STATIC_REQUIRE(keel::validate(o{.max_tokens = 2e9})->field == "retry_budget_options.max_tokens");
  STATIC_REQUIRE(keel::validate(o{.token_ratio = -1})->field == "retry_budget_options.token_ratio");
  STATIC_REQUIRE(keel::validate(o{.failure_cost = 101})->field ==
                 "retry_budget_options.failure_cost");
  STATIC_REQUIRE(keel::validate(o{.retry_cost = -0.5})->field == "retry_budget_options.retry_cost");
  STATIC_REQUIRE(keel::validate(o{.timeout_retry_cost = 1000})->field ==
                 "retry_budget_options.timeout_retry_cost");
  STATIC_REQUIRE(keel::validate(o{.retry_threshold = 1.0})->field ==
                 "retry_budget_options.retry_threshold");
#if KEEL_HAS_EXCEPTIONS
  REQUIRE_THROWS_AS(keel::retry_budget(o{.max_tokens = -1}), keel::config_error);
#endif
}

TEST_CASE("retry_budget: 8 threads of failures subtract exactly", "[retry][budget][threads]") {
  keel::retry_budget budget(keel::retry_budget_options::grpc(1000, 0.1));
  on_8_threads([&](int) {
    for (int i = 0; i < 100; ++i) budget.record_failure();
  });
  CHECK(budget.milli_tokens() == 200'000);
}

TEST_CASE("retry_budget: 8 threads racing for a quota get exactly what it holds",
          "[retry][budget][threads]") {
  keel::retry_budget budget({.max_tokens = 1000,
                             .token_ratio = 0,
                             .failure_cost = 0,
                             .retry_cost = 1,
                             .retry_threshold = 0});
  std::atomic<int> granted{0};
  on_8_threads([&](int) {
    for (int i = 0; i < 500; ++i) {
      if (budget.try_acquire()) granted.fetch_add(1, std::memory_order_relaxed);
    }
  });
  CHECK(granted.load() == 1000);
  CHECK(budget.milli_tokens() == 0);
}

TEST_CASE("retry_budget: 8 threads failing and retrying at once are granted exactly the quota",
          "[retry][budget][threads]") {
  // Each retried failure costs 1 (failure) + 1 (retry) in one step; a refused
  // one still pays its failure. 1000 tokens, threshold 0: 500 grants exactly.
  keel::retry_budget budget({.max_tokens = 1000,
                             .token_ratio = 0,
                             .failure_cost = 1,
                             .retry_cost = 1,
                             .retry_threshold = 0});
  std::atomic<int> granted{0};
  std::atomic<int> outside{0};
  on_8_threads([&](int) {
    for (int i = 0; i < 200; ++i) {
      if (budget.record_failure_and_acquire()) granted.fetch_add(1, std::memory_order_relaxed);
      const std::int64_t now = budget.milli_tokens();  // checked while the others run
      if (now < 0 || now > 1'000'000) outside.fetch_add(1, std::memory_order_relaxed);
    }
  });
  CHECK(granted.load() == 500);
  CHECK(outside.load() == 0);
  CHECK(budget.milli_tokens() == 0);
}

TEST_CASE("retry_budget: under 8 hammering threads tokens never leave [0, max]",
          "[retry][budget][threads]") {
  keel::retry_budget budget({.max_tokens = 10,
                             .token_ratio = 0.3,
                             .failure_cost = 1,
                             .retry_cost = 0.5,
                             .timeout_retry_cost = 2,
                             .retry_threshold = 0.5,
                             .refund_on_success = true});
  std::atomic<bool> stop{false};
  std::atomic<std::int64_t> lowest{budget.milli_tokens()}, highest{0};
  std::thread watcher([&] {
    while (!stop.load()) {
      const std::int64_t t = budget.milli_tokens();
      if (t < lowest.load()) lowest.store(t);
      if (t > highest.load()) highest.store(t);
    }
  });
  std::atomic<int> bad_grants{0};
  on_8_threads([&](int t) {
    for (int i = 0; i < 20'000; ++i) {
      switch ((i + t) % 5) {
        case 0:
          budget.record_failure();
          break;
        case 1:
          budget.record_success();
          break;
        case 2:
          budget.record_success(true, (i & 8) != 0);
          break;
        default: {
          const bool timeout = (i & 16) != 0;
          if (budget.try_acquire(timeout)) {
            // A grant always left at least zero tokens behind.
            if (budget.milli_tokens() < 0) bad_grants.fetch_add(1);
          }
        }
      }
    }
  });
  stop.store(true);
  watcher.join();
  CHECK(lowest.load() >= 0);
  CHECK(highest.load() <= 10'000);
  CHECK(bad_grants.load() == 0);
  // Whatever the interleaving, the model still holds afterwards, exactly.
  for (int i = 0; i < 10; ++i) budget.record_failure();
  CHECK(budget.milli_tokens() == 0);
  CHECK_FALSE(budget.try_acquire());
  for (int i = 0; i < 17; ++i) budget.record_success();
  CHECK(budget.milli_tokens() == 5'100);
  CHECK(budget.try_acquire());  // 5.1 > 5 and covers 0.5
  CHECK(budget.milli_tokens() == 4'600);
  CHECK_FALSE(budget.try_acquire());
}

namespace {
// A fixed LCG: its multiplication wraps on purpose (hence the attribute, for
// the integer sanitizer of the asan preset).
KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP std::uint64_t next_step(std::uint64_t state) {
  return state * 6364136223846793005ULL + 1442695040888963407ULL;
}
}  // namespace

TEST_CASE(
    "retry_budget: record_failure_and_acquire is record_failure then try_acquire, in one step",
    "[retry][budget]") {
  // Every option shape that changes the arithmetic, against the two calls made apart.
  const std::vector<keel::retry_budget_options> shapes = {
      {},
      {.max_tokens = 10, .token_ratio = 0.5},
      {.max_tokens = 3, .token_ratio = 0.1, .failure_cost = 0.0},
      {.max_tokens = 100, .token_ratio = 1.0, .retry_cost = 7, .timeout_retry_cost = 20},
      {.max_tokens = 5, .failure_cost = 2.5, .retry_threshold = 0.0},
      {.max_tokens = 20, .retry_cost = 1.5, .refund_on_success = true},
  };
  for (std::size_t shape = 0; shape < shapes.size(); ++shape) {
    keel::retry_budget together(shapes[shape]);
    keel::retry_budget apart(shapes[shape]);
    std::uint64_t state = 0x9e3779b97f4a7c15ULL + shape;
    for (int i = 0; i < 20'000; ++i) {
      state = next_step(state);
      const unsigned pick = static_cast<unsigned>(state >> 60);
      const bool timeout = ((state >> 40) & 1U) != 0;
      INFO("shape " << shape << " step " << i);
      if (pick < 7) {
        apart.record_failure();
        REQUIRE(together.record_failure_and_acquire(timeout) == apart.try_acquire(timeout));
      } else if (pick < 12) {
        together.record_success(pick % 2 == 0, timeout);
        apart.record_success(pick % 2 == 0, timeout);
      } else {
        together.record_failure();
        apart.record_failure();
      }
      REQUIRE(together.milli_tokens() == apart.milli_tokens());
    }
  }
}

// SPDX-License-Identifier: BSL-1.0
// metrics().failures is never above the number of failures recorded, and
// never falls, while other threads end runs of failures. A closed
// consecutive_failures breaker holds the current run in its state word and
// adds it to the failure counter when a success ends it: a reader that saw
// the run in the word and then the counter after the add would count it
// twice. A writer makes runs of 100 failures ended by a success (through
// permits and through try_execute, in turns); a reader calls metrics() in a
// loop and compares it with the failures made so far, which the writer
// counts before each failure is recorded.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>

#include <keel/circuit_breaker.hpp>

#include "breaker_test_support.hpp"
#include "support/catch.hpp"

using namespace cb_test;

TEST_CASE("circuit_breaker: stress, metrics().failures never above the failures made",
          "[circuit_breaker][metrics][stress]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(consecutive(1 << 30), env);
  constexpr int run_length = 100;
  constexpr std::uint64_t reads = 2'000'000;
  std::atomic<std::uint64_t> made{0};
  std::atomic<bool> done{false};

  // One writer, so that it and the reader run side by side on two cores.
  // Even runs through permits, odd runs through try_execute.
  std::thread writer([&] {
    for (bool permits = true; !done.load(std::memory_order_relaxed); permits = !permits) {
      for (int i = 0; i < run_length; ++i) {
        made.fetch_add(1);  // counted before it is recorded: made is an upper bound
        if (permits) {
          b.try_acquire().record_failure();
        } else {
          (void)fail(b);
        }
      }
      if (permits) {
        b.try_acquire().record_success();
      } else {
        (void)succeed(b);
      }
    }
  });

  std::uint64_t too_high = 0, fell = 0, worst = 0, last = 0;
  for (std::uint64_t i = 0; i < reads; ++i) {
    const std::uint64_t seen = b.metrics().failures;
    const std::uint64_t truth = made.load();  // read after: it can only have grown
    if (seen > truth) {
      ++too_high;
      worst = std::max(worst, seen - truth);
    }
    if (seen < last) ++fell;
    last = seen;
  }
  done.store(true);
  writer.join();
  INFO(too_high << " of " << reads << " reads too high, by up to " << worst);
  CHECK(too_high == 0);
  CHECK(fell == 0);
  // Every run ended with a success: all of them are in the counter now.
  CHECK(b.metrics().failures == made.load());
  CHECK(b.state() == keel::circuit_state::closed);
}

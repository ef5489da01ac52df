// SPDX-License-Identifier: BSL-1.0
// The latest admission time a refund stops at (gcra_limit's seen_) is a
// maximum of every admission's time, whatever threads admit: review4 G1 found
// racing admissions that left the earlier one. Rounds on one limit: the
// refunder reserves the whole bucket at the round's start and, once an
// admission of the round is observed, gives it back at that time, a clock
// behind every admitter's, while more threads than keel's stripes (8) admit
// one unit each on clocks 1..10 us later. The refunder checks after each
// refund, and a watcher throughout, that the TAT never falls before an
// admission time already observed: an admission leaves the TAT past its time,
// and a refund that missed it would move the TAT back before it. Run under
// TSan by the tsan preset.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <latch>
#include <limits>
#include <thread>
#include <vector>

#include <keel/admission/rate_limiter.hpp>

#include "support/catch.hpp"

namespace {

using namespace std::chrono_literals;

void raise_to(std::atomic<std::int64_t>& a, std::int64_t t) {
  std::int64_t l = a.load(std::memory_order_relaxed);
  while (l < t &&
         !a.compare_exchange_weak(l, t, std::memory_order_release, std::memory_order_relaxed)) {
  }
}

}  // namespace

TEST_CASE("rate_limiter stress: no refund moves the TAT before an admission time observed",
          "[rate_limiter][stress]") {
  constexpr int admitters = 10;  // more than keel's stripes (8)
  constexpr int rounds = 200;
  constexpr std::int64_t us = 1000;
  keel::gcra_limit l({.limit = 1'000'000, .period = 1s, .burst = 10});  // T = 1 us, tau = 10 us
  // The round's start (ns): admitter k's clock reads (k + 1) us later.
  std::atomic<std::int64_t> round_start{0};
  // The latest time an admitted caller was admitted at, published after its admission.
  std::atomic<std::int64_t> observed{std::numeric_limits<std::int64_t>::min()};
  std::atomic<bool> done{false};
  std::atomic<int> violations{0};
  const auto check = [&] {
    const std::int64_t seen = observed.load(std::memory_order_acquire);
    if (l.tat().time_since_epoch().count() < seen) violations.fetch_add(1);
  };
  std::latch start(admitters + 1);
  std::vector<std::thread> threads;
  for (int k = 0; k < admitters; ++k) {
    threads.emplace_back([&, k] {
      start.arrive_and_wait();
      while (!done.load(std::memory_order_relaxed)) {
        const std::int64_t n = round_start.load(std::memory_order_acquire) + (k + 1) * us;
        if (l.try_acquire(1, keel::time_point(keel::duration(n))).admitted) raise_to(observed, n);
      }
    });
  }
  std::thread watcher([&] {
    start.arrive_and_wait();
    while (!done.load(std::memory_order_relaxed)) check();
  });
  int round = 0;
  std::int64_t given = 0;
  // At most 5 s under a sanitizer.
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (round < rounds && std::chrono::steady_clock::now() < until) {
    ++round;
    const std::int64_t t0 = round * 100 * us;  // the bucket is full again
    const keel::time_point at{keel::duration(t0)};
    const keel::rate_decision d = l.try_acquire(10, at);
    REQUIRE(d.admitted);  // [t0, t0 + 10 us]: the whole bucket, never sent
    round_start.store(t0, std::memory_order_release);
    // Until an admission of this round is observed (admissions may go on).
    std::int64_t seen = observed.load(std::memory_order_acquire);
    for (int spin = 0; seen < t0 && spin < 100'000; ++spin) {
      if (spin % 64 == 63) std::this_thread::yield();
      seen = observed.load(std::memory_order_acquire);
    }
    const std::int64_t back = l.refund_all(d.ticket, at).count();
    given += back;
    // The only refunder: the slot still ends at t0 + 10 us, and every slot
    // after it moved back by what came back. That must stop at the time
    // observed (the TAT, which later admissions raise again, may hide it).
    if (t0 + 10 * us - back < seen) violations.fetch_add(1);
    if (l.tat().time_since_epoch().count() < seen) violations.fetch_add(1);
  }
  done.store(true);
  for (std::thread& t : threads) t.join();
  watcher.join();
  check();
  INFO("rounds " << round << ", time given back " << given << " ns");
  CHECK(given > 0);  // some refunds gave time back: the floor was tested
  CHECK(violations.load() == 0);
}

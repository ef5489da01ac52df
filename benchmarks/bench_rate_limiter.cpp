// SPDX-License-Identifier: BSL-1.0
// keel::rate_limiter against a hand-written GCRA (benchmarks/rate_limiter_support.hpp)
// on 1, 2 and N threads sharing one limit: the decision core's try_acquire
// with its clock read, a whole call through the policy, and reserve + settle;
// and the sliding window's core (the same floor): try_acquire, and
// try_acquire + a settle below the estimate, each with its clock reads.
#include <keel/admission/rate_limiter.hpp>
#include <keel/admission/sliding_window_limit.hpp>

#include "bench_support.hpp"
#include "rate_limiter_support.hpp"

namespace {

using keel_bench::on_1_2_n_threads;

void hand_written_gcra(benchmark::State& state) {
  static keel_bench::hand_written_gcra floor;
  keel_bench::allocation_counter alloc(state);
  for (auto _ : state) benchmark::DoNotOptimize(floor.try_acquire());
}
BENCHMARK(hand_written_gcra)->Apply(on_1_2_n_threads);

void gcra_try_acquire(benchmark::State& state) {
  static keel::gcra_limit limit(keel_bench::fast_limit);
  const keel::steady_clock clock;
  keel_bench::allocation_counter alloc(state);
  for (auto _ : state) benchmark::DoNotOptimize(limit.try_acquire(1, clock.now()).admitted);
}
BENCHMARK(gcra_try_acquire)->Apply(on_1_2_n_threads);

void rate_limiter_call(benchmark::State& state) {
  static const keel::rate_limiter limiter(keel_bench::fast_limit);
  keel_bench::allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    auto r = limiter.try_execute([&] { return keel_bench::work(x); });
    if (r.has_value()) x = r.value();
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(rate_limiter_call)->Apply(on_1_2_n_threads);

void rate_limiter_reserve_settle(benchmark::State& state) {
  static const keel::rate_limiter limiter(keel_bench::fast_limit);
  keel_bench::allocation_counter alloc(state);
  for (auto _ : state) {
    auto r = limiter.reserve(4);
    r.settle(2);
    benchmark::DoNotOptimize(r.admitted());
  }
}
BENCHMARK(rate_limiter_reserve_settle)->Apply(on_1_2_n_threads);

void sliding_window_try_acquire(benchmark::State& state) {
  static keel::sliding_window_limit limit(keel_bench::fast_window);
  const keel::steady_clock clock;
  keel_bench::allocation_counter alloc(state);
  for (auto _ : state) benchmark::DoNotOptimize(limit.try_acquire(1, clock.now()).admitted);
}
BENCHMARK(sliding_window_try_acquire)->Apply(on_1_2_n_threads);

void sliding_window_acquire_settle(benchmark::State& state) {
  static keel::sliding_window_limit limit(keel_bench::fast_window);
  const keel::steady_clock clock;
  keel_bench::allocation_counter alloc(state);
  for (auto _ : state) {
    const auto d = limit.try_acquire(4, clock.now());
    limit.settle(d.ticket, 4, 2, clock.now());
    benchmark::DoNotOptimize(d.admitted);
  }
}
BENCHMARK(sliding_window_acquire_settle)->Apply(on_1_2_n_threads);

}  // namespace

KEEL_BENCHMARK_MAIN();

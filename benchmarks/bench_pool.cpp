// SPDX-License-Identifier: BSL-1.0
// keel::endpoint_pool against the hand-written pools a careful programmer
// would write (benchmarks/pool_support.hpp): round robin with a breaker per
// replica, least loaded by power of two choices, and PeakEWMA with its two
// clock reads, on 1, 2 and N threads sharing one pool.
#include <cstdio>

#include <keel/failover/endpoint_pool.hpp>

#include "bench_support.hpp"
#include "pool_support.hpp"

namespace {

using keel_bench::on_1_2_n_threads;
using keel_bench::replica;

BENCHMARK(keel_bench::bare_call)->Name("bare_call")->Apply(keel_bench::on_2_n_threads);

template <class Floor>
void floor_row(benchmark::State& state, Floor& floor) {
  keel_bench::allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    x = floor.call([&](const replica& r) { return keel_bench::call_replica(r, x); });
    benchmark::DoNotOptimize(x);
  }
}

template <class Pool>
void pool_row(benchmark::State& state, const Pool& pool) {
  keel_bench::allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    auto r = pool.try_execute([&](const keel::context& ctx) {
      return keel_bench::call_replica(*ctx.target().get<replica>(), x);
    });
    if (r.has_value()) x = r.value();
    benchmark::DoNotOptimize(x);
  }
  if (pool.usable_count() != keel_bench::replica_count)
    state.SkipWithError("an endpoint left the pool during the run");
}

void hand_written_rr_breaker(benchmark::State& state) {
  static keel_bench::hand_written_rr_breakers floor;
  floor_row(state, floor);
}
BENCHMARK(hand_written_rr_breaker)->Apply(on_1_2_n_threads);

void pool_rr_breaker(benchmark::State& state) {
  static const keel_bench::rr_breaker_pool pool(keel_bench::three_replicas());
  pool_row(state, pool);
}
BENCHMARK(pool_rr_breaker)->Apply(on_1_2_n_threads);

void hand_written_p2c(benchmark::State& state) {
  static keel_bench::hand_written_p2c floor;
  floor_row(state, floor);
}
BENCHMARK(hand_written_p2c)->Apply(on_1_2_n_threads);

void pool_least_loaded(benchmark::State& state) {
  static const keel_bench::plain_pool pool(keel_bench::three_replicas(),
                                           {.strategy = keel::balance::least_loaded});
  pool_row(state, pool);
}
BENCHMARK(pool_least_loaded)->Apply(on_1_2_n_threads);

void hand_written_peak_ewma(benchmark::State& state) {
  static keel_bench::hand_written_peak_ewma floor;
  floor_row(state, floor);
}
BENCHMARK(hand_written_peak_ewma)->Apply(on_1_2_n_threads);

void pool_peak_ewma(benchmark::State& state) {
  static const keel_bench::plain_pool pool(keel_bench::three_replicas(),
                                           {.strategy = keel::balance::peak_ewma});
  pool_row(state, pool);
}
BENCHMARK(pool_peak_ewma)->Apply(on_1_2_n_threads);

}  // namespace

KEEL_BENCHMARK_MAIN();

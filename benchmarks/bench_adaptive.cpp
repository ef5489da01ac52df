// SPDX-License-Identifier: BSL-1.0
// keel::adaptive_limiter against a hand-written atomic in-flight limit with the
// same two clock reads, and keel::adaptive_throttle's healthy path against one
// relaxed load and the call (its decision alone) and against a hand-written
// throttle that counts like it (a clock read and two fetch_adds), on 1, 2 and
// N threads sharing one policy.
#include <keel/admission.hpp>

#include "adaptive_support.hpp"
#include "bench_support.hpp"

namespace {

using keel_bench::on_1_2_n_threads;

template <class Floor>
void floor_row(benchmark::State& state, Floor& floor) {
  keel_bench::allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    x = floor.call([&] { return keel_bench::work(x); });
    benchmark::DoNotOptimize(x);
  }
}

template <class Policy>
void policy_row(benchmark::State& state, const Policy& policy) {
  keel_bench::allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    auto r = policy.try_execute([&] { return keel_bench::work(x); });
    if (r.has_value()) x = r.value();
    benchmark::DoNotOptimize(x);
  }
}

void hand_written_limiter(benchmark::State& state) {
  static keel_bench::hand_written_limiter floor;
  floor_row(state, floor);
}
BENCHMARK(hand_written_limiter)->Apply(on_1_2_n_threads);

void adaptive_limiter_aimd(benchmark::State& state) {
  static const keel_bench::adaptive_limiter_t limiter(keel_bench::roomy_aimd());
  policy_row(state, limiter);
  if (limiter.in_flight() > 1000) state.SkipWithError("in flight above the limit");
}
BENCHMARK(adaptive_limiter_aimd)->Apply(on_1_2_n_threads);

void hand_written_throttle(benchmark::State& state) {
  static keel_bench::hand_written_throttle floor;
  floor_row(state, floor);
}
BENCHMARK(hand_written_throttle)->Apply(on_1_2_n_threads);

void hand_written_counting_throttle(benchmark::State& state) {
  static keel_bench::hand_written_counting_throttle<keel::steady_clock> floor;
  floor_row(state, floor);
}
BENCHMARK(hand_written_counting_throttle)->Apply(on_1_2_n_threads);

void adaptive_throttle(benchmark::State& state) {
  static const keel_bench::adaptive_throttle_t throttle;
  policy_row(state, throttle);
  if (throttle.probability() != 0.0) state.SkipWithError("the healthy path shed a call");
}
BENCHMARK(adaptive_throttle)->Apply(on_1_2_n_threads);

void hand_written_counting_throttle_coarse(benchmark::State& state) {
  static keel_bench::hand_written_counting_throttle<keel::coarse_steady_clock> floor;
  floor_row(state, floor);
}
BENCHMARK(hand_written_counting_throttle_coarse)->Apply(on_1_2_n_threads);

void adaptive_throttle_coarse(benchmark::State& state) {
  static const keel_bench::adaptive_throttle_coarse_t throttle;
  policy_row(state, throttle);
}
BENCHMARK(adaptive_throttle_coarse)->Apply(on_1_2_n_threads);

}  // namespace

KEEL_BENCHMARK_MAIN();

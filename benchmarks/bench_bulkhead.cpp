// SPDX-License-Identifier: BSL-1.0
// keel::bulkhead's fast path (a free permit, nobody waiting: admit, call,
// release) against the hand-written floor a careful programmer would write,
// a fetch_add/fetch_sub semaphore, on 1, 2 and N threads sharing one
// bulkhead; and the two-step permit. Every figure is a ratio to its floor.
#include <atomic>
#include <cstdint>

#include <keel/admission/bulkhead.hpp>

#include "bench_support.hpp"

namespace {

using keel_bench::on_1_2_n_threads;

// Enough permits that no thread is ever refused: the row measures admission.
constexpr std::uint32_t permits = 1024;

// The floor: one fetch_add admits (undone when over the limit), one fetch_sub releases.
struct hand_written_semaphore {
  std::atomic<std::uint32_t> in_flight{0};
  template <class F>
  int call(F f, int x) {
    if (in_flight.fetch_add(1, std::memory_order_acquire) >= permits) {
      in_flight.fetch_sub(1, std::memory_order_relaxed);
      return x;
    }
    const int r = f(x);
    in_flight.fetch_sub(1, std::memory_order_release);
    return r;
  }
};

void hand_written_semaphore_row(benchmark::State& state) {
  static hand_written_semaphore floor;
  keel_bench::allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    x = floor.call([](int v) { return keel_bench::work(v); }, x);
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(hand_written_semaphore_row)->Name("hand_written_semaphore")->Apply(on_1_2_n_threads);

void bulkhead_try_execute(benchmark::State& state) {
  static const keel::bulkhead<> b({.max_concurrent = permits});
  keel_bench::allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    auto r = b.try_execute([&] { return keel_bench::work(x); });
    if (r.has_value()) x = r.value();
    benchmark::DoNotOptimize(x);
  }
  if (b.in_flight() > permits) state.SkipWithError("more permits out than exist");
}
BENCHMARK(bulkhead_try_execute)->Apply(on_1_2_n_threads);

void bulkhead_core_permit(benchmark::State& state) {
  static keel::bulkhead_core<> core({.max_concurrent = permits});
  keel_bench::allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    if (auto p = core.try_acquire()) x = keel_bench::work(x);
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(bulkhead_core_permit)->Apply(on_1_2_n_threads);

}  // namespace

KEEL_BENCHMARK_MAIN();

// SPDX-License-Identifier: BSL-1.0
// The pipeline users write most: fallback, retry and circuit breaker composed
// outermost first, on the success path and with a failure returned as a value,
// against a bare call of the same out-of-line function. Target: <= 2x bare and
// no allocation on the success path.
#include <chrono>
#include <functional>

#include <keel/keel.hpp>

#include "bench_support.hpp"

namespace {

using namespace std::chrono_literals;

/// A minimal expected-like result: the value channel without exceptions.
struct result {
  int value = 0;
  int code = 0;
  bool has_value() const noexcept { return code == 0; }
  int error() const noexcept { return code; }
};

[[gnu::noinline]] result work_or_fail(int x, bool fail) noexcept {
  benchmark::DoNotOptimize(x);
  return fail ? result{0, 1} : result{x + 1, 0};
}

keel::circuit_breaker<> breaker{{.trip = keel::consecutive_failures{.threshold = 1'000'000'000}}};

const auto guarded =
    keel::pipeline(keel::fallback(-1), keel::retry({.max_attempts = 3}), std::ref(breaker));

void pipeline_success_execute(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    x = guarded.execute(keel_bench::work, x);
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(pipeline_success_execute);

void pipeline_success_try_execute(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    auto o = guarded.try_execute(keel_bench::work, x);
    x = o.has_value() ? o.value() : 0;
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(pipeline_success_try_execute);

void pipeline_success_two_threads(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    x = guarded.execute(keel_bench::work, x);
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(pipeline_success_two_threads)->Threads(2);

// The value channel: no retry wanted (one attempt), a breaker that never trips,
// and a fallback value; measures classification and recording of a failure.
keel::circuit_breaker<> value_breaker{
    {.trip = keel::consecutive_failures{.threshold = 1'000'000'000}}};
const auto value_guarded = keel::pipeline(
    keel::fallback(result{-1, 0}), keel::retry({.max_attempts = 1}), std::ref(value_breaker));

void bare_call_value_failure(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    const result r = work_or_fail(x, true);
    x += r.has_value() ? r.value : -1;
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(bare_call_value_failure);

void pipeline_value_failure_to_fallback(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    // try_execute: this result type has no way to hold keel's own errors.
    auto o = value_guarded.try_execute(work_or_fail, x, true);
    x += o.has_result() ? o.value().value : 0;
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(pipeline_value_failure_to_fallback);

}  // namespace

KEEL_BENCHMARK_MAIN()

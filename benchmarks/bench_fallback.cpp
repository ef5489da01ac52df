// SPDX-License-Identifier: BSL-1.0
// Costs of keel::fallback, keel::last_known_good and keel::timeout, each as a
// ratio to a bare call (and, for the timeout, to one steady_clock read): the
// success path, then a failure returned as a value and a failure thrown, each
// after the few lines a careful programmer would write instead.
#include <chrono>

#include <keel/core/coarse_clock.hpp>
#include <keel/fallback.hpp>
#include <keel/pipeline.hpp>
#include <keel/timeout.hpp>

#include "bench_support.hpp"

namespace {

using namespace std::chrono_literals;
using keel_bench::result;

// ---- Success ---------------------------------------------------------------------

void fallback_primary_succeeds(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const auto fb = keel::fallback([](const keel::outcome<int>&) { return -1; }, -2);
  int x = 0;
  for (auto _ : state) {
    x = fb.execute([&] { return keel_bench::work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(fallback_primary_succeeds);

// A timeout's floor: two clock reads around the call, the start (for the
// deadline) and the end (was it late?).
template <class Clock>
void two_reads_around_the_call(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const Clock clock;
  const keel::duration limit = 1s;
  int x = 0;
  for (auto _ : state) {
    const keel::time_point start = clock.now();
    x = keel_bench::work(x);
    if (clock.now() - start > limit) x = -1;
    benchmark::DoNotOptimize(x);
  }
}

template <class Env>
void timeout_success_on(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const auto t = keel::timeout{{.timeout = 1s}}.with_environment(Env{});
  int x = 0;
  for (auto _ : state) {
    x = t.execute([&] { return keel_bench::work(x); });
    benchmark::DoNotOptimize(x);
  }
}

void hand_written_timeout(benchmark::State& state) {
  two_reads_around_the_call<keel::steady_clock>(state);
}
BENCHMARK(hand_written_timeout);

void timeout_success(benchmark::State& state) {
  timeout_success_on<keel::default_environment>(state);
}
BENCHMARK(timeout_success);

void hand_written_timeout_coarse(benchmark::State& state) {
  two_reads_around_the_call<keel::coarse_steady_clock>(state);
}
BENCHMARK(hand_written_timeout_coarse);

void timeout_success_coarse(benchmark::State& state) {
  timeout_success_on<keel::coarse_environment>(state);
}
BENCHMARK(timeout_success_coarse);

void timeout_success_with_watchdog(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  keel::watchdog w;
  const auto t = keel::timeout{{.timeout = 1s}}.with_watchdog(w);
  int x = 0;
  for (auto _ : state) {
    x = t.execute([&] { return keel_bench::work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(timeout_success_with_watchdog);

void last_known_good_record(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  keel::last_known_good<int> cache;
  const auto record = cache.record();
  int x = 0;
  for (auto _ : state) {
    x = record.execute([&] { return keel_bench::work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(last_known_good_record);

void pipeline_fallback_record_timeout_success(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  keel::last_known_good<int> cache;
  const auto p = keel::pipeline(keel::fallback(cache.serve(), -1), cache.record(),
                                keel::timeout{{.timeout = 1s}});
  int x = 0;
  for (auto _ : state) {
    x = p.execute([&] { return keel_bench::work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(pipeline_fallback_record_timeout_success);

// ---- The primary fails, as a value ---------------------------------------------------

void hand_written_fallback_failure_as_value(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    const result r = keel_bench::failing(x);
    x = r.has_value() ? r.value : 7;
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(hand_written_fallback_failure_as_value);

void fallback_primary_fails_as_value_alternative_value(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const auto fb = keel::fallback(result{7, 0});
  int x = 0;
  for (auto _ : state) {
    // try_execute: this result type has no way to hold keel's own errors.
    auto o = fb.try_execute([&] { return keel_bench::failing(x); });
    x = o.value().value;
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(fallback_primary_fails_as_value_alternative_value);

void last_known_good_serve(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  keel::last_known_good<result> cache({.max_age = 1h});
  cache.put({}, result{5, 0});
  const auto fb = keel::fallback(cache.serve());
  int x = 0;
  for (auto _ : state) {
    auto o = fb.try_execute([&] { return keel_bench::failing(x); });
    x = o.value().value;
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(last_known_good_serve);

// ---- The primary throws ------------------------------------------------------------

void hand_written_fallback_failure_thrown(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    try {
      x = keel_bench::throwing(x);
    } catch (const keel_bench::down&) {
      x = 7;
    }
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(hand_written_fallback_failure_thrown);

void fallback_primary_throws_alternative_value(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const auto fb = keel::fallback(7);
  int x = 0;
  for (auto _ : state) {
    x = fb.execute([&] { return keel_bench::throwing(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(fallback_primary_throws_alternative_value);

}  // namespace

KEEL_BENCHMARK_MAIN()

// SPDX-License-Identifier: BSL-1.0
// keel::circuit_breaker against a bare call and against the smallest breaker a
// careful programmer would write by hand (one atomic state word, no store on
// success): the closed path of every trip rule on 1 and 2 threads sharing one
// breaker, a failure returned as a value, and the open-circuit rejection
// through try_execute (which must cost about one clock read).
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>

#include <keel/circuit_breaker.hpp>

#include "bench_support.hpp"

namespace {

using namespace std::chrono_literals;

/// A minimal expected-like result: the value channel without exceptions.
struct result {
  int value = 0;
  int error_code = 0;
  bool has_value() const noexcept { return error_code == 0; }
  int error() const noexcept { return error_code; }
};

[[gnu::noinline]] result failing(int x) noexcept {
  benchmark::DoNotOptimize(x);
  return {0, 1};
}

// Printed once, before the table.
const int sizes_printed = [] {
  std::printf(
      "sizeof(keel::circuit_breaker<>) = %zu bytes (one 64-byte line: the state word and the "
      "closed path's constants; options, counters, mutex and the rule's window live in one "
      "block allocated at construction), sizeof(keel::circuit_breaker_options) = %zu\n",
      sizeof(keel::circuit_breaker<>), sizeof(keel::circuit_breaker_options));
  return 0;
}();

BENCHMARK(keel_bench::bare_call)->Name("bare_call")->Threads(2);

/// The floor: a consecutive-failure breaker in a dozen lines. One acquire load
/// to admit, one relaxed load after a success, a store only when it changes.
class minimal_breaker {
 public:
  template <class F>
  bool call(F&& f) {
    if (open_.load(std::memory_order_acquire)) return false;
    const bool ok = f();
    if (ok) {
      if (failures_.load(std::memory_order_relaxed) != 0)
        failures_.store(0, std::memory_order_relaxed);
    } else if (failures_.fetch_add(1, std::memory_order_relaxed) + 1 >= threshold_) {
      open_.store(true, std::memory_order_release);
    }
    return ok;
  }

 private:
  std::atomic<bool> open_{false};
  std::atomic<int> failures_{0};
  int threshold_ = INT_MAX;
};

void hand_written_breaker(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static minimal_breaker breaker;
  int x = 0;
  for (auto _ : state) {
    breaker.call([&] {
      x = keel_bench::work(x);
      return true;
    });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(hand_written_breaker);
BENCHMARK(hand_written_breaker)->Threads(2);

void hand_written_breaker_failure_as_value(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static minimal_breaker breaker;
  int x = 0;
  for (auto _ : state) {
    breaker.call([&] {
      const result r = failing(x);
      benchmark::DoNotOptimize(r);
      return r.has_value();
    });
  }
}
BENCHMARK(hand_written_breaker_failure_as_value);

template <class Breaker>
void closed_path(benchmark::State& state, const Breaker& breaker) {
  keel_bench::allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    auto r = breaker.try_execute([&] { return keel_bench::work(x); });
    if (r.has_value()) x = r.value();
    benchmark::DoNotOptimize(x);
  }
}

const keel::circuit_breaker<>& consecutive_breaker() {
  static const keel::circuit_breaker b{{.trip = keel::consecutive_failures{.threshold = 5}}};
  return b;
}
void closed_consecutive(benchmark::State& state) { closed_path(state, consecutive_breaker()); }
BENCHMARK(closed_consecutive);
BENCHMARK(closed_consecutive)->Threads(2);

const keel::circuit_breaker<>& in_period_breaker() {
  static const keel::circuit_breaker b{
      {.trip = keel::failures_in_period{.threshold = 5, .period = 10s}}};
  return b;
}
void closed_failures_in_period(benchmark::State& state) { closed_path(state, in_period_breaker()); }
BENCHMARK(closed_failures_in_period);
BENCHMARK(closed_failures_in_period)->Threads(2);

const keel::circuit_breaker<>& ratio_count_breaker() {
  static const keel::circuit_breaker b{{.trip = keel::failure_ratio_count{}}};
  return b;
}
void closed_failure_ratio_count(benchmark::State& state) {
  closed_path(state, ratio_count_breaker());
}
BENCHMARK(closed_failure_ratio_count);
BENCHMARK(closed_failure_ratio_count)->Threads(2);

const keel::circuit_breaker<>& ratio_time_breaker() {
  static const keel::circuit_breaker b{{.trip = keel::failure_ratio_time{}}};
  return b;
}
void closed_failure_ratio_time(benchmark::State& state) {
  closed_path(state, ratio_time_breaker());
}
BENCHMARK(closed_failure_ratio_time);
BENCHMARK(closed_failure_ratio_time)->Threads(2);

const keel::circuit_breaker<>& slow_count_breaker() {
  static const keel::circuit_breaker b{
      {.trip = keel::failure_ratio_count{}, .slow_calls = keel::slow_call_ratio{}}};
  return b;
}
void closed_failure_ratio_count_with_slow_calls(benchmark::State& state) {
  closed_path(state, slow_count_breaker());
}
BENCHMARK(closed_failure_ratio_count_with_slow_calls);

void closed_consecutive_failure_as_value(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static const keel::circuit_breaker b{{.trip = keel::consecutive_failures{.threshold = INT_MAX}}};
  int x = 0;
  for (auto _ : state) {
    auto r = b.try_execute([&] { return failing(x); });
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(closed_consecutive_failure_as_value);

void open_rejection_try_execute(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static const keel::circuit_breaker b{{.trip = keel::consecutive_failures{.threshold = 1},
                                        .open_duration = 1h,
                                        .max_open_duration = 1h}};
  (void)b.try_execute([] { return failing(0); });
  int x = 0;
  for (auto _ : state) {
    auto r = b.try_execute([&] { return keel_bench::work(x); });
    benchmark::DoNotOptimize(r);
  }
  if (b.state() != keel::circuit_state::open) state.SkipWithError("the breaker should be open");
}
BENCHMARK(open_rejection_try_execute);

}  // namespace

KEEL_BENCHMARK_MAIN()

// SPDX-License-Identifier: BSL-1.0
// keel::circuit_breaker against a bare call and against the smallest breaker a
// careful programmer would write by hand (keel_bench::minimal_breaker): the
// closed path of every trip rule on 1, 2 and N threads sharing one breaker, a
// failure returned as a value, a failure thrown, and the open-circuit
// rejection through try_execute (which must cost about one clock read) and
// through execute (which throws keel::error).
#include <chrono>
#include <climits>
#include <cstdio>

#include <keel/circuit_breaker.hpp>
#include <keel/core/coarse_clock.hpp>

#include "bench_support.hpp"

namespace {

using namespace std::chrono_literals;
using keel_bench::on_1_2_n_threads;

// Printed once, before the table.
const int sizes_printed = [] {
  std::printf(
      "sizeof(keel::circuit_breaker<>) = %zu bytes (one 64-byte line: the state word and the "
      "closed path's constants; options, counters, mutex and the rule's window live in one "
      "block allocated at construction), sizeof(keel::circuit_breaker_options) = %zu\n",
      sizeof(keel::circuit_breaker<>), sizeof(keel::circuit_breaker_options));
  return 0;
}();

/// A closed breaker that no run of failures trips.
keel::circuit_breaker_options never_trips() {
  return {.trip = keel::consecutive_failures{.threshold = INT_MAX}};
}

/// An open breaker that stays open for the whole run.
keel::circuit_breaker_options stays_open() {
  return {.trip = keel::consecutive_failures{.threshold = 1},
          .open_duration = 1h,
          .max_open_duration = 1h};
}

template <class Breaker>
void expect_state(benchmark::State& state, const Breaker& b, keel::circuit_state expected) {
  if (b.state() != expected) state.SkipWithError("the breaker is not in the state measured");
}

BENCHMARK(keel_bench::bare_call)->Name("bare_call")->Apply(keel_bench::on_2_n_threads);

// ---- Success: the closed path ------------------------------------------------

void hand_written_breaker(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static keel_bench::minimal_breaker breaker;
  int x = 0;
  for (auto _ : state) {
    if (breaker.allow()) {
      x = keel_bench::work(x);
      breaker.on_success();
    }
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(hand_written_breaker)->Apply(on_1_2_n_threads);

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

void closed_consecutive(benchmark::State& state) {
  static const keel::circuit_breaker b{{.trip = keel::consecutive_failures{.threshold = 5}}};
  closed_path(state, b);
}
BENCHMARK(closed_consecutive)->Apply(on_1_2_n_threads);

void closed_failures_in_period(benchmark::State& state) {
  static const keel::circuit_breaker b{
      {.trip = keel::failures_in_period{.threshold = 5, .period = 10s}}};
  closed_path(state, b);
}
BENCHMARK(closed_failures_in_period)->Apply(on_1_2_n_threads);

void closed_failure_ratio_count(benchmark::State& state) {
  static const keel::circuit_breaker b{{.trip = keel::failure_ratio_count{}}};
  closed_path(state, b);
}
BENCHMARK(closed_failure_ratio_count)->Apply(on_1_2_n_threads);

// The floors of the clock-bound rules: the hand-written breaker plus the
// clock reads the rule needs (one for a time window, two to time a call).
template <class Clock, int Reads>
void breaker_reading_clock(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static keel_bench::minimal_breaker breaker;
  const Clock clock;
  int x = 0;
  for (auto _ : state) {
    if (breaker.allow()) {
      keel::time_point start{};
      if constexpr (Reads == 2) start = clock.now();
      x = keel_bench::work(x);
      const keel::time_point end = clock.now();
      benchmark::DoNotOptimize(start);
      benchmark::DoNotOptimize(end);
      breaker.on_success();
    }
    benchmark::DoNotOptimize(x);
  }
}

void hand_written_breaker_one_clock_read(benchmark::State& state) {
  breaker_reading_clock<keel::steady_clock, 1>(state);
}
BENCHMARK(hand_written_breaker_one_clock_read)->Apply(on_1_2_n_threads);

void closed_failure_ratio_time(benchmark::State& state) {
  static const keel::circuit_breaker b{{.trip = keel::failure_ratio_time{}}};
  closed_path(state, b);
}
BENCHMARK(closed_failure_ratio_time)->Apply(on_1_2_n_threads);

void hand_written_breaker_two_clock_reads(benchmark::State& state) {
  breaker_reading_clock<keel::steady_clock, 2>(state);
}
BENCHMARK(hand_written_breaker_two_clock_reads);

void closed_failure_ratio_count_with_slow_calls(benchmark::State& state) {
  static const keel::circuit_breaker b{
      {.trip = keel::failure_ratio_count{}, .slow_calls = keel::slow_call_ratio{}}};
  closed_path(state, b);
}
BENCHMARK(closed_failure_ratio_count_with_slow_calls);

// The same rules on keel::coarse_environment (CLOCK_MONOTONIC_COARSE).
void hand_written_breaker_one_coarse_read(benchmark::State& state) {
  breaker_reading_clock<keel::coarse_steady_clock, 1>(state);
}
BENCHMARK(hand_written_breaker_one_coarse_read)->Apply(on_1_2_n_threads);

void closed_failure_ratio_time_coarse(benchmark::State& state) {
  static const auto b =
      keel::circuit_breaker{{.trip = keel::failure_ratio_time{}}}.with_environment(
          keel::coarse_environment{});
  closed_path(state, b);
}
BENCHMARK(closed_failure_ratio_time_coarse)->Apply(on_1_2_n_threads);

void hand_written_breaker_two_coarse_reads(benchmark::State& state) {
  breaker_reading_clock<keel::coarse_steady_clock, 2>(state);
}
BENCHMARK(hand_written_breaker_two_coarse_reads);

void closed_failure_ratio_count_with_slow_calls_coarse(benchmark::State& state) {
  static const auto b = keel::circuit_breaker{{.trip = keel::failure_ratio_count{},
                                               .slow_calls = keel::slow_call_ratio{}}}
                            .with_environment(keel::coarse_environment{});
  closed_path(state, b);
}
BENCHMARK(closed_failure_ratio_count_with_slow_calls_coarse);

// ---- A failure returned as a value (the breaker stays closed) -----------------

void hand_written_breaker_failure_as_value(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static keel_bench::minimal_breaker breaker;
  int x = 0;
  for (auto _ : state) {
    if (breaker.allow()) {
      const keel_bench::result r = keel_bench::failing(x);
      if (r.has_value()) {
        breaker.on_success();
      } else {
        breaker.on_failure();
      }
      benchmark::DoNotOptimize(r);
    }
  }
}
BENCHMARK(hand_written_breaker_failure_as_value)->Apply(on_1_2_n_threads);

void closed_consecutive_failure_as_value(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static const keel::circuit_breaker b{never_trips()};
  int x = 0;
  for (auto _ : state) {
    auto r = b.try_execute([&] { return keel_bench::failing(x); });
    benchmark::DoNotOptimize(r);
  }
  expect_state(state, b, keel::circuit_state::closed);
}
BENCHMARK(closed_consecutive_failure_as_value)->Apply(on_1_2_n_threads);

// ---- A failure thrown (unwinding dominates, as in any C++ code) ----------------

void hand_written_breaker_failure_thrown(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static keel_bench::minimal_breaker breaker;
  int x = 0;
  for (auto _ : state) {
    try {
      if (breaker.allow()) {
        try {
          x = keel_bench::throwing(x);
        } catch (...) {
          breaker.on_failure();
          throw;
        }
        breaker.on_success();
      }
    } catch (const keel_bench::down&) {
      ++x;
    }
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(hand_written_breaker_failure_thrown);

// execute: the exception is caught, recorded, and rethrown to the caller.
void closed_consecutive_failure_thrown_execute(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static const keel::circuit_breaker b{never_trips()};
  int x = 0;
  for (auto _ : state) {
    try {
      x = b.execute([&] { return keel_bench::throwing(x); });
    } catch (const keel_bench::down&) {
      ++x;
    }
    benchmark::DoNotOptimize(x);
  }
  expect_state(state, b, keel::circuit_state::closed);
}
BENCHMARK(closed_consecutive_failure_thrown_execute);

// try_execute: the exception stays in the outcome (one throw, no rethrow).
void closed_consecutive_failure_thrown_try_execute(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static const keel::circuit_breaker b{never_trips()};
  int x = 0;
  for (auto _ : state) {
    auto r = b.try_execute([&] { return keel_bench::throwing(x); });
    benchmark::DoNotOptimize(r);
  }
  expect_state(state, b, keel::circuit_state::closed);
}
BENCHMARK(closed_consecutive_failure_thrown_try_execute);

// ---- Open-circuit rejection --------------------------------------------------

// The floor: an open breaker must read the clock to know whether its open
// period is over; nothing else is needed to reject.
void hand_written_open_rejection(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const auto open_until = std::chrono::steady_clock::now() + 1h;
  int x = 0;
  for (auto _ : state) {
    if (std::chrono::steady_clock::now() >= open_until) x = keel_bench::work(x);
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(hand_written_open_rejection);

const keel::circuit_breaker<>& open_breaker() {
  static const keel::circuit_breaker b{stays_open()};
  static const bool opened = (b.try_execute([] { return keel_bench::failing(0); }), true);
  (void)opened;
  return b;
}

void open_rejection_try_execute(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const auto& b = open_breaker();
  int x = 0;
  for (auto _ : state) {
    auto r = b.try_execute([&] { return keel_bench::work(x); });
    benchmark::DoNotOptimize(r);
  }
  expect_state(state, b, keel::circuit_state::open);
}
BENCHMARK(open_rejection_try_execute);

// execute on a plain result type throws keel::error (errc::circuit_open).
void open_rejection_execute(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const auto& b = open_breaker();
  int x = 0;
  for (auto _ : state) {
    try {
      x = b.execute([&] { return keel_bench::work(x); });
    } catch (const keel::error&) {
      ++x;
    }
    benchmark::DoNotOptimize(x);
  }
  expect_state(state, b, keel::circuit_state::open);
}
BENCHMARK(open_rejection_execute);

}  // namespace

KEEL_BENCHMARK_MAIN()

// SPDX-License-Identifier: BSL-1.0
// The pipeline users write most: fallback, retry and circuit breaker composed
// outermost first, against a bare call of the same out-of-line function and
// against the same three layers written by hand (keel_bench::guarded_by_hand).
// Every scenario: success (on 1, 2 and N threads sharing the breaker), a
// failure returned as a value, a failure thrown, an open circuit, and a call
// that fails once then succeeds. Target: success <= 2x bare, no allocation.
#include <chrono>
#include <climits>
#include <cstdio>
#include <functional>

#include <keel/keel.hpp>

#include "bench_support.hpp"

namespace {

using namespace std::chrono_literals;

// Printed once, before the table: the size of each policy with default options.
const int sizes_printed = [] {
  std::printf(
      "sizeof(keel::retry<>) = %zu, sizeof(keel::retry_budget) = %zu, sizeof(keel::timeout<>) = "
      "%zu, sizeof(keel::fallback(int)) = %zu, sizeof(keel::last_known_good<int>) = %zu, "
      "sizeof(keel::context) = %zu, sizeof(keel::outcome<int>) = %zu, "
      "sizeof(keel::any_pipeline<int>) = %zu bytes\n",
      sizeof(keel::retry<>), sizeof(keel::retry_budget), sizeof(keel::timeout<>),
      sizeof(decltype(keel::fallback(0))), sizeof(keel::last_known_good<int>),
      sizeof(keel::context), sizeof(keel::outcome<int>), sizeof(keel::any_pipeline<int>));
  return 0;
}();
using keel_bench::on_1_2_n_threads;
using keel_bench::result;

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

/// pipeline(fallback, retry, breaker) as users write it: a fallback value, three
/// attempts with the default jittered backoff, and a breaker shared by
/// reference. The sleeper returns at once: a retry costs keel's work, not a sleep.
template <class Alternative>
auto guard(Alternative alternative, keel::circuit_breaker<>& breaker, int max_attempts = 3) {
  return keel::pipeline(keel::fallback(alternative),
                        keel::retry({.max_attempts = max_attempts})
                            .with_environment(keel_bench::instant_environment{}),
                        std::ref(breaker));
}

/// The value a guarded result-returning call ends with (the fallback answers result{-1, 0}).
int value_of(const keel::outcome<result>& o) { return o.has_result() ? o.value().value : 0; }

template <class Breaker>
void expect_state(benchmark::State& state, const Breaker& b, keel::circuit_state expected) {
  if (b.state() != expected) state.SkipWithError("the breaker is not in the state measured");
}

// ---- Success ---------------------------------------------------------------------

void hand_written_pipeline(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static keel_bench::minimal_breaker breaker;
  int x = 0;
  for (auto _ : state) {
    x = keel_bench::guarded_by_hand(breaker, 3, [&] { return result{keel_bench::work(x), 0}; });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(hand_written_pipeline)->Apply(on_1_2_n_threads);

keel::circuit_breaker<>& success_breaker() {
  static keel::circuit_breaker<> b{never_trips()};
  return b;
}

void pipeline_success_execute(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static const auto guarded = guard(-1, success_breaker());
  int x = 0;
  for (auto _ : state) {
    x = guarded.execute([&] { return keel_bench::work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(pipeline_success_execute)->Apply(on_1_2_n_threads);

void pipeline_success_try_execute(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static const auto guarded = guard(-1, success_breaker());
  int x = 0;
  for (auto _ : state) {
    auto o = guarded.try_execute([&] { return keel_bench::work(x); });
    x = o.has_value() ? o.value() : 0;
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(pipeline_success_try_execute);

// The same pipeline behind keel::any_pipeline<int>: one indirect call into it,
// one back to the callable.
void any_pipeline_success_execute(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static const keel::any_pipeline<int> guarded(guard(-1, success_breaker()));
  int x = 0;
  for (auto _ : state) {
    x = guarded.execute([&] { return keel_bench::work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(any_pipeline_success_execute)->Apply(on_1_2_n_threads);

// ---- A failure returned as a value: the breaker records it, the fallback answers ----
// try_execute: this result type has no way to hold keel's own errors, so
// execute() is refused at compile time for it.

// No retry wanted (one attempt): classification and recording of one failure.
void hand_written_pipeline_failure_as_value_single_attempt(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static keel_bench::minimal_breaker breaker;
  int x = 0;
  for (auto _ : state) {
    x = keel_bench::guarded_by_hand(breaker, 1, [&] { return keel_bench::failing(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(hand_written_pipeline_failure_as_value_single_attempt);

void pipeline_failure_as_value_single_attempt(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static keel::circuit_breaker<> breaker{never_trips()};
  static const auto guarded = guard(result{-1, 0}, breaker, 1);
  int x = 0;
  for (auto _ : state) {
    x = value_of(guarded.try_execute([&] { return keel_bench::failing(x); }));
    benchmark::DoNotOptimize(x);
  }
  expect_state(state, breaker, keel::circuit_state::closed);
}
BENCHMARK(pipeline_failure_as_value_single_attempt);

// Three attempts, each recorded by the breaker, then the fallback.
void hand_written_pipeline_failure_as_value(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static keel_bench::minimal_breaker breaker;
  int x = 0;
  for (auto _ : state) {
    x = keel_bench::guarded_by_hand(breaker, 3, [&] { return keel_bench::failing(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(hand_written_pipeline_failure_as_value);

void pipeline_failure_as_value(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static keel::circuit_breaker<> breaker{never_trips()};
  static const auto guarded = guard(result{-1, 0}, breaker);
  int x = 0;
  for (auto _ : state) {
    x = value_of(guarded.try_execute([&] { return keel_bench::failing(x); }));
    benchmark::DoNotOptimize(x);
  }
  expect_state(state, breaker, keel::circuit_state::closed);
}
BENCHMARK(pipeline_failure_as_value);

void any_pipeline_failure_as_value(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static keel::circuit_breaker<> breaker{never_trips()};
  static const keel::any_pipeline<result> guarded(guard(result{-1, 0}, breaker));
  int x = 0;
  for (auto _ : state) {
    x = value_of(guarded.try_execute([&] { return keel_bench::failing(x); }));
    benchmark::DoNotOptimize(x);
  }
  expect_state(state, breaker, keel::circuit_state::closed);
}
BENCHMARK(any_pipeline_failure_as_value);

// ---- A failure thrown: three throws, then the fallback ---------------------------------

void hand_written_pipeline_failure_thrown(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static keel_bench::minimal_breaker breaker;
  int x = 0;
  for (auto _ : state) {
    x = -1;
    for (int attempt = 1; attempt <= 3 && breaker.allow(); ++attempt) {
      try {
        x = keel_bench::throwing(x);
        breaker.on_success();
        break;
      } catch (...) {
        breaker.on_failure();
      }
    }
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(hand_written_pipeline_failure_thrown);

void pipeline_failure_thrown(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static keel::circuit_breaker<> breaker{never_trips()};
  static const auto guarded = guard(-1, breaker);
  int x = 0;
  for (auto _ : state) {
    x = guarded.execute([&] { return keel_bench::throwing(x); });
    benchmark::DoNotOptimize(x);
  }
  expect_state(state, breaker, keel::circuit_state::closed);
}
BENCHMARK(pipeline_failure_thrown);

// ---- An open circuit: rejected, not retried, answered by the fallback -----------------

// The floor: one clock read (is the open period over?) and the fallback value.
void hand_written_pipeline_open_rejection(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const auto open_until = std::chrono::steady_clock::now() + 1h;
  int x = 0;
  for (auto _ : state) {
    x = std::chrono::steady_clock::now() >= open_until ? keel_bench::work(x) : -1;
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(hand_written_pipeline_open_rejection);

keel::circuit_breaker<>& open_breaker() {
  static keel::circuit_breaker<> b{stays_open()};
  static const bool opened = (b.try_execute([] { return keel_bench::failing(0); }), true);
  (void)opened;
  return b;
}

void pipeline_open_rejection_try_execute(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static const auto guarded = guard(-1, open_breaker());
  int x = 0;
  for (auto _ : state) {
    auto o = guarded.try_execute([&] { return keel_bench::work(x); });
    x = o.has_value() ? o.value() : 0;
    benchmark::DoNotOptimize(x);
  }
  expect_state(state, open_breaker(), keel::circuit_state::open);
}
BENCHMARK(pipeline_open_rejection_try_execute);

// With a fallback, execute() returns its value: nothing is thrown.
void pipeline_open_rejection_execute(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static const auto guarded = guard(-1, open_breaker());
  int x = 0;
  for (auto _ : state) {
    x = guarded.execute([&] { return keel_bench::work(x); });
    benchmark::DoNotOptimize(x);
  }
  expect_state(state, open_breaker(), keel::circuit_state::open);
}
BENCHMARK(pipeline_open_rejection_execute);

// Without one, execute() throws keel::error (errc::circuit_open) to the caller.
void pipeline_retry_breaker_open_rejection_execute(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static const auto guarded = keel::pipeline(
      keel::retry().with_environment(keel_bench::instant_environment{}), std::ref(open_breaker()));
  int x = 0;
  for (auto _ : state) {
    try {
      x = guarded.execute([&] { return keel_bench::work(x); });
    } catch (const keel::error&) {
      ++x;
    }
    benchmark::DoNotOptimize(x);
  }
  expect_state(state, open_breaker(), keel::circuit_state::open);
}
BENCHMARK(pipeline_retry_breaker_open_rejection_execute);

// ---- One failure, as a value, then a success on the second attempt --------------------

void hand_written_pipeline_fail_then_succeed(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static keel_bench::minimal_breaker breaker;
  int n = 0;
  for (auto _ : state) {
    int v = keel_bench::guarded_by_hand(breaker, 3, [&] { return keel_bench::flaky(n); });
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(hand_written_pipeline_fail_then_succeed);

void pipeline_fail_then_succeed(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static keel::circuit_breaker<> breaker{never_trips()};
  static const auto guarded = guard(result{-1, 0}, breaker);
  int n = 0;
  for (auto _ : state) {
    int v = value_of(guarded.try_execute([&] { return keel_bench::flaky(n); }));
    benchmark::DoNotOptimize(v);
  }
  expect_state(state, breaker, keel::circuit_state::closed);
}
BENCHMARK(pipeline_fail_then_succeed);

}  // namespace

KEEL_BENCHMARK_MAIN()

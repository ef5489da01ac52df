// SPDX-License-Identifier: BSL-1.0
// keel::retry against a bare call and against the hand-written loop a careful
// programmer would write instead: the happy path (no retry needed) and a call
// that fails once and then succeeds (zero delay, through an environment whose
// sleeper returns at once, so that the policy's own cost is what is measured).
#include <chrono>
#include <stdexcept>
#include <stop_token>

#include <keel/retry.hpp>

#include "bench_support.hpp"

namespace {

/// Returns at once: the failing benchmarks measure retry, not sleeping.
struct instant_sleeper {
  bool sleep_for(keel::duration, const std::stop_token& token) const {
    return !token.stop_requested();
  }
};
using instant_environment =
    keel::basic_environment<keel::steady_clock, instant_sleeper, keel::thread_local_random>;

/// A minimal expected-like result: the value channel without exceptions.
struct result {
  int value = 0;
  int error_code = 0;
  bool has_value() const noexcept { return error_code == 0; }
  int error() const noexcept { return error_code; }
};

/// Fails every other call: each guarded call fails once, then succeeds.
[[gnu::noinline]] result flaky(int& n) noexcept {
  benchmark::DoNotOptimize(n);
  ++n;
  if (n & 1) return {0, 1};
  return {n, 0};
}

// The floor for the happy path: a loop around the call, with nothing to do
// unless it throws.
void hand_written_retry_happy_path(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    for (int attempt = 1;; ++attempt) {
      try {
        x = keel_bench::work(x);
        break;
      } catch (...) {
        if (attempt >= 3) throw;
      }
    }
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(hand_written_retry_happy_path);

/// A policy that only calls through: what keel's execute/outcome/context cost
/// by themselves, so that retry's own share is the difference to this row.
struct pass_through : keel::executable<pass_through> {
  template <class R, class Next>
  keel::outcome<R> run(Next&& next, keel::context& ctx) const {
    return next(ctx);
  }
};

void pass_through_policy(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const pass_through policy;
  int x = 0;
  for (auto _ : state) {
    x = policy.execute([&] { return keel_bench::work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(pass_through_policy);

void retry_happy_path(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const keel::retry retry;  // the defaults: 3 attempts, jittered exponential backoff
  int x = 0;
  for (auto _ : state) {
    x = retry.execute([&] { return keel_bench::work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(retry_happy_path);

void retry_happy_path_try_execute(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const keel::retry retry;
  int x = 0;
  for (auto _ : state) {
    const auto o = retry.try_execute([&] { return keel_bench::work(x); });
    if (o.has_value()) x = o.value();
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(retry_happy_path_try_execute);

// The floor for one failure: call, see the error, call again.
void hand_written_retry_fail_then_succeed(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  int n = 0;
  for (auto _ : state) {
    result r;
    for (int attempt = 1;; ++attempt) {
      r = flaky(n);
      if (r.has_value() || attempt >= 3) break;
    }
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(hand_written_retry_fail_then_succeed);

void retry_fail_then_succeed(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const auto retry =
      keel::retry({.backoff = keel::backoff::none()}).with_environment(instant_environment{});
  int n = 0;
  for (auto _ : state) {
    auto o = retry.try_execute([&] { return flaky(n); });
    benchmark::DoNotOptimize(o);
  }
}
BENCHMARK(retry_fail_then_succeed);

// Same, with the default jittered backoff: adds one random draw per retry.
void retry_fail_then_succeed_jittered(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const auto retry = keel::retry().with_environment(instant_environment{});
  int n = 0;
  for (auto _ : state) {
    auto o = retry.try_execute([&] { return flaky(n); });
    benchmark::DoNotOptimize(o);
  }
}
BENCHMARK(retry_fail_then_succeed_jittered);

// A thrown failure: unwinding dominates, as in any C++ code.
void retry_throw_then_succeed(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const auto retry =
      keel::retry({.backoff = keel::backoff::none()}).with_environment(instant_environment{});
  int n = 0;
  for (auto _ : state) {
    int v = retry.execute([&] {
      const result r = flaky(n);
      if (!r.has_value()) throw std::runtime_error("flaky");
      return r.value;
    });
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(retry_throw_then_succeed);

}  // namespace

KEEL_BENCHMARK_MAIN()

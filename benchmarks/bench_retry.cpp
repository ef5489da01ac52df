// SPDX-License-Identifier: BSL-1.0
// keel::retry against a bare call and against the loop a careful programmer
// would write instead (keel_bench::retry_loop): the happy path (no retry
// needed), a call that fails once then succeeds, a call that fails on every
// attempt (as a value, and thrown), and a retry_budget shared by 1, 2 and N
// threads. Every retry goes through keel_bench::instant_environment, whose
// sleeper returns at once, so that the policy's own cost is what is measured.

#include <atomic>

#include <keel/retry.hpp>

#include "bench_support.hpp"

namespace {

using keel_bench::on_1_2_n_threads;

/// Three attempts, no backoff, no sleep: the cheapest retry keel can do.
auto zero_delay_retry() {
  return keel::retry({.max_attempts = 3, .backoff = keel::backoff::none()})
      .with_environment(keel_bench::instant_environment{});
}

/// A budget that every fail-then-succeed call leaves as full as it found it
/// (a failure takes one token, a success gives one back), so that every retry
/// is granted and the rows measure the budget's bookkeeping, not its refusals.
keel::retry_budget& balanced_budget() {
  static keel::retry_budget budget({.token_ratio = 1.0});
  return budget;
}

/// Hears the budget's refusals alone, so that no other event is ever built.
struct refusal_count {
  std::atomic<long>* refusals;
  void on(const keel::retry_budget_exhausted&) const noexcept { refusals->fetch_add(1); }
};

void expect_no_refusal(benchmark::State& state, const std::atomic<long>& refusals) {
  if (refusals.load() != 0) state.SkipWithError("the budget refused a retry");
}

// ---- Success: no retry needed --------------------------------------------------

// The floor: a loop around the call, with nothing to do unless it throws.
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
BENCHMARK(hand_written_retry_happy_path)->Apply(on_1_2_n_threads);

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

// With a budget, a success is reported to it: with the bucket full, one shared load.
void retry_happy_path_with_budget(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static const auto retry = keel::retry().with_budget(balanced_budget());
  int x = 0;
  for (auto _ : state) {
    x = retry.execute([&] { return keel_bench::work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(retry_happy_path_with_budget)->Apply(on_1_2_n_threads);

// ---- One failure, as a value, then a success ------------------------------------

// The floor: call, see the error, call again.
void hand_written_retry_fail_then_succeed(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  int n = 0;
  for (auto _ : state) {
    auto r = keel_bench::retry_loop(3, [&] { return keel_bench::flaky(n); });
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(hand_written_retry_fail_then_succeed)->Apply(on_1_2_n_threads);

// One policy shared by every thread, as in a server: it counts its retries.
void retry_fail_then_succeed(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static const auto retry = zero_delay_retry();
  int n = 0;
  for (auto _ : state) {
    auto o = retry.try_execute([&] { return keel_bench::flaky(n); });
    benchmark::DoNotOptimize(o);
  }
}
BENCHMARK(retry_fail_then_succeed)->Apply(on_1_2_n_threads);

// Same, with the default jittered backoff: adds one random draw per retry.
void retry_fail_then_succeed_jittered(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const auto retry = keel::retry().with_environment(keel_bench::instant_environment{});
  int n = 0;
  for (auto _ : state) {
    auto o = retry.try_execute([&] { return keel_bench::flaky(n); });
    benchmark::DoNotOptimize(o);
  }
}
BENCHMARK(retry_fail_then_succeed_jittered);

// Same policy plus one budget shared by every thread: per call, a failure
// taken, a retry granted and a success given back.
void retry_fail_then_succeed_with_budget(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  static std::atomic<long> refusals{0};
  static const auto retry =
      zero_delay_retry().with_budget(balanced_budget()).with_listener(refusal_count{&refusals});
  int n = 0;
  for (auto _ : state) {
    auto o = retry.try_execute([&] { return keel_bench::flaky(n); });
    benchmark::DoNotOptimize(o);
  }
  expect_no_refusal(state, refusals);
}
BENCHMARK(retry_fail_then_succeed_with_budget)->Apply(on_1_2_n_threads);

// ---- Every attempt fails, as a value: retries exhausted ---------------------------

void hand_written_retry_failure_as_value(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    auto r = keel_bench::retry_loop(3, [&] { return keel_bench::failing(x); });
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(hand_written_retry_failure_as_value);

void retry_failure_as_value(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const auto retry = zero_delay_retry();
  int x = 0;
  for (auto _ : state) {
    auto o = retry.try_execute([&] { return keel_bench::failing(x); });
    benchmark::DoNotOptimize(o);
  }
}
BENCHMARK(retry_failure_as_value);

// ---- Thrown failures: unwinding dominates, as in any C++ code -----------------------

void hand_written_retry_throw_then_succeed(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  int n = 0;
  for (auto _ : state) {
    int v = 0;
    for (int attempt = 1;; ++attempt) {
      try {
        const keel_bench::result r = keel_bench::flaky(n);
        if (!r.has_value()) throw keel_bench::down();
        v = r.value;
        break;
      } catch (const keel_bench::down&) {
        if (attempt >= 3) throw;
      }
    }
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(hand_written_retry_throw_then_succeed);

void retry_throw_then_succeed(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const auto retry = zero_delay_retry();
  int n = 0;
  for (auto _ : state) {
    int v = retry.execute([&] {
      const keel_bench::result r = keel_bench::flaky(n);
      if (!r.has_value()) throw keel_bench::down();
      return r.value;
    });
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(retry_throw_then_succeed);

// Three throws, the last one reaching the caller.
void hand_written_retry_failure_thrown(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    try {
      for (int attempt = 1;; ++attempt) {
        try {
          x = keel_bench::throwing(x);
          break;
        } catch (const keel_bench::down&) {
          if (attempt >= 3) throw;
        }
      }
    } catch (const keel_bench::down&) {
      ++x;
    }
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(hand_written_retry_failure_thrown);

void retry_failure_thrown_execute(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const auto retry = zero_delay_retry();
  int x = 0;
  for (auto _ : state) {
    try {
      x = retry.execute([&] { return keel_bench::throwing(x); });
    } catch (const keel_bench::down&) {
      ++x;
    }
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(retry_failure_thrown_execute);

}  // namespace

KEEL_BENCHMARK_MAIN()

// SPDX-License-Identifier: BSL-1.0
// Fixed workloads for instruction counting under callgrind (a regression guard
// that timing noise cannot hide): each keel_cg_<name>(n) makes n calls of one
// kind; tools/bench-callgrind.sh runs each under
// `valgrind --tool=callgrind --toggle-collect='keel_cg_<name>(int)'` and
// divides the instructions by n. Every policy and the pipeline, in each
// scenario that needs no sleep, next to the hand-written floor. Not a Google
// Benchmark binary: it needs only keel (and workload_support.hpp, which the
// benchmarks share, so that both measure the same callables).
//
//   keel_callgrind_workloads <name> [calls]   one workload (default 1,000,000 calls)
//   keel_callgrind_workloads --all [calls]    every workload (ctest's smoke run)
//   keel_callgrind_workloads --list           the workload names
//
// Each workload also checks that it measured what it says (the breaker open,
// the retry granted...) and returns false otherwise: once per run, so it adds
// nothing per call.
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>

#include <keel/keel.hpp>

#include "workload_support.hpp"

namespace {

using namespace std::chrono_literals;
using keel_bench::keep;
using keel_bench::result;

// The loops, out of the keel_cg_* functions so that callgrind's
// --toggle-collect pattern matches only the workload itself.

template <class Policy>
void success_calls(const Policy& p, int n) {
  int x = 0;
  for (int i = 0; i < n; ++i) {
    auto r = p.try_execute([&] { return keel_bench::work(x); });
    if (r.has_value()) x = r.value();
    keep(x);
  }
}

template <class Policy>
void failure_calls(const Policy& p, int n) {
  for (int i = 0; i < n; ++i) {
    auto r = p.try_execute([&] { return keel_bench::failing(i); });
    keep(r);
  }
}

template <class Policy>
void flaky_calls(const Policy& p, int n) {
  int k = 0;
  for (int i = 0; i < n; ++i) {
    auto r = p.try_execute([&] { return keel_bench::flaky(k); });
    keep(r);
  }
}

keel::circuit_breaker_options never_trips() {
  return {.trip = keel::consecutive_failures{.threshold = INT_MAX}};
}

/// A breaker opened by one failure, which stays open for the whole run.
keel::circuit_breaker<>& open_breaker() {
  static keel::circuit_breaker<> b{{.trip = keel::consecutive_failures{.threshold = 1},
                                    .open_duration = 1h,
                                    .max_open_duration = 1h}};
  static const bool opened = (b.try_execute([] { return keel_bench::failing(0); }), true);
  (void)opened;
  return b;
}

/// Three attempts, no backoff, no sleep.
auto zero_delay_retry() {
  return keel::retry({.max_attempts = 3, .backoff = keel::backoff::none()})
      .with_environment(keel_bench::instant_environment{});
}

/// pipeline(fallback, retry, breaker) as in bench_pipeline.cpp: three attempts
/// with the default jittered backoff, a sleeper that returns at once.
template <class Alternative>
auto guard(Alternative alternative, keel::circuit_breaker<>& breaker) {
  return keel::pipeline(
      keel::fallback(alternative),
      keel::retry({.max_attempts = 3}).with_environment(keel_bench::instant_environment{}),
      std::ref(breaker));
}

/// The attempts one more call of `f` through `r` makes, when it ends with a
/// value (`succeeds`) or a failure: what each measured call did. One call
/// more drops out of the figure (see tools/bench-callgrind.sh), and the retry
/// counts nothing itself, so no other instance of it is compiled to ask.
template <class Retry, class F>
int attempts_of_one_call(const Retry& r, F f, bool succeeds) {
  int attempts = 0;
  const auto o = r.try_execute([&] {
    ++attempts;
    return f();
  });
  return o.has_value() == succeeds ? attempts : -1;
}

bool is_closed(const keel::circuit_breaker<>& b) {
  return b.state() == keel::circuit_state::closed;
}

}  // namespace

// Global, so that callgrind names them plainly: "keel_cg_<name>(int)".

// ---- Baselines and floors ----------------------------------------------------------

bool keel_cg_bare(int n) {
  int x = 0;
  for (int i = 0; i < n; ++i) {
    x = keel_bench::work(x);
    keep(x);
  }
  return true;
}

bool keel_cg_steady_clock_now(int n) {
  for (int i = 0; i < n; ++i) {
    auto t = std::chrono::steady_clock::now();
    keep(t);
  }
  return true;
}

bool keel_cg_hand_written_breaker(int n) {
  static keel_bench::minimal_breaker breaker;
  int x = 0;
  for (int i = 0; i < n; ++i) {
    if (breaker.allow()) {
      x = keel_bench::work(x);
      breaker.on_success();
    }
    keep(x);
  }
  return true;
}

bool keel_cg_hand_written_retry_fail_then_succeed(int n) {
  int k = 0;
  for (int i = 0; i < n; ++i) {
    auto r = keel_bench::retry_loop(3, [&] { return keel_bench::flaky(k); });
    keep(r);
  }
  return true;
}

bool keel_cg_hand_written_pipeline(int n) {
  static keel_bench::minimal_breaker breaker;
  int x = 0;
  for (int i = 0; i < n; ++i) {
    x = keel_bench::guarded_by_hand(breaker, 3, [&] { return result{keel_bench::work(x), 0}; });
    keep(x);
  }
  return true;
}

// ---- Circuit breaker ---------------------------------------------------------------

bool keel_cg_breaker_consecutive(int n) {
  static const keel::circuit_breaker b{{.trip = keel::consecutive_failures{.threshold = 5}}};
  success_calls(b, n);
  return true;
}

bool keel_cg_breaker_in_period(int n) {
  static const keel::circuit_breaker b{
      {.trip = keel::failures_in_period{.threshold = 5, .period = 10s}}};
  success_calls(b, n);
  return true;
}

bool keel_cg_breaker_ratio_count(int n) {
  static const keel::circuit_breaker b{{.trip = keel::failure_ratio_count{}}};
  success_calls(b, n);
  return true;
}

bool keel_cg_breaker_ratio_time(int n) {
  static const keel::circuit_breaker b{{.trip = keel::failure_ratio_time{}}};
  success_calls(b, n);
  return true;
}

bool keel_cg_breaker_failure_as_value(int n) {
  static const keel::circuit_breaker b{never_trips()};
  failure_calls(b, n);
  return is_closed(b);
}

bool keel_cg_breaker_open_rejection(int n) {
  const auto& b = open_breaker();
  success_calls(b, n);
  return b.state() == keel::circuit_state::open;
}

// ---- Retry -------------------------------------------------------------------------

bool keel_cg_retry(int n) {
  static const keel::retry r({.max_attempts = 3});
  success_calls(r, n);
  return true;
}

bool keel_cg_retry_failure_as_value(int n) {
  static const auto r = zero_delay_retry();
  failure_calls(r, n);
  const auto fail = [] { return keel_bench::failing(0); };
  return attempts_of_one_call(r, fail, false) == 3;
}

bool keel_cg_retry_fail_then_succeed(int n) {
  static const auto r = zero_delay_retry();
  flaky_calls(r, n);
  int k = 0;
  const auto flaky = [&] { return keel_bench::flaky(k); };
  return attempts_of_one_call(r, flaky, true) == 2;
}

// A budget left as full as it was found (a failure takes a token, a success
// gives it back), so that every retry is granted.
bool keel_cg_retry_fail_then_succeed_with_budget(int n) {
  static keel::retry_budget budget({.token_ratio = 1.0});
  static const auto r = zero_delay_retry().with_budget(budget);
  flaky_calls(r, n);
  int k = 0;  // the budget granted the retry: two attempts
  const auto flaky = [&] { return keel_bench::flaky(k); };
  return attempts_of_one_call(r, flaky, true) == 2;
}

// ---- Fallback and timeout ----------------------------------------------------------

bool keel_cg_fallback(int n) {
  static const keel::fallback f(-1);
  success_calls(f, n);
  return true;
}

bool keel_cg_fallback_failure_as_value(int n) {
  static const keel::fallback f(result{-1, 0});
  failure_calls(f, n);
  return true;
}

// Two clock reads per call: the deadline, and whether the call was late.
bool keel_cg_timeout(int n) {
  static const keel::timeout t{{.timeout = 1h}};
  success_calls(t, n);
  return true;
}

// ---- pipeline(fallback, retry, breaker) --------------------------------------------

bool keel_cg_pipeline(int n) {
  static keel::circuit_breaker<> breaker{never_trips()};
  static const auto p = guard(-1, breaker);
  success_calls(p, n);
  return is_closed(breaker);
}

bool keel_cg_pipeline_failure_as_value(int n) {
  static keel::circuit_breaker<> breaker{never_trips()};
  static const auto p = guard(result{-1, 0}, breaker);
  failure_calls(p, n);
  return is_closed(breaker);
}

bool keel_cg_pipeline_open_rejection(int n) {
  static const auto p = guard(-1, open_breaker());
  success_calls(p, n);
  return open_breaker().state() == keel::circuit_state::open;
}

bool keel_cg_pipeline_fail_then_succeed(int n) {
  static keel::circuit_breaker<> breaker{never_trips()};
  static const auto p = guard(result{-1, 0}, breaker);
  flaky_calls(p, n);
  return is_closed(breaker);
}

// ---- the same pipeline behind keel::any_pipeline<R> ---------------------------------
// One indirect call into the pipeline per call, one back to the callable per
// attempt. Its failure path is measured in bench_pipeline only: instantiated
// here too, it changed how GCC inlined the pipeline rows' own failure paths.

bool keel_cg_any_pipeline(int n) {
  static keel::circuit_breaker<> breaker{never_trips()};
  static const keel::any_pipeline<int> p(guard(-1, breaker));
  success_calls(p, n);
  return is_closed(breaker);
}

// In callgrind_workloads_coarse.cpp: another translation unit, so that GCC's
// inlining of the workloads here does not depend on them.
bool keel_cg_hand_written_breaker_one_coarse_read(int n);
bool keel_cg_hand_written_breaker_two_coarse_reads(int n);
bool keel_cg_breaker_ratio_time_coarse(int n);
bool keel_cg_breaker_slow_call_coarse(int n);
// In callgrind_workloads_failover.cpp, for the same reason.
bool keel_cg_hand_written_leader(int n);
bool keel_cg_leader_follower(int n);
// In callgrind_workloads_pool.cpp: the replica pool and its floors.
bool keel_cg_hand_written_rr_breaker(int n);
bool keel_cg_pool_rr_breaker(int n);
bool keel_cg_hand_written_p2c(int n);
bool keel_cg_pool_least_loaded(int n);
bool keel_cg_hand_written_peak_ewma(int n);
bool keel_cg_pool_peak_ewma(int n);
// In callgrind_workloads_bulkhead.cpp: the bulkhead and its floor.
bool keel_cg_hand_written_semaphore(int n);
bool keel_cg_bulkhead(int n);
bool keel_cg_bulkhead_rejection(int n);
// In callgrind_workloads_rate_limiter.cpp: the rate limiter and its floor.
bool keel_cg_hand_written_gcra(int n);
bool keel_cg_gcra_try_acquire(int n);
bool keel_cg_rate_limiter(int n);
bool keel_cg_rate_limiter_reserve_settle(int n);
// In callgrind_workloads_sliding_window.cpp: the sliding window (floor: hand_written_gcra).
bool keel_cg_sliding_window_try_acquire(int n);
bool keel_cg_sliding_window_acquire_settle(int n);
// In callgrind_workloads_adaptive.cpp: the adaptive limiter, the throttle and their floors.
bool keel_cg_hand_written_limiter(int n);
bool keel_cg_adaptive_limiter(int n);
bool keel_cg_hand_written_throttle(int n);
bool keel_cg_hand_written_counting_throttle(int n);
bool keel_cg_adaptive_throttle(int n);

namespace {

struct workload {
  const char* name;
  bool (*run)(int);
};

// The order of the table in RESULTS.md.
constexpr workload workloads[] = {
    {"bare", keel_cg_bare},
    {"steady_clock_now", keel_cg_steady_clock_now},
    {"hand_written_breaker", keel_cg_hand_written_breaker},
    {"breaker_consecutive", keel_cg_breaker_consecutive},
    {"breaker_in_period", keel_cg_breaker_in_period},
    {"breaker_ratio_count", keel_cg_breaker_ratio_count},
    {"breaker_ratio_time", keel_cg_breaker_ratio_time},
    {"hand_written_breaker_one_coarse_read", keel_cg_hand_written_breaker_one_coarse_read},
    {"breaker_ratio_time_coarse", keel_cg_breaker_ratio_time_coarse},
    {"hand_written_breaker_two_coarse_reads", keel_cg_hand_written_breaker_two_coarse_reads},
    {"breaker_slow_call_coarse", keel_cg_breaker_slow_call_coarse},
    {"breaker_failure_as_value", keel_cg_breaker_failure_as_value},
    {"breaker_open_rejection", keel_cg_breaker_open_rejection},
    {"retry", keel_cg_retry},
    {"retry_failure_as_value", keel_cg_retry_failure_as_value},
    {"hand_written_retry_fail_then_succeed", keel_cg_hand_written_retry_fail_then_succeed},
    {"retry_fail_then_succeed", keel_cg_retry_fail_then_succeed},
    {"retry_fail_then_succeed_with_budget", keel_cg_retry_fail_then_succeed_with_budget},
    {"fallback", keel_cg_fallback},
    {"fallback_failure_as_value", keel_cg_fallback_failure_as_value},
    {"timeout", keel_cg_timeout},
    {"hand_written_pipeline", keel_cg_hand_written_pipeline},
    {"pipeline", keel_cg_pipeline},
    {"pipeline_failure_as_value", keel_cg_pipeline_failure_as_value},
    {"pipeline_open_rejection", keel_cg_pipeline_open_rejection},
    {"pipeline_fail_then_succeed", keel_cg_pipeline_fail_then_succeed},
    {"any_pipeline", keel_cg_any_pipeline},
    {"hand_written_leader", keel_cg_hand_written_leader},
    {"leader_follower", keel_cg_leader_follower},
    {"hand_written_rr_breaker", keel_cg_hand_written_rr_breaker},
    {"pool_rr_breaker", keel_cg_pool_rr_breaker},
    {"hand_written_p2c", keel_cg_hand_written_p2c},
    {"pool_least_loaded", keel_cg_pool_least_loaded},
    {"hand_written_peak_ewma", keel_cg_hand_written_peak_ewma},
    {"pool_peak_ewma", keel_cg_pool_peak_ewma},
    {"hand_written_semaphore", keel_cg_hand_written_semaphore},
    {"bulkhead", keel_cg_bulkhead},
    {"bulkhead_rejection", keel_cg_bulkhead_rejection},
    {"hand_written_gcra", keel_cg_hand_written_gcra},
    {"gcra_try_acquire", keel_cg_gcra_try_acquire},
    {"rate_limiter", keel_cg_rate_limiter},
    {"rate_limiter_reserve_settle", keel_cg_rate_limiter_reserve_settle},
    {"sliding_window_try_acquire", keel_cg_sliding_window_try_acquire},
    {"sliding_window_acquire_settle", keel_cg_sliding_window_acquire_settle},
    {"hand_written_limiter", keel_cg_hand_written_limiter},
    {"adaptive_limiter", keel_cg_adaptive_limiter},
    {"hand_written_throttle", keel_cg_hand_written_throttle},
    {"hand_written_counting_throttle", keel_cg_hand_written_counting_throttle},
    {"adaptive_throttle", keel_cg_adaptive_throttle},
};

bool run(const workload& w, int n) {
  if (w.run(n)) return true;
  std::fprintf(stderr, "workload %s did not measure what it says\n", w.name);
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "--list") == 0) {
    for (const workload& w : workloads) std::printf("%s\n", w.name);
    return 0;
  }
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <workload> [calls] | --all [calls] | --list\n", argv[0]);
    return 2;
  }
  const int n = argc >= 3 ? std::atoi(argv[2]) : 1'000'000;
  if (std::strcmp(argv[1], "--all") == 0) {
    bool ok = true;
    for (const workload& w : workloads) ok = run(w, n) && ok;
    return ok ? 0 : 1;
  }
  for (const workload& w : workloads) {
    if (std::strcmp(argv[1], w.name) == 0) return run(w, n) ? 0 : 1;
  }
  std::fprintf(stderr, "unknown workload %s\n", argv[1]);
  return 2;
}

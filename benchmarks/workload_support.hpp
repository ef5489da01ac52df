// SPDX-License-Identifier: BSL-1.0
// What the benchmarks (bench_*.cpp, Google Benchmark) and the instruction
// counts (callgrind_workloads.cpp, keel only) share: the guarded callables,
// the result type, an environment whose sleeper returns at once, and the
// hand-written floor (a minimal atomic breaker, a retry loop, and the two
// with a fallback). Sharing them means both programs measure exactly the
// same work around keel.
#ifndef KEEL_BENCHMARKS_WORKLOAD_SUPPORT_HPP_INCLUDED
#define KEEL_BENCHMARKS_WORKLOAD_SUPPORT_HPP_INCLUDED

#include <atomic>
#include <climits>
#include <cstdint>
#include <exception>
#include <stop_token>
#include <type_traits>

#include <keel/core/environment.hpp>

namespace keel_bench {

/// Hides `v` from the optimizer, as benchmark::DoNotOptimize does, without
/// needing Google Benchmark.
template <class T>
inline void keep(T& v) noexcept {
  if constexpr (std::is_trivially_copyable_v<T> && sizeof(T) <= sizeof(void*)) {
    __asm__ __volatile__("" : "+r,m"(v) : : "memory");
  } else {
    __asm__ __volatile__("" : "+m"(v) : : "memory");
  }
}

/// A minimal expected-like result: the value channel without exceptions. Two
/// ints, so that copying it costs nothing next to what keel does with it.
struct result {
  int value = 0;
  int code = 0;
  bool has_value() const noexcept { return code == 0; }
  int error() const noexcept { return code; }
};

/// What the throwing callables throw: no message to allocate, so that the
/// allocations counted in a "thrown" row are keel's, not std::runtime_error's.
struct down : std::exception {
  const char* what() const noexcept override { return "down"; }
};

// The callables every row wraps: out of line, so that the policy's cost is what
// differs between rows, not the inlining of the work.

/// Succeeds: the bare call every ratio divides by.
[[gnu::noinline]] inline int work(int x) noexcept {
  __asm__ __volatile__("" : "+r"(x));
  return x + 1;
}

/// Fails, as a value.
[[gnu::noinline]] inline result failing(int x) noexcept {
  __asm__ __volatile__("" : "+r"(x));
  return {0, 1};
}

/// Fails, by throwing keel_bench::down. (Always, in practice: the test only
/// keeps the compiler from treating it as a function that never returns.)
[[gnu::noinline]] inline int throwing(int x) {
  __asm__ __volatile__("" : "+r"(x));
  if (x != INT_MIN) throw down();
  return x;
}

/// Fails every other call, as a value: each guarded call fails once, then
/// succeeds. `n` only flips between 1 (fail) and 0, so it never overflows.
[[gnu::noinline]] inline result flaky(int& n) noexcept {
  n ^= 1;
  __asm__ __volatile__("" : "+r"(n));
  if (n != 0) return {0, 1};
  return {7, 0};
}

/// Returns at once: a retry row measures the retry, not the sleep.
/// (keel::testing::virtual_environment would do too, but it records every sleep.)
struct instant_sleeper {
  bool sleep_for(keel::duration, const std::stop_token& token) const {
    return !token.stop_requested();
  }
};
using instant_environment =
    keel::basic_environment<keel::steady_clock, instant_sleeper, keel::thread_local_random>;

/// The floor for a breaker: a consecutive-failure breaker in a dozen lines.
/// One acquire load to admit, one relaxed load after a success, a store only
/// when something changes. No clock: it never closes again (a floor, not a
/// product). A 64-bit count, so that a long run of failures never wraps.
class minimal_breaker {
 public:
  explicit minimal_breaker(std::int64_t threshold = INT64_MAX) noexcept : threshold_(threshold) {}

  bool allow() const noexcept { return !open_.load(std::memory_order_acquire); }
  void on_success() noexcept {
    if (failures_.load(std::memory_order_relaxed) != 0)
      failures_.store(0, std::memory_order_relaxed);
  }
  void on_failure() noexcept {
    if (failures_.fetch_add(1, std::memory_order_relaxed) + 1 >= threshold_)
      open_.store(true, std::memory_order_release);
  }

 private:
  std::atomic<bool> open_{false};
  std::atomic<std::int64_t> failures_{0};
  std::int64_t threshold_;
};

/// The floor for a retry: call again while the result holds an error, up to
/// `max_attempts` attempts, without sleeping.
template <class F>
auto retry_loop(int max_attempts, F&& f) {
  for (int attempt = 1;; ++attempt) {
    auto r = f();
    if (r.has_value() || attempt >= max_attempts) return r;
  }
}

/// The floor for pipeline(fallback, retry, breaker): the same three layers by
/// hand. `f` returns a keel_bench::result; the fallback value is -1.
template <class F>
int guarded_by_hand(minimal_breaker& breaker, int max_attempts, F&& f) {
  for (int attempt = 1;; ++attempt) {
    if (!breaker.allow()) return -1;
    const result r = f();
    if (r.has_value()) {
      breaker.on_success();
      return r.value;
    }
    breaker.on_failure();
    if (attempt >= max_attempts) return -1;
  }
}

}  // namespace keel_bench

#endif  // KEEL_BENCHMARKS_WORKLOAD_SUPPORT_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
// The adaptive limiter and throttle and the hand-written floors they are
// measured against, shared by bench_adaptive.cpp and its callgrind workloads.
#ifndef KEEL_BENCH_ADAPTIVE_SUPPORT_HPP
#define KEEL_BENCH_ADAPTIVE_SUPPORT_HPP

#include <atomic>
#include <chrono>
#include <cstdint>

#include <keel/admission.hpp>
#include <keel/core/coarse_clock.hpp>

#include "workload_support.hpp"

namespace keel_bench {

/// What a careful programmer writes for a concurrency limit that learns from
/// RTTs: an atomic in-flight count under a limit, and two clock reads.
class hand_written_limiter {
 public:
  template <class F>
  int call(F&& f) {
    std::uint32_t running = in_flight_.load(std::memory_order_relaxed);
    do {
      if (running >= limit_.load(std::memory_order_relaxed)) return -1;
    } while (!in_flight_.compare_exchange_weak(running, running + 1, std::memory_order_relaxed));
    const auto start = std::chrono::steady_clock::now();
    const int r = f();
    auto rtt = std::chrono::steady_clock::now() - start;
    keep(rtt);
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    return r;
  }

 private:
  alignas(64) std::atomic<std::uint32_t> in_flight_{0};
  std::atomic<std::uint32_t> limit_{1U << 20};
};

/// The throttle's healthy path as a hand-written floor: one relaxed load, then the call.
class hand_written_throttle {
 public:
  template <class F>
  int call(F&& f) {
    if (p_.load(std::memory_order_relaxed) != 0) return -1;
    return f();
  }

 private:
  alignas(64) std::atomic<std::uint32_t> p_{0};
};

/// The throttle's healthy path with its counting, as a hand-written floor:
/// one clock read, the bucket found by a division, one relaxed load of p, and
/// one relaxed fetch_add into the bucket's requests before the call and one
/// into its accepts after. Cheaper than any correct throttle: it never starts
/// a bucket over, so its window never moves.
template <class Clock>
class hand_written_counting_throttle {
 public:
  template <class F>
  int call(F&& f) {
    const std::int64_t ns = Clock{}.now().time_since_epoch().count();
    bucket& b = buckets_[static_cast<std::uint64_t>(ns / bucket_ns) % 24];
    if (p_.load(std::memory_order_relaxed) != 0) return -1;
    b.requests.fetch_add(1, std::memory_order_relaxed);
    const int r = f();
    b.accepts.fetch_add(1, std::memory_order_relaxed);
    return r;
  }

 private:
  static constexpr std::int64_t bucket_ns = 5'000'000'000;
  struct bucket {
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> accepts{0};
  };
  bucket buckets_[24];
  alignas(64) std::atomic<std::uint32_t> p_{0};
};

/// The limiter rows: AIMD high enough that no call is refused.
inline keel::aimd_limit roomy_aimd() {
  return keel::aimd_limit({.initial_limit = 1000, .min_limit = 1000, .max_limit = 1000});
}
using adaptive_limiter_t = keel::adaptive_limiter<keel::aimd_limit>;
using adaptive_throttle_t = keel::adaptive_throttle<>;
using adaptive_throttle_coarse_t =
    keel::adaptive_throttle<keel::on::any_failure_t, keel::no_listener, keel::coarse_environment>;

}  // namespace keel_bench

#endif  // KEEL_BENCH_ADAPTIVE_SUPPORT_HPP

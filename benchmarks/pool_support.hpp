// SPDX-License-Identifier: BSL-1.0
// The replica pool's workloads, shared by bench_pool.cpp (Google
// Benchmark) and callgrind_workloads_pool.cpp (instruction counts): three
// replicas, the pools that spread calls over them, and the hand-written
// floors a careful programmer would write instead.
#ifndef KEEL_BENCHMARKS_POOL_SUPPORT_HPP_INCLUDED
#define KEEL_BENCHMARKS_POOL_SUPPORT_HPP_INCLUDED

#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <keel/circuit_breaker.hpp>
#include <keel/failover/endpoint_pool.hpp>

#include "workload_support.hpp"

namespace keel_bench {

/// What a pool's callable receives: where to send the call.
struct replica {
  int port = 0;
  friend bool operator==(const replica&, const replica&) = default;
};

inline constexpr std::size_t replica_count = 3;

inline std::vector<replica> three_replicas() { return {{8001}, {8002}, {8003}}; }

/// The call made on a replica: work() on its port.
inline int call_replica(const replica& r, int x) noexcept { return work(x + r.port); }

/// Per-endpoint layers of the breaker rows: a consecutive-failures breaker, built in place.
struct breaker_per_replica {
  auto operator()(const replica&, std::size_t) const {
    return keel::circuit_breaker({.trip = keel::consecutive_failures{.threshold = 5}});
  }
};

using rr_breaker_pool = keel::endpoint_pool<replica, breaker_per_replica>;
using plain_pool = keel::endpoint_pool<replica>;

/// floor(u * n) clamped below n, as a hand-written P2C would draw an index.
inline std::size_t draw_below(double u, std::size_t n) noexcept {
  const auto i = static_cast<std::size_t>(u * static_cast<double>(n));
  return i < n ? i : n - 1;
}

/// The floor of round robin + a breaker per endpoint: an atomic cursor over
/// three replicas, each with keel_bench::minimal_breaker.
class hand_written_rr_breakers {
 public:
  template <class F>
  int call(F&& f) {
    const std::size_t i = cursor_.fetch_add(1, std::memory_order_relaxed) % replica_count;
    endpoint& e = endpoints_[i];
    if (!e.breaker.allow()) return -1;
    const int r = f(e.where);
    e.breaker.on_success();
    return r;
  }

 private:
  struct alignas(64) endpoint {
    minimal_breaker breaker;
    replica where;
  };
  std::atomic<std::uint64_t> cursor_{0};
  endpoint endpoints_[replica_count] = {
      {minimal_breaker(), {8001}}, {minimal_breaker(), {8002}}, {minimal_breaker(), {8003}}};
};

/// The floor of least loaded by power of two choices: two distinct random
/// picks, the one with fewer calls in flight, its count up for the call.
class hand_written_p2c {
 public:
  template <class F>
  int call(F&& f) {
    const keel::thread_local_random random;
    const std::size_t a = draw_below(random.uniform(), replica_count);
    std::size_t b = draw_below(random.uniform(), replica_count - 1);
    if (b >= a) ++b;
    const std::size_t i = endpoints_[b].pending.load(std::memory_order_relaxed) <
                                  endpoints_[a].pending.load(std::memory_order_relaxed)
                              ? b
                              : a;
    endpoint& e = endpoints_[i];
    e.pending.fetch_add(1, std::memory_order_relaxed);
    const int r = f(e.where);
    e.pending.fetch_sub(1, std::memory_order_relaxed);
    return r;
  }

 private:
  struct alignas(64) endpoint {
    std::atomic<std::uint32_t> pending{0};
    replica where;
  };
  endpoint endpoints_[replica_count] = {{0, {8001}}, {0, {8002}}, {0, {8003}}};
};

/// The floor of PeakEWMA (Finagle): P2C by cost * (pending + 1), the cost
/// decaying with tau = 10 s, a clock read to pick (and start the call) and
/// one when it ends, the cost updated with plain relaxed stores (a lost
/// update under a race is accepted).
class hand_written_peak_ewma {
 public:
  template <class F>
  int call(F&& f) {
    const keel::thread_local_random random;
    const std::int64_t start = now();
    const std::size_t a = draw_below(random.uniform(), replica_count);
    std::size_t b = draw_below(random.uniform(), replica_count - 1);
    if (b >= a) ++b;
    const std::size_t i = load(endpoints_[b], start) < load(endpoints_[a], start) ? b : a;
    endpoint& e = endpoints_[i];
    e.pending.fetch_add(1, std::memory_order_relaxed);
    const int r = f(e.where);
    const std::int64_t end = now();
    const double rtt = static_cast<double>(end - start);
    const double cost = e.cost.load(std::memory_order_relaxed);
    const double w = decay(e.stamp.load(std::memory_order_relaxed), end);
    e.cost.store(rtt > cost ? rtt : cost * w + rtt * (1.0 - w), std::memory_order_relaxed);
    e.stamp.store(end, std::memory_order_relaxed);
    e.pending.fetch_sub(1, std::memory_order_relaxed);
    return r;
  }

 private:
  struct alignas(64) endpoint {
    std::atomic<std::uint32_t> pending{0};
    std::atomic<double> cost{0.0};
    std::atomic<std::int64_t> stamp{0};
    replica where;
  };
  static constexpr double tau_ns = 10e9;
  static constexpr double penalty = static_cast<double>(INT64_MAX >> 16);
  static std::int64_t now() noexcept {
    return std::chrono::steady_clock::now().time_since_epoch().count();
  }
  static double decay(std::int64_t stamp, std::int64_t t) noexcept {
    return t > stamp ? std::exp(-static_cast<double>(t - stamp) / tau_ns) : 1.0;
  }
  static double load(const endpoint& e, std::int64_t t) noexcept {
    const double pending = e.pending.load(std::memory_order_relaxed);
    const double cost =
        e.cost.load(std::memory_order_relaxed) * decay(e.stamp.load(std::memory_order_relaxed), t);
    return cost == 0.0 && pending != 0.0 ? penalty + pending : cost * (pending + 1.0);
  }
  endpoint endpoints_[replica_count] = {
      {0, 0.0, 0, {8001}}, {0, 0.0, 0, {8002}}, {0, 0.0, 0, {8003}}};
};

}  // namespace keel_bench

#endif  // KEEL_BENCHMARKS_POOL_SUPPORT_HPP_INCLUDED

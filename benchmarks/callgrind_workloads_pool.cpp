// SPDX-License-Identifier: BSL-1.0
// The replica pool's workloads of keel_callgrind_workloads (see
// callgrind_workloads.cpp for how they are run), in a translation unit of
// their own so that they do not move GCC's inlining of the others.
#include <keel/failover/endpoint_pool.hpp>

#include "pool_support.hpp"

namespace {

using keel_bench::keep;
using keel_bench::replica;

template <class Floor>
bool floor_calls(int n) {
  static Floor floor;
  int x = 0;
  for (int i = 0; i < n; ++i) {
    x = floor.call([&](const replica& r) { return keel_bench::call_replica(r, x); });
    keep(x);
  }
  return true;
}

template <class Pool>
bool pool_calls(const Pool& pool, int n) {
  int x = 0;
  for (int i = 0; i < n; ++i) {
    auto r = pool.try_execute([&](const keel::context& ctx) {
      return keel_bench::call_replica(*ctx.target().get<replica>(), x);
    });
    if (r.has_value()) x = r.value();
    keep(x);
  }
  return pool.status(0).in_flight == 0 && pool.usable_count() == keel_bench::replica_count;
}

}  // namespace

bool keel_cg_hand_written_rr_breaker(int n) {
  return floor_calls<keel_bench::hand_written_rr_breakers>(n);
}
bool keel_cg_pool_rr_breaker(int n) {
  static const keel_bench::rr_breaker_pool pool(keel_bench::three_replicas());
  return pool_calls(pool, n);
}
bool keel_cg_hand_written_p2c(int n) { return floor_calls<keel_bench::hand_written_p2c>(n); }
bool keel_cg_pool_least_loaded(int n) {
  static const keel_bench::plain_pool pool(keel_bench::three_replicas(),
                                           {.strategy = keel::balance::least_loaded});
  return pool_calls(pool, n);
}
bool keel_cg_hand_written_peak_ewma(int n) {
  return floor_calls<keel_bench::hand_written_peak_ewma>(n);
}
bool keel_cg_pool_peak_ewma(int n) {
  static const keel_bench::plain_pool pool(keel_bench::three_replicas(),
                                           {.strategy = keel::balance::peak_ewma});
  return pool_calls(pool, n);
}

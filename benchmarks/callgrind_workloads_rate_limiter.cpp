// SPDX-License-Identifier: BSL-1.0
// The rate limiter's workloads of keel_callgrind_workloads (see
// callgrind_workloads.cpp for how they are run), in a translation unit of
// their own so that they do not move GCC's inlining of the others.
#include <keel/admission/rate_limiter.hpp>

#include "rate_limiter_support.hpp"
#include "workload_support.hpp"

using keel_bench::keep;

bool keel_cg_hand_written_gcra(int n) {
  static keel_bench::hand_written_gcra floor;
  bool all = true;
  for (int i = 0; i < n; ++i) {
    bool ok = floor.try_acquire();
    keep(ok);
    all = all && ok;
  }
  return all;
}

bool keel_cg_gcra_try_acquire(int n) {
  static keel::gcra_limit limit(keel_bench::fast_limit);
  const keel::steady_clock clock;
  bool all = true;
  for (int i = 0; i < n; ++i) {
    bool ok = limit.try_acquire(1, clock.now()).admitted;
    keep(ok);
    all = all && ok;
  }
  return all;
}

bool keel_cg_rate_limiter(int n) {
  static const keel::rate_limiter limiter(keel_bench::fast_limit);
  int x = 0;
  bool all = true;
  for (int i = 0; i < n; ++i) {
    auto r = limiter.try_execute([&] { return keel_bench::work(x); });
    all = all && r.has_value();
    if (r.has_value()) x = r.value();
    keep(x);
  }
  return all;
}

bool keel_cg_rate_limiter_reserve_settle(int n) {
  static const keel::rate_limiter limiter(keel_bench::fast_limit);
  bool all = true;
  for (int i = 0; i < n; ++i) {
    auto r = limiter.reserve(4);
    bool ok = r.admitted();
    r.settle(2);
    keep(ok);
    all = all && ok;
  }
  return all;
}

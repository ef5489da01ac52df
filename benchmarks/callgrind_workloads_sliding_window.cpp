// SPDX-License-Identifier: BSL-1.0
// The sliding window's workloads of keel_callgrind_workloads (see
// callgrind_workloads.cpp for how they are run), in a translation unit of
// their own so that they do not move GCC's inlining of the others. Their
// floor is hand_written_gcra.
#include <keel/admission/sliding_window_limit.hpp>

#include "rate_limiter_support.hpp"
#include "workload_support.hpp"

using keel_bench::keep;

bool keel_cg_sliding_window_try_acquire(int n) {
  static keel::sliding_window_limit limit(keel_bench::fast_window);
  const keel::steady_clock clock;
  bool all = true;
  for (int i = 0; i < n; ++i) {
    bool ok = limit.try_acquire(1, clock.now()).admitted;
    keep(ok);
    all = all && ok;
  }
  return all;
}

bool keel_cg_sliding_window_acquire_settle(int n) {
  static keel::sliding_window_limit limit(keel_bench::fast_window);
  const keel::steady_clock clock;
  bool all = true;
  for (int i = 0; i < n; ++i) {
    const auto d = limit.try_acquire(4, clock.now());
    bool ok = d.admitted;
    limit.settle(d.ticket, 4, 2, clock.now());
    keep(ok);
    all = all && ok;
  }
  return all;
}

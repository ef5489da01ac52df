// SPDX-License-Identifier: BSL-1.0
// The adaptive limiter's and throttle's workloads of keel_callgrind_workloads
// (see callgrind_workloads.cpp), in a translation unit of their own so that
// they do not move GCC's inlining of the others.
#include <keel/admission.hpp>

#include "adaptive_support.hpp"

namespace {

using keel_bench::keep;

template <class Floor>
bool floor_calls(int n) {
  static Floor floor;
  int x = 0;
  for (int i = 0; i < n; ++i) {
    x = floor.call([&] { return keel_bench::work(x); });
    keep(x);
  }
  return x == n;
}

template <class Policy>
bool policy_calls(const Policy& policy, int n) {
  int x = 0;
  for (int i = 0; i < n; ++i) {
    auto r = policy.try_execute([&] { return keel_bench::work(x); });
    if (r.has_value()) x = r.value();
    keep(x);
  }
  return x == n;
}

}  // namespace

bool keel_cg_hand_written_limiter(int n) {
  return floor_calls<keel_bench::hand_written_limiter>(n);
}
bool keel_cg_adaptive_limiter(int n) {
  static const keel_bench::adaptive_limiter_t limiter(keel_bench::roomy_aimd());
  return policy_calls(limiter, n) && limiter.in_flight() == 0;
}
bool keel_cg_hand_written_throttle(int n) {
  return floor_calls<keel_bench::hand_written_throttle>(n);
}
bool keel_cg_hand_written_counting_throttle(int n) {
  return floor_calls<keel_bench::hand_written_counting_throttle<keel::steady_clock>>(n);
}
bool keel_cg_adaptive_throttle(int n) {
  static const keel_bench::adaptive_throttle_t throttle;
  return policy_calls(throttle, n) && throttle.probability() == 0.0;
}

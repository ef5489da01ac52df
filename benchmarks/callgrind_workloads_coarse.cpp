// SPDX-License-Identifier: BSL-1.0
// The coarse-clock workloads of keel_callgrind_workloads (see
// callgrind_workloads.cpp for how they are run), in a translation unit of
// their own: GCC's inlining decisions are per translation unit, and adding
// these next to the others moved retry's by a dozen instructions.
#include <keel/circuit_breaker.hpp>
#include <keel/core/coarse_clock.hpp>

#include "workload_support.hpp"

namespace {

using keel_bench::keep;

template <class Policy>
void success_calls(const Policy& p, int n) {
  int x = 0;
  for (int i = 0; i < n; ++i) {
    auto r = p.try_execute([&] { return keel_bench::work(x); });
    if (r.has_value()) x = r.value();
    keep(x);
  }
}

// The floors of the clock-bound rules on the coarse clock, as in
// bench_circuit_breaker.cpp: the hand-written breaker plus the clock reads the
// rule needs (one for a time window, two to time a call).
template <int Reads>
bool hand_written_breaker_reading_coarse_clock(int n) {
  static keel_bench::minimal_breaker breaker;
  const keel::coarse_steady_clock clock;
  int x = 0;
  for (int i = 0; i < n; ++i) {
    if (breaker.allow()) {
      keel::time_point start{};
      if constexpr (Reads == 2) start = clock.now();
      x = keel_bench::work(x);
      keel::time_point end = clock.now();
      keep(start);
      keep(end);
      breaker.on_success();
    }
    keep(x);
  }
  return true;
}

}  // namespace

bool keel_cg_hand_written_breaker_one_coarse_read(int n) {
  return hand_written_breaker_reading_coarse_clock<1>(n);
}

bool keel_cg_hand_written_breaker_two_coarse_reads(int n) {
  return hand_written_breaker_reading_coarse_clock<2>(n);
}

bool keel_cg_breaker_ratio_time_coarse(int n) {
  static const auto b =
      keel::circuit_breaker{{.trip = keel::failure_ratio_time{}}}.with_environment(
          keel::coarse_environment{});
  success_calls(b, n);
  return b.state() == keel::circuit_state::closed;
}

// A count window with a slow-call rule: two clock reads per call, to time it.
bool keel_cg_breaker_slow_call_coarse(int n) {
  static const auto b = keel::circuit_breaker{{.trip = keel::failure_ratio_count{},
                                               .slow_calls = keel::slow_call_ratio{}}}
                            .with_environment(keel::coarse_environment{});
  success_calls(b, n);
  return b.state() == keel::circuit_state::closed;
}

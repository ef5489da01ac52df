// SPDX-License-Identifier: BSL-1.0
// The bulkhead's workloads of keel_callgrind_workloads (see
// callgrind_workloads.cpp for how they are run), in a translation unit of
// their own so that they do not move GCC's inlining of the others.
#include <atomic>
#include <cstdint>

#include <keel/admission/bulkhead.hpp>

#include "workload_support.hpp"

namespace {

constexpr std::uint32_t permits = 64;

// The floor: a fetch_add/fetch_sub semaphore.
std::atomic<std::uint32_t> floor_in_flight{0};

}  // namespace

bool keel_cg_hand_written_semaphore(int n) {
  int x = 0;
  for (int i = 0; i < n; ++i) {
    if (floor_in_flight.fetch_add(1, std::memory_order_acquire) >= permits) {
      floor_in_flight.fetch_sub(1, std::memory_order_relaxed);
    } else {
      x = keel_bench::work(x);
      floor_in_flight.fetch_sub(1, std::memory_order_release);
    }
    keel_bench::keep(x);
  }
  return floor_in_flight.load() == 0;
}

bool keel_cg_bulkhead(int n) {
  static const keel::bulkhead<> b({.max_concurrent = permits});
  int x = 0;
  for (int i = 0; i < n; ++i) {
    auto r = b.try_execute([&] { return keel_bench::work(x); });
    if (r.has_value()) x = r.value();
    keel_bench::keep(x);
  }
  return b.in_flight() == 0 && b.available() == permits;
}

bool keel_cg_bulkhead_rejection(int n) {
  static const keel::bulkhead<> b({.max_concurrent = 1});
  static const auto held = b.try_acquire();
  int x = 0;
  for (int i = 0; i < n; ++i) {
    auto r = b.try_execute([&] { return keel_bench::work(x); });
    if (r.has_value()) x = r.value();
    keel_bench::keep(x);
  }
  return b.in_flight() == 1 && held.held();
}

// SPDX-License-Identifier: BSL-1.0
// Compiled twice, with KEEL_SHARED_ADDER_SIDE=a and =b (see shared_adder.hpp).
#include "shared_adder.hpp"

#define KEEL_SHARED_ADDER_CAT2(x, y) x##y
#define KEEL_SHARED_ADDER_CAT(x, y) KEEL_SHARED_ADDER_CAT2(x, y)
#define KEEL_SHARED_ADDER_NAME(stem) KEEL_SHARED_ADDER_CAT(stem, KEEL_SHARED_ADDER_SIDE)

void KEEL_SHARED_ADDER_NAME(keel_shared_add_)(keel::detail::owned_counter& counter,
                                              std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) counter.add();
}

std::uint64_t KEEL_SHARED_ADDER_NAME(keel_shared_reject_)(keel::breaker_state_machine& core,
                                                          std::uint64_t n, keel::time_point now) {
  std::uint64_t rejected = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    if (!core.try_acquire(now).admitted) ++rejected;
  }
  return rejected;
}

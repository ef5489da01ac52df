// SPDX-License-Identifier: BSL-1.0
// The differential test of breaker_model_test.cpp, with the breaker started a
// few transitions before its generation leaves the state word's 27 bits (a
// test seam): the wrap then falls on every kind of transition, with permits
// of the earlier generations still held, and the breaker must agree with the
// reference model at every step all the same (late results stay late, probes
// stay exact, the generation changes exactly when the model's does).
#include <cstdint>

#include "support/breaker_model.hpp"
#include "support/catch.hpp"

namespace {

using keel_model::drive;
using keel_model::model_rule;
using keel_model::run_result;

constexpr int sequences = 400;
constexpr int steps = 240;

void run_across_wrap(model_rule rule, std::uint64_t base_seed) {
  std::uint64_t crossed = 0, late = 0;
  for (int i = 0; i < sequences; ++i) {
    const std::uint64_t seed = base_seed + static_cast<std::uint64_t>(i);
    const auto wrap_in = static_cast<std::uint32_t>(1 + seed % 12);
    INFO("rule " << keel_model::name(rule) << ", seed " << seed << " (reproduce: drive(" << seed
                 << ", model_rule::" << keel_model::name(rule) << ", " << steps << ", " << wrap_in
                 << "))");
    const run_result res = drive(seed, rule, steps, wrap_in);
    crossed += res.transitions >= wrap_in ? 1 : 0;
    late += res.paths.late;
    if (!res.mismatch.empty()) {
      FAIL_CHECK(res.mismatch);
      break;
    }
  }
  // Most sequences cross the wrap, many with late results.
  CHECK(crossed > sequences / 2);
  CHECK(late > 100u);
}

}  // namespace

TEST_CASE("breaker model: consecutive_failures across the wrap of the generation",
          "[reliability][circuit_breaker][model][generation]") {
  run_across_wrap(model_rule::consecutive, 6'000'000);
}

TEST_CASE("breaker model: failures_in_period across the wrap of the generation",
          "[reliability][circuit_breaker][model][generation]") {
  run_across_wrap(model_rule::in_period, 7'000'000);
}

TEST_CASE("breaker model: failure_ratio_count across the wrap of the generation",
          "[reliability][circuit_breaker][model][generation]") {
  run_across_wrap(model_rule::ratio_count, 8'000'000);
}

TEST_CASE("breaker model: failure_ratio_time across the wrap of the generation",
          "[reliability][circuit_breaker][model][generation]") {
  run_across_wrap(model_rule::ratio_time, 9'000'000);
}

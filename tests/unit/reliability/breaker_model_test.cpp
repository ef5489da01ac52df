// SPDX-License-Identifier: BSL-1.0
// Differential test of the circuit breaker: seeded random sequences of
// acquisitions, results (success, failure with or without a retry-after hint,
// release), virtual time advances and manual isolate/disable/reset are driven
// into the real keel::circuit_breaker (two-step API, virtual time) and into a
// small reference model written from docs/circuit_breaker.md (the model and
// the driver: tests/fuzz/breaker_model.hpp, shared with the fuzz target).
// After every operation the admission decision, the rejection code and
// retry_after, the state, the counters and the window must agree.
#include "fuzz/breaker_model.hpp"

#include <cstdint>

#include "support/catch.hpp"

namespace {

using keel_model::drive;
using keel_model::model_rule;
using keel_model::run_result;

struct totals {
  std::uint64_t operations = 0, transitions = 0, rounds = 0;
};

void run_many(model_rule rule, std::uint64_t base_seed, int sequences, int steps, totals& t) {
  for (int i = 0; i < sequences; ++i) {
    const std::uint64_t seed = base_seed + static_cast<std::uint64_t>(i);
    INFO("seed " << seed << " (reproduce: drive(" << seed << ", rule, " << steps << "))");
    const run_result res = drive(seed, rule, steps);
    t.operations += res.operations;
    t.transitions += res.transitions;
    t.rounds += res.half_open_rounds;
    if (!res.mismatch.empty()) {
      FAIL_CHECK(res.mismatch);
      return;
    }
  }
}

}  // namespace

TEST_CASE("breaker model: consecutive_failures agrees with the reference model at every step",
          "[reliability][circuit_breaker][model]") {
  totals t;
  run_many(model_rule::consecutive, 1'000'000, 2500, 240, t);
  INFO("operations " << t.operations << ", transitions " << t.transitions << ", rounds "
                     << t.rounds);
  CHECK(t.operations == 2500u * 240u);
  // A sequence generator that never leaves closed would compare nothing interesting.
  CHECK(t.rounds > 8'000u);
  CHECK(t.transitions > 30'000u);
  WARN("consecutive: " << t.operations << " operations compared, " << t.transitions
                       << " transitions, " << t.rounds << " half-open rounds");
}

TEST_CASE("breaker model: failure_ratio_count agrees with the reference model at every step",
          "[reliability][circuit_breaker][model]") {
  totals t;
  run_many(model_rule::ratio_count, 2'000'000, 2500, 240, t);
  INFO("operations " << t.operations << ", transitions " << t.transitions << ", rounds "
                     << t.rounds);
  CHECK(t.operations == 2500u * 240u);
  CHECK(t.rounds > 8'000u);
  CHECK(t.transitions > 30'000u);
  WARN("ratio_count: " << t.operations << " operations compared, " << t.transitions
                       << " transitions, " << t.rounds << " half-open rounds");
}

// SPDX-License-Identifier: BSL-1.0
// Differential test of the circuit breaker: seeded random sequences of
// acquisitions, results (success, failure with or without a retry-after hint,
// each with a duration for the slow-call rule; outcomes classified by the
// breaker's predicates: handled, unhandled, ignored, cancelled; release),
// try_execute calls that take virtual time, virtual time advances and manual
// isolate/disable/reset are driven into the real keel::circuit_breaker
// (two-step API and try_execute, virtual time) and into a small reference
// model written from docs/circuit_breaker.md (the model and the driver:
// tests/support/breaker_model.hpp, shared with the fuzz target). After every
// operation the admission decision, the rejection code and retry_after, the
// events, the state, the counters and the window must agree. Every trip rule
// is covered, the ratio rules with and without a slow-call rule, with
// open-duration growth, hints and every half-open setting drawn per sequence.
#include "support/breaker_model.hpp"

#include <cstdint>

#include "support/catch.hpp"

namespace {

using keel_model::drive;
using keel_model::model_rule;
using keel_model::run_result;

struct totals {
  std::uint64_t operations = 0, transitions = 0, rounds = 0, trips = 0;
  keel_model::model::tally paths;

  totals& operator+=(const totals& o) {
    operations += o.operations;
    transitions += o.transitions;
    rounds += o.rounds;
    trips += o.trips;
    paths += o.paths;
    return *this;
  }
};

// The figures of every test case, for the last one to print.
totals all;

constexpr int sequences = 2000;
constexpr int steps = 240;

totals run_many(model_rule rule, std::uint64_t base_seed) {
  totals t;
  for (int i = 0; i < sequences; ++i) {
    const std::uint64_t seed = base_seed + static_cast<std::uint64_t>(i);
    INFO("rule " << keel_model::name(rule) << ", seed " << seed << " (reproduce: drive(" << seed
                 << ", model_rule::" << keel_model::name(rule) << ", " << steps << "))");
    const run_result res = drive(seed, rule, steps);
    t.operations += res.operations;
    t.transitions += res.transitions;
    t.rounds += res.half_open_rounds;
    t.trips += res.trips;
    t.paths += res.paths;
    if (!res.mismatch.empty()) {
      FAIL_CHECK(res.mismatch);
      break;
    }
  }
  all += t;
  const auto& p = t.paths;
  WARN(keel_model::name(rule) << ": " << t.operations << " operations compared, " << t.transitions
                              << " transitions, " << t.rounds << " half-open rounds ("
                              << p.new_rounds << " after max_wait), " << t.trips
                              << " trips (by rule " << p.opened_by[0] + p.opened_by[1] << " / "
                              << p.opened_by[2] << " / " << p.opened_by[3] << ", probe "
                              << p.opened_by[4] << "; grown " << p.grown << ", capped " << p.capped
                              << ", hint " << p.hinted << ", growth reset " << p.growth_resets
                              << "), " << p.late << " late, " << p.ignored << " ignored, " << p.slow
                              << " slow, " << p.expired << " expiries");
  return t;
}

// A sequence generator that never leaves closed would compare nothing
// interesting: each path of the docs must have been taken many times.
void check_coverage(const totals& t, model_rule rule) {
  const auto& p = t.paths;
  CHECK(t.operations == std::uint64_t{sequences} * steps);
  CHECK(t.rounds > 4'000u);
  CHECK(p.new_rounds > 200u);
  CHECK(p.opened_by[4] > 1'000u);  // probe_failed
  CHECK(p.grown > 300u);
  CHECK(p.capped > 100u);
  CHECK(p.hinted > 300u);
  CHECK(p.growth_resets > 20u);
  CHECK(p.late > 1'000u);
  CHECK(p.ignored > 1'000u);
  switch (rule) {
    case model_rule::consecutive:
      CHECK(p.opened_by[0] > 2'000u);
      break;
    case model_rule::in_period:
      CHECK(p.opened_by[1] > 2'000u);
      CHECK(p.expired > 1'000u);
      break;
    case model_rule::ratio_count:
      CHECK(p.opened_by[2] > 2'000u);
      CHECK(p.opened_by[3] > 300u);
      CHECK(p.slow > 1'000u);
      break;
    case model_rule::ratio_time:
      CHECK(p.opened_by[2] > 2'000u);
      CHECK(p.opened_by[3] > 300u);
      CHECK(p.slow > 1'000u);
      CHECK(p.expired > 1'000u);
      break;
  }
}

}  // namespace

TEST_CASE("breaker model: consecutive_failures agrees with the reference model at every step",
          "[reliability][circuit_breaker][model]") {
  check_coverage(run_many(model_rule::consecutive, 1'000'000), model_rule::consecutive);
}

TEST_CASE("breaker model: failures_in_period agrees with the reference model at every step",
          "[reliability][circuit_breaker][model]") {
  check_coverage(run_many(model_rule::in_period, 3'000'000), model_rule::in_period);
}

TEST_CASE("breaker model: failure_ratio_count agrees with the reference model at every step",
          "[reliability][circuit_breaker][model]") {
  check_coverage(run_many(model_rule::ratio_count, 2'000'000), model_rule::ratio_count);
}

TEST_CASE("breaker model: failure_ratio_time agrees with the reference model at every step",
          "[reliability][circuit_breaker][model]") {
  check_coverage(run_many(model_rule::ratio_time, 4'000'000), model_rule::ratio_time);
}

TEST_CASE("breaker model: the model's option bounds agree with validate() and the constructor",
          "[reliability][circuit_breaker][model]") {
  // Options with extreme fields, valid or not, for every rule: the model's
  // reading of the documented bounds, validate() and the constructor agree.
  std::uint64_t invalid = 0;
  for (std::uint64_t seed = 5'000'000; seed < 5'002'000; ++seed) {
    keel_model::rng r{seed};
    const auto rule = static_cast<model_rule>(seed % 4);
    const keel::circuit_breaker_options o = keel_model::draw_options(r, rule, true);
    INFO("seed " << seed);
    const run_result res = drive(r, seed, o, 20);
    invalid += res.valid_options ? 0 : 1;
    all.operations += res.operations;
    if (!res.mismatch.empty()) {
      FAIL_CHECK(res.mismatch);
      break;
    }
  }
  CHECK(invalid > 200u);
  CHECK(invalid < 1'500u);
  WARN("options: " << invalid << " of 2000 extreme option sets refused as the model expects");
  WARN("all rules: " << all.operations << " operations compared, " << all.transitions
                     << " transitions, " << all.trips << " trips, " << all.rounds
                     << " half-open rounds");
}

// SPDX-License-Identifier: BSL-1.0
#include <keel/circuit_breaker.hpp>

#include "breaker_test_support.hpp"
#include "support/catch.hpp"

using namespace cb_test;
using keel::circuit_state;

TEST_CASE("circuit_breaker: two-step use with try_acquire and record_success / record_failure",
          "[circuit_breaker][two_step]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(consecutive(2, 10s), env);
  {
    auto permit = b.try_acquire();
    REQUIRE(permit);
    permit.record_failure();
    permit.record_success();  // a second record on the same permit is a no-op
  }
  CHECK(b.metrics().window_failures == 1);
  {
    auto permit = b.try_acquire();
    permit.record_failure();
  }
  CHECK(b.state() == circuit_state::open);
  auto rejected = b.try_acquire();
  CHECK(!rejected);
  CHECK(rejected.rejection_code() == keel::errc::circuit_open);
  CHECK(rejected.retry_after() == std::optional<keel::duration>(10s));
  CHECK(rejected.rejection().code == keel::errc::circuit_open);
  rejected.record_failure();  // recording a rejection does nothing
  CHECK(b.metrics().failures == 2);
}

TEST_CASE("circuit_breaker: permit.record(outcome) classifies with the breaker's predicates",
          "[circuit_breaker][two_step]") {
  keel::testing::virtual_environment env;
  auto b = keel::circuit_breaker{{.trip = keel::consecutive_failures{.threshold = 1}}}
               .with_environment(env)
               .ignore(keel::on::error(
                   [](std::error_code e) { return e == std::errc::no_such_file_or_directory; }));
  {
    auto permit = b.try_acquire();
    permit.record(keel::outcome<result>(bad(std::errc::no_such_file_or_directory)));
  }
  CHECK(b.state() == circuit_state::closed);
  {
    auto permit = b.try_acquire();
    permit.record(keel::outcome<result>(bad()));
  }
  CHECK(b.state() == circuit_state::open);
}

TEST_CASE("circuit_breaker: a permit can be moved; only the last owner releases",
          "[circuit_breaker][two_step]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(consecutive(1, 1s), env);
  trip_and_wait(b, env);
  auto p1 = b.try_acquire();
  REQUIRE(p1.is_probe());
  auto p2 = std::move(p1);
  CHECK(!b.try_acquire());
  p2.record_success();
  CHECK(b.state() == circuit_state::closed);
}

TEST_CASE("breaker_state_machine: usable by hand with explicit times", "[circuit_breaker][core]") {
  keel::breaker_state_machine core(
      {.trip = keel::consecutive_failures{.threshold = 2}, .open_duration = 5s});
  const keel::time_point t0{};
  auto a = core.try_acquire(t0);
  REQUIRE(a);
  CHECK(!core.record(a, keel::call_result::failure, t0));
  auto b = core.try_acquire(t0 + 1s);
  const auto opened = core.record(b, keel::call_result::failure, t0 + 1s);
  REQUIRE(opened);
  CHECK(opened->to == circuit_state::open);
  CHECK(opened->at == t0 + 1s);
  CHECK(opened->open_for == 5s);
  const auto rejected = core.try_acquire(t0 + 2s);
  CHECK(!rejected);
  CHECK(rejected.retry_after == std::optional<keel::duration>(4s));
  auto probe = core.try_acquire(t0 + 6s);
  REQUIRE(probe.is_probe());
  REQUIRE(probe.transition());
  CHECK(probe.transition()->to == circuit_state::half_open);
  CHECK(probe.transition()->from == circuit_state::open);
  CHECK(probe.transition()->at == t0 + 6s);
  const auto closed = core.record(probe, keel::call_result::success, t0 + 7s);
  REQUIRE(closed);
  CHECK(closed->to == circuit_state::closed);
  CHECK(core.metrics(t0 + 7s).last_transition == t0 + 7s);
}

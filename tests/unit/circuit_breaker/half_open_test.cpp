// SPDX-License-Identifier: BSL-1.0
#include <vector>

#include <keel/circuit_breaker.hpp>

#include "breaker_test_support.hpp"
#include "support/catch.hpp"

using namespace cb_test;
using keel::circuit_state;

namespace {

keel::circuit_breaker_options probes(int permitted, int threshold = 0) {
  return {.trip = keel::consecutive_failures{.threshold = 1},
          .open_duration = 10s,
          .permitted_probes = permitted,
          .success_threshold = threshold};
}

}  // namespace

TEST_CASE(
    "circuit_breaker: half-open lets exactly one probe through by default and rejects the rest at "
    "once",
    "[circuit_breaker][half_open]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker(probes(1), env, log);
  trip_and_wait(b, env);
  auto probe = b.try_acquire();
  REQUIRE(probe);
  CHECK(probe.is_probe());
  for (int i = 0; i < 5; ++i) {
    auto other = b.try_acquire();
    CHECK(!other);
    CHECK(other.rejection_code() == keel::errc::circuit_open);
    CHECK(other.retry_after() ==
          std::optional<keel::duration>(30s));  // until max_wait_in_half_open
  }
  CHECK(b.metrics().probes_admitted == 1);
  probe.record_success();
  CHECK(b.state() == circuit_state::closed);
  CHECK(log.count<keel::call_rejected>() == 5);
  CHECK(log.all<keel::call_rejected>()[0].state == circuit_state::half_open);
}

TEST_CASE("circuit_breaker: N probes close after success_threshold successes",
          "[circuit_breaker][half_open]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker(probes(3, 2), env, log);
  trip_and_wait(b, env);
  auto p1 = b.try_acquire();
  auto p2 = b.try_acquire();
  auto p3 = b.try_acquire();
  auto p4 = b.try_acquire();
  CHECK((p1 && p2 && p3));
  CHECK(!p4);
  p1.record_failure();  // 1 failure allowed: 3 - 2
  CHECK(b.state() == circuit_state::half_open);
  p2.record_success();
  CHECK(b.state() == circuit_state::half_open);
  env.advance(1s);
  p3.record_success();
  CHECK(b.state() == circuit_state::closed);
  REQUIRE(log.count<keel::circuit_closed>() == 1);
  CHECK(log.all<keel::circuit_closed>()[0].at == tp(10s + 1s));
}

TEST_CASE("circuit_breaker: half-open reopens as soon as closing has become impossible",
          "[circuit_breaker][half_open]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker(probes(3, 2), env, log);
  trip_and_wait(b, env);
  auto p1 = b.try_acquire();
  auto p2 = b.try_acquire();
  auto p3 = b.try_acquire();
  p1.record_failure();
  CHECK(b.state() == circuit_state::half_open);
  p2.record_failure();  // 2 failures of 3 probes: 2 successes are no longer possible
  CHECK(b.state() == circuit_state::open);
  p3.record_success();  // late: belongs to the half-open round that is over
  CHECK(b.state() == circuit_state::open);
  const auto opened = log.all<keel::circuit_opened>();
  REQUIRE(opened.size() == 2);
  CHECK(opened[1].reason == keel::open_reason::probe_failed);
  CHECK(opened[1].failure_ratio == 1.0);
}

TEST_CASE("circuit_breaker: success_threshold defaults to permitted_probes",
          "[circuit_breaker][half_open]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(probes(2), env);
  trip_and_wait(b, env);
  auto p1 = b.try_acquire();
  auto p2 = b.try_acquire();
  p1.record_success();
  CHECK(b.state() == circuit_state::half_open);
  p2.record_failure();
  CHECK(b.state() == circuit_state::open);
}

TEST_CASE("circuit_breaker: an abandoned or ignored probe frees its slot for the next caller",
          "[circuit_breaker][half_open]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(probes(1), env);
  trip_and_wait(b, env);
  {
    auto probe = b.try_acquire();
    REQUIRE(probe);
    CHECK(!b.try_acquire());
  }  // dropped without a result
  CHECK(b.state() == circuit_state::half_open);
  CHECK(b.metrics().probes_admitted == 0);
  // A cancelled probe through run() releases too.
  CHECK(b.try_execute([] { return bad(std::errc::operation_canceled); }).has_error_value());
  CHECK(b.metrics().probes_admitted == 0);
  auto probe = b.try_acquire();
  REQUIRE(probe);
  probe.record_success();
  CHECK(b.state() == circuit_state::closed);
}

TEST_CASE(
    "circuit_breaker: a probe that never reports back stops blocking after max_wait_in_half_open",
    "[circuit_breaker][half_open]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto o = probes(1);
  o.max_wait_in_half_open = 20s;
  auto b = make_breaker(o, env, log);
  trip_and_wait(b, env);  // t = 10 s
  auto hung = b.try_acquire();
  REQUIRE(hung);
  env.advance(20s - 1ns);
  auto early = b.try_acquire();
  CHECK(!early);
  CHECK(early.retry_after() == std::optional<keel::duration>(1ns));
  env.advance(1ns);  // t = 30 s: the round is abandoned, this call starts a new one
  auto fresh = b.try_acquire();
  REQUIRE(fresh);
  CHECK(fresh.is_probe());
  CHECK(log.count<keel::circuit_half_opened>() == 2);
  hung.record_failure();  // late: from the abandoned round; must not reopen
  CHECK(b.state() == circuit_state::half_open);
  fresh.record_success();
  CHECK(b.state() == circuit_state::closed);
}

TEST_CASE("circuit_breaker: late results from before a transition never count toward the new state",
          "[circuit_breaker][generation]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker(consecutive(2, 10s), env, log);
  // Two calls admitted while closed; they finish much later.
  auto slow1 = b.try_acquire();
  auto slow2 = b.try_acquire();
  auto slow3 = b.try_acquire();
  CHECK(fail(b).has_error_value());
  CHECK(fail(b).has_error_value());
  CHECK(b.state() == circuit_state::open);
  slow1.record_failure();  // late failure while open: no effect, not re-opened, open time not
                           // extended
  CHECK(b.metrics().retry_after == std::optional<keel::duration>(10s));
  env.advance(10s);
  auto probe = b.try_acquire();
  REQUIRE(probe.is_probe());
  slow2.record_failure();  // late failure in half-open: must not reopen
  CHECK(b.state() == circuit_state::half_open);
  probe.record_success();
  CHECK(b.state() == circuit_state::closed);
  slow3.record_failure();  // late failure in the new closed state: not counted
  CHECK(b.metrics().window_failures == 0);
  CHECK(fail(b).has_error_value());
  CHECK(b.state() == circuit_state::closed);  // one failure of the new generation only
  CHECK(log.count<keel::circuit_opened>() == 1);
}

TEST_CASE("circuit_breaker: a slow probe counts as a failed probe when a slow-call rule is set",
          "[circuit_breaker][half_open]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(
      {.trip = keel::failure_ratio_count{.window_size = 2, .minimum_calls = 1, .ratio = 1.0},
       .slow_calls = keel::slow_call_ratio{.threshold = 1s, .ratio = 1.0},
       .open_duration = 10s},
      env);
  trip_and_wait(b, env);
  auto probe = b.try_acquire();
  REQUIRE(probe);
  probe.record_success(2s);
  CHECK(b.state() == circuit_state::open);
}

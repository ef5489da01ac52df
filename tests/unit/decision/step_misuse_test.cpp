// SPDX-License-Identifier: BSL-1.0
// A driver of the step APIs that asks out of turn: once a call is over, the
// decision cores change nothing (no write past the call's frame, no counter
// counted twice, no admission used twice).
#include <stdexcept>

#include <keel/circuit_breaker.hpp>
#include <keel/fallback.hpp>
#include <keel/retry.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

namespace {
keel::outcome<int> failed(const char* what) {
  return keel::outcome<int>::from_exception(std::make_exception_ptr(std::runtime_error(what)));
}
}  // namespace

TEST_CASE("fallback step API: decide() after done answers done and writes nothing",
          "[decision][fallback][regression]") {
  const auto chain = keel::fallback(keel::alternative([]() -> int { throw 1; }));
  keel::context ctx;
  auto call = chain.begin<int>();
  keel::outcome<int> o = failed("primary");
  const keel::fallback_decision first = chain.decide(o, call, ctx);
  REQUIRE(first.again());
  CHECK(call.failures() == 1);
  o = failed("alternative");
  const keel::fallback_decision second = chain.decide(o, call, ctx);
  CHECK_FALSE(second.again());
  REQUIRE(o.is(keel::errc::all_fallbacks_failed));
  CHECK(o.causes().size() == 2);
  CHECK(call.failures() == 2);
  // Out of turn: no third slot exists. Before, this wrote past the frame.
  for (int i = 0; i < 3; ++i) {
    keel::outcome<int> again = failed("again");
    CHECK_FALSE(chain.decide(again, call, ctx).again());
    CHECK(call.failures() == 2);
    CHECK(again.has_exception());  // left as it was
  }
  chain.succeeded(call);  // after the end: nothing
}

TEST_CASE(
    "fallback step API: after succeeded() the call is over: no second fallback_used, "
    "decide() answers done and leaves the result",
    "[decision][fallback][regression]") {
  keel::counters counters;
  const auto chain = keel::fallback(keel::alternative([] { return 2; })).with_counters(counters);
  keel::context ctx;
  auto call = chain.begin<int>();
  keel::outcome<int> o = failed("primary");
  REQUIRE(chain.decide(o, call, ctx).again());
  o = keel::outcome<int>(std::in_place, 2);  // what the alternative gave
  chain.succeeded(call, ctx);
  chain.succeeded(call, ctx);  // out of turn
  CHECK(counters.count(keel::event_kind::fallback_used) == 1);
  CHECK_FALSE(chain.decide(o, call, ctx).again());
  CHECK(o.value() == 2);  // not turned into all_fallbacks_failed
  CHECK(counters.count(keel::event_kind::all_fallbacks_failed) == 0);
  CHECK(call.failures() == 1);

  auto first_try = chain.begin<int>();  // the primary succeeded: nothing to report, ever
  keel::outcome<int> result(std::in_place, 1);
  chain.succeeded(first_try, ctx);
  CHECK_FALSE(chain.decide(result, first_try, ctx).again());
  CHECK(result.value() == 1);
  CHECK(counters.count(keel::event_kind::fallback_used) == 1);
}

TEST_CASE("retry step API: a driver asking out of turn changes no counter",
          "[decision][retry][regression]") {
  keel::testing::virtual_environment env;
  keel::counters counters;
  const auto retry = keel::retry({.max_attempts = 2}).with_environment(env).with_counters(counters);
  keel::context ctx;
  auto call = retry.begin();
  keel::outcome<int> o = failed("1");
  REQUIRE(retry.decide(o, call, ctx).again());
  o = failed("2");
  CHECK_FALSE(retry.decide(o, call, ctx).again());  // max_attempts: exhausted once
  for (int i = 0; i < 4; ++i) {
    keel::outcome<int> more = failed("more");
    CHECK_FALSE(retry.decide(more, call, ctx).again());
  }
  retry.succeeded(call);       // the call is over: not a success
  retry.interrupted(o, call);  // nor a cancellation
  CHECK(counters.count<keel::retry_scheduled>() == 1);
  CHECK(counters.count<keel::retries_exhausted>() == 1);
  CHECK(counters.count<keel::retry_succeeded>() == 0);
  CHECK(counters.count<keel::retry_aborted>() == 0);
  CHECK(o.has_exception());

  // interrupted() without a decision to wait on does nothing; twice counts once.
  auto other = retry.begin();
  keel::outcome<int> p = failed("a");
  retry.interrupted(p, other);
  CHECK(p.has_exception());
  CHECK(counters.count<keel::retry_aborted>() == 0);
  REQUIRE(retry.decide(p, other, ctx).again());
  retry.interrupted(p, other);
  retry.interrupted(p, other);
  CHECK(p.is(keel::errc::cancelled));
  CHECK(counters.count<keel::retry_aborted>() == 1);
  retry.succeeded(other);
  CHECK(counters.count<keel::retry_succeeded>() == 0);
}

TEST_CASE("breaker_state_machine: an admission is used up by record() or release()",
          "[decision][circuit_breaker][regression]") {
  keel::breaker_state_machine core({.trip = keel::consecutive_failures{.threshold = 1},
                                    .open_duration = 5s,
                                    .permitted_probes = 2,
                                    .success_threshold = 2});
  keel::time_point t{};
  core.record(core.try_acquire(t), keel::call_result::failure, t);
  REQUIRE(core.state() == keel::circuit_state::open);
  t += 5s;
  keel::circuit_admission q1 = core.try_acquire(t);
  keel::circuit_admission q2 = core.try_acquire(t);
  REQUIRE(q1.is_probe());
  REQUIRE(q2.is_probe());
  // One probe recorded twice is one success: two are needed to close.
  CHECK_FALSE(core.record(q1, keel::call_result::success, t).has_value());
  CHECK_FALSE(core.record(q1, keel::call_result::success, t).has_value());
  CHECK(core.state() == keel::circuit_state::half_open);
  // Released after its record: no probe slot is freed for a third probe.
  core.release(q1);
  CHECK_FALSE(core.try_acquire(t).admitted);
  CHECK(core.record(q2, keel::call_result::success, t).has_value());
  CHECK(core.state() == keel::circuit_state::closed);
}

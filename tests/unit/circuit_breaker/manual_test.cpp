// SPDX-License-Identifier: BSL-1.0
#include <functional>
#include <memory>

#include <keel/circuit_breaker.hpp>
#include <keel/pipeline.hpp>

#include "breaker_test_support.hpp"
#include "support/catch.hpp"

using namespace cb_test;
using keel::circuit_state;

TEST_CASE("circuit_breaker: isolate() rejects with circuit_isolated until reset()",
          "[circuit_breaker][manual]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker({}, env, log);
  env.advance(3s);
  b.isolate();
  CHECK(b.state() == circuit_state::isolated);
  const auto r = succeed(b);
  REQUIRE(r.has_keel_error());
  CHECK(r.is(keel::errc::circuit_isolated));
  CHECK(!r.retry_after());
  env.advance(1h);
  CHECK(succeed(b).is(keel::errc::circuit_isolated));  // no timer, no lazy probe: stays isolated
  const result e = b.execute([] { return good(); });
  CHECK(e.error() == keel::errc::circuit_isolated);
  b.reset();
  CHECK(b.state() == circuit_state::closed);
  CHECK(succeed(b).has_value());
  const auto changes = log.all<keel::circuit_state_changed>();
  REQUIRE(changes.size() == 2);
  CHECK(changes[0].from == circuit_state::closed);
  CHECK(changes[0].to == circuit_state::isolated);
  CHECK(changes[0].at == tp(3s));
  CHECK(changes[1].to == circuit_state::closed);
  CHECK(changes[1].at == tp(3s + 1h));
  CHECK(log.count<keel::circuit_closed>() == 1);
  CHECK(b.metrics().rejections == 3);
}

TEST_CASE("circuit_breaker: metrics snapshot reports counters, window, state and retry_after",
          "[circuit_breaker][metrics]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(
      {.trip = keel::failure_ratio_count{.window_size = 10, .minimum_calls = 4, .ratio = 0.5},
       .open_duration = 20s},
      env);
  CHECK(succeed(b).has_value());
  CHECK(succeed(b).has_value());
  CHECK(fail(b).has_error_value());
  auto m = b.metrics();
  CHECK(m.state == circuit_state::closed);
  CHECK(m.window_calls == 3);
  CHECK(m.window_failures == 1);
  CHECK(m.failures == 1);
  CHECK(m.failure_ratio == Approx(1.0 / 3.0));
  CHECK(!m.retry_after);
  env.advance(2s);
  CHECK(fail(b).has_error_value());  // 2 of 4: opens at t = 2 s
  env.advance(5s);
  CHECK(succeed(b).is(keel::errc::circuit_open));
  m = b.metrics();
  CHECK(m.state == circuit_state::open);
  CHECK(m.failures == 2);
  CHECK(m.rejections == 1);
  CHECK(m.failure_ratio == 0.5);
  CHECK(m.last_transition == tp(2s));
  CHECK(m.retry_after == std::optional<keel::duration>(15s));
}

TEST_CASE("circuit_breaker: one breaker is shared by reference or shared_ptr across pipelines",
          "[circuit_breaker][pipeline]") {
  keel::testing::virtual_environment env;
  auto b = make_breaker(consecutive(2), env);
  keel::pipeline first(std::ref(b));
  keel::pipeline second(std::cref(b));
  CHECK(first.try_execute([] { return bad(); }).has_error_value());
  CHECK(second.try_execute([] { return bad(); }).has_error_value());
  CHECK(b.state() == circuit_state::open);
  CHECK(first.try_execute([] { return good(); }).is(keel::errc::circuit_open));

  auto shared = std::make_shared<keel::circuit_breaker<>>(
      keel::circuit_breaker_options{.trip = keel::consecutive_failures{.threshold = 1}});
  keel::pipeline third(shared);
  CHECK(third.try_execute([] { return bad(); }).has_error_value());
  CHECK(shared->state() == circuit_state::open);
}

TEST_CASE("circuit_breaker: a throwing listener cannot corrupt the breaker",
          "[circuit_breaker][events]") {
  struct throwing_listener {
    void on(const keel::circuit_opened&) const { throw std::runtime_error("listener broke"); }
  };
  keel::testing::virtual_environment env;
  auto b = keel::circuit_breaker{{.trip = keel::consecutive_failures{.threshold = 1}}}
               .with_environment(env)
               .with_listener(throwing_listener{});
  CHECK(fail(b).has_error_value());
  CHECK(b.state() == circuit_state::open);
}

TEST_CASE("circuit_breaker: a breaker whose listener hears nothing costs no space",
          "[circuit_breaker][size]") {
  // Handles, Ignores, Listener and the default environment are empty: only the core remains.
  CHECK(sizeof(keel::circuit_breaker<>) == sizeof(keel::breaker_state_machine));
  CHECK(sizeof(keel::circuit_breaker<keel::on::any_failure_t, keel::no_listener,
                                     keel::default_environment,
                                     keel::on::error_t<bool (*)(std::error_code)>>) ==
        sizeof(keel::breaker_state_machine) +
            64);  // a stateful predicate takes space (then alignment)
}

TEST_CASE("circuit_breaker: disabled with the consecutive rule counts the run but never trips",
          "[circuit_breaker][manual]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker(consecutive(2), env, log);
  b.disable();
  for (int i = 0; i < 10; ++i) CHECK(fail(b).has_error_value());
  CHECK(b.state() == circuit_state::disabled);
  CHECK(b.metrics().window_failures == 10);
  CHECK(b.metrics().failures == 10);
  CHECK(log.count<keel::circuit_opened>() == 0);
  REQUIRE(log.count<keel::circuit_state_changed>() == 1);
  CHECK(log.all<keel::circuit_state_changed>()[0].to == circuit_state::disabled);
}

TEST_CASE("circuit_breaker: an isolated breaker reports call_rejected with circuit_isolated",
          "[circuit_breaker][events]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker({}, env, log);
  b.isolate();
  auto p = b.try_acquire();
  CHECK(!p);
  CHECK(p.rejection_code() == keel::errc::circuit_isolated);
  CHECK(!p.retry_after());
  REQUIRE(log.count<keel::call_rejected>() == 1);
  const auto r = log.all<keel::call_rejected>()[0];
  CHECK(r.code == keel::errc::circuit_isolated);
  CHECK(r.state == circuit_state::isolated);
  CHECK(!r.retry_after);
}

TEST_CASE("circuit_breaker: events arrive in order for a full open, half-open, close cycle",
          "[circuit_breaker][events]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker(consecutive(1, 1s), env, log);
  CHECK(fail(b).has_error_value());
  CHECK(succeed(b).is(keel::errc::circuit_open));
  env.advance(1s);
  CHECK(succeed(b).has_value());
  const auto events = log.events();
  REQUIRE(events.size() == 7);
  CHECK(std::holds_alternative<keel::circuit_state_changed>(events[0]));
  CHECK(std::holds_alternative<keel::circuit_opened>(events[1]));
  CHECK(std::holds_alternative<keel::call_rejected>(events[2]));
  CHECK(std::holds_alternative<keel::circuit_state_changed>(events[3]));
  CHECK(std::holds_alternative<keel::circuit_half_opened>(events[4]));
  CHECK(std::holds_alternative<keel::circuit_state_changed>(events[5]));
  CHECK(std::holds_alternative<keel::circuit_closed>(events[6]));
  CHECK(std::get<keel::circuit_state_changed>(events[3]).from == circuit_state::open);
  CHECK(std::get<keel::circuit_state_changed>(events[5]).to == circuit_state::closed);
  CHECK(std::get<keel::circuit_closed>(events[6]).at == tp(1s));
}

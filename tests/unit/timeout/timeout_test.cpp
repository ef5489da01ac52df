// SPDX-License-Identifier: BSL-1.0
#include <chrono>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <keel/pipeline.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/scripted.hpp>
#include <keel/testing/virtual_environment.hpp>
#include <keel/timeout.hpp>

#include "support/catch.hpp"
#include "support/expected.hpp"
#include "unit/fallback/stand_in_policies.hpp"

using namespace std::chrono_literals;

namespace {

using keel::errc;
using keel::testing::step;
using venv = keel::testing::virtual_environment;

keel::time_point at(keel::duration d) { return keel::time_point{} + d; }

/// A policy that spends 100 ms of virtual time before calling on.
struct spend_100ms : keel::executable<spend_100ms> {
  venv env;
  template <class R, class Next>
  keel::outcome<R> run(Next&& next, keel::context& ctx) const {
    env.advance(100ms);
    return next(ctx);
  }
};

}  // namespace

TEST_CASE("timeout: the callable sees its deadline and remaining time", "[timeout]") {
  venv env;
  env.advance(1s);
  auto t = keel::timeout{{.timeout = 250ms}}.with_environment(env);
  keel::time_point seen_deadline{};
  keel::duration seen_remaining{};
  const int r = t.execute([&](const keel::context& ctx) {
    seen_deadline = ctx.deadline();
    env.advance(50ms);
    seen_remaining = ctx.remaining();  // read on the environment's (virtual) clock
    return 4;
  });
  CHECK(r == 4);
  CHECK(seen_deadline == at(1250ms));
  CHECK(seen_remaining == 200ms);
}

TEST_CASE("timeout: a call returning at or after its deadline becomes errc::timeout", "[timeout]") {
  venv env;
  keel::testing::recording_listener<keel::timed_out> log;
  auto t = keel::timeout{{.timeout = 100ms}}.with_environment(env).with_listener(log);

  SECTION("one nanosecond early: the value") {
    keel::testing::scripted<int> dep(env.clock(), {step<int>::returns(1).after(100ms - 1ns)});
    CHECK(t.execute(dep) == 1);
    CHECK(log.count<keel::timed_out>() == 0);
  }
  SECTION("at the deadline: timeout, value discarded") {
    keel::testing::scripted<int> dep(env.clock(), {step<int>::returns(1).after(100ms)});
    auto o = t.try_execute(dep);
    CHECK(o.is(errc::timeout));
    CHECK(o.code() == std::errc::timed_out);
    REQUIRE(log.count<keel::timed_out>() == 1);
    const auto e = log.all<keel::timed_out>()[0];
    CHECK(e.timeout == 100ms);
    CHECK(e.elapsed == 100ms);
    CHECK(e.deadline == at(100ms));
  }
  SECTION("a late exception is a timeout as well, and execute throws keel::error") {
    keel::testing::scripted<int> dep(
        env.clock(), {step<int>::throws(std::runtime_error("socket timed out")).after(150ms)});
    try {
      (void)t.execute(dep);
      FAIL("no exception");
    } catch (const keel::error& e) {
      CHECK(e.code() == errc::timeout);
      CHECK(e.code() == std::errc::timed_out);
    }
  }
  SECTION("an early exception passes unchanged") {
    keel::testing::scripted<int> dep(env.clock(),
                                     {step<int>::throws(std::runtime_error("refused")).after(5ms)});
    CHECK_THROWS_AS(t.execute(dep), std::runtime_error);
  }
}

TEST_CASE("timeout: keep_late_result keeps the late outcome", "[timeout]") {
  venv env;
  keel::counters counters;
  auto t = keel::timeout{{.timeout = 100ms, .keep_late_result = true}}
               .with_environment(env)
               .with_counters(counters);
  keel::testing::scripted<int> dep(env.clock(), {step<int>::returns(9).after(300ms)});
  CHECK(t.execute(dep) == 9);
  CHECK(counters.count<keel::late_result_kept>() == 1);
  CHECK(counters.count<keel::timed_out>() == 0);
}

TEST_CASE("timeout: expected-like results get the timeout as their error", "[timeout]") {
  venv env;
  using result = keel_test::expected<int, std::error_code>;
  auto t = keel::timeout{{.timeout = 10ms}}.with_environment(env);
  const result r = t.execute([&] {
    env.advance(20ms);
    return result(1);
  });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == errc::timeout);
}

TEST_CASE("timeout: nested deadlines, the earliest wins", "[timeout]") {
  venv env;
  keel_test::context_probe probe;
  auto outer = keel::timeout{{.timeout = 100ms}}.with_environment(env);
  auto inner_long = keel::timeout{{.timeout = 300ms}}.with_environment(env);
  auto inner_short = keel::timeout{{.timeout = 40ms}}.with_environment(env);

  SECTION("an inner timeout cannot extend the outer deadline") {
    auto p = keel::pipeline(outer, inner_long, probe);
    keel::testing::scripted<int> dep(env.clock(), {step<int>::returns(1).after(150ms)});
    auto o = p.try_execute(dep);
    CHECK(o.is(errc::timeout));
    CHECK(dep.records()[0].deadline == at(100ms));
  }
  SECTION("a shorter inner timeout tightens it") {
    auto p = keel::pipeline(outer, inner_short, probe);
    keel::testing::scripted<int> dep(env.clock(), {step<int>::returns(1).after(10ms)});
    CHECK(p.execute(dep) == 1);
    CHECK(dep.records()[0].deadline == at(40ms));
    CHECK(probe.seen()[0].deadline() == at(40ms));
  }
  SECTION("the caller's context keeps its own deadline") {
    keel::context ctx;
    auto call = [&](keel::context& c) {
      return keel::outcome<int>(c.deadline() == at(100ms) ? 1 : 0);
    };
    auto o = outer.run<int>(call, ctx);
    CHECK(o.value() == 1);
    CHECK_FALSE(ctx.has_deadline());
  }
}

TEST_CASE("timeout: a deadline that passed before the call starts refuses to call", "[timeout]") {
  venv env;
  int calls = 0;
  auto outer = keel::timeout{{.timeout = 100ms}}.with_environment(env);
  auto inner = keel::timeout{{.timeout = 50ms}}.with_environment(env);
  auto p = keel::pipeline(outer, spend_100ms{{}, env}, inner);
  auto o = p.try_execute([&] { return ++calls; });
  CHECK(o.is(errc::timeout));
  CHECK(calls == 0);
}

TEST_CASE("timeout: per attempt inside a retry, overall outside it", "[timeout]") {
  venv env;
  using retry_t = keel_test::stand_in_retry<venv>;

  SECTION("per attempt: each attempt gets 100 ms, slow attempts are retried") {
    auto p = keel::pipeline(retry_t(3, {10ms}, env),
                            keel::timeout{{.timeout = 100ms}}.with_environment(env));
    keel::testing::scripted<int> dep(
        env.clock(), {step<int>::returns(1).after(150ms), step<int>::returns(2).after(150ms),
                      step<int>::returns(3).after(20ms)});
    CHECK(p.execute(dep) == 3);
    CHECK(dep.start_times() == std::vector<keel::duration>{0ms, 160ms, 320ms});
    const auto r = dep.records();
    CHECK(r[0].deadline == at(100ms));
    CHECK(r[1].deadline == at(260ms));
    CHECK(r[2].deadline == at(420ms));
    CHECK(r[2].attempt == 3);
    CHECK(env.elapsed() == 340ms);
  }
  SECTION("overall: 250 ms for every attempt together, no sleep past the deadline") {
    auto p = keel::pipeline(keel::timeout{{.timeout = 250ms}}.with_environment(env),
                            retry_t(5, {10ms}, env));
    keel::testing::scripted<int> dep(env.clock(),
                                     {step<int>::throws(std::runtime_error("x")).after(150ms)});
    auto o = p.try_execute(dep);
    CHECK(o.is(errc::timeout));
    CHECK(dep.start_times() == std::vector<keel::duration>{0ms, 160ms});
    CHECK(dep.records()[1].deadline == at(250ms));  // the second attempt sees the overall deadline
    CHECK(env.sleeps() == std::vector<keel::duration>{10ms});
  }
}

TEST_CASE("timeout: options are validated", "[timeout]") {
  STATIC_REQUIRE_FALSE(keel::validate(keel::timeout_options{}).has_value());
  STATIC_REQUIRE(keel::validate(keel::timeout_options{.timeout = 0ms}).has_value());
  CHECK(keel::timeout{}.options().timeout == 30s);
  CHECK_FALSE(keel::timeout{}.options().keep_late_result);
  REQUIRE_THROWS_AS(keel::timeout({.timeout = -1ms}), keel::config_error);
  try {
    keel::timeout bad({.timeout = 0ns});
    FAIL("no exception");
  } catch (const keel::config_error& e) {
    CHECK(e.field() == "timeout_options.timeout");
    CHECK(std::string(e.what()) == "keel: timeout_options.timeout: must be > 0");
  }
  STATIC_REQUIRE(keel::policy<keel::timeout<>>);
}

TEST_CASE("timeout: a huge timeout saturates instead of overflowing", "[timeout]") {
  venv env;
  env.advance(1h);
  auto t = keel::timeout{{.timeout = keel::duration::max()}}.with_environment(env);
  keel::time_point seen{};
  CHECK(t.execute([&](const keel::context& c) {
    seen = c.deadline();
    return 1;
  }) == 1);
  CHECK(seen == keel::no_deadline);
}

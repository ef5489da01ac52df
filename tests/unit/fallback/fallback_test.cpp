// SPDX-License-Identifier: BSL-1.0
#include <chrono>
#include <functional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <vector>

#include <keel/fallback.hpp>
#include <keel/pipeline.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"
#include "support/expected.hpp"
#include "unit/fallback/stand_in_policies.hpp"

using namespace std::chrono_literals;

namespace {

using keel::errc;
using keel::outcome;
using log_t =
    keel::testing::recording_listener<keel::fallback_used, keel::fallback_skipped,
                                      keel::all_fallbacks_failed, keel::fallback_cancelled>;

int throw_runtime() { throw std::runtime_error("primary down"); }

std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  }
}

}  // namespace

TEST_CASE("fallback: a successful primary is returned and no alternative runs", "[fallback]") {
  int alternative_calls = 0;
  log_t log;
  auto fb = keel::fallback([&] {
              ++alternative_calls;
              return 2;
            }).with_listener(log);
  auto o = fb.try_execute([] { return 1; });
  REQUIRE(o.has_value());
  CHECK(o.value() == 1);
  CHECK(alternative_calls == 0);
  CHECK(log.events().empty());
}

TEST_CASE("fallback: alternatives run in order, each seeing the failure before it", "[fallback]") {
  std::vector<std::string> seen;
  log_t log;
  auto fb = keel::fallback(
                [&](const outcome<int>& why) -> int {
                  seen.push_back("alt0 saw " + what_of(why.exception()));
                  throw std::logic_error("alt0 down");
                },
                [&](const keel::context&, const outcome<int>& why) {
                  seen.push_back("alt1 saw " + what_of(why.exception()));
                  return 7;
                },
                [&] {
                  seen.push_back("alt2 ran");
                  return 8;
                })
                .with_listener(log);
  auto o = fb.try_execute(throw_runtime);
  REQUIRE(o.has_value());
  CHECK(o.value() == 7);
  CHECK(seen == std::vector<std::string>{"alt0 saw primary down", "alt1 saw alt0 down"});
  const auto used = log.all<keel::fallback_used>();
  REQUIRE(used.size() == 1);
  CHECK(used[0].index == 1);
  CHECK(used[0].failure.kind == keel::failure_kind::exception);
  CHECK(what_of(used[0].failure.exception) == "alt0 down");
  CHECK(log.count<keel::all_fallbacks_failed>() == 0);
}

TEST_CASE("fallback: an alternative that does not handle the failure is skipped", "[fallback]") {
  int open_circuit_calls = 0;
  log_t log;
  auto fb = keel::fallback(keel::alternative([&] {
                             ++open_circuit_calls;
                             return 1;
                           }).when(keel::on::code(errc::circuit_open)),
                           keel::alternative(2).when(keel::on::exception<std::runtime_error>))
                .with_listener(log);

  SECTION("an exception skips the circuit_open alternative") {
    auto o = fb.try_execute(throw_runtime);
    REQUIRE(o.has_value());
    CHECK(o.value() == 2);
    CHECK(open_circuit_calls == 0);
    REQUIRE(log.count<keel::fallback_skipped>() == 1);
    CHECK(log.all<keel::fallback_skipped>()[0].index == 0);
    REQUIRE(log.count<keel::fallback_used>() == 1);
    CHECK(log.all<keel::fallback_used>()[0].index == 1);
  }
  SECTION("a circuit_open failure is handled by the first alternative") {
    keel_test::stand_in_breaker open_breaker(0);  // threshold 0: always open
    auto p = keel::pipeline(fb, std::ref(open_breaker));
    auto r = p.try_execute([] { return 5; });
    REQUIRE(r.has_value());
    CHECK(r.value() == 1);
    CHECK(open_circuit_calls == 1);
  }
  SECTION("a failure no alternative handles passes through unchanged") {
    auto o = fb.try_execute([]() -> int { throw std::logic_error("not handled"); });
    REQUIRE(o.has_exception());
    CHECK(what_of(o.exception()) == "not handled");
    CHECK(log.count<keel::fallback_skipped>() == 2);
    CHECK(log.count<keel::all_fallbacks_failed>() == 0);
    CHECK_THROWS_AS(fb.execute([]() -> int { throw std::logic_error("not handled"); }),
                    std::logic_error);
  }
}

TEST_CASE("fallback: when every tried alternative fails, try_execute lists every cause in order",
          "[fallback]") {
  log_t log;
  auto fb = keel::fallback(
                [](const outcome<int>&) -> int { throw std::logic_error("backup down"); },
                keel::alternative(99).when(keel::on::code(errc::rate_limited)),  // skipped
                [](const outcome<int>&) { return outcome<int>::from_keel(errc::circuit_open); })
                .with_listener(log);
  auto o = fb.try_execute(throw_runtime);
  REQUIRE(o.is(errc::all_fallbacks_failed));
  const auto causes = o.causes();
  REQUIRE(causes.size() == 3);  // the primary and the two alternatives tried, not the skipped one
  CHECK(what_of(causes[0].exception()) == "primary down");
  CHECK(what_of(causes[1].exception()) == "backup down");
  CHECK(causes[2].is(errc::circuit_open));
  REQUIRE(log.count<keel::all_fallbacks_failed>() == 1);
  CHECK(log.all<keel::all_fallbacks_failed>()[0].count == 3);
  CHECK(log.count<keel::fallback_used>() == 0);
}

TEST_CASE("fallback: execute throws keel::error whose causes() are every failure in order",
          "[fallback]") {
  auto fb =
      keel::fallback([](const outcome<int>&) -> int { throw std::logic_error("backup down"); },
                     [] { return outcome<int>::from_keel(errc::circuit_open); });
  try {
    (void)fb.execute(throw_runtime);
    FAIL("execute did not throw");
  } catch (const keel::error& e) {
    CHECK(e.code() == errc::all_fallbacks_failed);
    const auto causes = e.causes();
    REQUIRE(causes.size() == 3);
    CHECK(causes[0].kind == keel::failure_kind::exception);
    CHECK(what_of(causes[0].exception) == "primary down");
    CHECK(causes[1].kind == keel::failure_kind::exception);
    CHECK(what_of(causes[1].exception) == "backup down");
    CHECK(causes[2].kind == keel::failure_kind::keel);
    CHECK(causes[2].code == errc::circuit_open);
  }
}

TEST_CASE("fallback: expected-like results degrade on error values and report all failures",
          "[fallback]") {
  using result = keel_test::expected<int, std::error_code>;
  using unexpected = keel_test::unexpected<std::error_code>;
  const auto broken = [] { return result(unexpected(std::make_error_code(std::errc::io_error))); };

  SECTION("an error value falls back to an expected-like alternative") {
    auto fb = keel::fallback([](const outcome<result>& why) {
      return why.code() == std::errc::io_error ? result(5) : result(0);
    });
    const result r = fb.execute(broken);
    REQUIRE(r.has_value());
    CHECK(*r == 5);
  }
  SECTION("a plain int alternative converts to the expected-like result") {
    auto fb = keel::fallback(6);
    const result r = fb.execute(broken);
    REQUIRE(r.has_value());
    CHECK(*r == 6);
  }
  SECTION("all failed: execute returns the code, try_execute the error values in order") {
    auto fb = keel::fallback(
        [] { return result(unexpected(std::make_error_code(std::errc::connection_refused))); });
    const result r = fb.execute(broken);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == errc::all_fallbacks_failed);
    auto o = fb.try_execute(broken);
    REQUIRE(o.causes().size() == 2);
    CHECK(o.causes()[0].error_value() == std::errc::io_error);
    CHECK(o.causes()[1].error_value() == std::errc::connection_refused);
  }
}

TEST_CASE("fallback: handle() decides which primary failures degrade", "[fallback]") {
  auto fb = keel::fallback(0).handle(keel::on::exception<std::runtime_error> ||
                                     keel::on::result([](int v) { return v >= 500; }));
  CHECK(fb.execute([] { return 503; }) == 0);
  CHECK(fb.execute([] { return 200; }) == 200);
  CHECK(fb.execute(throw_runtime) == 0);
  CHECK_THROWS_AS(fb.execute([]() -> int { throw std::logic_error("bug"); }), std::logic_error);
}

TEST_CASE("fallback: an alternative's result judged a failure by handle() goes on down the chain",
          "[fallback]") {
  auto fb = keel::fallback(503, 200).handle(keel::on::result([](int v) { return v >= 500; }) ||
                                            keel::on::any_failure);
  CHECK(fb.execute([] { return 500; }) == 200);
}

TEST_CASE("fallback: void primaries, plain values and outcome-returning alternatives",
          "[fallback]") {
  SECTION("void") {
    int ran = 0;
    auto fb = keel::fallback([&] { ++ran; });
    auto o = fb.try_execute([] { throw std::runtime_error("x"); });
    CHECK(o.has_value());
    CHECK(ran == 1);
  }
  SECTION("a string literal stands in for a std::string") {
    auto fb = keel::fallback("service unavailable");
    CHECK(fb.execute([]() -> std::string { throw std::runtime_error("x"); }) ==
          "service unavailable");
  }
  SECTION("an alternative may fail without throwing by returning an outcome") {
    auto fb = keel::fallback([] { return outcome<int>::from_keel(errc::bulkhead_full); }, 3);
    CHECK(fb.execute(throw_runtime) == 3);
  }
}

TEST_CASE("fallback: an alternative runs through its own policy", "[fallback]") {
  keel_test::stand_in_breaker backup_breaker(2);
  int backup_calls = 0;
  auto backup = [&]() -> int {
    ++backup_calls;
    throw std::runtime_error("backup down");
  };
  auto fb = keel::fallback(keel::alternative(backup).through(std::ref(backup_breaker)), -1);
  CHECK(fb.execute(throw_runtime) == -1);
  CHECK(fb.execute(throw_runtime) == -1);
  CHECK(backup_calls == 2);
  REQUIRE(backup_breaker.open());
  auto o = keel::fallback(keel::alternative(backup).through(std::ref(backup_breaker)))
               .try_execute(throw_runtime);
  REQUIRE(o.is(errc::all_fallbacks_failed));
  REQUIRE(o.causes().size() == 2);
  CHECK(o.causes()[1].is(errc::circuit_open));  // rejected by its own breaker, not called
  CHECK(backup_calls == 2);
  CHECK(backup_breaker.rejected() == 1);
}

TEST_CASE("fallback: an alternative sees the caller's context", "[fallback]") {
  std::stop_source caller;
  bool saw_token = false;
  auto fb = keel::fallback([&](const keel::context& ctx) {
    saw_token = ctx.stop_token().stop_possible();
    return 1;
  });
  CHECK(fb.execute(caller.get_token(), throw_runtime) == 1);
  CHECK(saw_token);
}

TEST_CASE("fallback: cancellation stops the chain and is returned as is", "[fallback]") {
  int alternative_calls = 0;
  log_t log;
  auto fb = keel::fallback(
                [&](const outcome<int>&) -> int {
                  ++alternative_calls;
                  throw std::logic_error("alt0");
                },
                [&] {
                  ++alternative_calls;
                  return 1;
                })
                .with_listener(log);

  SECTION("a cancelled primary never falls back") {
    auto o = fb.try_execute([]() -> int {
      throw std::system_error(std::make_error_code(std::errc::operation_canceled));
    });
    REQUIRE(o.has_exception());
    CHECK(keel::is_cancellation(o));
    CHECK(alternative_calls == 0);
  }
  SECTION("a stop request during the chain stops it before the next alternative") {
    std::stop_source caller;
    auto stopping = keel::fallback(
                        [&](const outcome<int>&) -> int {
                          ++alternative_calls;
                          caller.request_stop();
                          throw std::logic_error("alt0");
                        },
                        [&] {
                          ++alternative_calls;
                          return 1;
                        })
                        .with_listener(log);
    auto o = stopping.try_execute(caller.get_token(), throw_runtime);
    CHECK(o.is(errc::cancelled));
    CHECK(alternative_calls == 1);
    REQUIRE(log.count<keel::fallback_cancelled>() == 1);
    CHECK(log.all<keel::fallback_cancelled>()[0].tried == 2);
    CHECK_THROWS_AS(stopping.execute(caller.get_token(), throw_runtime), keel::error);
  }
  SECTION("an alternative returning a cancellation ends the chain") {
    auto cancelling = keel::fallback([] { return outcome<int>::from_keel(errc::cancelled); }, 1);
    auto o = cancelling.try_execute(throw_runtime);
    CHECK(o.is(errc::cancelled));
  }
}

TEST_CASE("fallback: keel::counters counts without a hand-written listener", "[fallback]") {
  keel::counters counters;
  auto fb = keel::fallback(keel::alternative(1).when(keel::on::keel_error), [] {
              return outcome<int>::from_keel(errc::timeout);
            }).with_counters(counters);
  (void)fb.try_execute([] { return 0; });
  (void)fb.try_execute(throw_runtime);  // skipped, then the second fails: all failed
  (void)fb.try_execute(throw_runtime);
  CHECK(counters.count<keel::fallback_used>() == 0);
  CHECK(counters.count<keel::fallback_skipped>() == 2);
  CHECK(counters.count<keel::all_fallbacks_failed>() == 2);
  keel_test::stand_in_breaker open_breaker(0);
  CHECK(keel::pipeline(fb, std::ref(open_breaker)).execute([] { return 0; }) == 1);
  CHECK(counters.count<keel::fallback_used>() == 1);
}

TEST_CASE("fallback: result types are checked at compile time", "[fallback]") {
  STATIC_REQUIRE(keel::alternative_for<int, long>);
  STATIC_REQUIRE(keel::alternative_for<const char*, std::string>);
  STATIC_REQUIRE(keel::alternative_for<int (*)(), int>);
  STATIC_REQUIRE(keel::alternative_for<outcome<int> (*)(const outcome<int>&), int>);
  STATIC_REQUIRE(keel::alternative_for<void (*)(), void>);
  STATIC_REQUIRE_FALSE(keel::alternative_for<std::string, int>);
  STATIC_REQUIRE_FALSE(keel::alternative_for<std::string (*)(), int>);
  STATIC_REQUIRE_FALSE(keel::alternative_for<outcome<long> (*)(), int>);
  STATIC_REQUIRE_FALSE(keel::alternative_for<int (*)(), void>);
  STATIC_REQUIRE(keel::policy<decltype(keel::fallback(1, 2))>);
}

TEST_CASE("fallback: composes in a pipeline with the primary's policies inside it", "[fallback]") {
  keel_test::stand_in_breaker breaker(1);
  auto p = keel::pipeline(
      keel::fallback(keel::alternative(-1).when(keel::on::code(errc::circuit_open)), 0),
      std::ref(breaker));
  CHECK(p.execute(throw_runtime) == 0);      // breaker counts it and opens
  CHECK(p.execute([] { return 5; }) == -1);  // rejected: the circuit_open alternative
}

TEST_CASE("fallback: an alternative's own pipeline retries it with its own attempts",
          "[fallback]") {
  keel::testing::virtual_environment env;
  std::vector<int> attempts;
  auto backup = [&](const keel::context& ctx) -> int {
    attempts.push_back(ctx.attempt());
    if (ctx.attempt() < 3) throw std::runtime_error("backup flaky");
    return 30;
  };
  auto fb = keel::fallback(keel::alternative(backup).through(keel::pipeline(
      keel_test::stand_in_retry<keel::testing::virtual_environment>(3, {1ms}, env))));
  keel::context caller;
  caller.set_attempt(7);  // the primary's attempt does not leak into the alternative's
  auto o =
      fb.run<int>([](keel::context&) { return outcome<int>::from_keel(errc::timeout); }, caller);
  REQUIRE(o.has_value());
  CHECK(o.value() == 30);
  CHECK(attempts == std::vector<int>{1, 2, 3});
  CHECK(env.sleeps() == std::vector<keel::duration>{1ms, 1ms});
  CHECK(caller.attempt() == 7);
}

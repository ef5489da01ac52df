// SPDX-License-Identifier: BSL-1.0
// fallback, last_known_good, timeout and watchdog through the value channel,
// compiled with -fno-exceptions: try_execute outcomes and expected-like results.
#include <chrono>
#include <stop_token>
#include <string>
#include <system_error>

#include <keel/fallback.hpp>
#include <keel/pipeline.hpp>
#include <keel/testing/virtual_environment.hpp>
#include <keel/timeout.hpp>

#include "support/catch.hpp"
#include "support/expected.hpp"

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#error "tests/noexcept/ must be compiled with -fno-exceptions"
#endif

using namespace std::chrono_literals;

namespace {

using keel::errc;
using result = keel_test::expected<int, std::error_code>;
using unexpected = keel_test::unexpected<std::error_code>;
using venv = keel::testing::virtual_environment;

result broken(std::errc e) { return result(unexpected(std::make_error_code(e))); }

}  // namespace

TEST_CASE("noexcept fallback: an error value degrades to the next alternative in order",
          "[noexcept][fallback]") {
  auto fb = keel::fallback(keel::alternative(1).when(keel::on::code(errc::circuit_open)),
                           [](const keel::outcome<result>& why) {
                             return why.code() == std::errc::io_error ? result(2) : result(0);
                           });
  const result r = fb.execute([] { return broken(std::errc::io_error); });
  REQUIRE(r.has_value());
  CHECK(*r == 2);
}

TEST_CASE(
    "noexcept fallback: all failed gives every cause through try_execute, the code through execute",
    "[noexcept][fallback]") {
  auto fb = keel::fallback([] { return broken(std::errc::connection_refused); },
                           [] { return keel::outcome<result>::from_keel(errc::circuit_open); });
  auto o = fb.try_execute([] { return broken(std::errc::io_error); });
  REQUIRE(o.is(errc::all_fallbacks_failed));
  REQUIRE(o.causes().size() == 3);
  CHECK(o.causes()[0].error_value() == std::errc::io_error);
  CHECK(o.causes()[1].error_value() == std::errc::connection_refused);
  CHECK(o.causes()[2].is(errc::circuit_open));
  const result r = fb.execute([] { return broken(std::errc::io_error); });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == errc::all_fallbacks_failed);
}

TEST_CASE("noexcept fallback: cancellation is returned, not degraded from",
          "[noexcept][fallback]") {
  int alternative_calls = 0;
  auto fb = keel::fallback([&] {
    ++alternative_calls;
    return result(1);
  });
  const result r = fb.execute([] { return broken(std::errc::operation_canceled); });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == std::errc::operation_canceled);
  CHECK(alternative_calls == 0);
}

TEST_CASE("noexcept last_known_good: serves the last good value until max_age",
          "[noexcept][last_known_good]") {
  venv env;
  keel::last_known_good<result, int, venv> cache({.max_age = 1s}, env);
  keel::staleness s;
  auto p = keel::pipeline(keel::fallback(cache.serve(7, s)), cache.record(7));
  CHECK(*p.execute([] { return result(70); }) == 70);
  env.advance(1s);
  const result stale = p.execute([] { return broken(std::errc::io_error); });
  REQUIRE(stale.has_value());
  CHECK(*stale == 70);
  CHECK(s.stale);
  CHECK(s.age == 1s);
  env.advance(1ns);
  auto o = p.try_execute([] { return broken(std::errc::io_error); });
  REQUIRE(o.causes().size() == 2);
  CHECK(o.causes()[1].code() == keel::last_known_good_errc::too_old);
}

TEST_CASE("noexcept timeout: late results become errc::timeout, the watchdog stops the token",
          "[noexcept][timeout]") {
  venv env;
  keel::basic_watchdog<venv> w(env, keel::watchdog_thread::manual);
  auto t = keel::timeout{{.timeout = 100ms}}.with_environment(env).with_watchdog(w);
  const result r = t.execute([&](const keel::context& ctx) {
    env.advance(100ms);
    w.poll();
    return ctx.stop_requested() ? broken(std::errc::operation_canceled) : result(1);
  });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == errc::timeout);
  const result quick = t.execute([&] {
    env.advance(99ms);
    return result(5);
  });
  CHECK(*quick == 5);
}

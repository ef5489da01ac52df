// SPDX-License-Identifier: BSL-1.0
// keel::retry on the value channel, compiled with -fno-exceptions: failures are
// expected-like errors and keel's own failures come back as that error type.
#include <stop_token>
#include <system_error>
#include <vector>

#include <keel/pipeline.hpp>
#include <keel/retry.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/scripted.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"
#include "support/expected.hpp"

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#error "tests/noexcept/ must be compiled with -fno-exceptions"
#endif

namespace {

using namespace std::chrono_literals;
using keel::duration;
using result = keel_test::expected<int, std::error_code>;
using keel::testing::step;

step<result> fails(std::errc e = std::errc::connection_refused) {
  return step<result>::returns(
      result(keel_test::unexpected<std::error_code>(std::make_error_code(e))));
}
step<result> ok(int v) { return step<result>::returns(result(v)); }

using log_t = keel::testing::recording_listener<keel::retry_scheduled, keel::retries_exhausted,
                                                keel::retry_aborted, keel::retry_budget_exhausted>;

auto make_retry(const keel::testing::virtual_environment& env, const log_t& log,
                keel::retry_options o = {.max_attempts = 3,
                                         .backoff = keel::exponential_backoff{
                                             .initial = 100ms, .factor = 2, .max_delay = 10s}}) {
  return keel::retry(o).with_environment(env).with_listener(log);
}

struct rejecting_policy {
  template <class R, class Next>
  keel::outcome<R> run(Next&&, keel::context&) const {
    return keel::outcome<R>::from_keel(keel::errc::circuit_open, 2s);
  }
};

}  // namespace

TEST_CASE("noexcept retry: error values are retried with the exact backoff", "[noexcept][retry]") {
  keel::testing::virtual_environment env;
  log_t log;
  keel::testing::scripted<result> dep(env.clock(), {fails(), fails(), ok(8)});
  const result r = make_retry(env, log).execute(dep);
  REQUIRE(r.has_value());
  CHECK(*r == 8);
  CHECK(env.sleeps() == std::vector<duration>{100ms, 200ms});
  CHECK(log.count<keel::retry_scheduled>() == 2);
}

TEST_CASE("noexcept retry: exhaustion returns the last error value", "[noexcept][retry]") {
  keel::testing::virtual_environment env;
  log_t log;
  keel::testing::scripted<result> dep(env.clock(), {fails(std::errc::host_unreachable)});
  const result r = make_retry(env, log).execute(dep);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == std::errc::host_unreachable);
  CHECK(dep.calls() == 3);
  REQUIRE(log.count<keel::retries_exhausted>() == 1);
  CHECK(log.all<keel::retries_exhausted>()[0].reason == keel::give_up_reason::max_attempts);
}

TEST_CASE("noexcept retry: a stop during the sleep comes back as errc::cancelled",
          "[noexcept][retry]") {
  keel::testing::virtual_environment env;
  log_t log;
  std::stop_source stop;
  env.sleeper().on_sleep([&](duration) { stop.request_stop(); });
  keel::testing::scripted<result> dep(env.clock(), {fails()});
  const result r = make_retry(env, log).execute(stop.get_token(), dep);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == keel::errc::cancelled);
  CHECK(dep.calls() == 1);
}

TEST_CASE("noexcept retry: deadline, rejection and budget work without exceptions",
          "[noexcept][retry]") {
  keel::testing::virtual_environment env;
  log_t log;
  const auto rejected =
      keel::pipeline(make_retry(env, log), rejecting_policy{}).execute([] { return result(1); });
  CHECK(rejected.error() == keel::errc::circuit_open);

  keel::retry_budget budget(keel::retry_budget_options::grpc(2, 0.5));
  keel::testing::scripted<result> dep(env.clock(), {fails()});
  const result r = make_retry(env, log).with_budget(budget).execute(dep);
  CHECK(r.error() == std::errc::connection_refused);
  CHECK(dep.calls() == 1);  // 2 - 1 = 1 token: not > 1, refused
  CHECK(log.count<keel::retry_budget_exhausted>() == 1);

  keel::context ctx;
  ctx.tighten_deadline(keel::time_point{100ms}, env.clock());  // env outlives ctx
  keel::testing::scripted<result> slow(env.clock(), {fails()});
  const auto o = make_retry(env, log).run<result>(
      [&](keel::context& c) { return keel::outcome<result>(slow(c)); }, ctx);
  CHECK(o.has_error_value());
  CHECK(slow.calls() == 1);  // 100 ms of backoff would end at the deadline
  CHECK(log.all<keel::retries_exhausted>().back().reason == keel::give_up_reason::deadline);
}

TEST_CASE("noexcept retry: Retry-After parsing needs no exceptions", "[noexcept][retry]") {
  const auto now = std::chrono::sys_days{std::chrono::year{2026} / 1 / 1} + 0s;
  CHECK(keel::parse_retry_after("30", now) == 30s);
  CHECK(keel::parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now) == 60s);
  CHECK_FALSE(keel::parse_retry_after("soon", now).has_value());
}

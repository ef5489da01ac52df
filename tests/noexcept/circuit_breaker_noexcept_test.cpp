// SPDX-License-Identifier: BSL-1.0
// The circuit breaker's value channel without exceptions: expected-like
// results, try_execute rejections and the two-step API.
#include <chrono>
#include <system_error>

#include <keel/circuit_breaker.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"
#include "support/expected.hpp"

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#error "tests/noexcept/ must be compiled with -fno-exceptions"
#endif

using namespace std::chrono_literals;

namespace {

using result = keel_test::expected<int, std::error_code>;

result ok() { return 7; }
result broken() {
  return keel_test::unexpected<std::error_code>(std::make_error_code(std::errc::io_error));
}

}  // namespace

TEST_CASE("noexcept circuit_breaker: error values trip it, rejections come back as values",
          "[noexcept][circuit_breaker]") {
  keel::testing::virtual_environment env;
  keel::testing::recording_listener<keel::circuit_opened, keel::call_rejected> log;
  auto b = keel::circuit_breaker{{.trip = keel::consecutive_failures{.threshold = 2},
                                  .open_duration = 10s}}
               .with_environment(env)
               .with_listener(log);
  CHECK(b.try_execute(broken).has_error_value());
  CHECK(b.try_execute(ok).has_value());
  CHECK(b.try_execute(broken).has_error_value());
  CHECK(b.state() == keel::circuit_state::closed);
  CHECK(b.try_execute(broken).has_error_value());
  CHECK(b.state() == keel::circuit_state::open);
  env.advance(3s);
  const auto rejected = b.try_execute(ok);
  REQUIRE(rejected.has_keel_error());
  CHECK(rejected.is(keel::errc::circuit_open));
  CHECK(rejected.retry_after() == std::optional<keel::duration>(7s));
  const result as_value = b.execute(ok);
  REQUIRE(!as_value.has_value());
  CHECK(as_value.error() == keel::errc::circuit_open);
  CHECK(log.count<keel::circuit_opened>() == 1);
  CHECK(log.count<keel::call_rejected>() == 2);
  env.advance(7s);
  CHECK(b.execute(ok).value() == 7);
  CHECK(b.state() == keel::circuit_state::closed);
}

TEST_CASE("noexcept circuit_breaker: the two-step API and a ratio window",
          "[noexcept][circuit_breaker]") {
  keel::testing::virtual_environment env;
  auto b =
      keel::circuit_breaker{
          {.trip = keel::failure_ratio_count{.window_size = 4, .minimum_calls = 4, .ratio = 0.5},
           .open_duration = 1s}}
          .with_environment(env);
  for (int i = 0; i < 2; ++i) {
    auto p = b.try_acquire();
    REQUIRE(p);
    p.record_success();
  }
  {
    auto p = b.try_acquire();
    p.record_failure();
  }
  CHECK(b.state() == keel::circuit_state::closed);
  {
    auto p = b.try_acquire();
    p.record_failure();  // 2 of 4
  }
  CHECK(b.state() == keel::circuit_state::open);
  env.advance(1s);
  {
    auto probe = b.try_acquire();
    CHECK(probe.is_probe());
  }  // abandoned: the slot is freed
  auto probe = b.try_acquire();
  REQUIRE(probe.is_probe());
  probe.record_success();
  CHECK(b.state() == keel::circuit_state::closed);
}

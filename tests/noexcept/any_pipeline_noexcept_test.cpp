// SPDX-License-Identifier: BSL-1.0
// keel::any_pipeline through the value channel, compiled with -fno-exceptions.
#include <chrono>
#include <functional>
#include <system_error>

#include <keel/any_pipeline.hpp>
#include <keel/circuit_breaker.hpp>
#include <keel/pipeline.hpp>
#include <keel/retry.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"
#include "support/expected.hpp"

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#error "tests/noexcept/ must be compiled with -fno-exceptions"
#endif

using namespace std::chrono_literals;

namespace {

using result = keel_test::expected<int, std::error_code>;
using unexpected = keel_test::unexpected<std::error_code>;
using venv = keel::testing::virtual_environment;

}  // namespace

TEST_CASE("noexcept any_pipeline: retries and an open breaker come back as error values",
          "[noexcept][any_pipeline]") {
  venv env;
  auto breaker = keel::circuit_breaker({.trip = keel::consecutive_failures{.threshold = 2}})
                     .with_environment(env);
  const keel::any_pipeline<result> guard(keel::pipeline(
      keel::retry({.max_attempts = 2, .backoff = keel::backoff::none()}).with_environment(env),
      std::ref(breaker)));
  int calls = 0;
  const auto failing = [&] {
    ++calls;
    return result(unexpected(std::make_error_code(std::errc::io_error)));
  };
  CHECK(guard.execute(failing).error() == std::errc::io_error);
  CHECK(calls == 2);
  CHECK(breaker.state() == keel::circuit_state::open);
  const result rejected = guard.execute(failing);
  CHECK(rejected.error() == keel::errc::circuit_open);
  CHECK(calls == 2);
}

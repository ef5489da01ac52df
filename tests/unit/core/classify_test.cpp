// SPDX-License-Identifier: BSL-1.0
#include <optional>
#include <stdexcept>
#include <system_error>
#include <type_traits>

#include <keel/core/classify.hpp>
#include <keel/retry.hpp>

#include "support/catch.hpp"
#include "support/expected.hpp"

namespace on = keel::on;
using keel::outcome;

namespace {
struct response {
  int status;
};
using result = keel_test::expected<int, std::error_code>;

template <class E>
outcome<int> thrown(E e) {
  return outcome<int>::from_exception(std::make_exception_ptr(e));
}
result error_of(std::errc e) { return result(keel_test::unexpected(std::make_error_code(e))); }
}  // namespace

TEST_CASE("classify: any_failure matches exceptions, error values and keel errors",
          "[core][classify]") {
  CHECK_FALSE(on::any_failure(outcome<int>(1)));
  CHECK(on::any_failure(thrown(std::runtime_error("x"))));
  CHECK(on::any_failure(outcome<int>::from_keel(keel::errc::timeout)));
  CHECK(on::any_failure(outcome<result>(error_of(std::errc::io_error))));
  CHECK_FALSE(on::any_failure(outcome<result>(result(3))));
  CHECK_FALSE(on::nothing(thrown(std::runtime_error("x"))));
}

TEST_CASE("classify: exception<Es...> matches by type, derived types included",
          "[core][classify]") {
  const auto io = on::exception<std::system_error>;
  CHECK(io(thrown(std::system_error(std::make_error_code(std::errc::io_error)))));
  CHECK_FALSE(io(thrown(std::runtime_error("x"))));
  CHECK_FALSE(io(outcome<int>(1)));
  // logic_error or runtime_error: invalid_argument derives from logic_error.
  const auto either = on::exception<std::out_of_range, std::logic_error>;
  CHECK(either(thrown(std::invalid_argument("bad"))));
  CHECK_FALSE(either(thrown(std::runtime_error("x"))));
  // A keel::error is a system_error.
  CHECK(io(thrown(keel::error(keel::errc::circuit_open))));
}

TEST_CASE("classify: result() judges returned values", "[core][classify]") {
  const auto server_error = on::result([](const response& r) { return r.status >= 500; });
  CHECK(server_error(outcome<response>(response{503})));
  CHECK_FALSE(server_error(outcome<response>(response{200})));
  CHECK_FALSE(server_error(outcome<response>::from_keel(keel::errc::timeout)));
  // A predicate that cannot take the result type never matches.
  CHECK_FALSE(server_error(outcome<int>(503)));
  // For expected-like results it sees the contained value.
  const auto negative = on::result([](int v) { return v < 0; });
  CHECK(negative(outcome<result>(result(-1))));
  CHECK_FALSE(negative(outcome<result>(result(1))));
  CHECK_FALSE(negative(outcome<result>(error_of(std::errc::io_error))));
  // And in a std::optional, when there is one.
  CHECK(server_error(outcome<std::optional<response>>(response{503})));
  CHECK_FALSE(server_error(outcome<std::optional<response>>(response{200})));
  CHECK_FALSE(server_error(outcome<std::optional<response>>(std::nullopt)));
}

TEST_CASE("classify: a retry on a value predicate retries an optional's 503",
          "[core][classify][regression]") {
  int calls = 0;
  const auto r = keel::retry({.max_attempts = 3, .backoff = keel::constant_backoff{}})
                     .handle(on::result([](const response& x) { return x.status >= 500; }));
  const auto o = r.try_execute([&]() -> std::optional<response> {
    ++calls;
    return response{503};
  });
  CHECK(calls == 3);
  REQUIRE(o.has_value());
  CHECK(o.value()->status == 503);
}

TEST_CASE("classify: error() judges expected-like error values", "[core][classify]") {
  const auto transient =
      on::error([](std::error_code e) { return e == std::errc::resource_unavailable_try_again; });
  CHECK(transient(outcome<result>(error_of(std::errc::resource_unavailable_try_again))));
  CHECK_FALSE(transient(outcome<result>(error_of(std::errc::invalid_argument))));
  CHECK_FALSE(transient(outcome<result>(result(1))));
  CHECK_FALSE(transient(outcome<int>(1)));
}

TEST_CASE("classify: code() matches keel codes, conditions and error values", "[core][classify]") {
  const auto open_or_timeout = on::code(keel::errc::circuit_open, std::errc::timed_out);
  CHECK(open_or_timeout(outcome<int>::from_keel(keel::errc::circuit_open)));
  CHECK(open_or_timeout(outcome<int>::from_keel(keel::errc::timeout)));  // equivalent to timed_out
  CHECK_FALSE(open_or_timeout(outcome<int>::from_keel(keel::errc::rate_limited)));
  CHECK(open_or_timeout(outcome<result>(error_of(std::errc::timed_out))));
  CHECK_FALSE(open_or_timeout(outcome<int>(1)));
  CHECK(on::keel_error(outcome<int>::from_keel(keel::errc::rate_limited)));
  CHECK_FALSE(on::keel_error(thrown(std::runtime_error("x"))));
}

TEST_CASE("classify: cancellation is recognised on every channel", "[core][classify]") {
  CHECK(keel::is_cancellation(outcome<int>::from_keel(keel::errc::cancelled)));
  CHECK(keel::is_cancellation(outcome<result>(error_of(std::errc::operation_canceled))));
  CHECK(keel::is_cancellation(thrown(keel::error(keel::errc::cancelled))));
  CHECK(keel::is_cancellation(
      thrown(std::system_error(std::make_error_code(std::errc::operation_canceled)))));
  CHECK_FALSE(keel::is_cancellation(thrown(std::runtime_error("cancelled"))));
  CHECK_FALSE(keel::is_cancellation(outcome<int>::from_keel(keel::errc::timeout)));
  CHECK_FALSE(keel::is_cancellation(outcome<int>(0)));
  CHECK(on::cancellation(outcome<int>::from_keel(keel::errc::cancelled)));
}

TEST_CASE("classify: predicates combine with ||, && and !", "[core][classify]") {
  const auto is_5xx = on::result([](const response& r) { return r.status >= 500; });
  const auto failure = on::any_failure || is_5xx;
  CHECK(failure(outcome<response>(response{502})));
  CHECK(failure(outcome<response>::from_keel(keel::errc::timeout)));
  CHECK_FALSE(failure(outcome<response>(response{204})));

  const auto not_open = on::any_failure && !on::code(keel::errc::circuit_open);
  CHECK(not_open(outcome<int>::from_keel(keel::errc::timeout)));
  CHECK_FALSE(not_open(outcome<int>::from_keel(keel::errc::circuit_open)));
  CHECK_FALSE(not_open(outcome<int>(1)));

  const auto custom = on::when([](const auto& o) { return o.has_value() && o.value() == 13; });
  CHECK(custom(outcome<int>(13)));
  CHECK_FALSE(custom(outcome<int>(12)));
}

TEST_CASE("classify: every predicate may be written as a call, on::exception<E>() included",
          "[core][classify]") {
  STATIC_REQUIRE(std::is_same_v<decltype(on::exception<std::system_error>()),
                                on::exception_t<std::system_error>>);
  STATIC_REQUIRE(std::is_same_v<decltype(on::any_failure()), on::any_failure_t>);
  STATIC_REQUIRE(std::is_same_v<decltype(on::nothing()), on::nothing_t>);
  STATIC_REQUIRE(std::is_same_v<decltype(on::keel_error()), on::keel_error_t>);
  STATIC_REQUIRE(std::is_same_v<decltype(on::rejection()), on::rejection_t>);
  STATIC_REQUIRE(std::is_same_v<decltype(on::cancellation()), on::cancellation_t>);
  constexpr auto io = on::exception<std::system_error, std::logic_error>();  // a constant
  const auto failed_io = thrown(std::system_error(std::make_error_code(std::errc::io_error)));
  CHECK(io(failed_io));
  CHECK(io(thrown(std::invalid_argument("x"))));
  CHECK_FALSE(io(thrown(std::runtime_error("x"))));
  CHECK((on::exception<std::system_error>() || on::result([](int v) { return v < 0; }))(failed_io));
  CHECK(on::keel_error()(outcome<int>::from_keel(keel::errc::timeout)));
  CHECK(on::rejection()(outcome<int>::from_keel(keel::errc::circuit_open)));
  CHECK(on::cancellation()(outcome<int>::from_keel(keel::errc::cancelled)));
  CHECK(on::any_failure()(failed_io));
  CHECK_FALSE(on::nothing()(failed_io));
}

TEST_CASE("classify: may_take_outcome refuses only callables that cannot take an outcome",
          "[core][classify]") {
  using keel::detail::may_take_outcome;
  const auto on_value = [](int status) { return status >= 500; };
  const auto on_outcome = [](const outcome<int>& o) { return !o.has_value(); };
  const auto on_any = [](const auto& o) { return !o.has_value(); };
  STATIC_REQUIRE(!may_take_outcome<decltype(on_value)>());
  STATIC_REQUIRE(!may_take_outcome<bool (*)(int)>());
  STATIC_REQUIRE(!may_take_outcome<int>());
  STATIC_REQUIRE(may_take_outcome<decltype(on_outcome)>());
  STATIC_REQUIRE(may_take_outcome<bool (*)(const outcome<response>&)>());
  STATIC_REQUIRE(may_take_outcome<decltype(on_any)>());  // checked when called, with its R
  STATIC_REQUIRE(may_take_outcome<on::exception_t<std::runtime_error>>());
  STATIC_REQUIRE(may_take_outcome<decltype(on::result(on_value))>());
}

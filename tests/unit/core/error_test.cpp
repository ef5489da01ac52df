// SPDX-License-Identifier: BSL-1.0
#include <chrono>
#include <string>
#include <system_error>

#include <keel/core/config_error.hpp>
#include <keel/core/error.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

TEST_CASE("errc: every code has its own message in the keel category", "[core][error]") {
  const std::pair<keel::errc, const char*> expected[] = {
      {keel::errc::circuit_open, "circuit breaker is open"},
      {keel::errc::circuit_isolated, "circuit breaker is isolated"},
      {keel::errc::retry_budget_exhausted, "retry budget exhausted"},
      {keel::errc::timeout, "operation timed out"},
      {keel::errc::cancelled, "operation cancelled"},
      {keel::errc::all_fallbacks_failed, "all fallbacks failed"},
      {keel::errc::bulkhead_full, "bulkhead is full"},
      {keel::errc::rate_limited, "rate limited"},
      {keel::errc::no_endpoint_available, "no endpoint available"},
  };
  for (const auto& [code, message] : expected) {
    const std::error_code ec = code;  // implicit: errc is an error code enum
    CHECK(ec.message() == message);
    CHECK(std::string(ec.category().name()) == "keel");
    CHECK(ec.category() == keel::error_category());
    CHECK(ec);
  }
  CHECK(keel::error_category().message(999) == "unknown keel error");
}

TEST_CASE("errc: timeout and cancellation match the generic conditions", "[core][error]") {
  CHECK(keel::make_error_code(keel::errc::timeout) == std::errc::timed_out);
  CHECK(keel::make_error_code(keel::errc::cancelled) == std::errc::operation_canceled);
  CHECK(keel::make_error_code(keel::errc::circuit_open) != std::errc::timed_out);
  CHECK(keel::make_error_code(keel::errc::circuit_open) != std::errc::operation_canceled);
  // Different codes of the category are different conditions.
  CHECK(keel::make_error_code(keel::errc::circuit_open) !=
        keel::make_error_code(keel::errc::circuit_isolated));
}

TEST_CASE("error: is a system_error carrying the code and the retry-after hint", "[core][error]") {
  const keel::error plain(keel::errc::circuit_open);
  CHECK(plain.code() == keel::errc::circuit_open);
  CHECK_FALSE(plain.retry_after().has_value());
  CHECK(plain.causes().empty());
  CHECK(std::string(plain.what()).find("circuit breaker is open") != std::string::npos);

  const keel::error hinted(keel::errc::rate_limited, 1500ms);
  REQUIRE(hinted.retry_after().has_value());
  CHECK(*hinted.retry_after() == 1500ms);
  CHECK(hinted.info().code == keel::errc::rate_limited);
  CHECK(hinted.info().retry_after == keel::duration(1500ms));

  const std::system_error& base = hinted;  // usable where system_error is caught
  CHECK(base.code() == keel::errc::rate_limited);
}

TEST_CASE("error: holds the causes of an aggregated failure in order", "[core][error]") {
  std::vector<keel::failure> causes{
      {keel::failure_kind::keel, keel::errc::circuit_open, {}, keel::hint{.retry_after = 2s}},
      {keel::failure_kind::error_value, std::make_error_code(std::errc::io_error), {}, {}},
  };
  const keel::error e({keel::errc::all_fallbacks_failed, {}}, causes);
  REQUIRE(e.causes().size() == 2);
  CHECK(e.causes()[0].code == keel::errc::circuit_open);
  CHECK(e.causes()[0].hint.retry_after == keel::duration(2s));
  CHECK(e.causes()[1].kind == keel::failure_kind::error_value);
  const keel::error copy = e;  // copies share the list
  CHECK(copy.causes().data() == e.causes().data());
}

TEST_CASE("config_error: names the field and the reason", "[core][config]") {
  const keel::config_error e({"retry_options.max_attempts", "must be >= 1"});
  CHECK(e.field() == "retry_options.max_attempts");
  CHECK(std::string(e.what()) == "keel: retry_options.max_attempts: must be >= 1");
  const std::invalid_argument& base = e;
  CHECK(std::string(base.what()).find("max_attempts") != std::string::npos);
}

namespace {
struct sample_options {
  int size = 10;
};
constexpr keel::validation_result validate(const sample_options& o) noexcept {
  if (o.size < 1) return keel::config_problem{"sample_options.size", "must be >= 1"};
  return std::nullopt;
}
}  // namespace

TEST_CASE("config_error: validate() is constexpr and require_valid() throws", "[core][config]") {
  STATIC_REQUIRE(!validate(sample_options{}));
  STATIC_REQUIRE(validate(sample_options{.size = 0})->field == "sample_options.size");
  CHECK_NOTHROW(keel::detail::require_valid(validate(sample_options{})));
  REQUIRE_THROWS_AS(keel::detail::require_valid(validate(sample_options{.size = 0})),
                    keel::config_error);
  REQUIRE_THROWS_WITH(keel::detail::require_valid(validate(sample_options{.size = -3})),
                      "keel: sample_options.size: must be >= 1");
}

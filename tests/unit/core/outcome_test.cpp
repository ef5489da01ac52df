// SPDX-License-Identifier: BSL-1.0
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>

#include <keel/core/outcome.hpp>

#include "support/catch.hpp"
#include "support/expected.hpp"

using namespace std::chrono_literals;
using keel::outcome;

namespace {
using result = keel_test::expected<int, std::error_code>;

struct custom_error {
  std::string text;
};
using custom_result = keel_test::expected<int, custom_error>;
}  // namespace

template <>
struct keel::error_traits<custom_error> {
  static custom_error from_keel(const keel::error_info& info) {
    return {"keel says: " + info.code.message()};
  }
};

TEST_CASE("outcome: a plain value is a success", "[core][outcome]") {
  outcome<int> o = 42;
  CHECK(o.has_value());
  CHECK(o.has_result());
  CHECK(static_cast<bool>(o));
  CHECK_FALSE(o.has_exception());
  CHECK_FALSE(o.has_error_value());
  CHECK_FALSE(o.has_keel_error());
  CHECK(o.value() == 42);
  CHECK_FALSE(o.code());
  CHECK(o.describe().kind == keel::failure_kind::result);
  CHECK(std::move(o).get() == 42);
}

TEST_CASE("outcome: void outcomes", "[core][outcome]") {
  outcome<void> ok;
  CHECK(ok.has_value());
  ok.value();
  std::move(ok).get();
  auto bad = outcome<void>::from_keel(keel::errc::timeout);
  CHECK_FALSE(bad.has_value());
  REQUIRE_THROWS_AS(std::move(bad).get(), keel::error);
}

TEST_CASE("outcome: an expected-like error is an error value, not a value", "[core][outcome]") {
  outcome<result> o = result(keel_test::unexpected(std::make_error_code(std::errc::io_error)));
  CHECK_FALSE(o.has_value());
  CHECK(o.has_result());
  CHECK(o.has_error_value());
  CHECK(o.error_value() == std::errc::io_error);
  CHECK(o.code() == std::errc::io_error);
  CHECK(o.describe().kind == keel::failure_kind::error_value);
  CHECK(o.describe().code == std::errc::io_error);
  // execute() returns the error value unchanged.
  const result r = std::move(o).get();
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == std::errc::io_error);

  outcome<result> good = result(5);
  CHECK(good.has_value());
  CHECK(*good.value() == 5);
}

TEST_CASE("outcome: a captured exception is rethrown unchanged", "[core][outcome]") {
  struct my_error : std::runtime_error {
    using std::runtime_error::runtime_error;
    int detail = 7;
  };
  auto o = outcome<int>::from_exception(std::make_exception_ptr(my_error("boom")));
  CHECK(o.has_exception());
  CHECK_FALSE(o.has_result());
  CHECK(o.exception() != nullptr);
  CHECK(o.describe().kind == keel::failure_kind::exception);
  CHECK(o.describe().exception == o.exception());
  try {
    (void)std::move(o).get();
    FAIL("get() did not throw");
  } catch (const my_error& e) {
    CHECK(std::string(e.what()) == "boom");
    CHECK(e.detail == 7);
  }
  // value() throws too: there is no value to give.
  auto o2 = outcome<int>::from_exception(std::make_exception_ptr(my_error("again")));
  REQUIRE_THROWS_AS(o2.value(), my_error);
}

TEST_CASE("outcome: keel failures carry code and hint, thrown as keel::error", "[core][outcome]") {
  auto o = outcome<int>::from_keel(keel::errc::circuit_open, 3s);
  CHECK(o.has_keel_error());
  CHECK(o.is(keel::errc::circuit_open));
  CHECK_FALSE(o.is(keel::errc::timeout));
  CHECK(o.code() == keel::errc::circuit_open);
  CHECK(o.retry_after() == keel::duration(3s));
  CHECK(o.keel_error().retry_after == keel::duration(3s));
  const keel::failure f = o.describe();
  CHECK(f.kind == keel::failure_kind::keel);
  CHECK(f.hint.retry_after == keel::duration(3s));
  try {
    (void)std::move(o).get();
    FAIL("get() did not throw");
  } catch (const keel::error& e) {
    CHECK(e.code() == keel::errc::circuit_open);
    CHECK(e.retry_after() == keel::duration(3s));
  }
}

TEST_CASE("outcome: retry_after() reads a thrown keel::error", "[core][outcome]") {
  auto thrown = outcome<int>::from_exception(
      std::make_exception_ptr(keel::error(keel::errc::rate_limited, 250ms)));
  CHECK(thrown.retry_after() == keel::duration(250ms));
  auto other = outcome<int>::from_exception(std::make_exception_ptr(std::runtime_error("x")));
  CHECK_FALSE(other.retry_after().has_value());
  CHECK_FALSE(outcome<int>(1).retry_after().has_value());
}

TEST_CASE("outcome: keel failures become the error of an expected-like result", "[core][outcome]") {
  SECTION("automatically for std::error_code") {
    auto o = outcome<result>::from_keel(keel::errc::timeout);
    const result r = std::move(o).get();
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == keel::errc::timeout);
    CHECK(r.error() == std::errc::timed_out);
  }
  SECTION("through keel::error_traits for a user type") {
    auto o = outcome<custom_result>::from_keel(keel::errc::circuit_open);
    const custom_result r = std::move(o).get();
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().text == "keel says: circuit breaker is open");
  }
}

TEST_CASE("outcome: causes of an aggregated failure, typed and as keel::error", "[core][outcome]") {
  std::vector<outcome<int>> causes;
  causes.push_back(outcome<int>::from_exception(std::make_exception_ptr(std::runtime_error("a"))));
  causes.push_back(outcome<int>::from_keel(keel::errc::circuit_open, 1s));
  auto o = outcome<int>::from_keel({keel::make_error_code(keel::errc::all_fallbacks_failed), {}},
                                   std::move(causes));
  REQUIRE(o.causes().size() == 2);
  CHECK(o.causes()[0].has_exception());
  CHECK(o.causes()[1].is(keel::errc::circuit_open));
  try {
    o.rethrow();
  } catch (const keel::error& e) {
    CHECK(e.code() == keel::errc::all_fallbacks_failed);
    REQUIRE(e.causes().size() == 2);
    CHECK(e.causes()[0].kind == keel::failure_kind::exception);
    CHECK(e.causes()[1].code == keel::errc::circuit_open);
    CHECK(e.causes()[1].hint.retry_after == keel::duration(1s));
  }
  CHECK(outcome<int>(3).causes().empty());
}

TEST_CASE("outcome: holds move-only results", "[core][outcome]") {
  outcome<std::unique_ptr<int>> o(std::in_place, std::make_unique<int>(9));
  REQUIRE(o.has_value());
  CHECK(*o.value() == 9);
  std::unique_ptr<int> p = std::move(o).get();
  CHECK(*p == 9);
}

TEST_CASE("outcome: assigning one of its own causes keeps that cause (copy)",
          "[core][outcome][regression]") {
  std::vector<outcome<int>> causes;
  causes.push_back(outcome<int>::from_exception(std::make_exception_ptr(std::runtime_error("a"))));
  causes.push_back(outcome<int>(7));
  auto o = outcome<int>::from_keel({keel::make_error_code(keel::errc::all_fallbacks_failed), {}},
                                   std::move(causes));
  o = o.causes()[0];  // the copy is taken before the causes are freed
  REQUIRE(o.has_exception());
  CHECK_THROWS_WITH(o.rethrow(), "a");
  auto p = outcome<int>::from_keel({keel::make_error_code(keel::errc::all_fallbacks_failed), {}},
                                   std::vector<outcome<int>>{outcome<int>(7)});
  p = p.causes()[0];
  REQUIRE(p.has_value());
  CHECK(p.value() == 7);
}

namespace {
struct tree_node {
  std::unique_ptr<outcome<tree_node>> child;
  int label = 0;
};
}  // namespace

TEST_CASE("outcome: move-assigning what its own value owns keeps it (move)",
          "[core][outcome][regression]") {
  outcome<tree_node> o(
      std::in_place,
      tree_node{std::make_unique<outcome<tree_node>>(std::in_place, tree_node{nullptr, 2}), 1});
  o = std::move(*o.value().child);  // destroying o's value frees the source: it goes first
  REQUIRE(o.has_value());
  CHECK(o.value().label == 2);
  CHECK(o.value().child == nullptr);
}

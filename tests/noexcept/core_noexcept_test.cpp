// SPDX-License-Identifier: BSL-1.0
// The value channel without exceptions: outcome, predicates, pipelines and
// keel failures as error values, all built with -fno-exceptions.
#include <system_error>

#include <keel/keel.hpp>
#include <keel/testing/scripted.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"
#include "support/expected.hpp"

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#error "tests/noexcept/ must be compiled with -fno-exceptions"
#endif

using namespace std::chrono_literals;

namespace {
using result = keel_test::expected<int, std::error_code>;

struct pass_through : keel::executable<pass_through> {
  template <class R, class Next>
  keel::outcome<R> run(Next&& next, keel::context& ctx) const {
    return next(ctx);
  }
};
struct refuse : keel::executable<refuse> {
  template <class R, class Next>
  keel::outcome<R> run(Next&&, keel::context&) const {
    return keel::outcome<R>::from_keel(keel::errc::bulkhead_full);
  }
};
}  // namespace

TEST_CASE("noexcept: values and error values pass through a pipeline", "[noexcept][core]") {
  keel::pipeline p(pass_through{}, pass_through{});
  CHECK(*p.execute([] { return result(4); }) == 4);
  const result r = p.execute(
      [] { return result(keel_test::unexpected(std::make_error_code(std::errc::io_error))); });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == std::errc::io_error);
  auto o = p.try_execute([](int x) { return x * 2; }, 21);
  REQUIRE(o.has_value());
  CHECK(o.value() == 42);
}

TEST_CASE("noexcept: keel failures arrive as the error value", "[noexcept][core]") {
  keel::pipeline p(pass_through{}, refuse{});
  const result r = p.execute([] { return result(1); });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == keel::errc::bulkhead_full);
  auto o = p.try_execute([] { return 1; });
  CHECK(o.is(keel::errc::bulkhead_full));
  CHECK(keel::on::any_failure(o));
  CHECK_FALSE(keel::is_cancellation(o));
}

TEST_CASE("noexcept: scripted callables and the virtual environment work", "[noexcept][core]") {
  keel::testing::virtual_environment env;
  using step = keel::testing::step<result>;
  keel::testing::scripted<result> dep(
      env.clock(),
      {step::returns(result(keel_test::unexpected(std::make_error_code(std::errc::timed_out))))
           .after(5ms),
       step::returns(result(8))});
  keel::pipeline p(pass_through{});
  CHECK_FALSE(p.execute(dep).has_value());
  CHECK(*p.execute(dep) == 8);
  CHECK(env.elapsed() == 5ms);
  CHECK(keel::on::code(std::errc::timed_out)(keel::outcome<result>(
      result(keel_test::unexpected(std::make_error_code(std::errc::timed_out))))));
}

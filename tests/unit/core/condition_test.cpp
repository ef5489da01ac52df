// SPDX-License-Identifier: BSL-1.0
// keel::condition: what a failure means, whoever produced it. keel's codes,
// and another library's codes that map onto a condition, compare equal to it;
// policies (retry's "do not retry rejections", fallback's when) use it.
#include <string>
#include <system_error>

#include <keel/circuit_breaker.hpp>
#include <keel/fallback.hpp>
#include <keel/pipeline.hpp>
#include <keel/retry.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"

namespace {

using namespace std::chrono_literals;
using keel::condition;
using keel::errc;

/// A third-party limiter's category: its "throttled" code means rejected,
/// its "breaker tripped" code means a circuit rejection, "broken" means nothing.
enum class limiter_errc { throttled = 1, tripped, broken };

class limiter_category_impl : public std::error_category {
 public:
  const char* name() const noexcept override { return "test.limiter"; }
  std::string message(int) const override { return "limiter"; }
  std::error_condition default_error_condition(int v) const noexcept override {
    switch (static_cast<limiter_errc>(v)) {
      case limiter_errc::throttled:
        return keel::make_error_condition(condition::rejected);
      case limiter_errc::tripped:
        return keel::make_error_condition(condition::circuit_rejected);
      default:
        return {v, *this};
    }
  }
};

const std::error_category& limiter_category() {
  static const limiter_category_impl c;
  return c;
}

std::error_code make_limiter(limiter_errc e) { return {static_cast<int>(e), limiter_category()}; }

}  // namespace

TEST_CASE("condition: keel's codes map onto rejected, circuit_rejected, timeout, cancelled",
          "[core][error][condition]") {
  for (const errc e : {errc::circuit_open, errc::circuit_isolated}) {
    CHECK(make_error_code(e) == condition::rejected);
    CHECK(make_error_code(e) == condition::circuit_rejected);
  }
  for (const errc e : {errc::bulkhead_full, errc::rate_limited, errc::retry_budget_exhausted,
                       errc::no_endpoint_available}) {
    CHECK(make_error_code(e) == condition::rejected);
    CHECK(make_error_code(e) != condition::circuit_rejected);
  }
  CHECK(make_error_code(errc::timeout) == condition::timeout);
  CHECK(make_error_code(errc::timeout) == std::errc::timed_out);
  CHECK(make_error_code(errc::cancelled) == condition::cancelled);
  CHECK(make_error_code(errc::cancelled) == std::errc::operation_canceled);
  for (const condition c : {condition::rejected, condition::circuit_rejected, condition::timeout,
                            condition::cancelled}) {
    CHECK(make_error_code(errc::all_fallbacks_failed) != c);
    CHECK_FALSE(keel::condition_category().message(static_cast<int>(c)).empty());
  }
  CHECK(make_error_code(errc::timeout) != condition::rejected);
  CHECK(std::string(keel::condition_category().name()) == "keel.condition");
}

TEST_CASE("condition: other categories join through default_error_condition and std::errc",
          "[core][error][condition]") {
  CHECK(make_limiter(limiter_errc::throttled) == condition::rejected);
  CHECK(make_limiter(limiter_errc::throttled) != condition::circuit_rejected);
  CHECK(make_limiter(limiter_errc::tripped) == condition::circuit_rejected);
  CHECK(make_limiter(limiter_errc::tripped) == condition::rejected);  // a finer kind of it
  CHECK(make_limiter(limiter_errc::broken) != condition::rejected);
  CHECK(std::make_error_code(std::errc::timed_out) == condition::timeout);
  CHECK(std::make_error_code(std::errc::operation_canceled) == condition::cancelled);
  CHECK(std::make_error_code(std::errc::timed_out) != condition::rejected);
}

TEST_CASE("condition: is_rejection and on::rejection cover keel's and other rejections",
          "[core][error][condition]") {
  using o_t = keel::outcome<int>;
  CHECK(keel::is_rejection(o_t::from_keel(errc::circuit_isolated)));
  CHECK(keel::is_rejection(o_t::from_keel(errc::bulkhead_full)));
  CHECK_FALSE(keel::is_rejection(o_t::from_keel(errc::timeout)));
  CHECK(keel::is_rejection(o_t::from_keel({make_limiter(limiter_errc::throttled)})));
  CHECK_FALSE(keel::is_rejection(o_t::from_keel({make_limiter(limiter_errc::broken)})));
  CHECK_FALSE(keel::is_rejection(o_t(1)));
  CHECK(keel::on::rejection(o_t::from_keel(errc::rate_limited)));
}

TEST_CASE("condition: retry does not retry another library's rejection",
          "[core][error][condition][retry]") {
  keel::testing::virtual_environment env;
  int calls = 0;
  auto inner_limiter = [&](keel::context&) -> keel::outcome<int> {
    ++calls;
    return keel::outcome<int>::from_keel({make_limiter(limiter_errc::throttled)});
  };
  keel::counters counters;
  auto r = keel::retry({.max_attempts = 3}).with_environment(env).with_counters(counters);
  keel::context ctx;
  auto o = r.run<int>(inner_limiter, ctx);
  CHECK(calls == 1);
  CHECK(o.code() == condition::rejected);
  CHECK(counters.count<keel::retry_aborted>() == 1);

  auto retrying = keel::retry({.max_attempts = 3, .retry_rejections = true}).with_environment(env);
  calls = 0;
  (void)retrying.run<int>(inner_limiter, ctx);
  CHECK(calls == 3);
}

TEST_CASE("condition: a backup for circuit rejections also stands in when the primary is isolated",
          "[core][error][condition][fallback]") {
  keel::circuit_breaker primary_breaker;
  auto p = keel::pipeline(
      keel::fallback(keel::alternative(2).when(keel::on::code(condition::circuit_rejected))),
      std::ref(primary_breaker));
  CHECK(p.execute([] { return 1; }) == 1);
  primary_breaker.isolate();
  CHECK(p.execute([] { return 1; }) == 2);  // before: only errc::circuit_open could be named
  auto q = keel::pipeline(keel::fallback(keel::alternative(3).when(keel::on::rejection)),
                          std::ref(primary_breaker));
  CHECK(q.execute([] { return 1; }) == 3);
}

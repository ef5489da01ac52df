// SPDX-License-Identifier: BSL-1.0
// Shared by the retry tests: the two error channels as types (a
// TEMPLATE_TEST_CASE over exception_channel and value_channel checks a
// behaviour with exceptions and with expected-like results, one test case per
// channel), a counting environment and two tiny inner policies.
#ifndef KEEL_TESTS_UNIT_RETRY_RETRY_TEST_SUPPORT_HPP_INCLUDED
#define KEEL_TESTS_UNIT_RETRY_RETRY_TEST_SUPPORT_HPP_INCLUDED

#include <atomic>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>

#include <keel/core.hpp>
#include <keel/pipeline.hpp>
#include <keel/retry.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/scripted.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"
#include "support/expected.hpp"

// A failed reason check prints the reasons' names.
namespace Catch {
template <>
struct StringMaker<keel::give_up_reason> {
  static std::string convert(keel::give_up_reason r) {
    return std::string(keel::to_string_view(r));
  }
};
}  // namespace Catch

namespace retry_test {

using namespace std::chrono_literals;
using keel::duration;
using keel::testing::step;

using log_t = keel::testing::recording_listener<keel::retry_scheduled, keel::retries_exhausted,
                                                keel::retry_aborted, keel::retry_budget_exhausted>;

/// Failures are thrown exceptions.
struct exception_channel {
  using result_type = int;
  static step<int> ok(int v) { return step<int>::returns(v); }
  static step<int> failure() { return step<int>::throws(std::runtime_error("down")); }
  static step<int> fatal() { return step<int>::throws(std::invalid_argument("bad request")); }
  static auto fatal_predicate() { return keel::on::exception<std::invalid_argument>; }
  static step<int> cancellation() {
    return step<int>::throws(
        std::system_error(std::make_error_code(std::errc::operation_canceled)));
  }
  static bool is_failure(const keel::outcome<int>& o) { return o.has_exception(); }
  static bool is_fatal(const keel::outcome<int>& o) {
    return o.has_exception() && keel::on::exception<std::invalid_argument>(o);
  }
  static int value_of(const keel::outcome<int>& o) { return o.value(); }
};

/// Failures are returned as an expected-like error.
struct value_channel {
  using result_type = keel_test::expected<int, std::error_code>;
  static step<result_type> ok(int v) { return step<result_type>::returns(result_type(v)); }
  static step<result_type> error(std::errc e) {
    return step<result_type>::returns(
        result_type(keel_test::unexpected<std::error_code>(std::make_error_code(e))));
  }
  static step<result_type> failure() { return error(std::errc::connection_refused); }
  static step<result_type> fatal() { return error(std::errc::permission_denied); }
  static auto fatal_predicate() { return keel::on::code(std::errc::permission_denied); }
  static step<result_type> cancellation() { return error(std::errc::operation_canceled); }
  static bool is_failure(const keel::outcome<result_type>& o) {
    return o.has_error_value() && o.code() == std::errc::connection_refused;
  }
  static bool is_fatal(const keel::outcome<result_type>& o) {
    return o.has_error_value() && o.code() == std::errc::permission_denied;
  }
  static int value_of(const keel::outcome<result_type>& o) { return *o.value(); }
};

/// A virtual environment that counts clock reads and random draws.
struct counting_environment {
  keel::testing::virtual_environment env;
  std::shared_ptr<std::atomic<int>> clock_reads = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<std::atomic<int>> draws = std::make_shared<std::atomic<int>>(0);

  keel::time_point now() const {
    ++*clock_reads;
    return env.now();
  }
  bool sleep_for(duration d, const std::stop_token& t) const { return env.sleep_for(d, t); }
  double uniform() const {
    ++*draws;
    return env.uniform();
  }
};

/// An inner policy that answers its first `rejections` calls with a keel
/// failure (an open circuit, say) without calling through.
struct keel_failure_policy {
  keel::errc code = keel::errc::circuit_open;
  std::optional<duration> hint{};
  int rejections = 1;
  std::shared_ptr<std::atomic<int>> seen = std::make_shared<std::atomic<int>>(0);

  template <class R, class Next>
  keel::outcome<R> run(Next&& next, keel::context& ctx) const {
    if (seen->fetch_add(1) < rejections) return keel::outcome<R>::from_keel(code, hint);
    return next(ctx);
  }
};

/// An outer policy that sets a deadline on the context, read on `clock`.
struct deadline_policy {
  keel::time_point deadline;
  keel::testing::manual_clock clock;

  template <class R, class Next>
  keel::outcome<R> run(Next&& next, keel::context& ctx) const {
    ctx.tighten_deadline(deadline, clock);
    return next(ctx);
  }
};

inline keel::time_point at(duration d) { return keel::time_point{d}; }

/// True for the reasons retries_exhausted reports; retry_aborted reports the others.
constexpr bool is_exhaustion(keel::give_up_reason r) {
  using enum keel::give_up_reason;
  return r == max_attempts || r == max_elapsed || r == deadline || r == delay_function;
}

/// Checks that `log` holds exactly one give-up, of the event that `reason`
/// belongs to (and none of the other), with `reason` and `attempts`: the
/// calls made (retries_exhausted) or the attempt that stopped it
/// (retry_aborted). A failure reports `line`, by default the caller's.
inline void check_gave_up(const log_t& log, keel::give_up_reason reason, int attempts,
                          int line = __builtin_LINE()) {
  INFO("give-up checked at line " << line << ": " << keel::to_string_view(reason) << " after "
                                  << attempts << " attempt(s)");
  const bool exhausted = is_exhaustion(reason);
  const auto done = log.all<keel::retries_exhausted>();
  const auto aborted = log.all<keel::retry_aborted>();
  REQUIRE(done.size() == std::size_t{exhausted ? 1u : 0u});
  REQUIRE(aborted.size() == std::size_t{exhausted ? 0u : 1u});
  CHECK((exhausted ? done[0].reason : aborted[0].reason) == reason);
  CHECK((exhausted ? done[0].attempts : aborted[0].attempt) == attempts);
}

/// Checks that `log` holds no give-up: no retries_exhausted, no retry_aborted.
inline void check_no_give_up(const log_t& log, int line = __builtin_LINE()) {
  INFO("no give-up checked at line " << line);
  CHECK(log.count<keel::retries_exhausted>() == 0);
  CHECK(log.count<keel::retry_aborted>() == 0);
}

}  // namespace retry_test

#endif  // KEEL_TESTS_UNIT_RETRY_RETRY_TEST_SUPPORT_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#include <atomic>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "retry_test_support.hpp"
#include "support/catch.hpp"

using namespace retry_test;
using keel::give_up_reason;
using keel::testing::scripted;
using keel::testing::virtual_environment;

namespace {

/// A retry with an exact backoff (no jitter) in virtual time, reporting to `log`.
auto exact_retry(const virtual_environment& env, const log_t& log,
                 keel::retry_options o = {.max_attempts = 3,
                                          .backoff = keel::exponential_backoff{
                                              .initial = 100ms, .factor = 2, .max_delay = 10s}}) {
  return keel::retry(o).with_environment(env).with_listener(log);
}

}  // namespace

TEMPLATE_TEST_CASE("retry: a first-try success makes one call and touches nothing", "[retry]",
                   exception_channel, value_channel) {
  using C = TestType;
  counting_environment env;
  log_t log;
  keel::counters counters;
  const auto retry = keel::retry({.max_attempts = 5})
                         .with_environment(env)
                         .with_listener(log)
                         .with_counters(counters);
  scripted<typename C::result_type> dep(env.env.clock(), {C::ok(7)});
  const auto o = retry.try_execute(dep);
  CHECK(C::value_of(o) == 7);
  CHECK(dep.calls() == 1);
  CHECK(*env.clock_reads == 0);  // no clock read
  CHECK(*env.draws == 0);        // and no random draw on the success path
  CHECK(env.env.sleeps().empty());
  CHECK(log.events().empty());
  for (const keel::event_kind k : keel::event_kinds) CHECK(counters.count(k) == 0);
}

TEMPLATE_TEST_CASE("retry: failures are retried with the exact backoff until one succeeds",
                   "[retry]", exception_channel, value_channel) {
  using C = TestType;
  virtual_environment env;
  log_t log;
  keel::counters counters;
  const auto retry =
      exact_retry(
          env, log,
          {.max_attempts = 4,
           .backoff = keel::exponential_backoff{.initial = 100ms, .factor = 2, .max_delay = 10s}})
          .with_counters(counters);
  scripted<typename C::result_type> dep(
      env.clock(), {C::failure(), C::failure().after(5ms), C::failure(), C::ok(42)});
  const auto o = retry.try_execute(dep);
  CHECK(C::value_of(o) == 42);
  CHECK(dep.calls() == 4);
  CHECK(env.sleeps() == std::vector<duration>{100ms, 200ms, 400ms});
  CHECK(dep.start_times() == std::vector<duration>{0ms, 100ms, 305ms, 705ms});
  std::vector<int> attempts;
  for (const auto& r : dep.records()) attempts.push_back(r.attempt);
  CHECK(attempts == std::vector<int>{1, 2, 3, 4});
  const auto scheduled = log.all<keel::retry_scheduled>();
  REQUIRE(scheduled.size() == 3);
  CHECK(scheduled[0].attempt == 1);
  CHECK(scheduled[2].attempt == 3);
  CHECK(scheduled[2].delay == 400ms);
  CHECK_FALSE(scheduled[0].from_hint);
  check_no_give_up(log);
  CHECK(counters.count<keel::retry_scheduled>() == 3);
  CHECK(counters.count<keel::retry_succeeded>() == 1);
}

TEMPLATE_TEST_CASE("retry: stops after max_attempts and reports exhaustion", "[retry]",
                   exception_channel, value_channel) {
  using C = TestType;
  virtual_environment env;
  log_t log;
  keel::counters counters;
  const auto retry = exact_retry(env, log).with_counters(counters);
  scripted<typename C::result_type> dep(env.clock(), {C::failure()});
  const auto o = retry.try_execute(dep);
  CHECK(C::is_failure(o));  // the last failure, unchanged
  CHECK(dep.calls() == 3);
  CHECK(env.sleeps() == std::vector<duration>{100ms, 200ms});
  check_gave_up(log, give_up_reason::max_attempts, 3);
  CHECK(counters.count<keel::retries_exhausted>() == 1);
}

TEST_CASE("retry: execute hands back the last failure in the callable's own channel", "[retry]") {
  virtual_environment env;
  log_t log;
  const auto retry = exact_retry(env, log);
  int calls = 0;
  REQUIRE_THROWS_AS(retry.execute([&]() -> int {
    ++calls;
    throw std::out_of_range("gone");
  }),
                    std::out_of_range);
  CHECK(calls == 3);
  using E = value_channel::result_type;
  const E e = retry.execute([] {
    return E(keel_test::unexpected<std::error_code>(std::make_error_code(std::errc::timed_out)));
  });
  CHECK(e.error() == std::errc::timed_out);
}

TEST_CASE("retry: max_attempts = 1 calls once and never sleeps", "[retry]") {
  virtual_environment env;
  log_t log;
  const auto retry = exact_retry(env, log, {.max_attempts = 1});
  scripted<int> dep(env.clock(), {exception_channel::failure()});
  CHECK(retry.try_execute(dep).has_exception());
  CHECK(dep.calls() == 1);
  CHECK(env.sleeps().empty());
}

TEMPLATE_TEST_CASE("retry: max_elapsed stops at the exact call, measured from the start", "[retry]",
                   exception_channel, value_channel) {
  using C = TestType;
  virtual_environment env;
  log_t log;
  const auto retry = exact_retry(
      env, log,
      {.max_attempts = 100, .backoff = keel::constant_backoff{1s}, .max_elapsed = 3500ms});
  // Each call takes 100 ms: calls at 0, 1.1 s, 2.2 s, 3.3 s; after the fourth
  // fails at 3.4 s, 3.4 + 1 >= 3.5 and retry gives up.
  scripted<typename C::result_type> dep(env.clock(), {C::failure().after(100ms)});
  const auto o = retry.try_execute(dep);
  CHECK(C::is_failure(o));
  CHECK(dep.start_times() == std::vector<duration>{0ms, 1100ms, 2200ms, 3300ms});
  check_gave_up(log, give_up_reason::max_elapsed, 4);
}

TEST_CASE("retry: the clock is read at the start only when max_elapsed is set", "[retry]") {
  counting_environment env;
  scripted<int> dep(env.env.clock(), {exception_channel::failure(), exception_channel::ok(1)});
  const auto plain = keel::retry({.backoff = keel::constant_backoff{1s}}).with_environment(env);
  CHECK(plain.try_execute(dep).value() == 1);
  CHECK(*env.clock_reads == 0);  // not even on the failure path
  CHECK(*env.draws == 0);        // no jitter configured, no draw

  scripted<int> dep2(env.env.clock(), {exception_channel::failure(), exception_channel::ok(1)});
  const auto timed = keel::retry({.backoff = keel::constant_backoff{1s}, .max_elapsed = 1min})
                         .with_environment(env);
  CHECK(timed.try_execute(dep2).value() == 1);
  CHECK(*env.clock_reads == 2);  // at the start, and once to decide the retry

  const auto jittered = keel::retry().with_environment(env);  // default backoff has jitter
  scripted<int> dep3(env.env.clock(), {exception_channel::failure(), exception_channel::ok(1)});
  CHECK(jittered.try_execute(dep3).value() == 1);
  CHECK(*env.draws == 1);  // one draw, after the failure
}

TEMPLATE_TEST_CASE("retry: gives up at once when the next attempt would start past the deadline",
                   "[retry]", exception_channel, value_channel) {
  using C = TestType;
  virtual_environment env;
  log_t log;
  const auto retry =
      exact_retry(env, log, {.max_attempts = 10, .backoff = keel::constant_backoff{1s}});
  scripted<typename C::result_type> dep(env.clock(), {C::failure()});
  // Deadline at 2 s: calls at 0 and 1 s; after the second, 1 s + 1 s >= 2 s.
  const auto guarded = keel::pipeline(deadline_policy{at(2s), env.clock()}, retry);
  const auto o = guarded.try_execute(dep);
  CHECK(C::is_failure(o));
  CHECK(dep.start_times() == std::vector<duration>{0s, 1s});
  CHECK(env.sleeps() == std::vector<duration>{1s});  // never slept past the deadline
  CHECK(dep.records()[1].deadline == at(2s));
  check_gave_up(log, give_up_reason::deadline, 2);
}

TEST_CASE("retry: a delay ending just before the deadline is still taken", "[retry]") {
  virtual_environment env;
  log_t log;
  const auto retry =
      exact_retry(env, log, {.max_attempts = 3, .backoff = keel::constant_backoff{1s}});
  scripted<int> dep(env.clock(), {exception_channel::failure(), exception_channel::ok(5)});
  const auto guarded = keel::pipeline(deadline_policy{at(1s + 1ns), env.clock()}, retry);
  CHECK(guarded.try_execute(dep).value() == 5);
  CHECK(dep.start_times() == std::vector<duration>{0s, 1s});
}

TEMPLATE_TEST_CASE("retry: a stop request during the sleep wakes it and returns cancelled",
                   "[retry]", exception_channel, value_channel) {
  using C = TestType;
  virtual_environment env;
  log_t log;
  keel::counters counters;
  const auto retry =
      exact_retry(env, log, {.max_attempts = 5, .backoff = keel::constant_backoff{10s}})
          .with_counters(counters);
  std::stop_source stop;
  env.sleeper().on_sleep([&](duration) { stop.request_stop(); });
  scripted<typename C::result_type> dep(env.clock(), {C::failure()});
  const auto o = retry.try_execute(stop.get_token(), dep);
  CHECK(o.is(keel::errc::cancelled));
  CHECK(dep.calls() == 1);
  CHECK(env.elapsed() == 0s);  // woke at once, the clock did not move
  check_gave_up(log, give_up_reason::cancelled, 1);
  // The real failure, for the log.
  CHECK(log.all<keel::retry_aborted>()[0].failure.kind != keel::failure_kind::keel);
  CHECK(counters.count<keel::retry_aborted>() == 1);
}

TEST_CASE("retry: execute reports a cancelled sleep in the callable's channel", "[retry]") {
  virtual_environment env;
  log_t log;
  const auto retry = exact_retry(env, log);
  std::stop_source stop;
  env.sleeper().on_sleep([&](duration) { stop.request_stop(); });
  scripted<int> thrower(env.clock(), {exception_channel::failure()});
  try {
    (void)retry.execute(stop.get_token(), thrower);
    FAIL("execute should have thrown");
  } catch (const keel::error& e) {
    CHECK(e.code() == keel::errc::cancelled);
    CHECK(e.code() == std::errc::operation_canceled);
  }
  using E = value_channel::result_type;
  std::stop_source stop2;
  env.sleeper().on_sleep([&](duration) { stop2.request_stop(); });
  scripted<E> values(env.clock(), {value_channel::failure()});
  const E e = retry.execute(stop2.get_token(), values);
  CHECK(e.error() == keel::errc::cancelled);
}

TEMPLATE_TEST_CASE("retry: a stop requested before the retry is honoured without sleeping",
                   "[retry]", exception_channel, value_channel) {
  using C = TestType;
  virtual_environment env;
  log_t log;
  const auto retry = exact_retry(env, log);
  std::stop_source stop;
  int calls = 0;
  const auto o = retry.try_execute(stop.get_token(), [&]() -> typename C::result_type {
    ++calls;
    stop.request_stop();  // the caller gives up while the call is failing
    return C::failure().play(keel::context());
  });
  CHECK(o.is(keel::errc::cancelled));
  CHECK(calls == 1);
  CHECK(env.sleeps().empty());
  check_gave_up(log, give_up_reason::cancelled, 1);
}

TEMPLATE_TEST_CASE("retry: a cancellation is never retried, whatever the predicate says", "[retry]",
                   exception_channel, value_channel) {
  using C = TestType;
  virtual_environment env;
  log_t log;
  const auto retry = exact_retry(env, log).handle(keel::on::any_failure || keel::on::cancellation);
  scripted<typename C::result_type> dep(env.clock(), {C::cancellation(), C::ok(1)});
  const auto o = retry.try_execute(dep);
  CHECK(keel::is_cancellation(o));  // returned unchanged
  CHECK(dep.calls() == 1);
  check_gave_up(log, give_up_reason::cancelled, 1);
}

TEST_CASE("retry: only the failures the predicate handles are retried", "[retry]") {
  virtual_environment env;
  log_t log;
  SECTION("by exception type") {
    const auto retry = exact_retry(env, log).handle(keel::on::exception<std::runtime_error>);
    scripted<int> other(env.clock(),
                        {step<int>::throws(std::logic_error("bug")), step<int>::returns(1)});
    CHECK(retry.try_execute(other).has_exception());
    CHECK(other.calls() == 1);
    scripted<int> handled(env.clock(),
                          {step<int>::throws(std::runtime_error("io")), step<int>::returns(1)});
    CHECK(retry.try_execute(handled).value() == 1);
    CHECK(handled.calls() == 2);
  }
  SECTION("by error value") {
    using E = value_channel::result_type;
    const auto retry = exact_retry(env, log).handle(
        keel::on::error([](std::error_code e) { return e == std::errc::connection_refused; }));
    scripted<E> other(env.clock(), {value_channel::fatal(), value_channel::ok(1)});
    CHECK(retry.try_execute(other).has_error_value());
    CHECK(other.calls() == 1);
    scripted<E> handled(env.clock(), {value_channel::failure(), value_channel::ok(1)});
    CHECK(*retry.try_execute(handled).value() == 1);
    CHECK(handled.calls() == 2);
  }
  SECTION("by result value") {
    struct response {
      int status = 200;
    };
    const auto retry = exact_retry(env, log).handle(
        keel::on::result([](const response& r) { return r.status >= 500; }));
    scripted<response> dep(env.clock(),
                           {step<response>::returns({503}), step<response>::returns({502}),
                            step<response>::returns({404})});
    const auto o = retry.try_execute(dep);
    CHECK(o.value().status == 404);  // a 404 is an answer, not a failure to retry
    CHECK(dep.calls() == 3);
    CHECK(log.count<keel::retry_scheduled>() == 2);
  }
  check_no_give_up(log);  // not handled means not retry's business
}

TEMPLATE_TEST_CASE("retry: abort_on stops at once on a failure that must never be retried",
                   "[retry]", exception_channel, value_channel) {
  using C = TestType;
  virtual_environment env;
  log_t log;
  const auto retry = exact_retry(env, log, {.max_attempts = 5}).abort_on(C::fatal_predicate());
  scripted<typename C::result_type> dep(env.clock(), {C::failure(), C::fatal(), C::ok(1)});
  const auto o = retry.try_execute(dep);
  CHECK(C::is_fatal(o));
  CHECK(dep.calls() == 2);
  check_gave_up(log, give_up_reason::abort_predicate, 2);
}

TEST_CASE("retry: a hint thrown as keel::error wins over the backoff", "[retry][hint]") {
  virtual_environment env;
  log_t log;
  const auto retry = exact_retry(env, log, {.max_attempts = 3, .max_hint_delay = 5s});
  scripted<int> dep(env.clock(), {step<int>::throws(keel::error(keel::errc::timeout, 3s)),
                                  step<int>::throws(keel::error(keel::errc::timeout, 1min)),
                                  step<int>::returns(9)});
  CHECK(retry.try_execute(dep).value() == 9);
  CHECK(env.sleeps() == std::vector<duration>{3s, 5s});  // the second hint capped by max_hint_delay
  const auto scheduled = log.all<keel::retry_scheduled>();
  REQUIRE(scheduled.size() == 2);
  CHECK(scheduled[0].from_hint);
  CHECK(scheduled[0].failure.kind == keel::failure_kind::exception);
}

TEMPLATE_TEST_CASE("retry: a hint on an inner keel failure wins over the backoff", "[retry][hint]",
                   exception_channel, value_channel) {
  using C = TestType;
  virtual_environment env;
  log_t log;
  const auto retry = exact_retry(env, log);
  const keel_failure_policy inner{keel::errc::timeout, 2500ms, 1};
  scripted<typename C::result_type> dep(env.clock(), {C::ok(3)});
  const auto o = keel::pipeline(retry, inner).try_execute(dep);
  CHECK(C::value_of(o) == 3);
  CHECK(env.sleeps() == std::vector<duration>{2500ms});
  REQUIRE(log.count<keel::retry_scheduled>() == 1);
  CHECK(log.all<keel::retry_scheduled>()[0].failure.hint.retry_after == 2500ms);
}

namespace {

struct http_response {
  int status = 200;
  std::string retry_after;  // the header, empty when absent
};

const std::chrono::system_clock::time_point wall_now =
    std::chrono::sys_days{std::chrono::year{2026} / 1 / 1};

std::optional<duration> header_hint(const http_response& r) {
  if (r.retry_after.empty()) return std::nullopt;
  return keel::parse_retry_after(r.retry_after, wall_now);
}

}  // namespace

TEST_CASE("retry: a hint read from the result (HTTP 429 Retry-After) wins, capped",
          "[retry][hint]") {
  virtual_environment env;
  log_t log;
  const auto retry =
      exact_retry(
          env, log,
          {.max_attempts = 4, .backoff = keel::exponential_backoff{}, .max_hint_delay = 60s})
          .handle(keel::on::result(
              [](const http_response& r) { return r.status == 429 || r.status == 503; }))
          .with_hint(header_hint);
  using S = step<http_response>;
  scripted<http_response> dep(
      env.clock(), {S::returns({429, "7"}), S::returns({503, "Thu, 01 Jan 2026 00:00:20 GMT"}),
                    S::returns({503, ""}), S::returns({200, ""})});
  const auto o = retry.try_execute(dep);
  CHECK(o.value().status == 200);
  // 7 s from delta-seconds, 20 s from the date, then the backoff (third retry: 400 ms).
  CHECK(env.sleeps() == std::vector<duration>{7s, 20s, 400ms});
  const auto scheduled = log.all<keel::retry_scheduled>();
  REQUIRE(scheduled.size() == 3);
  CHECK(scheduled[1].from_hint);
  CHECK_FALSE(scheduled[2].from_hint);
  CHECK(scheduled[0].failure.kind == keel::failure_kind::result);

  scripted<http_response> greedy(env.clock(), {S::returns({429, "3600"}), S::returns({200, ""})});
  CHECK(retry.try_execute(greedy).value().status == 200);
  CHECK(env.sleeps().back() == 60s);  // max_hint_delay bounds what a server may ask
}

TEST_CASE("retry: a hint read from an expected-like error wins", "[retry][hint]") {
  struct api_error {
    int status = 0;
    std::optional<duration> retry_after;
  };
  using E = keel_test::expected<int, api_error>;
  virtual_environment env;
  log_t log;
  const auto retry = exact_retry(env, log).with_hint(
      [](const api_error& e) -> std::optional<duration> { return e.retry_after; });
  scripted<E> dep(env.clock(),
                  {step<E>::returns(E(keel_test::unexpected<api_error>({429, 1500ms}))),
                   step<E>::returns(E(keel_test::unexpected<api_error>({500, std::nullopt}))),
                   step<E>::returns(E(11))});
  const auto o = retry.try_execute(dep);
  CHECK(*o.value() == 11);
  CHECK(env.sleeps() == std::vector<duration>{1500ms, 200ms});
}

TEMPLATE_TEST_CASE("retry: rejections by inner policies are returned unless retry_rejections",
                   "[retry][rejection]", exception_channel, value_channel) {
  using C = TestType;
  const keel_failure_policy breaker{keel::errc::circuit_open, 4s, 2};
  virtual_environment env;
  log_t log;
  scripted<typename C::result_type> dep(env.clock(), {C::ok(1)});
  const auto o = keel::pipeline(exact_retry(env, log), breaker).try_execute(dep);
  CHECK(o.is(keel::errc::circuit_open));
  CHECK(dep.calls() == 0);
  CHECK(env.sleeps().empty());
  check_gave_up(log, give_up_reason::rejection, 1);
}

TEMPLATE_TEST_CASE("retry: with retry_rejections a rejection is retried after its retry_after",
                   "[retry][rejection]", exception_channel, value_channel) {
  using C = TestType;
  const keel_failure_policy breaker{keel::errc::circuit_open, 4s, 2};
  virtual_environment env;
  log_t log;
  const auto retry =
      exact_retry(env, log, {.max_attempts = 3, .max_hint_delay = 30s, .retry_rejections = true});
  scripted<typename C::result_type> dep(env.clock(), {C::ok(1)});
  const auto o = keel::pipeline(retry, breaker).try_execute(dep);
  CHECK(C::value_of(o) == 1);
  CHECK(env.sleeps() == std::vector<duration>{4s, 4s});
  CHECK(dep.calls() == 1);
  check_no_give_up(log);
}

TEST_CASE("retry: a timeout from an inner policy is a failure, retried by default",
          "[retry][rejection]") {
  virtual_environment env;
  log_t log;
  const keel_failure_policy timeout{keel::errc::timeout, std::nullopt, 1};
  scripted<int> dep(env.clock(), {exception_channel::ok(2)});
  CHECK(keel::pipeline(exact_retry(env, log), timeout).try_execute(dep).value() == 2);
  CHECK(env.sleeps() == std::vector<duration>{100ms});
}

TEMPLATE_TEST_CASE("retry: a user delay function replaces the backoff and can stop",
                   "[retry][delay]", exception_channel, value_channel) {
  using C = TestType;
  virtual_environment env;
  log_t log;
  std::vector<keel::failure_kind> kinds;
  const auto retry =
      exact_retry(env, log, {.max_attempts = 10})
          .with_delay([&](int attempt, const keel::failure& f) -> std::optional<duration> {
            kinds.push_back(f.kind);
            if (attempt == 3) return std::nullopt;
            return attempt * 10ms;
          });
  scripted<typename C::result_type> dep(env.clock(), {C::failure()});
  CHECK(C::is_failure(retry.try_execute(dep)));
  CHECK(dep.calls() == 3);
  CHECK(env.sleeps() == std::vector<duration>{10ms, 20ms});
  CHECK(kinds.size() == 3);
  check_gave_up(log, give_up_reason::delay_function, 3);
}

TEST_CASE("retry: a user delay function may read the typed outcome", "[retry][delay]") {
  virtual_environment env;
  log_t log;
  using E = value_channel::result_type;
  const auto retry = exact_retry(env, log).with_delay(
      [](int, const keel::outcome<E>& o) -> std::optional<duration> {
        return o.code() == std::errc::connection_refused ? 1s : 2s;
      });
  scripted<E> dep(env.clock(),
                  {value_channel::failure(), value_channel::fatal(), value_channel::ok(1)});
  CHECK(*retry.try_execute(dep).value() == 1);
  CHECK(env.sleeps() == std::vector<duration>{1s, 2s});
}

TEMPLATE_TEST_CASE("retry: a budget refusal returns the last failure with an event",
                   "[retry][budget]", exception_channel, value_channel) {
  using C = TestType;
  virtual_environment env;
  log_t log;
  keel::retry_budget budget(keel::retry_budget_options::grpc(4, 1));
  keel::counters counters;
  const auto retry =
      exact_retry(env, log, {.max_attempts = 5, .backoff = keel::constant_backoff{1s}})
          .with_budget(budget)
          .with_counters(counters);
  CHECK(retry.budget() == &budget);
  scripted<typename C::result_type> dep(env.clock(), {C::failure()});
  // 4 tokens: failure 1 -> 3 (> 2: retry), failure 2 -> 2 (not > 2: refused).
  const auto o = retry.try_execute(dep);
  CHECK(C::is_failure(o));
  CHECK(dep.calls() == 2);
  CHECK(budget.milli_tokens() == 2'000);
  const auto refused = log.all<keel::retry_budget_exhausted>();
  REQUIRE(refused.size() == 1);
  CHECK(refused[0].attempt == 2);
  CHECK(counters.count<keel::retry_budget_exhausted>() == 1);
  // The first attempt is never refused, and successes refill the bucket.
  scripted<typename C::result_type> ok(env.clock(), {C::ok(5)});
  CHECK(C::value_of(retry.try_execute(ok)) == 5);
  CHECK(budget.milli_tokens() == 3'000);
}

TEST_CASE("retry: an AWS-style budget is charged per retry and refunded on success",
          "[retry][budget]") {
  virtual_environment env;
  log_t log;
  keel::retry_budget budget(keel::retry_budget_options::aws_standard());
  const auto retry = exact_retry(env, log).with_budget(budget);
  scripted<int> dep(env.clock(), {step<int>::throws(keel::error(keel::errc::timeout)),
                                  exception_channel::failure(), exception_channel::ok(1)});
  CHECK(retry.try_execute(dep).value() == 1);
  // -10 (retry after a timeout) -5 (retry) +5 (the success refunds the last retry's cost)
  CHECK(budget.milli_tokens() == 490'000);
}

TEST_CASE("retry: the caller's attempt number is restored, nested retries count their own",
          "[retry]") {
  virtual_environment env;
  log_t log;
  const auto inner = exact_retry(env, log, {.max_attempts = 2, .backoff = keel::backoff::none()});
  const auto outer = exact_retry(env, log, {.max_attempts = 2, .backoff = keel::backoff::none()});
  std::vector<int> seen;
  const auto o = keel::pipeline(outer, inner).try_execute([&](const keel::context& ctx) -> int {
    seen.push_back(ctx.attempt());
    throw std::runtime_error("x");
  });
  CHECK(o.has_exception());
  CHECK(seen == std::vector<int>{1, 2, 1, 2});
  keel::context ctx;
  ctx.set_attempt(7);
  const auto r = inner.run<int>([](keel::context&) { return keel::outcome<int>(1); }, ctx);
  CHECK(r.value() == 1);
  CHECK(ctx.attempt() == 7);
}

TEST_CASE("retry: a void callable is retried like any other", "[retry]") {
  virtual_environment env;
  log_t log;
  int calls = 0;
  const auto o = exact_retry(env, log).try_execute([&] {
    if (++calls < 2) throw std::runtime_error("once");
  });
  CHECK(o.has_value());
  CHECK(calls == 2);
}

TEST_CASE("retry: invalid options are refused at construction, naming the field",
          "[retry][config]") {
  STATIC_REQUIRE(!keel::validate(keel::retry_options{}));
  STATIC_REQUIRE(keel::validate(keel::retry_options{.max_attempts = 0})->field ==
                 "retry_options.max_attempts");
  STATIC_REQUIRE(keel::validate(keel::retry_options{.max_elapsed = 0s})->field ==
                 "retry_options.max_elapsed");
  STATIC_REQUIRE(keel::validate(keel::retry_options{.max_hint_delay = -1s})->field ==
                 "retry_options.max_hint_delay");
  STATIC_REQUIRE(
      keel::validate(keel::retry_options{.backoff = keel::exponential_backoff{.factor = 0.5}})
          ->field == "retry_options.backoff.factor");
  REQUIRE_THROWS_AS(keel::retry(keel::retry_options{.max_attempts = 0}), keel::config_error);
  REQUIRE_THROWS_WITH(keel::retry(keel::retry_options{.max_attempts = -3}),
                      "keel: retry_options.max_attempts: must be >= 1");
  try {
    keel::retry r{{.backoff = keel::constant_backoff{.jitter = 2.0}}};
    FAIL("constructed with invalid options");
  } catch (const keel::config_error& e) {
    CHECK(e.field() == "retry_options.backoff.jitter");
  }
}

TEST_CASE("retry: defaults are 3 attempts, jittered exponential backoff, 30 s hint cap",
          "[retry][config]") {
  const keel::retry r;
  CHECK(r.options().max_attempts == 3);
  CHECK(r.options().max_elapsed == duration::max());
  CHECK(r.options().max_hint_delay == 30s);
  CHECK_FALSE(r.options().retry_rejections);
  const auto* e = std::get_if<keel::exponential_backoff>(&r.options().backoff.get());
  REQUIRE(e != nullptr);
  CHECK(e->initial == 100ms);
  CHECK(e->factor == 2.0);
  CHECK(e->max_delay == 10s);
  CHECK(e->jitter == 0.2);
  STATIC_REQUIRE(keel::policy<keel::retry<>>);
  STATIC_REQUIRE(std::is_same_v<decltype(keel::retry{{.max_attempts = 4}}), keel::retry<>>);
  STATIC_REQUIRE(sizeof(keel::retry<>) <= 128);
}

TEST_CASE("retry: counters are shared by the policy's copies and readable without a listener",
          "[retry]") {
  virtual_environment env;
  keel::counters counters;
  const auto retry =
      keel::retry({.backoff = keel::backoff::none()}).with_environment(env).with_counters(counters);
  scripted<int> dep(env.clock(), {exception_channel::failure()});
  const auto copy = retry;
  (void)copy.try_execute(dep);
  CHECK(counters.count<keel::retry_scheduled>() == 2);
  CHECK(counters.count<keel::retries_exhausted>() == 1);
}

TEST_CASE("retry: a throwing listener does not break the call", "[retry]") {
  struct throwing_listener {
    void on(const keel::retry_scheduled&) const { throw std::runtime_error("listener bug"); }
  };
  virtual_environment env;
  const auto retry = keel::retry({.backoff = keel::backoff::none()})
                         .with_environment(env)
                         .with_listener(throwing_listener{});
  scripted<int> dep(env.clock(), {exception_channel::failure(), exception_channel::ok(4)});
  CHECK(retry.try_execute(dep).value() == 4);
}

TEST_CASE("retry: one policy serves many threads, each call keeping its own state",
          "[retry][threads]") {
  keel::counters counters;
  const auto retry =
      keel::retry({.max_attempts = 3,
                   .backoff = keel::decorrelated_jitter_backoff{.base = 1ns, .max_delay = 1us}})
          .with_counters(counters);
  std::atomic<int> successes{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        int calls = 0;
        const auto o = retry.try_execute([&] {
          if (++calls < 3) throw std::runtime_error("flaky");
          return calls;
        });
        if (o.has_value() && o.value() == 3) successes.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(successes.load() == 800);
  CHECK(counters.count<keel::retry_scheduled>() == 1600);
  CHECK(counters.count<keel::retry_succeeded>() == 800);
}

TEST_CASE("retry: a throwing delay function stops retrying, a throwing hint is no hint",
          "[retry][delay][hint]") {
  virtual_environment env;
  log_t log;
  const auto stopping = exact_retry(env, log).with_delay(
      [](int, const keel::failure&) -> std::optional<duration> { throw std::logic_error("bug"); });
  scripted<int> dep(env.clock(), {exception_channel::failure()});
  CHECK(stopping.try_execute(dep).has_exception());
  CHECK(dep.calls() == 1);
  check_gave_up(log, give_up_reason::delay_function, 1);

  const auto hinting =
      exact_retry(env, log)
          .handle(keel::on::result([](int v) { return v < 0; }))
          .with_hint([](int) -> std::optional<duration> { throw std::logic_error("bug"); });
  scripted<int> neg(env.clock(), {step<int>::returns(-1), step<int>::returns(1)});
  CHECK(hinting.try_execute(neg).value() == 1);
  CHECK(env.sleeps().back() == 100ms);  // the backoff, as if there were no hint
}

TEST_CASE("retry: an outcome the retry does not handle feeds the budget as a success",
          "[retry][budget]") {
  virtual_environment env;
  log_t log;
  keel::retry_budget budget(keel::retry_budget_options::grpc(10, 0.5));
  budget.record_failure();
  const auto retry =
      exact_retry(env, log).handle(keel::on::exception<std::runtime_error>).with_budget(budget);
  scripted<int> dep(env.clock(), {step<int>::throws(std::logic_error("not mine"))});
  CHECK(retry.try_execute(dep).has_exception());
  CHECK(budget.milli_tokens() == 9'500);  // 9 + 0.5: the dependency answered
  keel_failure_policy breaker{keel::errc::circuit_open, std::nullopt, 1};
  scripted<int> ok(env.clock(), {exception_channel::ok(1)});
  CHECK(keel::pipeline(retry.handle(keel::on::any_failure), breaker)
            .try_execute(ok)
            .is(keel::errc::circuit_open));
  CHECK(budget.milli_tokens() == 9'500);  // a rejection is neither a success nor a failure
}

TEST_CASE("retry: a constant backoff waits its delay exactly, and with jitter draws every time",
          "[retry][backoff]") {
  // The constant, unjittered delay is read from the policy rather than the
  // backoff: it must stay the backoff's answer, and a jittered one must not take it.
  using fixed_env = keel::testing::basic_virtual_environment<keel::testing::fixed_random>;
  const auto waits = [](keel::constant_backoff b) {
    const fixed_env env(keel::testing::fixed_random(0.75));
    const auto r = keel::retry({.max_attempts = 3, .backoff = b}).with_environment(env);
    int calls = 0;
    CHECK(r.try_execute([&] {
             return ++calls < 3 ? throw std::runtime_error("x"), 0 : 1;
           }).value() == 1);
    return env.sleeps();
  };
  CHECK(waits({.delay = 100ms}) == std::vector<keel::duration>{100ms, 100ms});
  // d·(1 + f·(2U − 1)) with U = 0.75, f = 0.5: 125 ms.
  CHECK(waits({.delay = 100ms, .jitter = 0.5}) == std::vector<keel::duration>{125ms, 125ms});
  CHECK(waits({.delay = keel::duration::zero()}) ==
        std::vector<keel::duration>{keel::duration::zero(), keel::duration::zero()});
}

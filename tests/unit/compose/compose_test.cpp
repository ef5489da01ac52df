// SPDX-License-Identifier: BSL-1.0
// The real policies together: composition order, per-attempt and overall
// timeouts, cancellation through every policy, rejections and budgets.
#include <chrono>
#include <functional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <vector>

#include <keel/keel.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/scripted.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"
#include "support/expected.hpp"

using namespace std::chrono_literals;
using keel::duration;
using keel::testing::step;
using venv = keel::testing::virtual_environment;

namespace {

keel::retry_options retries(int attempts, duration delay) {
  return {.max_attempts = attempts, .backoff = keel::constant_backoff{.delay = delay}};
}

}  // namespace

TEST_CASE("compose: fallback(retry(breaker(timeout))) through an outage, exactly", "[compose]") {
  venv env;
  auto breaker = keel::circuit_breaker(
                     {.trip = keel::consecutive_failures{.threshold = 3}, .open_duration = 10s})
                     .with_environment(env);
  const auto guarded =
      keel::pipeline(keel::fallback(-1), keel::retry(retries(3, 100ms)).with_environment(env),
                     std::ref(breaker), keel::timeout({.timeout = 200ms}).with_environment(env));
  // Each failing call hangs 300 ms: past the 200 ms per-attempt deadline.
  keel::testing::scripted<int> dep(env.clock(), {step<int>::returns(0).after(300ms)});

  // Three attempts, each timed out at 300 ms (late result discarded), 100 ms apart.
  CHECK(guarded.execute(dep) == -1);
  CHECK(dep.start_times() == std::vector<duration>{0ms, 400ms, 800ms});
  CHECK(breaker.state() == keel::circuit_state::open);  // the third timeout tripped it
  CHECK(env.sleeps() == std::vector<duration>{100ms, 100ms});

  // Open: the breaker rejects, retry does not retry a rejection, fallback answers.
  CHECK(guarded.execute(dep) == -1);
  CHECK(dep.calls() == 3);
  CHECK(env.sleeps().size() == 2);
}

TEST_CASE("compose: a timeout inside retry limits each attempt, outside it the whole",
          "[compose]") {
  venv env;
  using step_t = step<int>;
  SECTION("per attempt: every attempt gets its own 150 ms") {
    keel::testing::scripted<int> dep(
        env.clock(), {step_t::returns(1).after(200ms), step_t::returns(2).after(200ms),
                      step_t::returns(3).after(100ms)});
    const auto p = keel::pipeline(keel::retry(retries(3, 10ms)).with_environment(env),
                                  keel::timeout({.timeout = 150ms}).with_environment(env));
    CHECK(p.execute(dep) == 3);
    CHECK(dep.start_times() == std::vector<duration>{0ms, 210ms, 420ms});
    const auto records = dep.records();
    CHECK(records[1].deadline == keel::time_point{} + 360ms);
  }
  SECTION("overall: one 450 ms deadline covers attempts and sleeps") {
    keel::testing::scripted<int> dep(env.clock(),
                                     {step_t::throws(std::runtime_error("x")).after(200ms)});
    const auto p = keel::pipeline(keel::timeout({.timeout = 450ms}).with_environment(env),
                                  keel::retry(retries(5, 100ms)).with_environment(env));
    auto o = p.try_execute(dep);
    // Attempt 1 ends at 200 ms; a 100 ms sleep and a second attempt end at 500 ms,
    // past the deadline: retry gives up before sleeping past it.
    CHECK(dep.start_times() == std::vector<duration>{0ms, 300ms});
    CHECK(dep.records()[1].deadline == keel::time_point{} + 450ms);
    CHECK(o.is(keel::errc::timeout));
    CHECK(env.elapsed() == 500ms);
  }
}

TEST_CASE("compose: a caller's stop reaches every policy and is never a failure", "[compose]") {
  venv env;
  auto breaker = keel::circuit_breaker({.trip = keel::consecutive_failures{.threshold = 1}})
                     .with_environment(env);
  keel::testing::recording_listener<keel::fallback_used> fallbacks;
  const auto p =
      keel::pipeline(keel::fallback(7).with_listener(fallbacks),
                     keel::retry(retries(4, 1s)).with_environment(env), std::ref(breaker));
  std::stop_source source;
  int calls = 0;
  // The first attempt fails; the stop arrives while retry sleeps.
  env.sleeper().on_sleep([&](duration) { source.request_stop(); });
  auto o = p.try_execute(source.get_token(), [&](const keel::context& ctx) -> int {
    ++calls;
    CHECK(ctx.stop_token() == source.get_token());
    return ctx.stop_requested() ? 0 : throw std::runtime_error("down");
  });
  CHECK(o.is(keel::errc::cancelled));  // not degraded into the fallback's 7
  CHECK(fallbacks.count<keel::fallback_used>() == 0);
  CHECK(calls == 1);  // the sleep was cut short, no second attempt
  CHECK(env.elapsed() == 0s);
  // The failure before the stop counted (threshold 1): the breaker is open;
  // a cancelled call would not have counted. Check that with a fresh breaker.
  auto fresh = keel::circuit_breaker({.trip = keel::consecutive_failures{.threshold = 1}})
                   .with_environment(env);
  source = std::stop_source();
  source.request_stop();
  auto cancelled =
      keel::pipeline(std::ref(fresh)).try_execute(source.get_token(), [](const keel::context&) {
        return keel_test::expected<int, std::error_code>(
            keel_test::unexpected(keel::make_error_code(keel::errc::cancelled)));
      });
  CHECK(keel::is_cancellation(cancelled));
  CHECK(fresh.state() == keel::circuit_state::closed);
}

TEST_CASE("compose: retry waits out an open breaker only when told to", "[compose]") {
  venv env;
  auto breaker = keel::circuit_breaker(
                     {.trip = keel::consecutive_failures{.threshold = 1}, .open_duration = 2s})
                     .with_environment(env);
  keel::testing::scripted<int> dep(
      env.clock(), {step<int>::throws(std::runtime_error("x")), step<int>::returns(5)});
  auto opts = retries(3, 10ms);
  opts.retry_rejections = true;
  const auto p = keel::pipeline(keel::retry(opts).with_environment(env), std::ref(breaker));
  // Attempt 1 fails and trips; attempt 2 would be rejected, so retry sleeps
  // until a probe may go (the rejection's retry_after, 2 s), then succeeds.
  CHECK(p.execute(dep) == 5);
  CHECK(dep.start_times() == std::vector<duration>{0ms, 2s});
  CHECK(env.sleeps() == std::vector<duration>{10ms, 1990ms});
  CHECK(breaker.state() == keel::circuit_state::closed);
}

TEST_CASE("compose: one retry budget is shared by two pipelines", "[compose]") {
  venv env;
  keel::retry_budget budget(keel::retry_budget_options::grpc(4, 0.5));
  const auto a = keel::retry(retries(5, 0ms)).with_environment(env).with_budget(budget);
  const auto b = keel::retry(retries(5, 0ms)).with_environment(env).with_budget(budget);
  int calls = 0;
  auto failing = [&]() -> int {
    ++calls;
    throw std::runtime_error("down");
  };
  // Tokens 4, retries only while tokens > 2: a's first failure leaves 3
  // (retry), its second leaves 2 (refused). b then fails once: 1, refused.
  CHECK(a.try_execute(failing).has_exception());
  CHECK(calls == 2);
  CHECK(b.try_execute(failing).has_exception());
  CHECK(calls == 3);
  CHECK(budget.tokens() == 1.0);
}

TEST_CASE("compose: a fallback alternative behind its own breaker", "[compose]") {
  venv env;
  auto backup_breaker = keel::circuit_breaker({.trip = keel::consecutive_failures{.threshold = 1}})
                            .with_environment(env);
  int backup_calls = 0;
  const auto chain = keel::fallback(keel::alternative([&]() -> std::string {
                                      ++backup_calls;
                                      throw std::runtime_error("backup down");
                                    }).through(std::ref(backup_breaker)),
                                    std::string("friendly message"));
  auto primary = []() -> std::string { throw std::runtime_error("primary down"); };
  CHECK(chain.execute(primary) == "friendly message");
  CHECK(chain.execute(primary) == "friendly message");
  // The backup's breaker opened after its first failure: the second request
  // skipped the backup without calling it.
  CHECK(backup_calls == 1);
  auto o = keel::fallback(keel::alternative([] {
                            return std::string("unused");
                          }).through(std::ref(backup_breaker)))
               .try_execute(primary);
  REQUIRE(o.is(keel::errc::all_fallbacks_failed));
  REQUIRE(o.causes().size() == 2);
  CHECK(o.causes()[0].has_exception());
  CHECK(o.causes()[1].is(keel::errc::circuit_open));
}

TEST_CASE("compose: expected-like results through the whole pipeline", "[compose]") {
  venv env;
  using result = keel_test::expected<int, std::error_code>;
  auto breaker = keel::circuit_breaker({.trip = keel::consecutive_failures{.threshold = 2}})
                     .with_environment(env);
  const auto p =
      keel::pipeline(keel::retry(retries(2, 5ms)).with_environment(env), std::ref(breaker));
  const auto down =
      result(keel_test::unexpected(std::make_error_code(std::errc::connection_refused)));
  keel::testing::scripted<result> dep(env.clock(), {step<result>::returns(down)});
  const result first = p.execute(dep);  // two attempts, both errors: the last is returned
  REQUIRE_FALSE(first.has_value());
  CHECK(first.error() == std::errc::connection_refused);
  CHECK(dep.calls() == 2);
  const result second = p.execute(dep);  // open: keel's failure as the error value
  REQUIRE_FALSE(second.has_value());
  CHECK(second.error() == keel::errc::circuit_open);
  CHECK(dep.calls() == 2);
}

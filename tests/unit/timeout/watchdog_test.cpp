// SPDX-License-Identifier: BSL-1.0
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <stop_token>
#include <system_error>

#include <keel/pipeline.hpp>
#include <keel/testing/virtual_environment.hpp>
#include <keel/timeout.hpp>

#include "support/catch.hpp"
#include "unit/fallback/stand_in_policies.hpp"

using namespace std::chrono_literals;

namespace {

using keel::errc;
using venv = keel::testing::virtual_environment;
using manual_watchdog = keel::basic_watchdog<venv>;

keel::time_point at(keel::duration d) { return keel::time_point{} + d; }

}  // namespace

TEST_CASE("watchdog: poll() requests stop exactly when the deadline is reached", "[watchdog]") {
  venv env;
  manual_watchdog w(env, keel::watchdog_thread::manual);
  CHECK_FALSE(w.running());
  std::stop_source source;
  {
    auto ticket = w.arm(at(100ms), source);
    CHECK(w.pending() == 1);
    env.advance(100ms - 1ns);
    CHECK(w.poll() == 0);
    CHECK_FALSE(source.stop_requested());
    env.advance(1ns);
    CHECK(w.poll() == 1);
    CHECK(source.stop_requested());
    CHECK(w.pending() == 0);
    CHECK(w.fired() == 1);
  }  // the ticket of a fired deadline unregisters nothing, harmlessly
  CHECK(w.pending() == 0);
}

TEST_CASE("watchdog: a woken call already sees its stop counted in fired()", "[watchdog]") {
  // Regression: fired() was raised after request_stop returned, so a call
  // woken by the stop could read 0 (the example 07 failed under valgrind).
  // A stop callback runs inside request_stop: the earliest a woken call can look.
  venv env;
  manual_watchdog w(env, keel::watchdog_thread::manual);
  std::stop_source source;
  std::uint64_t seen_when_woken = 0;
  std::stop_callback on_stop(source.get_token(), [&] { seen_when_woken = w.fired(); });
  auto ticket = w.arm(at(5ms), source);
  env.advance(5ms);
  CHECK(w.poll() == 1);
  CHECK(seen_when_woken == 1);
  CHECK(w.fired() == 1);
}

TEST_CASE("watchdog: a ticket unregisters its deadline when it ends", "[watchdog]") {
  venv env;
  manual_watchdog w(env, keel::watchdog_thread::manual);
  std::stop_source a, b;
  {
    auto ta = w.arm(at(10ms), a);
    auto tb = w.arm(at(10ms), b);  // same deadline, two registrations
    CHECK(w.pending() == 2);
  }
  CHECK(w.pending() == 0);
  env.advance(1s);
  CHECK(w.poll() == 0);
  CHECK_FALSE(a.stop_requested());
  CHECK_FALSE(b.stop_requested());
}

TEST_CASE("watchdog: fires due deadlines in order, leaves later ones", "[watchdog]") {
  venv env;
  manual_watchdog w(env, keel::watchdog_thread::manual);
  std::stop_source early, late;
  auto t1 = w.arm(at(30ms), late);
  auto t2 = w.arm(at(20ms), early);
  env.advance(25ms);
  CHECK(w.poll() == 1);
  CHECK(early.stop_requested());
  CHECK_FALSE(late.stop_requested());
  CHECK(w.pending() == 1);
}

TEST_CASE("timeout: with a watchdog, a call that overruns sees a stop request and times out",
          "[timeout][watchdog]") {
  venv env;
  manual_watchdog w(env, keel::watchdog_thread::manual);
  auto t = keel::timeout{{.timeout = 100ms}}.with_environment(env).with_watchdog(w);
  bool stop_possible = false;
  bool stopped = false;
  auto o = t.try_execute([&](const keel::context& ctx) -> int {
    stop_possible = ctx.stop_token().stop_possible();
    CHECK(w.pending() == 1);
    env.advance(100ms);
    w.poll();  // what the watchdog's thread does
    stopped = ctx.stop_requested();
    // A cooperative callable gives up with a cancellation...
    throw std::system_error(std::make_error_code(std::errc::operation_canceled));
  });
  CHECK(stop_possible);
  CHECK(stopped);
  // ...which the timeout reports as a timeout: the stop was its own, not the caller's.
  CHECK(o.is(errc::timeout));
  CHECK(w.pending() == 0);
}

TEST_CASE("timeout: with a watchdog, keep_late_result still turns its own stop into a timeout",
          "[timeout][watchdog]") {
  venv env;
  manual_watchdog w(env, keel::watchdog_thread::manual);
  auto t = keel::timeout{{.timeout = 100ms, .keep_late_result = true}}
               .with_environment(env)
               .with_watchdog(w);
  auto cancelled = t.try_execute([&](const keel::context& ctx) -> int {
    env.advance(100ms);
    w.poll();
    if (ctx.stop_requested()) {
      throw std::system_error(std::make_error_code(std::errc::operation_canceled));
    }
    return 1;
  });
  CHECK(cancelled.is(errc::timeout));  // the cancellation the watchdog caused is a timeout
  auto finished = t.try_execute([&](const keel::context&) {
    env.advance(150ms);
    w.poll();
    return 5;  // finished anyway, late: kept
  });
  CHECK(finished.value() == 5);
}

TEST_CASE("timeout: with a watchdog, the caller's stop still reaches the call as a cancellation",
          "[timeout][watchdog][cancellation]") {
  venv env;
  manual_watchdog w(env, keel::watchdog_thread::manual);
  auto t = keel::timeout{{.timeout = 100ms}}.with_environment(env).with_watchdog(w);
  std::stop_source caller;
  auto o = t.try_execute(caller.get_token(), [&](const keel::context& ctx) -> int {
    caller.request_stop();        // the caller gives up...
    CHECK(ctx.stop_requested());  // ...and the call's own (linked) token says so at once
    env.advance(200ms);           // even past the deadline,
    throw std::system_error(std::make_error_code(std::errc::operation_canceled));
  });
  CHECK(keel::is_cancellation(o));  // a cancellation, never a timeout
  CHECK_FALSE(o.is(errc::timeout));
}

TEST_CASE("timeout: without a watchdog the caller's token passes through unchanged",
          "[timeout][cancellation]") {
  venv env;
  auto t = keel::timeout{{.timeout = 100ms}}.with_environment(env);
  std::stop_source caller;
  bool same = false;
  bool possible_without_caller = true;
  (void)t.try_execute(caller.get_token(), [&](const keel::context& ctx) {
    same = ctx.stop_token() == caller.get_token();
    return 0;
  });
  (void)t.try_execute([&](const keel::context& ctx) {
    possible_without_caller = ctx.stop_token().stop_possible();
    return 0;
  });
  CHECK(same);
  CHECK_FALSE(possible_without_caller);
}

TEST_CASE("watchdog: its thread wakes a call blocked in a stop-token-aware wait",
          "[watchdog][thread]") {
  keel::watchdog w;  // real time, its own thread
  REQUIRE(w.running());
  auto t = keel::timeout{{.timeout = 20ms}}.with_watchdog(w);
  const auto started = std::chrono::steady_clock::now();
  auto o = t.try_execute([](const keel::context& ctx) {
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lock(m);
    // Bounded: if the watchdog never fired, this returns after 10 s and the test fails.
    const bool woken =
        cv.wait_for(lock, ctx.stop_token(), std::chrono::seconds(10), [] { return false; });
    return woken ? 1 : (ctx.stop_requested() ? 2 : 3);
  });
  const auto waited = std::chrono::steady_clock::now() - started;
  CHECK(o.is(errc::timeout));
  CHECK(waited >= 20ms);
  CHECK(waited < 5s);
  CHECK(w.fired() == 1);
  w.stop();
  CHECK_FALSE(w.running());
  w.start();
  CHECK(w.running());
}

TEST_CASE("timeout: an overall timeout's watchdog wakes a retry sleeping past the deadline",
          "[timeout][watchdog]") {
  venv env;
  manual_watchdog w(env, keel::watchdog_thread::manual);
  // A retry that ignores deadlines sleeps 1 s; the watchdog's thread would fire
  // 300 ms into that sleep: do it from the sleep.
  env.sleeper().on_sleep([&](keel::duration) {
    env.advance(300ms);
    w.poll();
  });
  auto p = keel::pipeline(keel::timeout{{.timeout = 300ms}}.with_environment(env).with_watchdog(w),
                          keel_test::stand_in_retry<venv>(3, {1s}, env, false));
  int calls = 0;
  auto o = p.try_execute([&]() -> int {
    ++calls;
    throw std::runtime_error("down");
  });
  CHECK(o.is(errc::timeout));
  CHECK(calls == 1);              // the sleep was cut short: no second attempt
  CHECK(env.elapsed() == 300ms);  // the 1 s sleep did not run
  CHECK(w.fired() == 1);
}

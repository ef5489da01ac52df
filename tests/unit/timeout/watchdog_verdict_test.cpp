// SPDX-License-Identifier: BSL-1.0
#include <chrono>
#include <functional>
#include <memory>
#include <stop_token>

#include <keel/testing/manual_clock.hpp>
#include <keel/timeout.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

namespace {

using keel::errc;
using manual_env = keel::basic_environment<keel::testing::manual_clock>;

/// A manual clock that runs a hook right after each read: the watchdog's thread
/// can then be made to fire between the timeout's reading of `end` and its verdict.
struct hooked_clock {
  keel::testing::manual_clock clock;
  std::shared_ptr<std::function<void()>> after_read = std::make_shared<std::function<void()>>();

  keel::time_point now() const {
    const keel::time_point t = clock.now();
    if (*after_read) (*after_read)();
    return t;
  }
};

}  // namespace

// Regression: the timeout read `end`, then asked whether the watchdog had
// stopped the call; a watchdog firing in between made a call that ended 1 ns
// before its deadline an errc::timeout.
TEST_CASE(
    "timeout: a call that ends 1 ns before its deadline keeps its result even if the "
    "watchdog fires before the verdict",
    "[timeout][watchdog][regression]") {
  keel::testing::manual_clock clock;
  keel::basic_watchdog<manual_env> w(manual_env{clock}, keel::watchdog_thread::manual);
  hooked_clock hooked{clock};
  keel::counters counters;
  auto t = keel::timeout{{.timeout = 100ms}}
               .with_environment(keel::basic_environment<hooked_clock>{hooked})
               .with_watchdog(w)
               .with_counters(counters);
  bool stopped_during_call = true;
  int reads = 0;
  auto o = t.try_execute([&](const keel::context& ctx) {
    clock.advance(100ms - 1ns);  // the call ends at 99,999,999 ns: in time
    stopped_during_call = ctx.stop_requested();
    *hooked.after_read = [&] {  // the timeout's read of `end`
      if (++reads == 1) {
        clock.advance(1ns);    // the deadline is reached just after it...
        CHECK(w.poll() == 1);  // ...and the watchdog's thread fires
      }
    };
    return 7;
  });
  *hooked.after_read = nullptr;
  CHECK_FALSE(stopped_during_call);
  REQUIRE(o.has_value());
  CHECK(o.value() == 7);
  CHECK(w.fired() == 1);  // the stop was requested, harmlessly
  CHECK(counters.count<keel::timed_out>() == 0);
  CHECK(counters.count<keel::late_result_kept>() == 0);
  CHECK(clock.elapsed() == 100ms);
  CHECK(reads == 1);
}

TEST_CASE(
    "timeout: a call that ends exactly at its deadline is late, with or without the "
    "watchdog's stop",
    "[timeout][watchdog]") {
  keel::testing::manual_clock clock;
  keel::basic_watchdog<manual_env> w(manual_env{clock}, keel::watchdog_thread::manual);
  keel::counters counters;
  auto t = keel::timeout{{.timeout = 100ms}}
               .with_environment(manual_env{clock})
               .with_watchdog(w)
               .with_counters(counters);
  auto unfired = t.try_execute([&](const keel::context&) {
    clock.advance(100ms);  // at the deadline; the watchdog has not run
    return 7;
  });
  CHECK(unfired.is(errc::timeout));
  auto fired = t.try_execute([&](const keel::context& ctx) {
    clock.advance(100ms);
    CHECK(w.poll() == 1);
    return ctx.stop_requested() ? 8 : 9;
  });
  CHECK(fired.is(errc::timeout));
  CHECK(counters.count<keel::timed_out>() == 2);
  CHECK(w.fired() == 1);
}

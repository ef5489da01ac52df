// 07_timeout_and_cancellation: a deadline the call reads, a watchdog that wakes it, a stop.
// SPDX-License-Identifier: BSL-1.0
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stop_token>
#include <string>
#include <system_error>

#include <fmt/core.h>

#include <keel/fallback.hpp>
#include <keel/pipeline.hpp>
#include <keel/testing/virtual_environment.hpp>
#include <keel/timeout.hpp>

using namespace std::chrono_literals;

namespace {

using env_t = keel::testing::virtual_environment;

long long ms(keel::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

}  // namespace

int main() {
  bool ok = true;
  auto expect = [&](bool condition, const char* what) {
    if (!condition) {
      fmt::print("UNEXPECTED: {}\n", what);
      ok = false;
    }
  };

  // 1. The call reads its deadline and bounds its own blocking I/O with it.
  //    Nested timeouts: the earliest deadline wins.
  env_t env;  // virtual time
  auto overall = keel::timeout{{.timeout = 250ms}}.with_environment(env);
  auto per_call = keel::timeout{{.timeout = 100ms}}.with_environment(env);
  auto slow_read = [&](const keel::context& ctx) -> std::string {
    const keel::duration budget = ctx.remaining();  // give this to the socket / HTTP client
    fmt::print("1. the call may block for {} ms\n", ms(budget));
    const keel::duration needed = 180ms;
    if (needed > budget) {  // what a socket with SO_RCVTIMEO = budget would do
      env.advance(budget);
      throw std::system_error(std::make_error_code(std::errc::timed_out));
    }
    env.advance(needed);
    return "reply";
  };
  auto o1 = keel::pipeline(overall, per_call).try_execute(slow_read);
  fmt::print("   outcome: {} after {} ms\n", o1.code().message(), ms(env.elapsed()));
  expect(o1.is(keel::errc::timeout) && env.elapsed() == 100ms, "timed out after 100 ms");

  // 2. A watchdog (one thread, owned here) wakes a call blocked in a
  //    stop-token-aware wait when its deadline passes. Real time, 50 ms.
  keel::watchdog dog;
  auto guarded = keel::timeout{{.timeout = 50ms}}.with_watchdog(dog);
  auto o2 = guarded.try_execute([](const keel::context& ctx) {
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lock(m);
    cv.wait_for(lock, ctx.stop_token(), 5s, [] { return false; });  // woken by the watchdog
    return ctx.stop_requested() ? std::string("woken") : std::string("slept 5 s");
  });
  fmt::print("2. blocked wait: {} (the watchdog fired {} time)\n", o2.code().message(),
             dog.fired());
  expect(o2.is(keel::errc::timeout) && dog.fired() == 1, "the watchdog woke the wait");

  // 3. The caller's stop reaches the call through the context. It is a
  //    cancellation: never a timeout, and the fallback does not degrade from it.
  std::stop_source caller;
  auto with_default = keel::pipeline(keel::fallback(std::string("cached reply")), per_call);
  auto o3 =
      with_default.try_execute(caller.get_token(), [&](const keel::context& ctx) -> std::string {
        caller.request_stop();  // e.g. the user pressed "cancel"
        env.advance(300ms);     // and the call noticed late, past its deadline
        if (ctx.stop_requested()) {
          throw std::system_error(std::make_error_code(std::errc::operation_canceled));
        }
        return "reply";
      });
  fmt::print("3. after the caller's stop: cancellation = {}, timeout = {}\n",
             keel::is_cancellation(o3), o3.is(keel::errc::timeout));
  expect(keel::is_cancellation(o3) && !o3.is(keel::errc::timeout), "a cancellation");

  return ok ? 0 : 1;
}

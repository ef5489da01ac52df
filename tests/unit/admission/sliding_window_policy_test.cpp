// SPDX-License-Identifier: BSL-1.0
// keel::rate_limiter over sliding-window limits: the policy drives
// keel::sliding_window_limit as it drives gcra_limit (refusals with
// retry_after, waits in virtual time, refunds of calls that never left,
// several limits all or none, Retry-After pauses, reservations).
#include <array>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <type_traits>
#include <variant>
#include <vector>

#include <keel/admission/bulkhead.hpp>
#include <keel/admission/sliding_window_limit.hpp>
#include <keel/pipeline.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"

namespace {

using namespace std::chrono_literals;
using keel::duration;
using keel::errc;
using keel::sliding_window_options;
using venv = keel::testing::virtual_environment;

struct http_429 : std::runtime_error, keel::hint_source {
  duration after;
  explicit http_429(duration a) : std::runtime_error("429"), after(a) {}
  keel::hint hint() const noexcept override { return keel::hint{.retry_after = after}; }
};

}  // namespace

TEST_CASE("rate_limiter over a window: at most `limit` per window, refusals say when",
          "[sliding_window][rate_limiter]") {
  venv env;
  keel::testing::recording_listener<keel::rate_limit_rejected> log;
  const auto limiter = keel::rate_limits(sliding_window_options{.limit = 3, .buckets = 10})
                           .with_environment(env)
                           .with_listener(log);
  static_assert(
      std::is_same_v<std::remove_cvref_t<decltype(limiter.limit())>, keel::sliding_window_limit>);
  int calls = 0;
  for (int i = 0; i < 3; ++i) CHECK(limiter.try_execute([&] { return ++calls; }).has_value());
  const auto o = limiter.try_execute([&] { return ++calls; });
  CHECK(o.is(errc::rate_limited));
  CHECK(o.retry_after() == 1100ms);  // bucket 0 leaves the window when bucket 11 starts
  CHECK(calls == 3);
  REQUIRE(log.events().size() == 1);
  CHECK(std::get<keel::rate_limit_rejected>(log.events()[0]).retry_after == 1100ms);
  env.advance(1099ms);
  CHECK(limiter.try_execute([&] { return ++calls; }).is(errc::rate_limited));
  env.advance(1ms);
  CHECK(limiter.try_execute([&] { return ++calls; }).has_value());
  CHECK(calls == 4);
}

TEST_CASE("rate_limiter over a window: a caller waits for room, in arrival order",
          "[sliding_window][rate_limiter]") {
  venv env;
  const auto limiter =
      keel::rate_limits(sliding_window_options{.limit = 2, .buckets = 10, .max_wait = 2s})
          .with_environment(env);
  std::vector<duration> sent;
  const auto send = [&] {
    sent.push_back(env.now().time_since_epoch());
    return 0;
  };
  for (int i = 0; i < 4; ++i) CHECK(limiter.try_execute(send).has_value());
  // Two at 0 s, two at 1.1 s (each waiter sleeps for its bucket's start).
  CHECK(sent == std::vector<duration>{0s, 0s, 1100ms, 1100ms});
  CHECK(env.sleeps() == std::vector<duration>{1100ms});
  CHECK(limiter.limit().in_window(env.now()) == 2);
}

TEST_CASE("rate_limiter over a window: a call refused inside never left and is given back",
          "[sliding_window][rate_limiter][pipeline]") {
  venv env;
  const auto limiter =
      keel::rate_limits(sliding_window_options{.limit = 2, .buckets = 10}).with_environment(env);
  const auto bulkhead = keel::bulkhead<>({.max_concurrent = 1}).with_environment(env);
  const auto guarded = keel::pipeline(limiter, bulkhead);
  auto held = bulkhead.try_acquire();
  for (int i = 0; i < 5; ++i) CHECK(guarded.try_execute([] { return 1; }).is(errc::bulkhead_full));
  CHECK(limiter.limit().in_window(env.now()) == 0);  // all five refunded
  held.release();
  CHECK(guarded.try_execute([] { return 1; }).has_value());
  CHECK(guarded.try_execute([] { return 1; }).has_value());
  CHECK(guarded.try_execute([] { return 1; }).is(errc::rate_limited));
}

TEST_CASE("rate_limits over windows: requests and tokens per minute, all or none",
          "[sliding_window][rate_limiter]") {
  venv env;
  const auto limiter =
      keel::rate_limits(sliding_window_options{.limit = 3, .period = 1min, .buckets = 60},
                        sliding_window_options{.limit = 1000, .period = 1min, .buckets = 60})
          .with_environment(env)
          .with_cost([](const keel::context& c) {
            const auto t = c.user_value<keel::rate_cost>();
            return std::array<std::uint64_t, 2>{1, t ? t->units : 0};
          });
  const auto with_tokens = [](std::uint64_t n) {
    keel::context c;
    c.set_user_value(keel::rate_cost{n});
    return c;
  };
  CHECK(limiter.try_execute(with_tokens(600), [] { return 0; }).has_value());
  // Tokens refuse: the request counted first is given back.
  const auto o = limiter.try_execute(with_tokens(500), [] { return 0; });
  CHECK(o.is(errc::rate_limited));
  CHECK(o.retry_after() == 61s);  // the 600 leave with their bucket
  CHECK(limiter.limit(0).in_window(env.now()) == 1);
  CHECK(limiter.limit(1).in_window(env.now()) == 600);
  CHECK(limiter.try_execute(with_tokens(400), [] { return 0; }).has_value());
  CHECK(limiter.try_execute(with_tokens(0), [] { return 0; }).is(errc::rate_limited));
  CHECK(limiter.limit(0).in_window(env.now()) == 2);  // the tokens refused first
}

TEST_CASE("rate_limiter over a window: a Retry-After pauses it; a reservation settles",
          "[sliding_window][rate_limiter]") {
  venv env;
  const auto limiter =
      keel::rate_limits(sliding_window_options{.limit = 10, .buckets = 10}).with_environment(env);
  const auto o = limiter.try_execute([]() -> int { throw http_429(5s); });
  CHECK(o.has_exception());
  CHECK(limiter.limit().paused_until() == keel::time_point(5s));
  const auto paused = limiter.try_execute([] { return 1; });
  CHECK(paused.is(errc::rate_limited));
  CHECK(paused.retry_after() == 5s);
  env.advance(5s);
  auto r = limiter.reserve(8);
  REQUIRE(r.admitted());
  CHECK(limiter.limit().in_window(env.now()) == 8);
  r.settle(3);
  CHECK(limiter.limit().in_window(env.now()) == 3);
  r.settle(9);  // at most once
  CHECK(limiter.limit().in_window(env.now()) == 3);
}

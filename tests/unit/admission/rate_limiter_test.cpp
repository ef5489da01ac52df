// SPDX-License-Identifier: BSL-1.0
// keel::rate_limiter as a policy, in virtual time: waiting for a slot within
// max_wait and the deadline, a stop during the wait, costs from the context,
// settlement on the outcome, several limits with rollback, hints, events,
// reservations, and its place in a pipeline next to a breaker and a retry.
#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <system_error>
#include <vector>

#include <keel/admission/rate_limiter.hpp>
#include <keel/circuit_breaker.hpp>
#include <keel/pipeline.hpp>
#include <keel/retry.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"
#include "support/hostile.hpp"

namespace {

using namespace std::chrono_literals;
using keel::duration;
using keel::errc;
using keel::rate_limit_options;
using venv = keel::testing::virtual_environment;

struct http_429 : std::runtime_error, keel::hint_source {
  keel::hint h;
  explicit http_429(keel::hint hint_) : std::runtime_error("429"), h(hint_) {}
  keel::hint hint() const noexcept override { return h; }
};

/// An LLM answer: its token usage and the provider's remaining-token header.
struct completion {
  std::uint64_t total_tokens = 0;
  std::uint64_t remaining_tokens = 0;
};

}  // namespace

TEST_CASE("rate_limiter: admits the burst, refuses the next with when it would fit",
          "[rate_limiter]") {
  venv env;
  keel::testing::recording_listener<keel::rate_limit_rejected> log;
  const auto limiter = keel::rate_limiter({.limit = 10, .period = 1s, .burst = 3})
                           .with_environment(env)
                           .with_listener(log)
                           .named("llm");
  int calls = 0;
  for (int i = 0; i < 3; ++i) CHECK(limiter.try_execute([&] { return ++calls; }).has_value());
  const auto o = limiter.try_execute([&] { return ++calls; });
  CHECK(o.is(errc::rate_limited));
  CHECK(keel::is_rejection(o));
  CHECK(o.retry_after() == std::optional<duration>(100ms));
  CHECK(calls == 3);
  REQUIRE(log.count<keel::rate_limit_rejected>() == 1);
  const auto e = log.all<keel::rate_limit_rejected>()[0];
  CHECK(e.limit == 0);
  CHECK(e.cost == 1);
  CHECK(e.retry_after == std::optional<duration>(100ms));
  CHECK(e.source.policy == "llm");
  env.advance(100ms);
  CHECK(limiter.try_execute([&] { return ++calls; }).has_value());
  CHECK(env.sleeps().empty());
}

TEST_CASE("rate_limiter: copies share the limit", "[rate_limiter]") {
  venv env;
  const auto a = keel::rate_limiter({.limit = 1, .period = 1s}).with_environment(env);
  const auto b = a.named("copy");
  CHECK(a.try_execute([] { return 1; }).has_value());
  CHECK(b.try_execute([] { return 1; }).is(errc::rate_limited));
}

TEST_CASE("rate_limiter: a caller waits for its slot, in arrival order, with the sleeper",
          "[rate_limiter]") {
  venv env;
  const auto limiter =
      keel::rate_limiter({.limit = 10, .period = 1s, .burst = 1, .max_wait = 250ms})
          .with_environment(env);
  std::vector<duration> sent;
  const auto call = [&] {
    sent.push_back(env.elapsed());
    return 0;
  };
  CHECK(limiter.try_execute(call).has_value());  // at 0
  // The caller and its successors reserve consecutive slots; each sleeps until its own.
  CHECK(limiter.try_execute(call).has_value());  // slot at 100 ms: sleeps 100 ms
  CHECK(env.sleeps() == std::vector<duration>{100ms});
  CHECK(sent == std::vector<duration>{0ms, 100ms});
  // Three reservations made at once by hand: 200, 300 and (beyond max_wait) refused.
  auto r1 = limiter.reserve(1, 250ms);
  auto r2 = limiter.reserve(1, 250ms);
  auto r3 = limiter.reserve(1, 250ms);
  CHECK(r1.wait() == 100ms);
  CHECK(r2.wait() == 200ms);
  CHECK_FALSE(r3);
  CHECK(r3.retry_after() == std::optional<duration>(300ms));
}

TEST_CASE("rate_limiter: the deadline bounds the wait", "[rate_limiter]") {
  venv env;
  const auto limiter =
      keel::rate_limiter({.limit = 1, .period = 1s, .max_wait = 10s}).with_environment(env);
  REQUIRE(limiter.try_execute([] { return 0; }).has_value());
  keel::context ctx;
  ctx.tighten_deadline(env.now() + 500ms, env);
  const auto o = limiter.try_execute(ctx, [] { return 1; });
  CHECK(o.is(errc::rate_limited));
  CHECK(o.retry_after() == std::optional<duration>(1s));
  CHECK(env.sleeps().empty());
  keel::context later;
  later.tighten_deadline(env.now() + 1s, env);
  CHECK(limiter.try_execute(later, [] { return 1; }).value() == 1);
  CHECK(env.sleeps() == std::vector<duration>{1s});
}

TEST_CASE("rate_limiter: a stop during the wait gives the slot back; later waiters keep theirs",
          "[rate_limiter]") {
  venv env;
  const auto limiter = keel::rate_limiter({.limit = 10, .period = 1s, .burst = 1, .max_wait = 1s})
                           .with_environment(env);
  REQUIRE(limiter.try_execute([] { return 0; }).has_value());
  auto later = limiter.reserve(1, 1s);  // slot at 100 ms, taken before the caller below
  REQUIRE(later.wait() == 100ms);
  std::stop_source stop;
  env.sleeper().on_sleep([&](duration) { stop.request_stop(); });
  int calls = 0;
  const auto o = limiter.try_execute(stop.get_token(), [&] { return ++calls; });
  CHECK(o.is(errc::cancelled));
  CHECK(calls == 0);
  env.sleeper().on_sleep(nullptr);
  // Its slot (200 ms) came back; the reservation made before it keeps 100 ms.
  CHECK(later.wait() == 100ms);
  auto next = limiter.reserve(1, 1s);
  CHECK(next.wait() == 200ms);
  // A stop requested before the call: nothing sent, nothing charged.
  std::stop_source before;
  before.request_stop();
  auto r = limiter.limit().tat();
  CHECK(limiter.try_execute(before.get_token(), [&] { return ++calls; }).is(errc::cancelled));
  CHECK(calls == 0);
  CHECK(limiter.limit().tat() == r);
}

TEST_CASE("rate_limiter: the cost comes from the context or a cost function", "[rate_limiter]") {
  venv env;
  const auto limiter = keel::rate_limiter({.limit = 100, .period = 1s}).with_environment(env);
  keel::context ctx;
  ctx.set_user_value(keel::rate_cost{60});
  CHECK(limiter.try_execute(ctx, [] { return 0; }).has_value());
  CHECK(limiter.limit().available(env.now()) == 40);
  CHECK(limiter.try_execute(ctx, [] { return 0; }).is(errc::rate_limited));
  const auto by_fn = limiter.with_cost(
      [](const keel::context& c) -> std::uint64_t { return c.operation() == "big" ? 30 : 5; });
  keel::context big;
  big.set_operation("big");
  CHECK(by_fn.try_execute(big, [] { return 0; }).has_value());
  CHECK(limiter.limit().available(env.now()) == 10);
  CHECK(by_fn.try_execute([] { return 0; }).has_value());
  CHECK(limiter.limit().available(env.now()) == 5);
}

TEST_CASE("rate_limiter: a cost function that throws charges the bucket", "[rate_limiter]") {
  venv env;
  const auto limiter = keel::rate_limiter({.limit = 10, .period = 1s})
                           .with_environment(env)
                           .with_cost([](const keel::context&) -> std::uint64_t {
                             throw std::runtime_error("cost");
                           });
  CHECK(limiter.try_execute([] { return 0; }).has_value());
  CHECK(limiter.limit().available(env.now()) == 0);
}

TEST_CASE("rate_limiter: settles the estimate to the actual cost of the outcome",
          "[rate_limiter]") {
  venv env;
  const auto limiter = keel::rate_limiter({.limit = 1000, .period = 1s, .max_debt = 500})
                           .with_environment(env)
                           .with_cost([](const keel::context&) -> std::uint64_t { return 400; })
                           .with_actual_cost([](const auto& o) -> std::optional<std::uint64_t> {
                             if constexpr (requires { o.value().total_tokens; }) {
                               if (o.has_value()) return o.value().total_tokens;
                             }
                             return std::nullopt;
                           });
  CHECK(limiter.try_execute([] { return completion{100, 0}; }).has_value());
  CHECK(limiter.limit().available(env.now()) == 900);  // 400 charged, 300 given back
  CHECK(limiter.try_execute([] { return completion{700, 0}; }).has_value());
  CHECK(limiter.limit().available(env.now()) == 200);  // 400 charged, 300 more
  // A failure has no usage: the estimate stands.
  env.advance(200ms);  // 200 more units
  CHECK(limiter.limit().available(env.now()) == 400);
  CHECK(limiter.try_execute([]() -> completion { throw std::runtime_error("x"); }).has_exception());
  CHECK(limiter.limit().available(env.now()) == 0);
}

TEST_CASE("rate_limiter: a call an inner policy refused never left and costs nothing",
          "[rate_limiter]") {
  venv env;
  keel::circuit_breaker breaker({.trip = keel::consecutive_failures{.threshold = 1}});
  const auto limiter = keel::rate_limiter({.limit = 5, .period = 1s}).with_environment(env);
  const auto guarded = keel::pipeline(limiter, std::ref(breaker));
  CHECK(guarded.try_execute([]() -> int { throw std::runtime_error("down"); }).has_exception());
  CHECK(limiter.limit().available(env.now()) == 4);  // that one left
  REQUIRE(breaker.state() == keel::circuit_state::open);
  for (int i = 0; i < 10; ++i) {
    CHECK(guarded.try_execute([] { return 1; }).is(errc::circuit_open));
  }
  CHECK(limiter.limit().available(env.now()) == 4);
}

TEST_CASE("rate_limiter: a breaker outside, told to ignore rejections, stays closed",
          "[rate_limiter]") {
  // A breaker counts every failure by default, a rejection from a policy
  // inside it included: outside a limiter it is told to ignore them.
  venv env;
  auto breaker = keel::circuit_breaker({.trip = keel::consecutive_failures{.threshold = 2}})
                     .ignore(keel::on::rejection);
  const auto limiter = keel::rate_limiter({.limit = 1, .period = 1s}).with_environment(env);
  const auto guarded = keel::pipeline(std::ref(breaker), limiter);
  CHECK(guarded.try_execute([] { return 1; }).has_value());
  for (int i = 0; i < 5; ++i) CHECK(guarded.try_execute([] { return 1; }).is(errc::rate_limited));
  CHECK(breaker.state() == keel::circuit_state::closed);
}

TEST_CASE("rate_limiter: inside a retry, each attempt is charged; a rejection is not retried",
          "[rate_limiter]") {
  venv env;
  const auto limiter = keel::rate_limiter({.limit = 3, .period = 1h}).with_environment(env);
  const auto guarded =
      keel::pipeline(keel::retry({.max_attempts = 5}).with_environment(env), limiter);
  int calls = 0;
  const auto o = guarded.try_execute([&]() -> int {
    ++calls;
    throw std::runtime_error("fails");
  });
  CHECK(calls == 3);  // the fourth attempt was refused, and a refusal ends the retry
  CHECK(o.is(errc::rate_limited));
}

TEST_CASE("rate_limiter: a 429's Retry-After pauses every limit; an inner breaker's does not",
          "[rate_limiter]") {
  venv env;
  keel::testing::recording_listener<keel::rate_limit_paused> log;
  const auto limiter = keel::rate_limiter({.limit = 100, .period = 1s, .max_pause = 20s})
                           .with_environment(env)
                           .with_listener(log);
  const auto o = limiter.try_execute([]() -> int { throw http_429({.retry_after = 5s}); });
  CHECK(o.has_exception());
  CHECK(limiter.limit().paused_until() == env.now() + 5s);
  REQUIRE(log.count<keel::rate_limit_paused>() == 1);
  CHECK(log.all<keel::rate_limit_paused>()[0].pause == 5s);
  const auto refused = limiter.try_execute([] { return 1; });
  CHECK(refused.is(errc::rate_limited));
  CHECK(refused.retry_after() == std::optional<duration>(5s));
  // Capped at max_pause.
  env.advance(5s);
  CHECK(limiter.try_execute([]() -> int { throw http_429({.retry_after = 1h}); }).has_exception());
  CHECK(limiter.limit().paused_until() == env.now() + 20s);
  // A breaker's rejection carries a retry_after too: it is not the dependency's.
  env.advance(20s);
  keel::circuit_breaker breaker({.trip = keel::consecutive_failures{.threshold = 1}});
  breaker.isolate();
  const auto guarded = keel::pipeline(limiter, std::ref(breaker));
  CHECK(guarded.try_execute([] { return 1; }).is(errc::circuit_isolated));
  CHECK(limiter.limit().paused_until() <= env.now());
}

TEST_CASE("rate_limiter: a remaining-quota hint read from the result tightens the limit",
          "[rate_limiter]") {
  venv env;
  const auto limiter = keel::rate_limiter({.limit = 1000, .period = 1min})
                           .with_environment(env)
                           .with_hint([](const auto& o) {
                             keel::hint h;
                             if constexpr (requires { o.value().remaining_tokens; }) {
                               if (o.has_value())
                                 h.quota = keel::quota_hint{o.value().remaining_tokens, 1min};
                             }
                             return h;
                           });
  CHECK(limiter.try_execute([] { return completion{1, 100}; }).has_value());
  CHECK(limiter.limit().available(env.now()) == 100);
  CHECK(limiter.try_execute([] { return completion{1, 900}; }).has_value());  // never loosens
  CHECK(limiter.limit().available(env.now()) == 99);
}

TEST_CASE("rate_limiter: an oversize cost is refused with no retry_after", "[rate_limiter]") {
  venv env;
  const auto limiter = keel::rate_limiter({.limit = 100, .period = 1s, .max_wait = 1h})
                           .with_environment(env)
                           .with_cost([](const keel::context&) -> std::uint64_t { return 101; });
  const auto o = limiter.try_execute([] { return 1; });
  CHECK(o.is(errc::rate_limited));
  CHECK_FALSE(o.retry_after());
  CHECK(env.sleeps().empty());
}

TEST_CASE("rate_limits: all limits admit a call or none is charged (exact rollback)",
          "[rate_limiter]") {
  venv env;
  const rate_limit_options rpm{.limit = 3, .period = 1min};
  const rate_limit_options tpm{.limit = 1000, .period = 1min};
  const auto limiter =
      keel::rate_limits(rpm, tpm).with_environment(env).with_cost([](const keel::context& c) {
        const auto t = c.user_value<keel::rate_cost>();
        return std::array<std::uint64_t, 2>{1, t ? t->units : 0};
      });
  const auto with_tokens = [](std::uint64_t n) {
    keel::context c;
    c.set_user_value(keel::rate_cost{n});
    return c;
  };
  CHECK(limiter.try_execute(with_tokens(600), [] { return 0; }).has_value());
  const auto rpm_tat = limiter.limit(0).tat();
  // Tokens refuse: the request-per-minute slot taken first is given back exactly.
  const auto o = limiter.try_execute(with_tokens(500), [] { return 0; });
  CHECK(o.is(errc::rate_limited));
  CHECK(limiter.limit(0).tat() == rpm_tat);
  CHECK(limiter.limit(0).available(env.now()) == 2);
  CHECK(limiter.limit(1).available(env.now()) == 400);
  CHECK(limiter.try_execute(with_tokens(300), [] { return 0; }).has_value());
  CHECK(limiter.try_execute(with_tokens(0), [] { return 0; }).has_value());  // charged 1
  CHECK(limiter.limit(1).available(env.now()) == 99);
  // Requests refuse first: no token is charged.
  CHECK(limiter.try_execute(with_tokens(50), [] { return 0; }).is(errc::rate_limited));
  CHECK(limiter.limit(1).available(env.now()) == 99);
}

TEST_CASE("rate_limits: a reservation settles every limit once; unsettled, the estimate stands",
          "[rate_limiter]") {
  venv env;
  const auto limiter =
      keel::rate_limits(rate_limit_options{.limit = 10, .period = 1s},
                        rate_limit_options{.limit = 1000, .period = 1s, .max_debt = 100})
          .with_environment(env);
  {
    auto r = limiter.reserve({1, 500});
    REQUIRE(r);
    CHECK(r.pending());
    r.settle({1, 200});
    CHECK_FALSE(r.pending());
    r.settle({1, 0});  // a second settle does nothing
    r.cancel();        // nor a cancel after it
  }
  CHECK(limiter.limit(0).available(env.now()) == 9);
  CHECK(limiter.limit(1).available(env.now()) == 800);
  static_cast<void>(limiter.reserve({1, 300}));  // destroyed unsettled at once
  CHECK(limiter.limit(1).available(env.now()) == 500);
  {
    auto never_left = limiter.reserve({1, 300});
    never_left.cancel();
  }
  CHECK(limiter.limit(0).available(env.now()) == 8);
  CHECK(limiter.limit(1).available(env.now()) == 500);
  {
    auto over = limiter.reserve({1, 500});
    over.settle({1, 5000});  // into debt: at most 100 beyond an empty bucket
  }
  CHECK(limiter.limit(1).tat() == env.now() + 1100ms);
  auto refused = limiter.reserve({1, 1});
  CHECK_FALSE(refused);
  CHECK(refused.refused_by() == 1);
  CHECK(refused.retry_after() == std::optional<duration>(101ms));
  CHECK(limiter.limit(0).available(env.now()) == 7);  // the refusal took nothing
}

TEST_CASE("rate_limiter: counters count its events", "[rate_limiter]") {
  venv env;
  keel::counters c;
  const auto limiter =
      keel::rate_limiter({.limit = 1, .period = 1s}).with_environment(env).with_counters(c);
  CHECK(limiter.try_execute([] { return 1; }).has_value());
  CHECK(limiter.try_execute([] { return 1; }).is(errc::rate_limited));
  CHECK(limiter.try_execute([]() -> int { throw http_429({.retry_after = 1s}); })
            .is(errc::rate_limited));
  CHECK(c.count<keel::rate_limit_rejected>() == 2);
  CHECK(to_string_view(keel::event_kind::rate_limit_rejected) == "rate_limit_rejected");
  CHECK(to_string_view(keel::event_kind::rate_limit_paused) == "rate_limit_paused");
  REQUIRE_THROWS_AS(keel::rate_limiter({.limit = 0}), keel::config_error);
}

TEST_CASE("rate_limiter: a result whose copy or move throws: no escape, no leak, the charge stands",
          "[rate_limiter][hostile]") {
  venv env;
  const auto limiter = keel::rate_limiter({.limit = 100, .period = 1s})
                           .with_environment(env)
                           .with_actual_cost([](const auto& o) -> std::optional<std::uint64_t> {
                             return o.has_value() ? std::optional<std::uint64_t>(3) : std::nullopt;
                           });
  for (long k = 1; k <= 6; ++k) {
    keel_test::hostile_reset(k);
    const auto before = limiter.limit().available(env.now());
    {
      const auto o = limiter.try_execute([] { return keel_test::hostile(7); });
      if (o.has_value()) {
        CHECK(o.value().value() == 7);
        CHECK(limiter.limit().available(env.now()) == before - 3);  // settled to 3
      } else {
        // The move that threw: before the limiter saw the value, the estimate
        // (1) stands; after, the value was settled (3) and then lost.
        CHECK(o.has_exception());
        const auto now_free = limiter.limit().available(env.now());
        CHECK((now_free == before - 1 || now_free == before - 3));
      }
    }
    env.advance(1s);
  }
  keel_test::hostile_reset(0);
  CHECK(keel_test::hostile_counters().bad_destroys == 0);
}

TEST_CASE("rate_limiter: once every waiter cancelled, a call that never left gets all back",
          "[rate_limiter]") {
  venv env;
  const auto limiter =
      keel::rate_limiter({.limit = 1, .period = 1s, .burst = 2}).with_environment(env);
  const bool newest_first = GENERATE(true, false);
  auto a = limiter.reserve(2);
  auto w1 = limiter.reserve(1, 10s);
  auto w2 = limiter.reserve(1, 10s);
  REQUIRE(a);
  REQUIRE(w1.wait() == 1s);
  REQUIRE(w2.wait() == 2s);
  if (newest_first) {
    w2.cancel();
    w1.cancel();
  } else {
    w1.cancel();
    w2.cancel();
  }
  a.cancel();
  CHECK(limiter.limit().available(env.now()) == 2);
  CHECK(limiter.limit().tat() <= env.now());
}

TEST_CASE("rate_limits: a refused reservation holds nothing; the waiter it was is done",
          "[rate_limiter]") {
  venv env;
  // x: 1 per second, burst 1; y: 1 per hour, burst 1.
  const auto limiter = keel::rate_limits(rate_limit_options{.limit = 1, .period = 1s},
                                         rate_limit_options{.limit = 1, .period = 1h})
                           .with_environment(env);
  auto a = limiter.reserve({1, 1});
  REQUIRE(a);
  // x would have it wait 1 s; y refuses: x's slot and its wait are given back.
  auto refused = limiter.reserve({1, 1}, 10s);
  REQUIRE_FALSE(refused);
  CHECK_FALSE(refused.pending());
  CHECK(refused.refused_by() == 1);
  CHECK(refused.wait() == 0s);
  refused.settle({5, 5});  // does nothing
  refused.cancel();        // nor this
  CHECK(limiter.limit(0).tat() == env.now() + 1s);
  // No waiter is left: the call that never left gets all of its slots back.
  a.cancel();
  CHECK(limiter.limit(0).available(env.now()) == 1);
  CHECK(limiter.limit(1).available(env.now()) == 1);
}

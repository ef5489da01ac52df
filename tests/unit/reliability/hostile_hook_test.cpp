// SPDX-License-Identifier: BSL-1.0
// Every user hook keel calls, run with a version that throws, from one table:
// predicates (keel::on:: or any plain callable), listeners, hint extractors,
// delay functions, fallback producers, cache keys. Each row checks that
// nothing escapes try_execute and that the documented reading of the throw
// holds ("matches" for a predicate, "no hint", "stop retrying", ...).
//
// A second test reads keel's public headers and lists every member or
// function template that takes a callable of a template type; each must be a
// row of the table or of the list of entities that are not user hooks. A hook
// added later without a row fails it.
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <keel/admission.hpp>
#include <keel/circuit_breaker.hpp>
#include <keel/failover/endpoint_pool.hpp>
#include <keel/failover/leader_follower.hpp>
#include <keel/fallback.hpp>
#include <keel/pipeline.hpp>
#include <keel/retry.hpp>
#include <keel/testing/virtual_environment.hpp>
#include <keel/timeout.hpp>

#include "support/catch.hpp"
#include "support/expected.hpp"

namespace {

using namespace std::chrono_literals;
using keel::circuit_state;
using keel::errc;
using keel::outcome;
using venv = keel::testing::virtual_environment;

struct hook_error : std::runtime_error {
  hook_error() : std::runtime_error("hook") {}
};

/// A predicate of any kind that throws.
struct throwing_predicate {
  template <class... A>
  bool operator()(const A&...) const {
    throw hook_error();
  }
};

/// A listener whose every handler throws.
struct throwing_listener {
  std::shared_ptr<int> heard = std::make_shared<int>(0);
  template <class E>
  void on(const E&) const {
    ++*heard;
    throw hook_error();
  }
};

/// An error type whose conversion to std::error_code throws.
struct throwing_code {
  operator std::error_code() const { throw hook_error(); }  // NOLINT(google-explicit-constructor)
};

/// A key whose hash throws (std::hash below), for last_known_good.
struct hostile_key {
  int k = 0;
  bool operator==(const hostile_key&) const = default;
};

}  // namespace

template <>
struct std::hash<hostile_key> {
  std::size_t operator()(const hostile_key&) const { throw hook_error(); }
};

namespace {

int fails() { throw std::runtime_error("down"); }

/// Runs `call` and fails the test if an exception escapes.
template <class Call>
auto no_escape(Call call) {
  bool escaped = false;
  decltype(call()) o = decltype(call())::from_keel(errc::cancelled);
  try {
    o = call();
  } catch (...) {
    escaped = true;
  }
  REQUIRE_FALSE(escaped);
  return o;
}

struct hook_row {
  const char* header;  // relative to include/keel
  const char* name;    // the setter or function that takes the hook
  std::function<void()> check;
};

const std::vector<hook_row>& hook_table() {
  static const std::vector<hook_row> rows = {
      // ---- circuit breaker --------------------------------------------------
      {"circuit_breaker/circuit_breaker.hpp", "handle",
       [] {  // a throwing Handles counts a failure: threshold 1 opens
         venv env;
         auto b = keel::circuit_breaker{{.trip = keel::consecutive_failures{.threshold = 1}}}
                      .handle(throwing_predicate{})
                      .with_environment(env);
         auto o = no_escape([&] { return b.try_execute([] { return 1; }); });
         CHECK(o.has_value());
         CHECK(b.state() == circuit_state::open);
       }},
      {"circuit_breaker/circuit_breaker.hpp", "ignore",
       [] {  // a throwing Ignores ignores: failures do not open
         venv env;
         auto b = keel::circuit_breaker{{.trip = keel::consecutive_failures{.threshold = 1}}}
                      .ignore(throwing_predicate{})
                      .with_environment(env);
         auto o = no_escape([&] { return b.try_execute(fails); });
         CHECK(o.has_exception());
         CHECK(b.state() == circuit_state::closed);
         CHECK(b.metrics().failures == 0);
       }},
      {"circuit_breaker/circuit_breaker.hpp", "with_listener",
       [] {
         venv env;
         throwing_listener l;
         auto b = keel::circuit_breaker{{.trip = keel::consecutive_failures{.threshold = 1}}}
                      .with_environment(env)
                      .with_listener(l);
         (void)no_escape([&] { return b.try_execute(fails); });
         CHECK(b.state() == circuit_state::open);
         auto r = no_escape([&] { return b.try_execute([] { return 1; }); });
         CHECK(r.is(errc::circuit_open));
         CHECK(*l.heard >= 3);  // state_changed, opened, rejected
       }},
      // ---- admission ------------------------------------------------------------
      {"admission/adaptive_limiter.hpp", "drop_on",
       [] {  // a throwing drop predicate reads every outcome as a drop: the limit falls
         venv env;
         auto l = keel::adaptive_limiter(keel::aimd_limit({.initial_limit = 40}),
                                         {.min_window_samples = 1})
                      .drop_on(throwing_predicate{})
                      .with_environment(env);
         auto o = no_escape([&] {
           return l.try_execute([&] {
             env.advance(10ms);
             return 1;
           });
         });
         CHECK(o.value() == 1);
         CHECK(l.limit() == 36);
         CHECK(l.in_flight() == 0);
       }},
      {"admission/adaptive_limiter.hpp", "with_listener",
       [] {  // a listener that throws is ignored; the slot is given back
         venv env;
         throwing_listener heard;
         auto l = keel::adaptive_limiter(keel::aimd_limit({.initial_limit = 1, .min_limit = 1}),
                                         {.min_window_samples = 1})
                      .with_environment(env)
                      .with_listener(heard);
         auto o = no_escape([&] {
           return l.try_execute([&] {
             env.advance(10ms);
             return l.try_execute([] { return 2; }).is(errc::bulkhead_full) ? 1 : 0;
           });
         });
         CHECK(o.value() == 1);
         CHECK(*heard.heard == 2);  // limiter_rejected, limit_changed
         CHECK(l.limit() == 2);
         CHECK(l.in_flight() == 0);
       }},
      {"admission/adaptive_throttle.hpp", "refuse_on",
       [] {  // a throwing refusal predicate reads every outcome as a refusal
         keel::testing::basic_virtual_environment<keel::testing::fixed_random> env(
             keel::testing::fixed_random(0.99));
         auto t = keel::adaptive_throttle().refuse_on(throwing_predicate{}).with_environment(env);
         for (int i = 0; i < 3; ++i) {
           auto o = no_escape([&] { return t.try_execute([] { return 1; }); });
           CHECK(o.value() == 1);
         }
         CHECK(t.probability() == Approx(0.75));  // 3 requests, no accept: 3 / 4
       }},
      {"admission/adaptive_throttle.hpp", "with_listener",
       [] {
         keel::testing::basic_virtual_environment<keel::testing::fixed_random> env(
             keel::testing::fixed_random(0.0));
         throwing_listener heard;
         auto t = keel::adaptive_throttle().with_environment(env).with_listener(heard);
         (void)no_escape([&] { return t.try_execute(fails); });
         auto o = no_escape([&] { return t.try_execute([] { return 1; }); });
         CHECK(o.is(errc::throttled));
         CHECK(*heard.heard == 1);
       }},
      {"circuit_breaker/breaker_state_machine.hpp", "try_acquire_with",
       [] {  // driven by hand: the caller's clock throws before any change of state
         venv env;
         keel::breaker_state_machine core({.trip = keel::consecutive_failures{.threshold = 1}});
         auto a = core.try_acquire(env.now());
         REQUIRE(a.admitted);
         (void)core.record(a, keel::call_result::failure, env.now());
         REQUIRE(core.state() == circuit_state::open);
         const auto before = core.metrics(env.now());
         CHECK_THROWS_AS(core.try_acquire_with([]() -> keel::time_point { throw hook_error(); }),
                         hook_error);
         CHECK(core.state() == circuit_state::open);
         CHECK(core.metrics(env.now()).rejections == before.rejections);
       }},
      {"circuit_breaker/breaker_state_machine.hpp", "emit_for",
       [] {  // a driver's listener that throws is ignored, event after event
         throwing_listener l;
         const keel::circuit_transition opened{circuit_state::closed, circuit_state::open};
         const keel::event_source from = keel::source_of("db");
         keel::emit_for(l, opened, from);  // state_changed, opened
         keel::emit_for(l, std::optional<keel::circuit_transition>(opened), from);  // the same
         keel::emit_for(l, keel::circuit_admission{}, from);                        // rejected
         keel::emit_for(l, keel::open_rejection(1s), from);                         // rejected
         CHECK(*l.heard == 6);
       }},
      // ---- retry ------------------------------------------------------------
      {"retry/retry.hpp", "handle",
       [] {  // a throwing Handles retries, up to max_attempts
         venv env;
         int calls = 0;
         auto r =
             keel::retry({.max_attempts = 3}).handle(throwing_predicate{}).with_environment(env);
         auto o = no_escape([&] { return r.try_execute([&] { return ++calls; }); });
         CHECK(calls == 3);
         CHECK(o.has_value());
       }},
      {"retry/retry.hpp", "abort_on",
       [] {  // a throwing abort predicate aborts
         venv env;
         int calls = 0;
         keel::counters counters;
         auto r = keel::retry({.max_attempts = 3})
                      .abort_on(throwing_predicate{})
                      .with_environment(env)
                      .with_counters(counters);
         auto o = no_escape([&] {
           return r.try_execute([&]() -> int {
             ++calls;
             throw std::runtime_error("down");
           });
         });
         CHECK(calls == 1);
         CHECK(o.has_exception());
         CHECK(counters.count<keel::retry_aborted>() == 1);
       }},
      {"retry/retry.hpp", "with_hint",
       [] {  // a throwing hint extractor means "no hint": the backoff decides
         venv env;
         int calls = 0;
         auto r =
             keel::retry({.max_attempts = 2, .backoff = keel::constant_backoff{3s}})
                 .handle(keel::on::result([](int v) { return v < 0; }))
                 .with_hint([](const int&) -> std::optional<keel::duration> { throw hook_error(); })
                 .with_environment(env);
         auto o = no_escape([&] { return r.try_execute([&] { return ++calls == 2 ? 1 : -1; }); });
         CHECK(o.value() == 1);
         CHECK(env.sleeps() == std::vector<keel::duration>{3s});
       }},
      {"retry/retry.hpp", "with_delay",
       [] {  // a throwing delay function stops retrying
         venv env;
         int calls = 0;
         keel::counters counters;
         auto r = keel::retry({.max_attempts = 3})
                      .with_delay([](int, const keel::failure&) -> std::optional<keel::duration> {
                        throw hook_error();
                      })
                      .with_environment(env)
                      .with_counters(counters);
         auto o = no_escape([&] {
           return r.try_execute([&]() -> int {
             ++calls;
             throw std::runtime_error("down");
           });
         });
         CHECK(calls == 1);
         CHECK(counters.count<keel::retries_exhausted>() == 1);
       }},
      {"retry/retry.hpp", "with_listener",
       [] {
         venv env;
         throwing_listener l;
         int calls = 0;
         auto r = keel::retry({.max_attempts = 3}).with_environment(env).with_listener(l);
         auto o = no_escape([&] {
           return r.try_execute([&]() -> int {
             ++calls;
             throw std::runtime_error("down");
           });
         });
         CHECK(calls == 3);
         CHECK(*l.heard == 3);  // two retry_scheduled, one retries_exhausted
       }},
      // ---- fallback ---------------------------------------------------------
      {"fallback/fallback.hpp", "handle",
       [] {  // a throwing Handles matches every outcome, the alternative's too
         auto f = keel::fallback(2).handle(throwing_predicate{});
         auto o = no_escape([&] { return f.try_execute([] { return 1; }); });
         REQUIRE(o.is(errc::all_fallbacks_failed));
         REQUIRE(o.causes().size() == 2);
         CHECK(o.causes()[0].value() == 1);
         CHECK(o.causes()[1].value() == 2);
       }},
      {"fallback/fallback.hpp", "with_listener",
       [] {
         throwing_listener l;
         auto f = keel::fallback(2).with_listener(l);
         auto o = no_escape([&] { return f.try_execute(fails); });
         CHECK(o.value() == 2);
         CHECK(*l.heard == 1);
       }},
      {"fallback/fallback.hpp", "fallback",  // the alternatives: a producer that throws
       [] {
         auto f = keel::fallback([]() -> int { throw hook_error(); }, 3);
         auto o = no_escape([&] { return f.try_execute(fails); });
         CHECK(o.value() == 3);
         auto all = keel::fallback([]() -> int { throw hook_error(); });
         auto failed = no_escape([&] { return all.try_execute(fails); });
         REQUIRE(failed.is(errc::all_fallbacks_failed));
         REQUIRE(failed.causes().size() == 2);
         CHECK(keel::on::exception<hook_error>(failed.causes()[1]));
       }},
      {"fallback/alternative.hpp", "when",
       [] {  // a plain callable `when` that throws: the alternative stands in
         auto f = keel::fallback(
             keel::alternative(5).when([](const outcome<int>&) -> bool { throw hook_error(); }));
         auto o = no_escape([&] { return f.try_execute(fails); });
         CHECK(o.value() == 5);
       }},
      {"fallback/last_known_good.hpp", "last_known_good",  // the key's hash throws
       [] {
         venv env;
         keel::last_known_good<int, hostile_key, venv> cache({}, env);
         auto p = keel::pipeline(keel::fallback(cache.serve(hostile_key{1}), 7),
                                 cache.record(hostile_key{1}));
         auto recorded = no_escape([&] { return p.try_execute([] { return 1; }); });
         CHECK(recorded.value() == 1);  // recording failed quietly
         CHECK(cache.size() == 0);
         auto served = no_escape([&] { return p.try_execute(fails); });
         CHECK(served.value() == 7);  // serving failed: the next alternative
       }},
      // ---- leader_follower ---------------------------------------------------
      {"failover/leader_follower.hpp", "with_signal",
       [] {  // an extractor that throws means "no signal": the failure is returned
         auto lf = keel::leader_follower<int>({10, 11}).with_signal(
             [](const outcome<int>&, std::size_t) -> keel::leader_signal { throw hook_error(); });
         std::vector<std::size_t> reached;
         auto o = no_escape([&] {
           return lf.try_execute([&](const keel::context& ctx) -> int {
             reached.push_back(ctx.target().index());
             throw keel::error(std::make_error_code(std::errc::permission_denied),
                               keel::hint{.leader = keel::leader_hint{1, 1}});
           });
         });
         CHECK(o.has_exception());
         CHECK(reached == std::vector<std::size_t>{0});
         CHECK(lf.leader() == 0);
       }},
      {"failover/leader_follower.hpp", "failover_on",
       [] {  // a throwing failover_on matches: an idempotent call moves on; at most once does not
         auto lf = keel::leader_follower<int>({10, 11}).failover_on(throwing_predicate{});
         std::vector<std::size_t> reached;
         const auto call = [&](const keel::context& ctx) -> int {
           reached.push_back(ctx.target().index());
           if (ctx.target().index() == 0) throw std::runtime_error("down");
           return 1;
         };
         CHECK(no_escape([&] { return lf.try_execute(call); }).value() == 1);
         CHECK(reached == std::vector<std::size_t>{0, 1});
         REQUIRE(lf.set_leader(0));
         reached.clear();
         CHECK(no_escape([&] { return lf.at_most_once().try_execute(call); }).has_exception());
         CHECK(reached == std::vector<std::size_t>{0});
       }},
      {"failover/leader_follower.hpp", "not_sent",
       [] {  // a throwing not_sent cannot prove the call was not delivered: never re-sent
         auto lf = keel::leader_follower<int>({10, 11})
                       .failover_on(keel::on::any_failure)
                       .not_sent(throwing_predicate{});
         std::vector<std::size_t> reached;
         auto o = no_escape([&] {
           return lf.at_most_once().try_execute([&](const keel::context& ctx) -> int {
             reached.push_back(ctx.target().index());
             throw std::runtime_error("down");
           });
         });
         CHECK(o.has_exception());
         CHECK(reached == std::vector<std::size_t>{0});
       }},
      {"failover/leader_follower.hpp", "with_listener",
       [] {  // a throwing listener is ignored: the redirect is still followed and cached
         throwing_listener l;
         auto lf = keel::leader_follower<int>({10, 11}).with_listener(l);
         auto o = no_escape([&] {
           return lf.try_execute([&](const keel::context& ctx) -> int {
             if (ctx.target().index() == 0)
               throw keel::error(std::make_error_code(std::errc::permission_denied),
                                 keel::hint{.leader = keel::leader_hint{1, 3}});
             return 1;
           });
         });
         CHECK(o.value() == 1);
         CHECK(lf.leader() == 1);
         CHECK(*l.heard == 2);  // leader_changed and redirected
       }},
      // ---- endpoint_pool -------------------------------------------------------
      {"failover/endpoint_pool.hpp", "handle",
       [] {  // a throwing predicate matches: the result counts as a failure (ejects at 1)
         keel::outlier_detection_options od;
         od.consecutive_failures = 1;
         od.success_rate = std::nullopt;
         od.max_ejection_percent = 100;
         auto pool = keel::endpoint_pool<int>({10, 11}, {.outlier_detection = od})
                         .handle(throwing_predicate{});
         CHECK(no_escape([&] { return pool.try_execute([] { return 1; }); }).value() == 1);
         CHECK(pool.status(0).ejected);
       }},
      {"failover/endpoint_pool.hpp", "with_listener",
       [] {  // a throwing listener is ignored: the ejection happens and holds
         throwing_listener l;
         keel::outlier_detection_options od;
         od.consecutive_failures = 1;
         od.success_rate = std::nullopt;
         od.max_ejection_percent = 100;
         auto pool = keel::endpoint_pool<int>({10, 11}, {.outlier_detection = od}).with_listener(l);
         CHECK(no_escape([&] { return pool.try_execute(fails); }).has_exception());
         CHECK(pool.status(0).ejected);
         CHECK(*l.heard == 1);
         CHECK(no_escape([&] {
                 return pool.try_execute(
                     [](const keel::context& ctx) { return *ctx.target().get<int>(); });
               }).value() == 11);
       }},
      {"failover/endpoint_pool.hpp", "with_health_check",
       [] {  // a probe that throws is a failed probe
         auto pool = keel::endpoint_pool<int>({10, 11}).with_health_check(
             [](const int&) -> bool { throw hook_error(); }, {.unhealthy_threshold = 1});
         CHECK(pool.run_health_checks() == 2);
         CHECK(pool.status(0).check_failed);
         CHECK(pool.status(1).check_failed);
       }},
      {"failover/endpoint_pool.hpp", "on_warm_up",
       [] {  // a warm-up hook that throws is ignored: the failover happens
         std::vector<keel::pool_member<int>> members{{10, 1, 0}, {11, 1, 1}};
         int warmed = 0;
         auto pool =
             keel::endpoint_pool<int>(members, {.panic_threshold = 0}).on_warm_up([&](const int&) {
               ++warmed;
               throw hook_error();
             });
         pool.isolate(0);
         auto o = no_escape([&] {
           return pool.try_execute(
               [](const keel::context& ctx) { return *ctx.target().get<int>(); });
         });
         CHECK(o.value() == 11);
         CHECK(warmed == 1);
       }},
      // ---- rate limiter -----------------------------------------------------
      {"admission/rate_limiter.hpp", "with_cost",
       [] {  // a cost function that throws charges the bucket: never less than the call costs
         venv env;
         const auto l =
             keel::rate_limiter({.limit = 10, .period = std::chrono::seconds(1)})
                 .with_environment(env)
                 .with_cost([](const keel::context&) -> std::uint64_t { throw hook_error(); });
         auto o = no_escape([&] { return l.try_execute([] { return 1; }); });
         CHECK(o.has_value());
         CHECK(l.limit().available(env.now()) == 0);
       }},
      {"admission/rate_limiter.hpp", "with_actual_cost",
       [] {  // an actual-cost function that throws: the estimate stands
         venv env;
         const auto l = keel::rate_limiter({.limit = 10, .period = std::chrono::seconds(1)})
                            .with_environment(env)
                            .with_actual_cost([](const auto&) -> std::optional<std::uint64_t> {
                              throw hook_error();
                            });
         auto o = no_escape([&] { return l.try_execute([] { return 1; }); });
         CHECK(o.has_value());
         CHECK(l.limit().available(env.now()) == 9);
       }},
      {"admission/rate_limiter.hpp", "with_hint",
       [] {  // a hint reader that throws: no hint, no pause
         venv env;
         const auto l = keel::rate_limiter({.limit = 10, .period = std::chrono::seconds(1)})
                            .with_environment(env)
                            .with_hint([](const auto&) -> keel::hint { throw hook_error(); });
         auto o = no_escape([&] { return l.try_execute(fails); });
         CHECK(o.has_exception());
         CHECK(l.limit().paused_until() < env.now());
       }},
      {"admission/rate_limiter.hpp", "with_listener",
       [] {  // a listener that throws is ignored: the refusal stands
         venv env;
         throwing_listener t;
         const auto l = keel::rate_limiter({.limit = 1, .period = std::chrono::seconds(1)})
                            .with_environment(env)
                            .with_listener(t);
         CHECK(no_escape([&] { return l.try_execute([] { return 1; }); }).has_value());
         CHECK(no_escape([&] {
                 return l.try_execute([] { return 1; });
               }).is(keel::errc::rate_limited));
         CHECK(*t.heard == 1);
       }},
      // ---- keel::listeners: a member that throws ---------------------------
      {"core/events.hpp", "on",
       [] {
         throwing_listener bad;
         auto heard = std::make_shared<int>(0);
         auto r = keel::retry({.max_attempts = 2, .backoff = keel::constant_backoff{1ns}})
                      .with_environment(venv{})
                      .with_listener(keel::listeners(
                          bad, [heard](const keel::retry_scheduled&) { ++*heard; }));
         int calls = 0;
         auto o = no_escape([&] {
           return r.try_execute([&] {
             if (++calls == 1) throw std::runtime_error("down");
             return 1;
           });
         });
         CHECK(o.value() == 1);
         CHECK(*bad.heard >= 1);
         CHECK(*heard == 1);  // the member after the throwing one still heard it
       }},
      // ---- timeout ----------------------------------------------------------
      {"timeout/timeout.hpp", "with_listener",
       [] {
         venv env;
         throwing_listener l;
         auto t = keel::timeout({.timeout = 1s}).with_environment(env).with_listener(l);
         auto o = no_escape([&] {
           return t.try_execute([&] {
             env.advance(2s);
             return 1;
           });
         });
         CHECK(o.is(errc::timeout));
         CHECK(*l.heard == 1);
       }},
      // ---- bulkhead -----------------------------------------------------------
      {"admission/bulkhead.hpp", "with_listener",
       [] {  // a listener that throws hears every event; the permits stay exact
         venv env;
         throwing_listener l;
         const auto b = keel::bulkhead<>({.max_concurrent = 1, .max_queue = 1, .max_wait = 5ms})
                            .with_environment(env)
                            .with_listener(l);
         auto held = b.try_acquire();
         auto o = no_escape([&] { return b.try_execute([] { return 1; }); });
         CHECK(o.is(errc::bulkhead_full));
         CHECK(*l.heard == 2);  // bulkhead_queued, then bulkhead_rejected
         held.release();
         CHECK(no_escape([&] { return b.try_execute([] { return 1; }); }).value() == 1);
         CHECK(b.in_flight() == 0);
         CHECK(b.queued() == 0);
       }},
      // ---- keel::on:: predicates over user callables -------------------------
      // A part that throws makes the whole predicate a policy asks match, `!` included.
      {"core/classify.hpp", "result",
       [] {
         const outcome<int> o(1);
         CHECK(keel::detail::ask_user_predicate(keel::on::result(throwing_predicate{}), o));
         CHECK(keel::detail::ask_user_predicate(!keel::on::result(throwing_predicate{}), o));
         // Through a breaker: the outcome it could not judge is a failure.
         auto guarded =
             keel::circuit_breaker{{.trip = keel::consecutive_failures{.threshold = 1}}}.handle(
                 !keel::on::result(throwing_predicate{}));
         no_escape([&] { return guarded.try_execute([] { return -1; }); });
         CHECK(guarded.state() == keel::circuit_state::open);
         CHECK(guarded.metrics().failures == 1);
       }},
      {"core/classify.hpp", "error",
       [] {
         const outcome<keel_test::expected<int, int>> o(keel_test::unexpected<int>(3));
         CHECK(keel::detail::ask_user_predicate(keel::on::error(throwing_predicate{}), o));
         CHECK(keel::detail::ask_user_predicate(!keel::on::error(throwing_predicate{}), o));
       }},
      {"core/classify.hpp", "when",
       [] {
         const outcome<int> o(1);
         CHECK(keel::detail::ask_user_predicate(keel::on::when(throwing_predicate{}), o));
         CHECK(keel::detail::ask_user_predicate(
                   !keel::on::when(throwing_predicate{}) && keel::on::any_failure,
                   outcome<int>(1)) == true);
         // Retry with a negated throwing predicate retries within max_attempts.
         int calls = 0;
         auto r = keel::retry({.max_attempts = 3, .backoff = keel::constant_backoff{1ns}})
                      .with_environment(venv{})
                      .handle(!keel::on::when(throwing_predicate{}));
         no_escape([&] { return r.try_execute([&] { return ++calls; }); });
         CHECK(calls == 3);
       }},
      // An error type whose conversion to std::error_code throws: no code, never an escape.
      {"core/expected_like.hpp", "error_value_code",
       [] {
         using R = keel_test::expected<int, throwing_code>;
         const auto bad = [] { return R(keel_test::unexpected<throwing_code>(throwing_code{})); };
         keel::circuit_breaker b{{.trip = keel::consecutive_failures{.threshold = 1}}};
         auto broken = no_escape([&] { return b.try_execute(bad); });
         CHECK(broken.has_error_value());
         CHECK_FALSE(broken.code());
         CHECK(b.state() == keel::circuit_state::open);  // a failure all the same
         int calls = 0;
         auto r = keel::retry({.max_attempts = 2, .backoff = keel::constant_backoff{1ns}})
                      .with_environment(venv{});
         no_escape([&] {
           return r.try_execute([&] {
             ++calls;
             return bad();
           });
         });
         CHECK(calls == 2);
         auto f = keel::fallback(R(5));
         CHECK(no_escape([&] { return f.try_execute(bad); }).value().value() == 5);
         // An alternative guarded by an open breaker: its rejection, not std::terminate.
         auto g = keel::fallback(keel::alternative([&] { return bad(); }).through(std::ref(b)));
         auto o =
             no_escape([&] { return g.try_execute([]() -> R { throw std::runtime_error("x"); }); });
         CHECK(o.is(errc::all_fallbacks_failed));
         CHECK_FALSE(keel::is_cancellation(broken));
         CHECK_FALSE(keel::is_rejection(broken));
       }},
  };
  return rows;
}

/// Function templates taking a template-typed argument that are not user
/// hooks, with the reason.
const std::map<std::pair<std::string, std::string>, const char*>& not_hooks() {
  static const std::map<std::pair<std::string, std::string>, const char*> list = {
      {{"any_pipeline.hpp", "any_pipeline"}, "a policy, not user code"},
      {{"any_pipeline.hpp", "next_ref"}, "detail: refers to keel's own `next`"},
      {{"circuit_breaker/breaker_state_machine.hpp", "acquire_not_closed"},
       "private: try_acquire_with's clock (row try_acquire_with)"},
      {{"circuit_breaker/breaker_state_machine.hpp", "with_rule"},
       "private: keel's own lambdas over the trip rule"},
      {{"core/context.hpp", "to"}, "detail::clock_ref: keel's own reference to a clock"},
      {{"core/expected_like.hpp", "convert_error_value"},
       "detail: called only through error_value_code, which guards it (row error_value_code)"},
      // An environment whose clock, sleeper or random source throws is not
      // guarded: out of scope by the clock and sleeper contracts (docs/reliability.md).
      {{"circuit_breaker/circuit_breaker.hpp", "with_environment"}, "an environment, see above"},
      {{"fallback/last_known_good.hpp", "with_environment"}, "an environment, see above"},
      {{"retry/retry.hpp", "with_environment"}, "an environment, see above"},
      {{"failover/leader_follower.hpp", "with_environment"}, "an environment, see above"},
      {{"failover/endpoint_pool.hpp", "with_environment"}, "an environment, see above"},
      {{"timeout/timeout.hpp", "with_environment"}, "an environment, see above"},
      {{"admission/bulkhead.hpp", "with_environment"}, "an environment, see above"},
      {{"admission/rate_limiter.hpp", "with_environment"}, "an environment, see above"},
      {{"core/context.hpp", "set_user_value"},
       "a trivially copyable value, copied bytewise: no user code runs"},
      {{"core/call_slots.hpp", "set"}, "user_slot: a trivially copyable value, copied bytewise"},
      {{"core/observe.hpp", "attach_counters"}, "keel::counters, not user code"},
      {{"core/observe.hpp", "on"}, "counted_listener: hands the event on through keel::emit"},
      {{"core/events.hpp", "unwrap_ref"}, "detail: unwraps a listener held by std::ref"},
      {{"core/outcome.hpp", "construct_value"}, "detail: stores a result"},
      {{"core/inspect.hpp", "call_ignoring_exceptions"}, "the guard keel puts around a hook"},
      {{"core/policy.hpp", "make_next"}, "detail: keel's own closures"},
      {{"core/policy.hpp", "pass_next"}, "detail: keel's own closures"},
      {{"core/policy.hpp", "policy_of"}, "detail: a policy holder"},
      {{"fallback/alternative.hpp", "through"}, "a policy, not user code"},
      {{"fallback/alternative.hpp", "make_alternative"}, "detail: wraps an alternative"},
      {{"retry/retry.hpp", "result_hint"}, "private: calls with_hint's extractor (row with_hint)"},
      {{"timeout/timeout.hpp", "with_watchdog"}, "keel::watchdog, not user code"},
      {{"admission/adaptive_limiter.hpp", "with_environment"}, "an environment, see above"},
      {{"admission/adaptive_throttle.hpp", "with_environment"}, "an environment, see above"},
      {{"admission/adaptive_limiter.hpp", "inspect"},
       "runs the caller's own function on the caller's thread, outside any call; a throw "
       "reaches the caller and a guard frees the window"},
      {{"failover/outlier_detector.hpp", "tell"},
       "private: calls record/sweep/restore's sink, which outlier_detector_test throws from"},
  };
  return list;
}

/// (header, name) of every `template <class T>` (or constrained `template <C T>`)
/// function whose parameter is a T.
std::set<std::pair<std::string, std::string>> scan_headers() {
  namespace fs = std::filesystem;
  const fs::path root = fs::path(KEEL_SOURCE_DIR) / "include" / "keel";
  // `class T`, or a constrained `concept T` / `concept<U> T` / `concept<Us...> T`:
  // a hook behind a concept is still a hook.
  const std::regex template_line(R"(^\s*template <(?:class|[\w:]+(?:<[\w:., ]*>)?) (\w+)>\s*$)");
  std::set<std::pair<std::string, std::string>> found;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.path().extension() != ".hpp") continue;
    const std::string rel = entry.path().lexically_relative(root).generic_string();
    if (rel.rfind("detail/", 0) == 0 || rel.find("/detail/") != std::string::npos ||
        rel.rfind("testing/", 0) == 0) {
      continue;
    }
    std::ifstream in(entry.path());
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    for (std::size_t i = 0; i + 1 < lines.size(); ++i) {
      std::smatch m;
      if (!std::regex_match(lines[i], m, template_line)) continue;
      const std::string t = m[1];
      const std::string next = lines[i + 1] + (i + 2 < lines.size() ? " " + lines[i + 2] : "");
      const std::regex takes_t(R"((\w+)\((?:const )?)" + t + R"((?:&&|&)? \w+[,)])");
      std::smatch f;
      if (std::regex_search(next, f, takes_t) && f[1] != "requires") found.insert({rel, f[1]});
    }
  }
  return found;
}

}  // namespace

TEST_CASE("hostile hooks: every user hook that throws leaves the call and the policy sound",
          "[reliability][hostile][hooks]") {
  for (const hook_row& row : hook_table()) {
    DYNAMIC_SECTION(row.header << " " << row.name) { row.check(); }
  }
}

TEST_CASE("hostile hooks: the table lists every hook the public headers take",
          "[reliability][hostile][hooks]") {
  const auto found = scan_headers();
  REQUIRE(found.size() >= 20);  // the scan works at all
  std::set<std::pair<std::string, std::string>> listed;
  for (const hook_row& row : hook_table()) listed.insert({row.header, row.name});
  for (const auto& [key, why] : not_hooks()) listed.insert(key);
  for (const auto& f : found) {
    INFO("a hook without a row in hostile_hook_test.cpp: " << f.first << " " << f.second);
    CHECK(listed.count(f) == 1);
  }
  // And no row names a function that no longer exists (rows found by
  // construction rather than by the scan: the fallback's, the cache's and
  // the error type's conversion, which is not a function keel takes).
  for (const auto& l : listed) {
    if (l.second == "fallback" || l.second == "last_known_good" || l.second == "error_value_code") {
      continue;
    }
    INFO("a row for a function the headers no longer have: " << l.first << " " << l.second);
    CHECK(found.count(l) == 1);
  }
}

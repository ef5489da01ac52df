// SPDX-License-Identifier: BSL-1.0
// One observability model: every event names its source (the policy's name,
// and the named pipeline of the call), and every policy counts into one
// shape of counters (keel::counters, per event kind) that its copies share.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <keel/keel.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;
using keel::event_kind;
using keel::testing::virtual_environment;

namespace {

template <class P, class = void>
constexpr bool has_counters_member = false;
template <class P>
constexpr bool has_counters_member<P, std::void_t<decltype(std::declval<const P&>().counters())>> =
    true;

/// Every event of every policy, with its source.
struct sources {
  std::shared_ptr<std::vector<std::string>> seen = std::make_shared<std::vector<std::string>>();
  template <keel::counted_event E>
  void on(const E& e) const {
    seen->push_back(std::string(to_string_view(E::kind)) + " " + std::string(e.source.pipeline) +
                    "/" + std::string(e.source.policy));
  }
};

std::uint64_t total(const keel::counters& c) {
  std::uint64_t n = 0;
  for (const event_kind k : keel::event_kinds) n += c.count(k);
  return n;
}

const auto throws_down = []() -> int { throw std::runtime_error("down"); };

/// Throws from every handler.
struct throwing {
  template <keel::counted_event E>
  void on(const E&) const {
    throw std::runtime_error("listener bug");
  }
};

}  // namespace

// ---- Names -------------------------------------------------------------------

TEST_CASE("observe: a policy_name is owned, inline and trivially copyable", "[core][observe]") {
  STATIC_REQUIRE(std::is_trivially_copyable_v<keel::policy_name>);
  STATIC_REQUIRE(sizeof(keel::policy_name) == keel::policy_name::capacity + 1);
  STATIC_REQUIRE(keel::policy_name("retry").view() == "retry");
  std::string caller = "payments.retry";
  const auto r = keel::retry().named(caller);
  caller.assign(40, 'x');  // the caller's buffer changes, then goes away
  caller.clear();
  caller.shrink_to_fit();
  CHECK(r.name() == "payments.retry");
  const auto copy = r;
  CHECK(copy.name() == "payments.retry");
  CHECK(copy.name().data() != r.name().data());  // each copy holds its own
}

TEST_CASE("observe: a name is cut at 31 bytes, never inside a character", "[core][observe]") {
  const std::string exact(keel::policy_name::capacity, 'a');
  CHECK(keel::policy_name(exact).view() == exact);
  CHECK(keel::policy_name(exact + "b").view() == exact);
  CHECK(keel::policy_name(std::string(100, 'z')).view().size() == 31);
  // "é" is two bytes (C3 A9): at bytes 30-31 it would be cut in half, so it goes.
  const std::string thirty(30, 'a');
  CHECK(keel::policy_name(thirty + "\xC3\xA9").view() == thirty);
  // At bytes 29-30 it fits whole.
  const std::string twenty_nine(29, 'a');
  CHECK(keel::policy_name(twenty_nine + "\xC3\xA9" + "zz").view() == twenty_nine + "\xC3\xA9");
  // A three-byte character (E2 82 AC) cut after its first or second byte goes whole.
  CHECK(keel::policy_name(thirty + "\xE2\x82\xAC").view() == thirty);
  CHECK(keel::policy_name(std::string(29, 'a') + "\xE2\x82\xAC").view() == std::string(29, 'a'));
  CHECK(keel::policy_name().empty());
  CHECK(keel::retry().named(std::string(64, 'n')).name().size() == 31);
}

TEST_CASE("observe: each policy is named after its kind until named", "[core][observe]") {
  CHECK(keel::retry().name() == "retry");
  CHECK(keel::timeout().name() == "timeout");
  CHECK(keel::fallback(1).name() == "fallback");
  const keel::circuit_breaker breaker;
  CHECK(breaker.name() == "circuit_breaker");
  CHECK(breaker.core().name() == "circuit_breaker");
  const keel::circuit_breaker named = keel::circuit_breaker().named("db");
  CHECK(named.name() == "db");
  CHECK(keel::pipeline(keel::retry()).named("payments").name() == "payments");
}

TEST_CASE("observe: retry events name the retry and the call's pipeline", "[core][observe]") {
  virtual_environment env;
  sources s;
  const auto r = keel::retry({.max_attempts = 3, .backoff = keel::constant_backoff{1s}})
                     .with_environment(env)
                     .with_listener(s)
                     .named("payments.retry");
  int calls = 0;
  const auto flaky = [&] {
    if (++calls < 2) throw std::runtime_error("flaky");
    return calls;
  };
  CHECK(r.try_execute(flaky).value() == 2);
  calls = 0;
  CHECK(keel::pipeline(r).named("payments").try_execute(flaky).value() == 2);
  (void)keel::pipeline(r).try_execute(throws_down);  // unnamed: no pipeline
  CHECK(*s.seen == std::vector<std::string>{
                       "retry_scheduled /payments.retry", "retry_succeeded /payments.retry",
                       "retry_scheduled payments/payments.retry",
                       "retry_succeeded payments/payments.retry", "retry_scheduled /payments.retry",
                       "retry_scheduled /payments.retry", "retries_exhausted /payments.retry"});
}

TEST_CASE("observe: breaker transitions carry its name alone, a rejection in a call the pipeline",
          "[core][observe][circuit_breaker]") {
  virtual_environment env;
  sources s;
  keel::circuit_breaker b =
      keel::circuit_breaker(
          {.trip = keel::consecutive_failures{.threshold = 1}, .open_duration = 1s})
          .with_environment(env)
          .with_listener(s)
          .named("db");
  auto p = keel::pipeline(std::ref(b)).named("orders");
  (void)p.try_execute(throws_down);       // opens
  (void)p.try_execute([] { return 1; });  // rejected in the call
  (void)b.try_acquire();                  // rejected outside any call
  env.advance(1s);
  (void)p.try_execute([] { return 1; });  // half-opens, then closes
  CHECK(*s.seen == std::vector<std::string>{"circuit_state_changed /db", "circuit_opened /db",
                                            "call_rejected orders/db", "call_rejected /db",
                                            "circuit_state_changed /db", "circuit_half_opened /db",
                                            "circuit_state_changed /db", "circuit_closed /db"});
}

TEST_CASE("observe: timeout and fallback events name their policy and pipeline",
          "[core][observe]") {
  virtual_environment env;
  sources s;
  const auto t =
      keel::timeout({.timeout = 10ms}).with_environment(env).with_listener(s).named("slow");
  const auto f = keel::fallback(keel::alternative(1).when(keel::on::keel_error), 2)
                     .with_listener(s)
                     .named("backup");
  auto p = keel::pipeline(f, t).named("search");
  CHECK(p.execute([&] {
    env.advance(20ms);
    return 0;
  }) == 1);
  CHECK(p.execute(throws_down) == 2);
  CHECK(*s.seen == std::vector<std::string>{"timed_out search/slow", "fallback_used search/backup",
                                            "fallback_skipped search/backup",
                                            "fallback_used search/backup"});
}

TEST_CASE("observe: a named pipeline keeps the caller's operation and the outermost name",
          "[core][observe]") {
  sources s;
  const auto r = keel::retry({.max_attempts = 2, .backoff = keel::backoff::none()})
                     .with_listener(s)
                     .named("r");
  auto inner = keel::pipeline(r).named("inner");
  auto outer = keel::pipeline(inner).named("outer");
  (void)outer.try_execute(throws_down);
  (void)inner.try_execute(throws_down);
  CHECK(*s.seen == std::vector<std::string>{"retry_scheduled outer/r", "retries_exhausted outer/r",
                                            "retry_scheduled inner/r",
                                            "retries_exhausted inner/r"});
  // The context a named pipeline runs in is given back as it was.
  keel::context ctx;
  const auto next = [](keel::context& c) {
    CHECK(c.operation() == "outer");
    return keel::outcome<int>(std::in_place, 1);
  };
  CHECK(outer.run<int>(next, ctx).value() == 1);
  CHECK(ctx.operation().empty());
  // An operation the caller named wins over the pipelines' names.
  keel::context named;
  named.set_operation("GET /quote");
  (void)outer.try_execute(named, throws_down);
  CHECK(s.seen->back() == "retries_exhausted GET /quote/r");
  // A named pipeline is a policy like any other.
  keel::any_pipeline<int> erased(outer);
  CHECK(erased.try_execute(throws_down).has_exception());
}

// ---- Counters ----------------------------------------------------------------

TEST_CASE("observe: event kinds name themselves and are listed in order", "[core][observe]") {
  CHECK(keel::event_kinds.size() == keel::event_kind_count);
  for (std::size_t i = 0; i < keel::event_kind_count; ++i) {
    CHECK(static_cast<std::size_t>(keel::event_kinds[i]) == i);
    CHECK(to_string_view(keel::event_kinds[i]) != "unknown");
  }
  CHECK(to_string_view(event_kind::retry_scheduled) == "retry_scheduled");
  CHECK(to_string_view(event_kind::fallback_cancelled) == "fallback_cancelled");
  CHECK(to_string_view(static_cast<event_kind>(200)) == "unknown");
  keel::counters c;
  c.add(static_cast<event_kind>(200));  // not a kind: counts nothing anywhere
  CHECK(total(c) == 0);
  CHECK(c.count(static_cast<event_kind>(200)) == 0);
  STATIC_REQUIRE(keel::retry_scheduled::kind == event_kind::retry_scheduled);
  STATIC_REQUIRE(keel::retry_succeeded::kind == event_kind::retry_succeeded);
  STATIC_REQUIRE(keel::call_rejected::kind == event_kind::call_rejected);
  STATIC_REQUIRE(keel::late_result_kept::kind == event_kind::late_result_kept);
  STATIC_REQUIRE(keel::fallback_skipped::kind == event_kind::fallback_skipped);
}

TEST_CASE("observe: the copy trap: a retry copied into a pipeline counts where its reader looks",
          "[core][observe]") {
  STATIC_REQUIRE_FALSE(has_counters_member<keel::retry<>>);  // no per-copy counters to misread
  keel::counters c;
  auto r = keel::retry({.max_attempts = 2, .backoff = keel::backoff::none()}).with_counters(c);
  auto p = keel::pipeline(r);
  int calls = 0;
  auto o = p.try_execute([&] {
    if (++calls < 2) throw std::runtime_error("flaky");
    return 5;
  });
  CHECK(o.value() == 5);
  CHECK(c.count<keel::retry_scheduled>() == 1);  // counted by the pipeline's copy, read here
  CHECK(c.count<keel::retry_succeeded>() == 1);
  (void)r.try_execute(throws_down);  // the original counts into the same place
  CHECK(c.count<keel::retry_scheduled>() == 2);
  CHECK(c.count<keel::retries_exhausted>() == 1);
  CHECK(total(c) == 4);
}

TEST_CASE("observe: retry counts every kind exactly", "[core][observe][retry]") {
  virtual_environment env;
  keel::counters c;
  keel::retry_budget budget(keel::retry_budget_options::grpc(2, 1));
  const auto r = keel::retry({.max_attempts = 3, .backoff = keel::constant_backoff{1s}})
                     .with_environment(env)
                     .abort_on(keel::on::exception<std::logic_error>)
                     .with_counters(c);
  int calls = 0;
  (void)r.try_execute([&] {
    if (++calls < 3) throw std::runtime_error("flaky");
    return 1;
  });                                                                   // 2 scheduled, 1 succeeded
  (void)r.try_execute(throws_down);                                     // 2 scheduled, 1 exhausted
  (void)r.try_execute([]() -> int { throw std::logic_error("bug"); });  // 1 aborted
  // 2 tokens: a failure leaves 1 (not > 1): the budget refuses the retry.
  (void)r.with_budget(budget).try_execute(throws_down);
  CHECK(c.count<keel::retry_scheduled>() == 4);
  CHECK(c.count<keel::retry_succeeded>() == 1);
  CHECK(c.count<keel::retries_exhausted>() == 1);
  CHECK(c.count<keel::retry_aborted>() == 1);
  CHECK(c.count<keel::retry_budget_exhausted>() == 1);
  CHECK(total(c) == 8);
  c.reset();
  CHECK(total(c) == 0);
}

TEST_CASE("observe: breaker counts every kind exactly, and metrics() agree",
          "[core][observe][circuit_breaker]") {
  virtual_environment env;
  keel::counters c;
  keel::circuit_breaker b =
      keel::circuit_breaker(
          {.trip = keel::consecutive_failures{.threshold = 2}, .open_duration = 1s})
          .with_environment(env)
          .with_counters(c);
  (void)b.try_execute(throws_down);
  (void)b.try_execute(throws_down);                                   // opened
  for (int i = 0; i < 3; ++i) (void)b.try_execute([] { return 1; });  // 3 rejected
  env.advance(1s);
  (void)b.try_execute([] { return 1; });        // half-opened, closed
  b.isolate();                                  // a transition by hand
  (void)b.try_execute([] { return 1; });        // rejected
  CHECK_FALSE(b.try_acquire());                 // rejected, by the two-step API
  CHECK(c.count<keel::circuit_opened>() == 1);  // isolated is a state of its own
  CHECK(c.count<keel::circuit_half_opened>() == 1);
  CHECK(c.count<keel::circuit_closed>() == 1);
  CHECK(c.count<keel::circuit_state_changed>() == 4);
  CHECK(c.count<keel::call_rejected>() == 5);
  CHECK(b.metrics().rejections == c.count<keel::call_rejected>());
}

TEST_CASE("observe: timeout and fallback count every kind exactly", "[core][observe]") {
  virtual_environment env;
  keel::counters c;
  const auto t = keel::timeout({.timeout = 10ms}).with_environment(env).with_counters(c);
  const auto keeping = keel::timeout({.timeout = 10ms, .keep_late_result = true})
                           .with_environment(env)
                           .with_counters(c);
  const auto late = [&] {
    env.advance(11ms);
    return 1;
  };
  (void)t.try_execute(late);
  (void)t.try_execute(late);
  (void)keeping.try_execute(late);
  (void)t.try_execute([] { return 1; });
  CHECK(c.count<keel::timed_out>() == 2);
  CHECK(c.count<keel::late_result_kept>() == 1);

  const auto f =
      keel::fallback(keel::alternative(1).when(keel::on::keel_error), throws_down).with_counters(c);
  (void)f.try_execute(throws_down);              // skipped, then the second fails: all failed
  (void)keel::pipeline(f, t).try_execute(late);  // timed out, the first alternative used
  std::stop_source stop;
  stop.request_stop();
  (void)f.try_execute(stop.get_token(), throws_down);  // cancelled before any alternative
  CHECK(c.count<keel::fallback_skipped>() == 1);
  CHECK(c.count<keel::all_fallbacks_failed>() == 1);
  CHECK(c.count<keel::fallback_used>() == 1);
  CHECK(c.count<keel::fallback_cancelled>() == 1);
  CHECK(c.count<keel::timed_out>() == 3);
  CHECK(total(c) == 8);
}

TEST_CASE("observe: counters also work as a listener in a fan-out", "[core][observe]") {
  keel::counters c;
  keel::testing::recording_listener<keel::retry_scheduled> log;
  const auto r = keel::retry({.max_attempts = 2, .backoff = keel::backoff::none()})
                     .with_listener(keel::listeners(log, std::cref(c)));
  (void)r.try_execute(throws_down);
  CHECK(c.count<keel::retry_scheduled>() == 1);
  CHECK(c.count<keel::retries_exhausted>() == 1);
  CHECK(log.count<keel::retry_scheduled>() == 1);
}

TEST_CASE("observe: an event is built only for a listener that hears it; counting builds none",
          "[core][observe]") {
  struct hears_scheduled {
    int* heard;
    void on(const keel::retry_scheduled&) const { ++*heard; }
  };
  int built = 0;
  int heard = 0;
  keel::counters c;
  const auto make = [&] {
    ++built;
    return keel::retry_scheduled{};
  };
  keel::report<keel::retry_scheduled>(keel::no_listener{}, make);
  CHECK(built == 0);
  keel::report<keel::retry_scheduled>(keel::attach_counters(keel::no_listener{}, c), make);
  CHECK(built == 0);
  CHECK(c.count<keel::retry_scheduled>() == 1);
  keel::report<keel::retries_exhausted>(keel::attach_counters(hears_scheduled{&heard}, c), [&] {
    ++built;
    return keel::retries_exhausted{};
  });
  CHECK(built == 0);  // counted, not heard: not built
  CHECK(c.count<keel::retries_exhausted>() == 1);
  keel::report<keel::retry_scheduled>(keel::attach_counters(hears_scheduled{&heard}, c), make);
  CHECK(built == 1);
  CHECK(heard == 1);
  CHECK(c.count<keel::retry_scheduled>() == 2);
  STATIC_REQUIRE(sizeof(keel::retry<>) ==
                 sizeof(decltype(keel::retry().with_listener(keel::no_listener{}))));
}

namespace {
struct unkinded {};  // an event of another library: no keel::event_kind
struct hears_unkinded {
  void on(const unkinded&) const {}
};
}  // namespace

TEST_CASE("observe: observes<L, E> is true exactly when something hears or counts E",
          "[core][observe]") {
  using counted = keel::counted_listener<keel::no_listener>;
  STATIC_REQUIRE_FALSE(keel::observes<keel::no_listener, keel::retry_scheduled>);
  STATIC_REQUIRE(keel::observes<counted, keel::retry_scheduled>);
  STATIC_REQUIRE_FALSE(keel::observes<counted, unkinded>);  // nothing to count it by
  STATIC_REQUIRE(keel::observes<keel::counted_listener<hears_unkinded>, unkinded>);
  STATIC_REQUIRE(keel::observes<hears_unkinded, unkinded>);
  STATIC_REQUIRE_FALSE(keel::observes<hears_unkinded, keel::timed_out>);
  STATIC_REQUIRE(keel::observes<std::reference_wrapper<const keel::counters>, keel::timed_out>);
}

TEST_CASE("observe: a listener that throws changes no count", "[core][observe]") {
  virtual_environment env;
  keel::counters c;
  const auto r = keel::retry({.max_attempts = 3, .backoff = keel::constant_backoff{1s}})
                     .with_environment(env)
                     .with_listener(throwing{})
                     .with_counters(c);
  int calls = 0;
  auto o = r.try_execute([&] {
    if (++calls < 3) throw std::runtime_error("flaky");
    return calls;
  });
  CHECK(o.value() == 3);
  CHECK(c.count<keel::retry_scheduled>() == 2);
  CHECK(c.count<keel::retry_succeeded>() == 1);
  CHECK(env.sleeps() == std::vector<keel::duration>{1s, 1s});
}

TEST_CASE("observe: copies on many threads count into one place, exactly",
          "[core][observe][threads]") {
  keel::counters c;
  const auto r =
      keel::retry({.max_attempts = 3, .backoff = keel::backoff::none()}).with_counters(c);
  keel::circuit_breaker open_breaker =
      keel::circuit_breaker({.trip = keel::consecutive_failures{.threshold = 1},
                             .open_duration = 1h,
                             .max_open_duration = 1h})
          .with_counters(c);
  (void)open_breaker.try_execute(throws_down);
  REQUIRE(open_breaker.state() == keel::circuit_state::open);
  constexpr int threads = 4;
  constexpr int calls = 500;
  std::atomic<bool> go{false};
  std::atomic<std::uint64_t> checked{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, copy = r] {  // each thread a copy of its own
      const auto p = keel::pipeline(copy, std::ref(open_breaker));
      while (!go.load()) std::this_thread::yield();
      for (int i = 0; i < calls; ++i) {
        (void)copy.try_execute([n = 0]() mutable {
          if (++n < 2) throw std::runtime_error("flaky");
          return n;
        });
        (void)p.try_execute([] { return 1; });  // rejected, never retried
        // Counts only grow, whatever the other threads do.
        if (c.count<keel::retry_scheduled>() >= static_cast<std::uint64_t>(i + 1)) {
          checked.fetch_add(1);
        }
      }
    });
  }
  go.store(true);
  for (auto& t : pool) t.join();
  constexpr auto n = static_cast<std::uint64_t>(threads) * calls;
  CHECK(checked.load() == n);
  CHECK(c.count<keel::retry_scheduled>() == n);
  CHECK(c.count<keel::retry_succeeded>() == n);
  CHECK(c.count<keel::call_rejected>() == n);
  CHECK(c.count<keel::retry_aborted>() == n);  // the rejection, not retried
  CHECK(open_breaker.metrics().rejections == n);
}

TEST_CASE("observe: a hand-driven retry gives its events the context's source",
          "[core][observe][decision]") {
  virtual_environment env;
  sources s;
  const auto r = keel::retry({.max_attempts = 2, .backoff = keel::constant_backoff{1s}})
                     .with_environment(env)
                     .with_listener(s)
                     .named("by-hand");
  keel::context ctx;
  keel::retry_call call = r.begin();
  auto o = keel::outcome<int>::from_exception(std::make_exception_ptr(std::runtime_error("x")));
  REQUIRE(r.handles(o));
  REQUIRE(r.decide(o, call, ctx));
  o = keel::outcome<int>(std::in_place, 1);
  REQUIRE_FALSE(r.handles(o));
  r.succeeded(call, ctx);
  CHECK(*s.seen ==
        std::vector<std::string>{"retry_scheduled /by-hand", "retry_succeeded /by-hand"});
}

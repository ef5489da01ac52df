// SPDX-License-Identifier: BSL-1.0
// The decision cores of retry, fallback and timeout, driven one step at a time
// by the test itself: no run(), no execute(), virtual time. Each script is
// played twice, once through try_execute (or run()) and once by hand, and
// the events, counters, sleeps, attempts and outcome must come out the same:
// an asynchronous driver needs nothing the public step API does not give.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <variant>
#include <vector>

#include <keel/fallback.hpp>
#include <keel/retry.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/virtual_environment.hpp>
#include <keel/timeout.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

namespace {

using keel::duration;
using keel::outcome;
using keel::time_point;
using keel::testing::virtual_environment;

// ---- Events and outcomes as text, so that two runs compare with == -------

std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  }
}

std::string text(const keel::failure& f) {
  std::string s = f.exception ? "threw '" + what_of(f.exception) + "'" : f.code.message();
  if (f.hint.retry_after) s += " after " + std::to_string(f.hint.retry_after->count()) + "ns";
  return s;
}

std::string text(const keel::retry_scheduled& e) {
  return "scheduled " + std::to_string(e.attempt) + " in " + std::to_string(e.delay.count()) +
         (e.from_hint ? "ns (hint): " : "ns: ") + text(e.failure);
}
std::string text(const keel::retry_succeeded& e) {
  return "succeeded after " + std::to_string(e.attempts);
}
std::string text(const keel::retries_exhausted& e) {
  return "exhausted " + std::to_string(e.attempts) + " reason " +
         std::to_string(static_cast<int>(e.reason)) + ": " + text(e.failure);
}
std::string text(const keel::retry_aborted& e) {
  return "aborted " + std::to_string(e.attempt) + " reason " +
         std::to_string(static_cast<int>(e.reason)) + ": " + text(e.failure);
}
std::string text(const keel::retry_budget_exhausted& e) {
  return "budget refused " + std::to_string(e.attempt) + ": " + text(e.failure);
}
std::string text(const keel::fallback_used& e) {
  return "used " + std::to_string(e.index) + " after " + text(e.failure);
}
std::string text(const keel::fallback_skipped& e) { return "skipped " + std::to_string(e.index); }
std::string text(const keel::all_fallbacks_failed& e) {
  return "all failed " + std::to_string(e.count);
}
std::string text(const keel::fallback_cancelled& e) {
  return "cancelled after " + std::to_string(e.tried);
}

template <class Log>
std::vector<std::string> texts(const Log& log) {
  std::vector<std::string> out;
  for (const auto& event : log.events()) {
    std::visit([&](const auto& e) { out.push_back(text(e)); }, event);
  }
  return out;
}

/// Every event's source, pipeline/policy, which both drivers must give alike.
template <class Log>
std::vector<std::string> sources(const Log& log) {
  std::vector<std::string> out;
  for (const auto& event : log.events()) {
    std::visit(
        [&](const auto& e) {
          out.push_back(std::string(e.source.pipeline) + "/" + std::string(e.source.policy));
        },
        event);
  }
  return out;
}

/// The operation every scripted call runs under, which events must name.
constexpr std::string_view operation = "checkout";

std::string text(const outcome<int>& o) {
  if (o.has_value()) return "value " + std::to_string(o.value());
  if (o.has_exception()) return "threw '" + what_of(o.exception()) + "'";
  std::string s = o.code().message();
  for (const outcome<int>& cause : o.causes()) s += " | " + text(cause);
  return s;
}

// ---- Retry ---------------------------------------------------------------

using retry_log = keel::testing::recording_listener<keel::retry_scheduled, keel::retry_succeeded,
                                                    keel::retries_exhausted, keel::retry_aborted,
                                                    keel::retry_budget_exhausted>;

/// One attempt of a script: it takes `latency` of virtual time, then throws
/// `failure` or, when that is null, returns `value`.
struct step {
  duration latency{};
  std::exception_ptr failure{};
  int value = 0;
  bool stop = false;  // the attempt asks the caller's stop source to stop
};

step fails(const std::string& what, duration latency = 0ms) {
  return {latency, std::make_exception_ptr(std::runtime_error(what))};
}
step fails_with(std::exception_ptr e, duration latency = 0ms) { return {latency, std::move(e)}; }
step returns(int v, duration latency = 0ms) { return {latency, nullptr, v}; }

/// What the retry's keel::counters counted.
struct retry_counts {
  std::uint64_t retries = 0, successes_after_retry = 0, exhausted = 0, aborted = 0,
                budget_refusals = 0;
};

/// Everything one play of a script leaves behind.
struct retry_trace {
  std::string result;
  std::vector<std::string> events;  // without retry_succeeded, which `succeeded` counts
  std::vector<std::string> sources;
  bool succeeded = false;
  retry_counts counters;
  std::vector<int> attempts;  // ctx.attempt() as each attempt saw it
  std::vector<duration> sleeps;
  duration elapsed{};
  std::int64_t budget_milli_tokens = -1;  // -1: no budget

  bool operator==(const retry_trace& o) const {
    return result == o.result && events == o.events && sources == o.sources &&
           succeeded == o.succeeded && counters.retries == o.counters.retries &&
           counters.successes_after_retry == o.counters.successes_after_retry &&
           counters.exhausted == o.counters.exhausted && counters.aborted == o.counters.aborted &&
           counters.budget_refusals == o.counters.budget_refusals && attempts == o.attempts &&
           sleeps == o.sleeps && elapsed == o.elapsed &&
           budget_milli_tokens == o.budget_milli_tokens;
  }
};

/// What a retry case needs besides its script.
struct retry_setup {
  std::optional<duration> deadline{};  // the caller's deadline, from the start
  std::optional<keel::retry_budget_options> budget{};
  int stop_during_sleep = 0;  // the caller requests stop during this sleep (1-based)
};

/// Plays `script` as one attempt each, recording what each attempt saw.
struct player {
  const std::vector<step>& script;
  const virtual_environment& env;
  std::stop_source& source;
  std::vector<int> attempts;
  std::size_t next = 0;

  const step& begin_attempt(const keel::context& ctx) {
    const step& s = script.at(next++);
    attempts.push_back(ctx.attempt());
    env.advance(s.latency);
    if (s.stop) source.request_stop();
    return s;
  }
  // As a callable under try_execute / run().
  int operator()(const keel::context& ctx) {
    const step& s = begin_attempt(ctx);
    if (s.failure) std::rethrow_exception(s.failure);
    return s.value;
  }
  // As a hand-written driver sees it: the outcome itself.
  outcome<int> attempt(const keel::context& ctx) {
    const step& s = begin_attempt(ctx);
    if (s.failure) return outcome<int>::from_exception(s.failure);
    return outcome<int>(std::in_place, s.value);
  }
};

/// `make(env, log)` builds the retry. Plays `script` through run() and by
/// hand, and returns both traces.
template <class Make>
std::pair<retry_trace, retry_trace> play_retry(const std::vector<step>& script, Make make,
                                               const retry_setup& setup = {}) {
  std::pair<retry_trace, retry_trace> traces;
  for (int by_hand = 0; by_hand < 2; ++by_hand) {
    virtual_environment env;
    retry_log log;
    std::optional<keel::retry_budget> budget;
    if (setup.budget) budget.emplace(*setup.budget);
    keel::counters counters;
    const auto policy =
        (budget ? make(env, log).with_budget(*budget) : make(env, log)).with_counters(counters);

    std::stop_source source;
    int sleeps = 0;
    env.sleeper().on_sleep([&](duration) {
      if (++sleeps == setup.stop_during_sleep) source.request_stop();
    });
    keel::context ctx(source.get_token());
    ctx.set_operation(operation);
    if (setup.deadline) ctx.tighten_deadline(env.now() + *setup.deadline, env);
    const time_point start = env.now();
    player play{script, env, source, {}, 0};

    outcome<int> o = outcome<int>::from_keel(keel::errc::cancelled);
    if (by_hand == 0) {
      o = policy.template run<int>([&](keel::context& c) { return play.attempt(c); }, ctx);
    } else {
      // The driver: the decision core is asked after every attempt; the
      // driver waits (here on the virtual sleeper) and calls again.
      keel::retry_call call = policy.begin();
      ctx.set_attempt(call.attempt());
      o = play.attempt(ctx);
      for (;;) {
        if (!policy.handles(o)) {
          policy.succeeded(call, ctx);
          break;
        }
        const keel::retry_decision d = policy.decide(o, call, ctx);
        if (!d) break;
        if (!env.sleep_for(d.delay(), ctx.stop_token())) {
          policy.interrupted(o, call, ctx);
          break;
        }
        ctx.set_attempt(call.attempt());
        o = play.attempt(ctx);
      }
      ctx.set_attempt(1);
    }
    retry_trace& t = by_hand == 0 ? traces.first : traces.second;
    std::vector<std::string> events = texts(log);
    const bool succeeded = !events.empty() && events.back().rfind("succeeded after", 0) == 0;
    if (succeeded) events.pop_back();
    t = {text(o),
         events,
         sources(log),
         succeeded,
         {counters.count<keel::retry_scheduled>(), counters.count<keel::retry_succeeded>(),
          counters.count<keel::retries_exhausted>(), counters.count<keel::retry_aborted>(),
          counters.count<keel::retry_budget_exhausted>()},
         play.attempts,
         env.sleeps(),
         env.now() - start,
         budget ? budget->milli_tokens() : -1};
  }
  return traces;
}

keel::retry_options exact(int attempts, duration delay) {
  return {.max_attempts = attempts, .backoff = keel::constant_backoff{.delay = delay}};
}

auto plain_retry(keel::retry_options options) {
  return [options](const virtual_environment& env, const retry_log& log) {
    return keel::retry(options).with_environment(env).with_listener(log).named("orders");
  };
}

// ---- Fallback ------------------------------------------------------------

using fallback_log =
    keel::testing::recording_listener<keel::fallback_used, keel::fallback_skipped,
                                      keel::all_fallbacks_failed, keel::fallback_cancelled>;

struct fallback_trace {
  std::string result;
  std::vector<std::string> events;
  std::vector<std::string> sources;
  std::uint64_t used = 0, skipped = 0, all_failed = 0, cancelled = 0;
  std::vector<std::string> calls;  // which alternatives ran, after which failure

  bool operator==(const fallback_trace& o) const {
    return result == o.result && events == o.events && sources == o.sources && used == o.used &&
           skipped == o.skipped && all_failed == o.all_failed && cancelled == o.cancelled &&
           calls == o.calls;
  }
};

/// `make(calls)` builds the chain (with alternatives that note their calls in
/// `calls`); the primary gives `primary`. Plays through try_execute and by hand.
template <class Make>
std::pair<fallback_trace, fallback_trace> play_fallback(const step& primary, Make make) {
  std::pair<fallback_trace, fallback_trace> traces;
  for (int by_hand = 0; by_hand < 2; ++by_hand) {
    keel::counters counters;
    fallback_log log;
    std::vector<std::string> calls;
    const auto chain =
        make(calls).with_listener(std::cref(log)).with_counters(counters).named("prices");
    keel::context ctx;
    ctx.set_operation(operation);
    outcome<int> o = outcome<int>::from_keel(keel::errc::cancelled);
    if (by_hand == 0) {
      o = chain.try_execute(ctx, [&]() -> int {
        calls.push_back("primary");
        if (primary.failure) std::rethrow_exception(primary.failure);
        return primary.value;
      });
    } else {
      auto call = chain.template begin<int>();
      calls.push_back("primary");
      o = primary.failure ? outcome<int>::from_exception(primary.failure)
                          : outcome<int>(std::in_place, primary.value);
      for (;;) {
        if (!chain.handles(o)) {
          chain.succeeded(call, ctx);
          break;
        }
        const keel::fallback_decision d = chain.decide(o, call, ctx);
        if (!d) break;
        // The driver calls alternative d.alternative() itself (an
        // asynchronous one would await it here).
        o = chain.visit_alternative(d.alternative(), [&](const auto& alt) {
          return alt.template produce<int>(call.why(), ctx);
        });
      }
    }
    fallback_trace& t = by_hand == 0 ? traces.first : traces.second;
    t = {text(o),
         texts(log),
         sources(log),
         counters.count<keel::fallback_used>(),
         counters.count<keel::fallback_skipped>(),
         counters.count<keel::all_fallbacks_failed>(),
         counters.count<keel::fallback_cancelled>(),
         calls};
  }
  return traces;
}

/// An alternative that notes its call and the failure it stood in for, then
/// throws `what` (or returns `value` when `what` is empty).
auto noting(std::vector<std::string>& calls, std::string name, std::string what, int value = 0) {
  return [&calls, name, what, value](const outcome<int>& why) -> int {
    calls.push_back(name + " after " + text(why));
    if (!what.empty()) throw std::runtime_error(what);
    return value;
  };
}

}  // namespace

// ---- Retry, step by step ---------------------------------------------------

TEST_CASE("decision: retry's steps give what run() gives, attempt after attempt",
          "[decision][retry]") {
  const std::vector<step> script = {fails("down", 5ms), fails("down again", 5ms), returns(7, 5ms)};
  const auto [by_run, by_hand] = play_retry(script, plain_retry(exact(4, 100ms)));
  CHECK(by_hand == by_run);
  CHECK(by_run.result == "value 7");
  CHECK(by_run.succeeded);  // retry_succeeded, from succeeded(call, ctx) by hand
  CHECK(by_run.sources == std::vector<std::string>(3, "checkout/orders"));
  CHECK(by_run.attempts == std::vector<int>{1, 2, 3});
  CHECK(by_run.sleeps == std::vector<duration>{100ms, 100ms});
  CHECK(by_run.elapsed == 215ms);
  CHECK(by_run.events ==
        std::vector<std::string>{"scheduled 1 in 100000000ns: threw 'down'",
                                 "scheduled 2 in 100000000ns: threw 'down again'"});
  CHECK(by_run.counters.retries == 2);
  CHECK(by_run.counters.successes_after_retry == 1);
}

TEST_CASE("decision: a first-try success needs one handles() and succeeded()",
          "[decision][retry]") {
  const auto [by_run, by_hand] = play_retry({returns(1)}, plain_retry(exact(3, 100ms)));
  CHECK(by_hand == by_run);
  CHECK(by_run.result == "value 1");
  CHECK(by_run.events.empty());
  CHECK(by_run.sleeps.empty());
}

TEST_CASE("decision: retry's budget refuses the same retry step by step", "[decision][retry]") {
  // 3 tokens, a failure costs 1, retries only above 1.5: the first failure
  // leaves 2 (retry granted), the second 1 (refused).
  const retry_setup setup{
      .budget = keel::retry_budget_options{.max_tokens = 3, .token_ratio = 1, .failure_cost = 1}};
  const auto [by_run, by_hand] =
      play_retry({fails("a"), fails("b"), returns(1)}, plain_retry(exact(5, 10ms)), setup);
  CHECK(by_hand == by_run);
  CHECK(by_run.result == "threw 'b'");
  CHECK(by_run.events == std::vector<std::string>{"scheduled 1 in 10000000ns: threw 'a'",
                                                  "budget refused 2: threw 'b'"});
  CHECK(by_run.counters.budget_refusals == 1);
  CHECK(by_run.budget_milli_tokens == 1000);
}

TEST_CASE("decision: a budget hears of a success after a retry from succeeded()",
          "[decision][retry]") {
  const retry_setup setup{.budget = keel::retry_budget_options{
                              .max_tokens = 10, .token_ratio = 0.5, .failure_cost = 1}};
  const auto [by_run, by_hand] =
      play_retry({fails("a"), returns(2)}, plain_retry(exact(3, 10ms)), setup);
  CHECK(by_hand == by_run);
  CHECK(by_run.result == "value 2");
  CHECK(by_run.budget_milli_tokens == 9500);  // 10 - 1 + 0.5
}

TEST_CASE("decision: abort_on stops at the decision, as in run()", "[decision][retry]") {
  const auto make = [](const virtual_environment& env, const retry_log& log) {
    return keel::retry(exact(5, 10ms))
        .abort_on(keel::on::exception<std::invalid_argument>)
        .with_environment(env)
        .with_listener(log);
  };
  const auto [by_run, by_hand] = play_retry(
      {fails("a"), fails_with(std::make_exception_ptr(std::invalid_argument("bad"))), returns(1)},
      make);
  CHECK(by_hand == by_run);
  CHECK(by_run.result == "threw 'bad'");
  CHECK(by_run.events == std::vector<std::string>{"scheduled 1 in 10000000ns: threw 'a'",
                                                  "aborted 2 reason " +
                                                      std::to_string(static_cast<int>(
                                                          keel::give_up_reason::abort_predicate)) +
                                                      ": threw 'bad'"});
  CHECK(by_run.counters.aborted == 1);
}

TEST_CASE("decision: max_elapsed ends the retries at the same attempt", "[decision][retry]") {
  // Attempts take 200 ms, the backoff is 300 ms: attempt 2 ends at 700 ms, and
  // 700 + 300 reaches the 1 s limit.
  keel::retry_options o = exact(5, 300ms);
  o.max_elapsed = 1s;
  const auto [by_run, by_hand] =
      play_retry({fails("a", 200ms), fails("b", 200ms), returns(1, 200ms)}, plain_retry(o));
  CHECK(by_hand == by_run);
  CHECK(by_run.result == "threw 'b'");
  CHECK(by_run.elapsed == 700ms);
  CHECK(by_run.events.back() ==
        "exhausted 2 reason " +
            std::to_string(static_cast<int>(keel::give_up_reason::max_elapsed)) + ": threw 'b'");
  CHECK(by_run.counters.exhausted == 1);
}

TEST_CASE("decision: the caller's deadline ends the retries at the same attempt",
          "[decision][retry]") {
  // Deadline 450 ms: attempt 3 ends at 500 ms, past it.
  const auto [by_run, by_hand] =
      play_retry({fails("a", 100ms), fails("b", 100ms), fails("c", 100ms), returns(1)},
                 plain_retry(exact(5, 100ms)), {.deadline = 450ms});
  CHECK(by_hand == by_run);
  CHECK(by_run.result == "threw 'c'");
  CHECK(by_run.attempts == std::vector<int>{1, 2, 3});
  CHECK(by_run.events.back() ==
        "exhausted 3 reason " + std::to_string(static_cast<int>(keel::give_up_reason::deadline)) +
            ": threw 'c'");
}

TEST_CASE("decision: a hint replaces the backoff, clamped to max_hint_delay", "[decision][retry]") {
  keel::retry_options o = exact(4, 100ms);
  o.max_hint_delay = 2s;
  const auto busy = [](duration after) {
    return fails_with(std::make_exception_ptr(keel::error(keel::errc::timeout, after)));
  };
  const auto [by_run, by_hand] = play_retry({busy(250ms), busy(1h), returns(3)}, plain_retry(o));
  CHECK(by_hand == by_run);
  CHECK(by_run.result == "value 3");
  CHECK(by_run.sleeps == std::vector<duration>{250ms, 2s});
  REQUIRE(by_run.events.size() == 2);
  CHECK(by_run.events[0].rfind("scheduled 1 in 250000000ns (hint)", 0) == 0);
  CHECK(by_run.events[1].rfind("scheduled 2 in 2000000000ns (hint)", 0) == 0);
}

TEST_CASE("decision: a stop during the wait is interrupted(), a stop before it is decide()'s",
          "[decision][retry]") {
  const auto cancelled = "aborted 1 reason " +
                         std::to_string(static_cast<int>(keel::give_up_reason::cancelled)) +
                         ": threw 'a'";
  SECTION("during the wait") {
    const auto [by_run, by_hand] =
        play_retry({fails("a"), returns(1)}, plain_retry(exact(3, 50ms)), {.stop_during_sleep = 1});
    CHECK(by_hand == by_run);
    CHECK(by_run.result == keel::make_error_code(keel::errc::cancelled).message());
    CHECK(by_run.events ==
          std::vector<std::string>{"scheduled 1 in 50000000ns: threw 'a'", cancelled});
    CHECK(by_run.counters.retries == 1);
    CHECK(by_run.counters.aborted == 1);
  }
  SECTION("before the decision") {
    step a = fails("a");
    a.stop = true;
    const auto [by_run, by_hand] = play_retry({a, returns(1)}, plain_retry(exact(3, 50ms)));
    CHECK(by_hand == by_run);
    CHECK(by_run.result == keel::make_error_code(keel::errc::cancelled).message());
    CHECK(by_run.events == std::vector<std::string>{cancelled});
    CHECK(by_run.sleeps.empty());
    CHECK(by_run.counters.retries == 0);
  }
}

TEST_CASE("decision: max_attempts ends the retries at the same attempt", "[decision][retry]") {
  const auto [by_run, by_hand] =
      play_retry({fails("a"), fails("b"), fails("c"), returns(1)}, plain_retry(exact(3, 1ms)));
  CHECK(by_hand == by_run);
  CHECK(by_run.result == "threw 'c'");
  CHECK(by_run.events.back() ==
        "exhausted 3 reason " +
            std::to_string(static_cast<int>(keel::give_up_reason::max_attempts)) + ": threw 'c'");
}

TEST_CASE("decision: begin() reads the clock only when max_elapsed is set", "[decision][retry]") {
  struct counting_clock {
    virtual_environment env;
    std::shared_ptr<int> reads = std::make_shared<int>(0);
    time_point now() const {
      ++*reads;
      return env.now();
    }
    bool sleep_for(duration d, const std::stop_token& t) const { return env.sleep_for(d, t); }
    double uniform() const { return env.uniform(); }
  };
  const counting_clock env;
  const auto untimed = keel::retry(exact(3, 1ms)).with_environment(env);
  keel::retry_call call = untimed.begin();
  CHECK(*env.reads == 0);
  CHECK(call.attempt() == 1);
  keel::retry_options o = exact(3, 1ms);
  o.max_elapsed = 1s;
  const auto timed = keel::retry(o).with_environment(env);
  call = timed.begin();
  CHECK(*env.reads == 1);
}

TEST_CASE("decision: retry_decision says again, its delay and where it came from",
          "[decision][retry]") {
  constexpr keel::retry_decision stop = keel::retry_decision::stop();
  STATIC_REQUIRE_FALSE(stop.again());
  STATIC_REQUIRE(stop.delay() == duration::zero());
  constexpr keel::retry_decision hinted = keel::retry_decision::after(3ms, true);
  STATIC_REQUIRE(hinted.again());
  STATIC_REQUIRE(hinted.from_hint());
  STATIC_REQUIRE(hinted.delay() == 3ms);
  STATIC_REQUIRE_FALSE(keel::retry_decision::after(3ms, false).from_hint());
}

// ---- Fallback, step by step ------------------------------------------------

TEST_CASE("decision: fallback's steps walk two failed alternatives to a success",
          "[decision][fallback]") {
  const auto make = [](std::vector<std::string>& calls) {
    return keel::fallback(noting(calls, "alt0", "alt0 down"), noting(calls, "alt1", "alt1 down"),
                          noting(calls, "alt2", "", 42));
  };
  const auto [by_run, by_hand] = play_fallback(fails("primary down"), make);
  CHECK(by_hand == by_run);
  CHECK(by_run.sources == std::vector<std::string>{"checkout/prices"});  // fallback_used
  CHECK(by_run.result == "value 42");
  CHECK(by_run.calls == std::vector<std::string>{"primary", "alt0 after threw 'primary down'",
                                                 "alt1 after threw 'alt0 down'",
                                                 "alt2 after threw 'alt1 down'"});
  CHECK(by_run.events == std::vector<std::string>{"used 2 after threw 'alt1 down'"});
  CHECK(by_run.used == 1);
}

TEST_CASE("decision: fallback's steps end in all_fallbacks_failed with every cause",
          "[decision][fallback]") {
  const auto make = [](std::vector<std::string>& calls) {
    return keel::fallback(noting(calls, "alt0", "alt0 down"),
                          keel::alternative(noting(calls, "alt1", "", 1))
                              .when(keel::on::exception<std::invalid_argument>),
                          noting(calls, "alt2", "alt2 down"));
  };
  const auto [by_run, by_hand] = play_fallback(fails("primary down"), make);
  CHECK(by_hand == by_run);
  CHECK(by_run.result == keel::make_error_code(keel::errc::all_fallbacks_failed).message() +
                             " | threw 'primary down' | threw 'alt0 down' | threw 'alt2 down'");
  CHECK(by_run.events == std::vector<std::string>{"skipped 1", "all failed 3"});
  CHECK(by_run.skipped == 1);
  CHECK(by_run.all_failed == 1);
}

TEST_CASE("decision: a primary success or an untaken failure ends the walk at once",
          "[decision][fallback]") {
  const auto make = [](std::vector<std::string>& calls) {
    return keel::fallback(keel::alternative(noting(calls, "alt0", "", 1))
                              .when(keel::on::exception<std::logic_error>));
  };
  SECTION("success") {
    const auto [by_run, by_hand] = play_fallback(returns(5), make);
    CHECK(by_hand == by_run);
    CHECK(by_run.result == "value 5");
    CHECK(by_run.events.empty());
  }
  SECTION("no alternative takes the failure: it is returned unchanged") {
    const auto [by_run, by_hand] = play_fallback(fails("primary down"), make);
    CHECK(by_hand == by_run);
    CHECK(by_run.result == "threw 'primary down'");
    CHECK(by_run.events == std::vector<std::string>{"skipped 0"});
  }
}

TEST_CASE("decision: fallback_call keeps the failures, decide() names the alternative",
          "[decision][fallback]") {
  const auto chain =
      keel::fallback(keel::alternative(7).when(keel::on::exception<std::invalid_argument>), 9);
  auto call = chain.begin<int>();
  CHECK(call.failures() == 0);
  keel::context ctx;
  outcome<int> o =
      outcome<int>::from_exception(std::make_exception_ptr(std::runtime_error("down")));
  REQUIRE(chain.handles(o));
  const keel::fallback_decision d = chain.decide(o, call, ctx);
  REQUIRE(d.again());
  CHECK(d.alternative() == 1);  // alternative 0 does not take a runtime_error
  CHECK(call.failures() == 1);
  CHECK(what_of(call.why().exception()) == "down");
  o = chain.produce(d.alternative(), call, ctx);
  CHECK(o.value() == 9);
  CHECK(chain.visit_alternative(0, [](const auto& alt) { return alt.target(); }) == 7);
  CHECK_FALSE(keel::fallback_decision::done().again());
}

// ---- Timeout: the arithmetic at its boundaries ------------------------------

TEST_CASE("decision: timeout's deadline is the earlier of its own and the caller's",
          "[decision][timeout]") {
  const keel::timeout t{{.timeout = 100ms}};
  const time_point start{5s};
  keel::context none;
  CHECK(t.deadline_for(start, none) == start + 100ms);

  const virtual_environment env;
  const auto with_deadline = [&](time_point d) {
    keel::context c;
    c.tighten_deadline(d, env);
    return c;
  };
  CHECK(t.deadline_for(start, with_deadline(start + 100ms - 1ns)) == start + 100ms - 1ns);
  CHECK(t.deadline_for(start, with_deadline(start + 100ms)) == start + 100ms);
  CHECK(t.deadline_for(start, with_deadline(start + 100ms + 1ns)) == start + 100ms);
  // Saturating: a start near the end of time has no deadline rather than a past one.
  CHECK(t.deadline_for(time_point::max() - 1ms, none) == keel::no_deadline);
}

TEST_CASE("decision: timeout's verdict is end >= deadline, to the nanosecond",
          "[decision][timeout]") {
  const time_point deadline{1s};
  STATIC_REQUIRE_FALSE(keel::timeout<>::missed(time_point{1s - 1ns}, time_point{1s}));
  STATIC_REQUIRE(keel::timeout<>::missed(time_point{1s}, time_point{1s}));
  CHECK_FALSE(keel::timeout<>::missed(deadline - 1ns, deadline));
  CHECK(keel::timeout<>::missed(deadline, deadline));
  CHECK(keel::timeout<>::missed(deadline + 1ns, deadline));
}

TEST_CASE("decision: run() gives the verdict missed() gives, at each boundary",
          "[decision][timeout]") {
  for (const duration latency : std::vector<duration>{100ms - 1ns, 100ms, 100ms + 1ns}) {
    const virtual_environment env;
    const auto t = keel::timeout({.timeout = 100ms}).with_environment(env);
    const time_point start = env.now();
    const outcome<int> o = t.try_execute([&] {
      env.advance(latency);
      return 1;
    });
    const bool late = keel::timeout<>::missed(start + latency, t.deadline_for(start, {}));
    INFO("latency " << latency.count() << " ns");
    CHECK(late == (latency >= 100ms));
    CHECK(o.is(keel::errc::timeout) == late);
  }
}

TEST_CASE("decision: timeout's verdict by hand gives run()'s outcome and events",
          "[decision][timeout]") {
  using log_t = keel::testing::recording_listener<keel::timed_out, keel::late_result_kept>;
  for (const bool keep : {false, true}) {
    for (const duration latency : std::vector<duration>{50ms, 100ms, 150ms}) {
      std::vector<std::string> results;
      std::vector<std::size_t> timed_out, kept;
      for (int by_hand = 0; by_hand < 2; ++by_hand) {
        const virtual_environment env;
        log_t log;
        const auto t = keel::timeout({.timeout = 100ms, .keep_late_result = keep})
                           .with_environment(env)
                           .with_listener(log);
        const auto call = [&] {
          env.advance(latency);
          return 1;
        };
        outcome<int> o = outcome<int>::from_keel(keel::errc::cancelled);
        if (by_hand == 0) {
          o = t.try_execute(call);
        } else {
          keel::context ctx;
          const time_point start = env.now();
          const time_point deadline = t.deadline_for(start, ctx);
          keel::context inner = ctx;
          inner.tighten_deadline(deadline, env);
          o = outcome<int>(std::in_place, call());
          const time_point end = env.now();
          if (t.missed(end, deadline) && !t.keeps_late(o, ctx, false, start, end, deadline)) {
            o = t.expire<int>(start, end, deadline);
          }
        }
        results.push_back(text(o));
        timed_out.push_back(log.count<keel::timed_out>());
        kept.push_back(log.count<keel::late_result_kept>());
      }
      INFO("keep_late_result " << keep << ", latency " << latency.count() << " ns");
      CHECK(results[1] == results[0]);
      CHECK(timed_out[1] == timed_out[0]);
      CHECK(kept[1] == kept[0]);
      const bool late = latency >= 100ms;
      CHECK(timed_out[0] == (late && !keep ? 1U : 0U));
      CHECK(kept[0] == (late && keep ? 1U : 0U));
    }
  }
}

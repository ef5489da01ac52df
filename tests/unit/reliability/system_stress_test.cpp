// SPDX-License-Identifier: BSL-1.0
// System stress: 8 threads make 1,000,000 calls through one pipeline,
//   fallback(last-known-good) > record > retry (shared budget) > breaker > timeout (watchdog),
// in front of a dependency that flaps between healthy, failing, slow and
// hanging on a script of virtual time drawn from a seed. Checked while the
// threads run, inside the dependency and after every call:
//   - a half-open round never has more probes in flight (or admitted) than permitted;
//   - no call goes through an open breaker, and no half-open round begins
//     before the open time is over;
//   - every attempt is one success, failure or rejection, every call one
//     fresh, stale or failed answer, and the breaker never counts fewer
//     rejections than its callers received;
//   - the retry budget's tokens stay within [0, max_tokens];
//   - every answer, fresh or from the cache, is a value the dependency returned
//     before its deadline (the timeout discards the late ones), for the key
//     asked; a cached answer's age is true and at most max_age;
//   - a hanging call is woken by the watchdog at its deadline, not before.
// At the end the totals are exact against the breaker's metrics(), the retry's
// counters and the cache's stats(). Run twice: with a failure-ratio breaker
// and a slow-call rule (every call takes the permit path), and with
// consecutive_failures (the lock-free closed path).
//
// The seed is printed; KEEL_STRESS_SEED=<n> replays the same script (which
// thread meets which phase is up to the scheduler), KEEL_STRESS_CALLS=<n>
// changes the number of calls. Time is virtual: nothing sleeps for real.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <latch>
#include <map>
#include <mutex>
#include <optional>
#include <stop_token>
#include <system_error>
#include <thread>
#include <vector>

#include <keel/keel.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/seeded_random.hpp>

#include "support/catch.hpp"
#include "support/expected.hpp"
#include "support/rng.hpp"

using namespace std::chrono_literals;
using keel::circuit_state;
using keel::duration;
using keel::time_point;

namespace {

// ---- The set-up -------------------------------------------------------------

constexpr int threads = 8;
constexpr std::uint64_t default_calls = 1'000'000;
constexpr std::uint64_t default_seed = 20'240'611;

// Virtual time. The dependency changes phase every spell; a caller spends
// `pace` between two calls, so time passes even while every call is rejected.
constexpr duration spell = 1s;
constexpr duration pace = 2ms;
constexpr duration quick_call = 1ms;  // a healthy or failing call
constexpr duration slow_call = 30ms;  // slow for the breaker, within the timeout
constexpr duration late_call = 90ms;  // past the timeout: its result must be discarded
constexpr duration hang_step = 5ms;   // a hanging call waits in steps of this

constexpr keel::timeout_options per_attempt{.timeout = 80ms};
constexpr keel::slow_call_ratio slow_calls{.threshold = 20ms, .ratio = 0.5};
constexpr keel::retry_budget_options budget_options{
    .max_tokens = 10.0, .token_ratio = 0.2, .failure_cost = 1.0, .retry_cost = 0.5};
constexpr keel::last_known_good_options cache_options{.max_age = 300ms, .capacity = 4};
constexpr int keys = 6;  // more keys than the cache holds: it evicts
constexpr int max_attempts = 3;

keel::retry_options retries() {
  return {.max_attempts = max_attempts,
          .backoff = keel::exponential_backoff{
              .initial = 2ms, .factor = 2.0, .max_delay = 16ms, .jitter = 0.2}};
}

// Short open times that grow, and a half-open wait shorter than a hang, so
// that hung probes make the breaker start new rounds.
keel::circuit_breaker_options breaker_options(keel::trip_rule rule,
                                              std::optional<keel::slow_call_ratio> slow_rule) {
  return {.trip = rule,
          .slow_calls = slow_rule,
          .open_duration = 100ms,
          .open_duration_factor = 2.0,
          .max_open_duration = 800ms,
          .growth_reset_after = 2s,
          .permitted_probes = 3,
          .success_threshold = 2,
          .max_wait_in_half_open = 50ms};
}

std::uint64_t from_environment(const char* name, std::uint64_t otherwise) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return otherwise;
  return std::strtoull(text, nullptr, 0);
}

// Retry's backoff moves virtual time. (keel::testing::manual_sleeper would
// also record every sleep: a few hundred thousand of them here.)
struct virtual_sleeper {
  keel::testing::manual_clock clock;
  bool sleep_for(duration d, const std::stop_token& token) const {
    if (token.stop_requested()) return false;
    clock.advance(d);
    return true;
  }
};

using stress_env = keel::basic_environment<keel::testing::manual_clock, virtual_sleeper,
                                           keel::testing::seeded_random>;

stress_env make_env(std::uint64_t seed) {
  const keel::testing::manual_clock clock;
  return {clock, virtual_sleeper{clock}, keel::testing::seeded_random(seed)};
}

// ---- The dependency's script ------------------------------------------------

enum class phase : unsigned char { healthy, failing, slow, hanging };

/// Which phase the dependency is in at virtual time `t`: one phase per spell,
/// drawn from the seed.
phase phase_at(std::uint64_t seed, time_point t) {
  const auto n = static_cast<std::uint64_t>(t.time_since_epoch() / spell);
  keel_test::rng draw{seed ^ n};  // splitmix64 mixes neighbouring states apart
  const std::int64_t d = draw.in(0, 99);
  if (d < 50) return phase::healthy;
  if (d < 70) return phase::failing;
  if (d < 85) return phase::slow;
  return phase::hanging;
}

/// What the dependency returns: a value tagged `serial * keys + key` (each
/// serial once), or an error.
using reply = keel_test::expected<std::uint64_t, std::error_code>;

reply refusal(std::errc e) { return keel_test::unexpected(std::make_error_code(e)); }

// ---- Counting, lock-free ----------------------------------------------------

/// An atomic count that reads as a number.
class counter {
 public:
  void operator++() noexcept { n_.fetch_add(1); }
  operator std::uint64_t() const noexcept { return n_.load(); }  // implicit: reads as a number

 private:
  std::atomic<std::uint64_t> n_{0};
};

/// A set of serial numbers, one bit each.
class serial_set {
 public:
  explicit serial_set(std::uint64_t size) : words_((size + 63) / 64) {}
  void insert(std::uint64_t n) { words_.at(n / 64).fetch_or(bit(n)); }
  bool contains(std::uint64_t n) const {
    return n / 64 < words_.size() && (words_[n / 64].load() & bit(n)) != 0;
  }

 private:
  static std::uint64_t bit(std::uint64_t n) { return std::uint64_t{1} << (n % 64); }
  std::vector<std::atomic<std::uint64_t>> words_;
};

struct tally {
  counter calls, fresh, stale, failed;                // calls, as the caller gets them
  counter attempts, successes, failures, rejections;  // attempts, as they leave the breaker
  counter dependency_calls, hangs_woken, late_values;
  std::array<counter, 4> phases;
};

/// What must never happen: each is counted where it is seen, and must stay zero.
struct violations {
  counter too_many_probes;        // a half-open round had more probes than permitted
  counter admitted_while_open;    // a call went through an open breaker
  counter round_begun_early;      // a half-open round began before the open time was over
  counter unexpected_outcome;     // an outcome of none of the expected kinds
  counter rejections_behind;      // the breaker counted fewer rejections than callers got
  counter budget_out_of_bounds;   // retry budget tokens outside [0, max_tokens]
  counter late_value_through;     // a value returned past its deadline came out of the timeout
  counter answer_not_returned;    // an answer the dependency never returned (in time)
  counter value_of_another_key;   // the cache served a value recorded for another key
  counter wrong_age;              // a stale value older than max_age, or not as old as said
  counter hang_never_woken;       // a hanging call outlived its deadline
  counter woken_before_deadline;  // the watchdog stopped a call before its deadline
  counter wrong_open_time;        // an open time outside [open_duration, max_open_duration]
};

// ---- What a caller can see of the breaker -----------------------------------
//
// A caller cannot ask the breaker whether its call was admitted while open or
// as a probe of some round: the state word and its generation are private.
// Two things tell it anyway:
// - The probe that begins a half-open round announces it (circuit_half_opened)
//   on its own thread before its call runs; the listener notes it there.
// - Each open period and each half-open round has a mark that grows strictly
//   from one to the next: the end of the open time, the start of the round
//   (open times and max_wait_in_half_open are > 0, and no failure carries a
//   hint). Two equal views, one just before the breaker and one inside the
//   call, prove that the call was admitted within that one open period (a bug)
//   or round (a probe of it).
// A call preempted across a transition proves nothing and is not counted: the
// checks may miss, never accuse wrongly.

struct breaker_view {
  circuit_state state = circuit_state::closed;  // closed: proves nothing
  time_point mark{};
  bool operator==(const breaker_view&) const = default;
};

template <class Breaker>
breaker_view look(const Breaker& breaker) {
  if (breaker.state() == circuit_state::closed) return {};
  const auto read = [&]() -> breaker_view {
    // At time zero, retry_after is the end of the open time itself.
    const keel::circuit_metrics m = breaker.core().metrics(time_point{});
    if (m.state == circuit_state::open) return {m.state, time_point{} + m.retry_after.value()};
    if (m.state == circuit_state::half_open) return {m.state, m.last_transition};
    return {};
  };
  // metrics() reads its fields one at a time: only two equal reads in a row are one view.
  for (int tries = 0; tries < 3; ++tries) {
    const breaker_view first = read();
    if (read() == first) return first;
  }
  return {};
}

/// Set by the breaker's listener on the thread whose call begins a half-open
/// round (the time it began), cleared before each attempt.
thread_local std::optional<time_point> round_begun_here;

/// The probes of each half-open round (named by its mark): in flight, and in total.
class probe_ledger {
 public:
  explicit probe_ledger(int permitted) : permitted_(permitted) {}

  /// A probe of `round` starts; false when the round now has more than permitted.
  /// In total too: nothing in this pipeline gives a probe permit back unused.
  bool enter(time_point round) {
    const std::lock_guard lock(mutex_);
    count& c = rounds_[round];
    ++c.in_flight;
    ++c.admitted;
    ++probes_;
    return c.in_flight <= permitted_ && c.admitted <= permitted_;
  }

  void leave(time_point round) {
    const std::lock_guard lock(mutex_);
    --rounds_[round].in_flight;
  }

  std::uint64_t probes() const {
    const std::lock_guard lock(mutex_);
    return probes_;
  }
  std::size_t rounds() const {
    const std::lock_guard lock(mutex_);
    return rounds_.size();
  }

 private:
  struct count {
    int in_flight = 0;
    int admitted = 0;
  };
  int permitted_;
  mutable std::mutex mutex_;
  std::map<time_point, count> rounds_;
  std::uint64_t probes_ = 0;
};

/// The breaker's listener: counts transitions, checks each open time as announced.
struct transition_log {
  transition_log(const keel::circuit_breaker_options& o, violations& v)
      : shortest_open(o.open_duration), longest_open(o.max_open_duration), bad(&v) {}

  duration shortest_open, longest_open;
  violations* bad;
  mutable counter opened, opened_by_slow_calls, reopened_by_probes, rounds, rounds_after_open,
      closed;

  void on(const keel::circuit_opened& e) const {
    ++opened;
    if (e.reason == keel::open_reason::slow_call_ratio) ++opened_by_slow_calls;
    if (e.reason == keel::open_reason::probe_failed) ++reopened_by_probes;
    if (e.open_for < shortest_open || e.open_for > longest_open) ++bad->wrong_open_time;
  }
  void on(const keel::circuit_half_opened& e) const {
    ++rounds;
    round_begun_here = e.at;
  }
  void on(const keel::circuit_state_changed& e) const {
    if (e.to == circuit_state::half_open) ++rounds_after_open;
  }
  void on(const keel::circuit_closed&) const { ++closed; }
};

// ---- The world the threads share --------------------------------------------

using watchdog_t = keel::basic_watchdog<stress_env>;
using breaker_t = keel::circuit_breaker<keel::on::any_failure_t,
                                        std::reference_wrapper<const transition_log>, stress_env>;
using retry_t =
    keel::retry<keel::on::any_failure_t, keel::counted_listener<keel::no_listener>, stress_env>;
using timeout_t = keel::timeout<keel::no_listener, stress_env, watchdog_t>;
using cache_t = keel::last_known_good<reply, int, stress_env>;

/// One of each stateful policy, shared by every thread, and the checks' records.
struct world {
  world(const keel::circuit_breaker_options& options, std::uint64_t seed_, std::uint64_t calls)
      : seed(seed_),
        env(make_env(seed_)),
        log(options, bad),
        breaker(options, {}, std::cref(log), env),
        retry(keel::retry(retries()).with_environment(env).with_budget(budget).with_counters(
            retry_counts)),
        timeout(keel::timeout(per_attempt).with_environment(env).with_watchdog(dog)),
        returned(calls * max_attempts),
        late(calls * max_attempts),
        probes(options.permitted_probes) {}

  std::uint64_t seed;
  stress_env env;
  watchdog_t dog{env, keel::watchdog_thread::manual};  // polled by the hanging calls
  keel::retry_budget budget{budget_options};
  keel::counters retry_counts;
  cache_t cache{cache_options, env};
  violations bad;
  transition_log log;
  breaker_t breaker;
  retry_t retry;
  timeout_t timeout;
  serial_set returned;  // serials the dependency returned in time
  serial_set late;      // serials it returned at or past the deadline: the timeout discards them
  probe_ledger probes;
  tally counts;
};

// ---- One thread's calls -----------------------------------------------------

class caller {
 public:
  caller(world& w, int index)
      : w_(w),
        index_(static_cast<std::uint64_t>(index)),
        rng_{w.seed ^ ((index_ + 1) << 40)} {}  // apart from phase_at's states

  void run(std::uint64_t calls) {
    for (std::uint64_t i = 0; i < calls; ++i) {
      w_.env.clock.advance(pace);
      const int key = static_cast<int>(rng_.in(0, keys - 1));
      const time_point started = w_.env.now();
      keel::staleness stale;
      const auto guarded = keel::pipeline(keel::fallback(w_.cache.serve(key, stale)),
                                          w_.cache.record(key), std::cref(w_.retry), witness{this},
                                          std::cref(w_.breaker), std::cref(w_.timeout));
      const keel::outcome<reply> o = guarded.try_execute(
          [this](const keel::context& ctx, int k) { return dependency(ctx, k); }, key);
      check_answer(o, stale, key, started);
      check_budget();
      if (i % 1024 == 0) check_rejections();
    }
  }

 private:
  /// A policy just outside the breaker: looks at it before each attempt, and
  /// counts what comes out.
  struct witness {
    caller* self;

    template <class R, class Next>
    keel::outcome<R> run(Next&& next, keel::context& ctx) const {
      self->before_ = look(self->w_.breaker);
      round_begun_here.reset();
      keel::outcome<R> o = next(ctx);
      self->count_attempt(o);
      return o;
    }
  };

  // The dependency: first checks what the breaker let through, then plays the script.
  reply dependency(const keel::context& ctx, int key) {
    ++w_.counts.dependency_calls;
    const breaker_view seen = look(w_.breaker);
    const bool same_period = seen.state != circuit_state::closed && seen == before_;
    // Never through an open breaker, even after the open time: the call that
    // comes then must make it half-open first,
    if (same_period && seen.state == circuit_state::open) ++w_.bad.admitted_while_open;
    // and not before the end of the open time it met.
    const std::optional<time_point> begun = round_begun_here;
    if (begun && before_.state == circuit_state::open && *begun < before_.mark) {
      ++w_.bad.round_begun_early;
    }
    // The round this call is a probe of, when that is known.
    std::optional<time_point> round = begun;
    if (same_period && seen.state == circuit_state::half_open) round = seen.mark;
    if (round && !w_.probes.enter(*round)) ++w_.bad.too_many_probes;
    check_budget();
    const reply r = play(ctx, key);
    if (round) w_.probes.leave(*round);
    return r;
  }

  reply play(const keel::context& ctx, int key) {
    const phase p = phase_at(w_.seed, w_.env.now());
    ++w_.counts.phases.at(static_cast<std::size_t>(p));
    switch (p) {
      case phase::healthy:
        w_.env.clock.advance(quick_call);
        if (rng_.chance(3)) return refusal(std::errc::connection_refused);  // now and then
        return value_for(ctx, key);
      case phase::failing:
        w_.env.clock.advance(quick_call);
        return refusal(std::errc::connection_refused);
      case phase::slow:
        w_.env.clock.advance(rng_.chance(10) ? late_call : slow_call);  // late now and then
        return value_for(ctx, key);
      case phase::hanging:
        return hang(ctx);
    }
    return refusal(std::errc::invalid_argument);
  }

  // A hanging call waits for its stop token, as a blocking call would whose
  // wait the watchdog can interrupt. Virtual time moves only when someone
  // moves it, so the wait moves it a step at a time up to the deadline (letting
  // the other threads call meanwhile), and polls the watchdog as the
  // watchdog's own thread would. Past the deadline it only polls: another
  // thread's poll may be delivering this stop. Bounded.
  reply hang(const keel::context& ctx) {
    int patience = 1'000'000;
    while (!ctx.stop_requested()) {
      if (!ctx.expired()) {
        w_.env.clock.advance(hang_step);
      } else if (--patience == 0) {
        ++w_.bad.hang_never_woken;
        return refusal(std::errc::timed_out);
      }
      std::this_thread::yield();
      w_.dog.poll();
    }
    if (!ctx.expired()) ++w_.bad.woken_before_deadline;
    ++w_.counts.hangs_woken;
    return refusal(std::errc::operation_canceled);
  }

  reply value_for(const keel::context& ctx, int key) {
    const std::uint64_t serial = index_ + std::uint64_t{threads} * next_serial_++;
    if (ctx.expired()) {
      w_.late.insert(serial);
      ++w_.counts.late_values;
    } else {
      w_.returned.insert(serial);
    }
    return serial * keys + static_cast<std::uint64_t>(key);
  }

  void count_attempt(const keel::outcome<reply>& o) {
    ++w_.counts.attempts;
    if (o.is(keel::errc::circuit_open)) {
      ++w_.counts.rejections;
    } else if (o.has_value()) {
      ++w_.counts.successes;
      const std::uint64_t serial = *o.value() / keys;
      if (w_.late.contains(serial)) ++w_.bad.late_value_through;
      if (!w_.returned.contains(serial)) ++w_.bad.answer_not_returned;
    } else {
      ++w_.counts.failures;  // refused, or timed out
      if (!o.has_error_value() && !o.is(keel::errc::timeout)) ++w_.bad.unexpected_outcome;
    }
  }

  void check_answer(const keel::outcome<reply>& o, const keel::staleness& stale, int key,
                    time_point started) {
    ++w_.counts.calls;
    if (o.has_value()) {
      ++(stale.stale ? w_.counts.stale : w_.counts.fresh);
      const std::uint64_t v = *o.value();
      if (!w_.returned.contains(v / keys)) ++w_.bad.answer_not_returned;
      if (v % keys != static_cast<std::uint64_t>(key)) ++w_.bad.value_of_another_key;
      // The cache read the time once during this call: recorded + age is that time.
      const time_point served_at = stale.recorded + stale.age;
      if (stale.stale &&
          (stale.age > cache_options.max_age || served_at < started || served_at > w_.env.now())) {
        ++w_.bad.wrong_age;
      }
    } else if (is_cache_miss(o)) {
      ++w_.counts.failed;
    } else {
      ++w_.bad.unexpected_outcome;
    }
  }

  // The primary failed and the cache had nothing young enough for the key.
  static bool is_cache_miss(const keel::outcome<reply>& o) {
    if (!o.is(keel::errc::all_fallbacks_failed) || o.causes().size() != 2) return false;
    const std::error_code why = o.causes()[1].code();
    return why == keel::last_known_good_errc::no_value ||
           why == keel::last_known_good_errc::too_old;
  }

  void check_budget() {
    constexpr auto most =
        static_cast<std::int64_t>(budget_options.max_tokens) * keel::retry_budget::scale;
    const std::int64_t tokens = w_.budget.milli_tokens();
    if (tokens < 0 || tokens > most) ++w_.bad.budget_out_of_bounds;
  }

  // Callers count a rejection after the breaker has: its count is never behind theirs.
  void check_rejections() {
    const std::uint64_t received = w_.counts.rejections;
    if (w_.breaker.metrics().rejections < received) ++w_.bad.rejections_behind;
  }

  world& w_;
  std::uint64_t index_;
  keel_test::rng rng_;
  std::uint64_t next_serial_ = 0;
  breaker_view before_;  // the breaker as the current attempt met it
};

// ---- The run ----------------------------------------------------------------

void run_stress(const char* name, const keel::circuit_breaker_options& options) {
  const std::uint64_t seed = from_environment("KEEL_STRESS_SEED", default_seed);
  const std::uint64_t per_thread =
      std::max<std::uint64_t>(1, from_environment("KEEL_STRESS_CALLS", default_calls) / threads);
  const std::uint64_t calls = per_thread * threads;
  // On stderr, so that it survives a sanitizer's abort and leaves a reporter's stdout alone.
  std::cerr << "system stress, " << name << ": seed " << seed << " (KEEL_STRESS_SEED), " << threads
            << " threads x " << per_thread << " calls (KEEL_STRESS_CALLS)" << std::endl;
  INFO("seed " << seed << " (KEEL_STRESS_SEED), " << calls << " calls (KEEL_STRESS_CALLS)");

  world w(options, seed, calls);
  std::latch start(threads);
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&w, &start, i, per_thread] {
      caller c(w, i);
      start.arrive_and_wait();
      c.run(per_thread);
    });
  }
  for (std::thread& t : pool) t.join();

  // What was checked while the threads ran.
  const violations& bad = w.bad;
  CHECK(bad.too_many_probes == 0u);
  CHECK(bad.admitted_while_open == 0u);
  CHECK(bad.round_begun_early == 0u);
  CHECK(bad.unexpected_outcome == 0u);
  CHECK(bad.rejections_behind == 0u);
  CHECK(bad.budget_out_of_bounds == 0u);
  CHECK(bad.late_value_through == 0u);
  CHECK(bad.answer_not_returned == 0u);
  CHECK(bad.value_of_another_key == 0u);
  CHECK(bad.wrong_age == 0u);
  CHECK(bad.hang_never_woken == 0u);
  CHECK(bad.woken_before_deadline == 0u);
  CHECK(bad.wrong_open_time == 0u);

  // Exact totals, now that everything has settled.
  const tally& n = w.counts;
  CHECK(n.calls == calls);
  CHECK(n.fresh + n.stale + n.failed == n.calls);
  CHECK(n.successes + n.failures + n.rejections == n.attempts);
  CHECK(n.successes + n.failures == n.dependency_calls);
  CHECK(n.attempts == n.calls + w.retry_counts.count<keel::retry_scheduled>());
  const keel::circuit_metrics m = w.breaker.metrics();
  CHECK(m.failures == n.failures);
  CHECK(m.rejections == n.rejections);
  const keel::last_known_good_stats cached = w.cache.stats();
  CHECK(cached.recorded == n.fresh);
  CHECK(cached.served == n.stale);
  CHECK(cached.missed + cached.expired == n.failed);
  CHECK(w.dog.pending() == 0u);

  // At the default size, every phase and every path was exercised.
  const transition_log& log = w.log;
  const std::uint64_t new_rounds = log.rounds - log.rounds_after_open;
  if (calls >= default_calls) {
    for (const counter& calls_in_phase : n.phases) CHECK(calls_in_phase > 0u);
    CHECK(log.reopened_by_probes > 0u);
    CHECK(log.closed > 0u);
    CHECK(new_rounds > 0u);  // hung probes made the breaker start a new round
    CHECK(w.probes.probes() > 100u);
    CHECK(w.retry_counts.count<keel::retry_budget_exhausted>() > 0u);
    CHECK(n.hangs_woken > 0u);
    CHECK(n.late_values > 0u);
    CHECK(n.stale > 0u);
    CHECK(cached.expired > 0u);
    CHECK(cached.evicted > 0u);
    if (options.slow_calls) CHECK(log.opened_by_slow_calls > 0u);
  }

  std::cerr << "  " << n.attempts << " attempts: " << w.retry_counts.count<keel::retry_scheduled>()
            << " retries, " << w.retry_counts.count<keel::retry_budget_exhausted>()
            << " refused by the budget, " << n.rejections
            << " rejections\n  breaker: " << log.opened << " opened (" << log.opened_by_slow_calls
            << " by slow calls, " << log.reopened_by_probes << " by probes), " << log.rounds
            << " half-open rounds (" << new_rounds << " after a hung round), " << log.closed
            << " closed; " << w.probes.probes() << " probes checked in " << w.probes.rounds()
            << " rounds\n  answers: " << n.fresh << " fresh, " << n.stale << " stale, " << n.failed
            << " failed; " << n.hangs_woken << " hangs woken, " << n.late_values
            << " late values discarded; "
            << std::chrono::duration_cast<std::chrono::seconds>(w.env.clock.elapsed()).count()
            << " s of virtual time" << std::endl;
}

}  // namespace

TEST_CASE("system stress: fallback, cache, retry budget, ratio breaker with slow calls, timeout",
          "[reliability][stress]") {
  run_stress("ratio window with slow calls",
             breaker_options(keel::failure_ratio_count{.window_size = 20, .minimum_calls = 10},
                             slow_calls));
}

TEST_CASE("system stress: the same pipeline with a consecutive-failures breaker",
          "[reliability][stress]") {
  run_stress("consecutive failures", breaker_options(keel::consecutive_failures{}, std::nullopt));
}

// SPDX-License-Identifier: BSL-1.0
// Third adversarial review of the rate limiter's refund floor (issue 15):
// the waiter count of 20be97d and rate_limiter over sliding-window limits.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <vector>

#include <keel/admission/rate_limiter.hpp>
#include <keel/admission/sliding_window_limit.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"
#include "support/rate_bound.hpp"
#include "support/rng.hpp"
#include "support/throwing_clock_env.hpp"

namespace {

using namespace std::chrono_literals;
using keel::duration;
using keel::errc;
using keel::gcra_limit;
using keel::time_point;
using venv = keel::testing::virtual_environment;

time_point at(duration d) { return time_point(d); }

using keel_test::sent_unit;
using keel_test::worst_excess;

// D4's promise, checked far after anything else: a waiter gives up, then a
// call that never left gets back all of its slot. Fails while a waiter that
// was never reported done keeps the latest sending time alive.
duration d4_refund(gcra_limit& l, duration t) {
  const auto a = l.try_acquire(1, at(t));  // [t, t + 1 s], never sent
  const auto w = l.try_acquire(1, at(t), 10s);
  REQUIRE(a.admitted);
  REQUIRE(w.admitted);
  REQUIRE(w.wait == 1s);
  l.done_waiting(w.ticket);
  static_cast<void>(l.refund_all(w.ticket, at(t)));
  return l.refund_all(a.ticket, at(t));
}

using keel_test::throwing_clock_env;

}  // namespace

TEST_CASE(
    "review3 W1: a waiter whose retried exchange finds its slot due at once is counted, "
    "but run() reports only waits > 0 done: the count leaks and D4 comes back",
    "[review3][rate_limiter][stress]") {
  // burst 1, T = 1 s, every clock at 0. P takes the bucket and gives it back;
  // W asks with a wait. A refund by P between W's read of the TAT and its
  // exchange moves the TAT back: W's retry finds its slot due now (wait 0),
  // but it counted itself a waiter and its ticket carries .sends.
  gcra_limit l({.limit = 1, .period = 1s, .burst = 1});
  std::atomic<bool> stop{false};
  std::atomic<long> leaked{0};
  long rounds = 0;
  std::thread p([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      const auto a = l.try_acquire(1, at(0s));
      if (!a.admitted) continue;
      // Held back while W is counted (its time is the floor): ask again.
      while (l.refund_all(a.ticket, at(0s)) == 0s && !stop.load(std::memory_order_relaxed)) {
      }
    }
  });
  std::thread w([&] {
    const auto until = std::chrono::steady_clock::now() + 3s;
    while (std::chrono::steady_clock::now() < until && leaked.load() == 0) {
      const auto d = l.try_acquire(1, at(0s), 10s);
      ++rounds;
      if (!d.admitted) continue;
      // rate_limiter::run: wait_for_slots (which reports done) only when wait > 0.
      if (d.wait > 0s) {
        l.done_waiting(d.ticket);
      } else if (d.ticket.sends != std::numeric_limits<std::int64_t>::min()) {
        leaked.fetch_add(1);
      }
      static_cast<void>(l.refund_all(d.ticket, at(0s)));
    }
    stop.store(true);
  });
  w.join();
  p.join();
  INFO("rounds " << rounds << ", waiters admitted with wait 0 but counted: " << leaked.load());
  CHECK(leaked.load() == 0);
  CHECK(d4_refund(l, 1000s) == 1s);  // 0 once one leaked: latest_ is never forgotten again
}

TEST_CASE(
    "review3 W2: a clock that throws while a call waits leaves it counted a waiter for good "
    "(D4 comes back; its slot is never given back either)",
    "[review3][rate_limiter]") {
  throwing_clock_env env;
  const auto limiter = keel::rate_limiter({.limit = 1, .period = 1s, .burst = 1, .max_wait = 10s})
                           .with_environment(env);
  REQUIRE(limiter.try_execute([] { return 0; }).has_value());  // [0 s, 1 s]
  env.reads->store(1);  // run() reads the clock; the read after the sleep throws
  try {
    static_cast<void>(limiter.try_execute([] { return 0; }));  // waits 1 s
  } catch (const std::runtime_error&) {                        // NOLINT(bugprone-empty-catch)
  }
  env.reads->store(1000);
  auto& l =
      const_cast<gcra_limit&>(limiter.limit());  // NOLINT(cppcoreguidelines-pro-type-const-cast)
  CHECK(d4_refund(l, 1000s) == 1s);
}

namespace {

// review2's fuzz with the policy's protocol: a waiter is reported done when it
// sends (or settles) and before it gives its slot back. `behind`: refunds may
// read a clock up to 3 T behind (a refunder that read its clock, then was
// preempted while a waiter woke and sent).
std::uint64_t fuzz_with_done(bool behind) {
  for (std::uint64_t seed = 1; seed <= 20000; ++seed) {
    keel_test::rng rng{seed * 104729};
    const auto burst = static_cast<std::uint64_t>(rng.in(1, 6));
    gcra_limit l({.limit = 1, .period = 1us, .burst = burst});
    const std::int64_t t = l.emission_interval().count();
    struct pending {
      keel::rate_ticket ticket;
      std::uint64_t estimate;
      std::int64_t send_at;
    };
    std::vector<pending> waiting;
    std::vector<sent_unit> sent;
    std::int64_t now = 0;
    for (int step = 0; step < 24; ++step) {
      now += rng.chance(70) ? 0 : rng.in(0, t);
      const time_point tp{duration(now)};
      for (auto it = waiting.begin(); it != waiting.end();) {
        if (it->send_at <= now && rng.chance(70)) {
          l.done_waiting(it->ticket, true);
          const auto actual =
              static_cast<std::uint64_t>(rng.in(0, static_cast<std::int64_t>(it->estimate)));
          if (actual > 0) sent.push_back({it->send_at, actual});
          const std::int64_t b = behind && rng.chance(20) ? rng.in(0, 3 * t) : 0;
          l.settle(it->ticket, it->estimate, actual, time_point(duration(now - b)));
          it = waiting.erase(it);
        } else if (it->send_at <= now) {
          l.done_waiting(it->ticket, true);
          sent.push_back({it->send_at, it->estimate});
          it = waiting.erase(it);
        } else {
          ++it;
        }
      }
      const int what = static_cast<int>(rng.in(0, 99));
      if (what < 10) {
        std::int64_t next = now;
        for (const auto& p : waiting) {
          if (p.send_at > now && (next == now || p.send_at < next)) next = p.send_at;
        }
        now = next;
        for (;;) {
          const auto d = l.try_acquire(1, time_point(duration(now)));
          if (!d.admitted) break;
          sent.push_back({now, 1});
        }
      } else if (what < 45) {
        const auto cost = static_cast<std::uint64_t>(rng.in(1, static_cast<std::int64_t>(burst)));
        const std::int64_t max_wait = rng.chance(25) ? 0 : rng.in(0, 3 * l.tolerance().count());
        const auto d = l.try_acquire(cost, tp, duration(max_wait));
        if (d.admitted) waiting.push_back({d.ticket, cost, now + d.wait.count()});
      } else if (what < 75 && !waiting.empty()) {
        const auto k = waiting.size() >= 2 && rng.chance(50)
                           ? waiting.size() - 2
                           : static_cast<std::size_t>(
                                 rng.in(0, static_cast<std::int64_t>(waiting.size()) - 1));
        const std::int64_t b = behind && rng.chance(20) ? rng.in(0, 3 * t) : 0;
        l.done_waiting(waiting[k].ticket);
        l.refund_all(waiting[k].ticket, time_point(duration(now - b)));
        waiting.erase(waiting.begin() + static_cast<std::ptrdiff_t>(k));
      } else if (what < 90) {
        for (;;) {
          const auto d = l.try_acquire(1, tp);
          if (!d.admitted) break;
          sent.push_back({now, 1});
        }
      } else if (what < 94) {
        l.pause(duration(rng.in(0, 3 * t)), tp);
      } else if (what < 97) {
        l.tighten(static_cast<std::uint64_t>(rng.in(0, static_cast<std::int64_t>(burst))), tp);
      }
    }
    for (const auto& p : waiting) sent.push_back({p.send_at, p.estimate});
    if (worst_excess(sent, burst, t) > 0) return seed;
  }
  return 0;
}

}  // namespace

TEST_CASE("review3 fuzz: the policy's protocol (done when sent or given up), clocks in step",
          "[review3][rate_limiter][model]") {
  CHECK(fuzz_with_done(false) == 0);
}

TEST_CASE(
    "review3 fuzz: the policy's protocol, refunds on clocks up to 3 T behind (passes: its "
    "refunds are of pending calls only; F1 is the case it misses)",
    "[review3][rate_limiter][model]") {
  CHECK(fuzz_with_done(true) == 0);
}

TEST_CASE(
    "review3 F1: a waiter reported done as it wakes no longer holds back a refund whose clock "
    "was read before it woke: its slot moves before its sending time",
    "[review3][rate_limiter]") {
  // burst 1, T = 1 s: at most 1 unit in any closed interval shorter than 1 s.
  gcra_limit l({.limit = 1, .period = 1s, .burst = 1});
  const auto a = l.try_acquire(1, at(0s));       // [0 s, 1 s], reserved, never leaves
  const auto w = l.try_acquire(1, at(0s), 10s);  // [1 s, 2 s], sends at 1 s
  REQUIRE(a.admitted);
  REQUIRE(w.wait == 1s);
  // run(): W wakes at 1 s, is reported done and sends. A's refunder read its
  // clock at 0.5 s (cancel()/after_call read it before the lock) and was
  // preempted meanwhile. Before 20be97d latest_ (1 s) held the refund to 0.
  l.done_waiting(w.ticket, true);                  // it sends
  CHECK(l.refund_all(a.ticket, at(500ms)) == 0s);  // 500 ms: W's slot is now [0.5 s, 1.5 s]
  const auto z = l.try_acquire(1, at(1s), 10s);
  REQUIRE(z.admitted);
  const std::vector<sent_unit> sent{{w.ticket.sends, 1}, {duration(1s + z.wait).count(), 1}};
  INFO("W sends at " << w.ticket.sends << " ns, Z at " << duration(1s + z.wait).count() << " ns");
  CHECK(worst_excess(sent, 1, duration(1s).count()) <= 0);  // W at 1 s, Z at 1.5 s
}

TEST_CASE(
    "review3 S1: over a window, a waiter that gave up no longer holds later callers to its "
    "sending time (as GCRA)",
    "[review3][sliding_window][rate_limiter]") {
  venv env;
  const auto limiter =
      keel::rate_limits(keel::sliding_window_options{.limit = 10, .period = 1s, .buckets = 10})
          .with_environment(env);
  auto a = limiter.reserve(5);  // 5 of 10 sent at 0 s
  REQUIRE(a);
  a.settle(5);
  auto w = limiter.reserve(10, 2s);  // room when bucket 0 leaves: 1.1 s
  REQUIRE(w);
  REQUIRE(w.wait() == 1100ms);
  env.advance(100ms);
  w.cancel();  // never left: its 10 units given back
  env.advance(100ms);
  // 5 units in the last second, nobody waiting: five more fit now.
  CHECK(limiter.limit().available(env.now()) == 5);
  auto c = limiter.reserve(1);
  CHECK(c.admitted());
  CHECK(c.wait() == 0ns);
  CHECK(limiter.limit().available(env.now()) == 4);
}

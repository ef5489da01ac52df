// SPDX-License-Identifier: BSL-1.0
// Second adversarial review of the rate limiter (issue 15): each test shows
// one defect found in the fixes of the first review.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include <keel/admission/rate_limiter.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"
#include "support/rate_bound.hpp"
#include "support/rng.hpp"

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

std::int64_t ns(duration d) { return d.count(); }

}  // namespace

TEST_CASE(
    "review2 F1: refunds of slots before a waiter's move its slot before "
    "its sending time "
    "(TAT - tau is no bound on a waiter once a refund moved it)",
    "[review2][rate_limiter]") {
  // burst 3, T = 1 s: at most 3 units at any one instant.
  gcra_limit l({.limit = 1, .period = 1s, .burst = 3});
  const auto a = l.try_acquire(1, at(0s));       // [0 s, 1 s], reserved (two-step), never sent
  const auto b = l.try_acquire(2, at(0s));       // [1 s, 3 s], reserved, never sent
  const auto w = l.try_acquire(1, at(0s), 10s);  // [3 s, 4 s]: waits, sends at 1 s
  REQUIRE(a.admitted);
  REQUIRE(b.admitted);
  REQUIRE(w.admitted);
  REQUIRE(w.wait == 1s);
  // Both never left. B first: floor = TAT - tau = 1 s, all 2 s back; W's slot
  // moves to [1 s, 2 s], still after its sending time. Then A: the floor is
  // now TAT - tau = -1 s, far below W's sending time (1 s), and A's whole
  // second comes back: W's slot moves to [0 s, 1 s], before W sends.
  static_cast<void>(l.refund_all(b.ticket, at(0s)));
  static_cast<void>(l.refund_all(a.ticket, at(0s)));
  // At 1 s a full bucket is available again while W sends its unit.
  const auto z = l.try_acquire(3, at(1s));
  std::vector<sent_unit> sent{{ns(w.wait), 1}};
  if (z.admitted) sent.push_back({ns(1s + z.wait), 3});
  CHECK_FALSE(z.admitted);
  CHECK(worst_excess(sent, 3, ns(1s)) <= 0);  // 4 units at 1 s
}

TEST_CASE(
    "review2 F1b: the same through reservations: two cancels let burst + "
    "1 go at once",
    "[review2][rate_limiter]") {
  venv env;
  const auto limiter =
      keel::rate_limiter({.limit = 1, .period = 1s, .burst = 3}).with_environment(env);
  auto a = limiter.reserve(1);
  auto b = limiter.reserve(2);
  auto w = limiter.reserve(1, 10s);
  REQUIRE(a);
  REQUIRE(b);
  REQUIRE(w);
  REQUIRE(w.wait() == 1s);
  b.cancel();  // e.g. refused by a bulkhead inside: never left
  a.cancel();
  env.advance(1s);  // W sends its unit now
  auto z = limiter.reserve(3);
  CHECK_FALSE(z.admitted());  // admitted: 4 units at 1 s with a burst of 3
}

TEST_CASE(
    "review2 F2: a caller that slept out a pause sends at its end beside "
    "a full bucket "
    "(burst + 1 at once)",
    "[review2][rate_limiter]") {
  venv env;
  // burst 1, T = 1 s: at most 1 unit at any one instant.
  auto limiter = keel::rate_limiter({.limit = 1, .period = 1s, .burst = 1, .max_wait = 60s})
                     .with_environment(env);
  std::vector<sent_unit> sent;
  const auto send = [&] {
    sent.push_back({ns(env.now().time_since_epoch()), 1});
    return 0;
  };
  REQUIRE(limiter.try_execute(send).has_value());  // at 0 s
  bool paused = false;
  // While W sleeps for its slot (due at 1 s), another call gets Retry-After: 30
  // s.
  env.sleeper().on_sleep([&](duration) {
    if (!paused) paused = limiter.limit().pause(30s, env.now());
  });
  REQUIRE(limiter.try_execute(send).has_value());  // W: sleeps the pause out, sends at 30 s
  REQUIRE(paused);
  env.sleeper().on_sleep(nullptr);
  REQUIRE(env.now() == at(30s));
  // A new caller at the pause's end: its slot starts at max(TAT = 2 s, 30 s),
  // a full bucket, so it goes at once too.
  const auto x = limiter.try_execute(send);
  CHECK(worst_excess(sent, 1, ns(1s)) <= 0);  // 2 units at 30 s
  CHECK((x.is(errc::rate_limited) || env.now() > at(30s)));
}

TEST_CASE(
    "review2 F3: a quota hint that finds the TAT already at its floor "
    "sets no floor; a refund "
    "then loosens it",
    "[review2][rate_limiter]") {
  gcra_limit l({.limit = 10, .period = 1s});  // T = 100 ms, tau = 1 s
  const auto r = l.try_acquire(10, at(0s));   // the whole bucket, never sent
  REQUIRE(r.admitted);
  l.tighten(0,
            at(0s));  // the provider: 0 left (floor = 1 s = the TAT: held_ not raised)
  REQUIRE(l.available(at(0s)) == 0);
  static_cast<void>(l.refund_all(r.ticket, at(0s)));
  CHECK(l.available(at(0s)) == 0);  // "never loosens": 10 go at once
}

TEST_CASE(
    "review2 D3: a call that never left gets back less than all of its "
    "slot after debt "
    "(nobody waiting, no pause, no hint)",
    "[review2][rate_limiter]") {
  SECTION("an oversize call admitted into debt and cancelled at once") {
    gcra_limit l({.limit = 10, .period = 1s, .oversize = keel::rate_oversize::debt, .max_debt = 5});
    const auto r = l.try_acquire(15, at(0s));  // [0 s, 1.5 s]
    REQUIRE(r.admitted);
    REQUIRE(r.wait == 0s);
    CHECK(l.refund_all(r.ticket, at(0s)) == 1500ms);  // 1 s: the debt's 500 ms stays
    CHECK(l.available(at(0s)) == 10);                 // 5
  }
  SECTION("another call charged into debt after this one was reserved") {
    gcra_limit l({.limit = 10, .period = 1s, .max_debt = 10});
    const auto a = l.try_acquire(5, at(0s));  // [0, 500 ms], never sent
    const auto b = l.try_acquire(1, at(0s));  // [500, 600 ms], sent
    REQUIRE(a.admitted);
    REQUIRE(b.admitted);
    l.settle(b.ticket, 1, 10, at(0s));  // b cost 10: TAT 1.5 s (500 ms of debt)
    // Giving back A's 500 ms leaves TAT = 1 s: nothing more goes at 0 s, the
    // bound holds; the floor TAT - tau = 500 ms takes all of it.
    CHECK(l.refund_all(a.ticket, at(0s)) == 500ms);  // 0
  }
}

TEST_CASE(
    "review2 Z1: zero estimates stream through a bucket with one unit "
    "left (R11 fixed only the "
    "empty bucket)",
    "[review2][rate_limiter]") {
  venv env;
  const auto limiter = keel::rate_limiter({.limit = 10, .period = 1s}).with_environment(env);
  auto most = limiter.reserve(9);  // one unit left
  REQUIRE(most.admitted());
  // 100 calls in flight at once (an agent's fan-out), each estimated at 0.
  std::vector<std::remove_const_t<decltype(limiter)>::reservation> calls;
  for (int i = 0; i < 100; ++i) {
    auto r = limiter.reserve(0);
    if (r) calls.push_back(std::move(r));
  }
  const auto admitted = calls.size();
  for (auto& r : calls) r.settle(1);  // each cost a unit: forgiven past the empty bucket
  CHECK(admitted <= 1);               // 100: 109 units at one instant through a 10/s bucket
}

TEST_CASE(
    "review2 fuzz: refunds of calls that never left, waiters, greedy "
    "callers, settlements, "
    "pauses, hints and refund clocks behind: units sent stay within "
    "burst + d / T",
    "[review2][rate_limiter][model]") {
  for (std::uint64_t seed = 1; seed <= 20000; ++seed) {
    keel_test::rng rng{seed * 104729};
    const auto burst = static_cast<std::uint64_t>(rng.in(1, 6));
    // T = 1000 ns: small numbers, exact arithmetic.
    gcra_limit l({.limit = 1, .period = 1us, .burst = burst});
    const std::int64_t t = l.emission_interval().count();
    struct pending {
      keel::rate_ticket ticket;
      std::uint64_t estimate;
      std::int64_t send_at;
    };
    std::vector<pending> waiting;  // reserved, not yet sent or given back
    std::vector<sent_unit> sent;
    std::int64_t now = 0;
    for (int step = 0; step < 24; ++step) {
      now += rng.chance(70) ? 0 : rng.in(0, t);
      const time_point tp{duration(now)};
      for (auto it = waiting.begin(); it != waiting.end();) {
        if (it->send_at <= now && rng.chance(70)) {
          const auto actual =
              static_cast<std::uint64_t>(rng.in(0, static_cast<std::int64_t>(it->estimate)));
          if (actual > 0) sent.push_back({it->send_at, actual});
          l.settle(it->ticket, it->estimate, actual, tp);
          it = waiting.erase(it);
        } else if (it->send_at <= now) {
          // It goes (its units count at its time) and settles later, or never.
          sent.push_back({it->send_at, it->estimate});
          it = waiting.erase(it);
        } else {
          ++it;
        }
      }
      const int what = static_cast<int>(rng.in(0, 99));
      if (what < 10) {
        // Quiet until the next waiter sends; then a greedy caller beside it.
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
        // A call that never left gives all of it back, maybe on a clock behind.
        // Often the one before the last: the slots behind it move.
        const auto k = waiting.size() >= 2 && rng.chance(50)
                           ? waiting.size() - 2
                           : static_cast<std::size_t>(
                                 rng.in(0, static_cast<std::int64_t>(waiting.size()) - 1));
        const std::int64_t behind = rng.chance(20) ? rng.in(0, 3 * t) : 0;
        l.refund_all(waiting[k].ticket, time_point(duration(now - behind)));
        waiting.erase(waiting.begin() + static_cast<std::ptrdiff_t>(k));
      } else if (what < 90) {
        // A greedy caller takes all it can now, and sends at once.
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
    INFO("seed " << seed << " burst " << burst);
    REQUIRE(worst_excess(sent, burst, t) <= 0);
  }
}

TEST_CASE(
    "review2 D4: after every waiter cancelled, a call that never left "
    "gets back less than all "
    "of its slot (a cancelled waiter's sending time outlives it)",
    "[review2][rate_limiter]") {
  // Nobody waits any more, no pause, no hint: "a call that never left gets
  // back all of its slot still ahead". A fan-out whose waiters share one stop
  // source cancels them in any order.
  gcra_limit l({.limit = 1, .period = 1s, .burst = 2});
  const auto a = l.try_acquire(2, at(0s));        // [0 s, 2 s], never sent
  const auto w1 = l.try_acquire(1, at(0s), 10s);  // [2 s, 3 s], sends at 1 s
  const auto w2 = l.try_acquire(1, at(0s), 10s);  // [3 s, 4 s], sends at 2 s
  REQUIRE(w2.wait == 2s);
  // Each waiter gives up: done waiting, its slot given back (as keel's
  // policy and reservations do).
  const auto give_up = [&](const keel::rate_decision& w) {
    l.done_waiting(w.ticket);
    static_cast<void>(l.refund_all(w.ticket, at(0s)));
  };
  SECTION("the newest waiter first") {
    give_up(w2);
    give_up(w1);
  }
  SECTION("the oldest waiter first") {
    give_up(w1);
    give_up(w2);
  }
  SECTION("one still waiting holds the refund back (conservative), until done") {
    give_up(w1);
    CHECK(l.refund_all(a.ticket, at(0s)) == 0s);  // w2 sends at 2 s: nothing before
    l.done_waiting(w2.ticket);  // w2 sends at 2 s in [2 s, 3 s]: one more fits then
    CHECK(l.available(at(2s)) == 1);
    return;
  }
  CHECK(l.refund_all(a.ticket, at(0s)) == 2s);
  CHECK(l.available(at(0s)) == 2);
}

// SPDX-License-Identifier: BSL-1.0
// keel::gcra_limit, the rate limiter's decision core, driven by hand at exact
// times: the burst boundary, refill, waits in arrival order, refunds (a
// cancelled wait, later reservations, slots in the past), settlement, debt,
// pauses and quota hints, oversize costs, clocks that jump back, extremes.
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>

#include <keel/admission/rate_limiter.hpp>

#include "support/catch.hpp"

namespace {

using namespace std::chrono_literals;
using keel::duration;
using keel::gcra_limit;
using keel::rate_limit_options;
using keel::time_point;

time_point at(duration d) { return time_point(d); }

}  // namespace

TEST_CASE("rate_limit_options: every invalid field is named", "[rate_limiter]") {
  CHECK_FALSE(rate_limit_options{}.validate());
  CHECK(rate_limit_options{.limit = 0}.validate()->field == "rate_limit_options.limit");
  CHECK(rate_limit_options{.period = 0s}.validate()->field == "rate_limit_options.period");
  CHECK(rate_limit_options{.period = -1s}.validate()->field == "rate_limit_options.period");
  // More than one unit per nanosecond.
  CHECK(rate_limit_options{.limit = 11, .period = 10ns}.validate()->field ==
        "rate_limit_options.period");
  CHECK_FALSE(rate_limit_options{.limit = 10, .period = 10ns}.validate());
  CHECK(rate_limit_options{.max_wait = -1ns}.validate()->field == "rate_limit_options.max_wait");
  CHECK(rate_limit_options{.max_pause = -1ns}.validate()->field == "rate_limit_options.max_pause");
  CHECK(rate_limit_options{.oversize = static_cast<keel::rate_oversize>(7)}.validate()->field ==
        "rate_limit_options.oversize");
  static_assert(!rate_limit_options{.limit = 5, .period = 1s}.validate());
  REQUIRE_THROWS_AS(gcra_limit(rate_limit_options{.limit = 0}), keel::config_error);
}

TEST_CASE("gcra: exactly `burst` units go at once, then one per interval", "[rate_limiter]") {
  // 10 per second: T = 100 ms; burst 5: tau = 500 ms.
  gcra_limit l({.limit = 10, .period = 1s, .burst = 5});
  CHECK(l.emission_interval() == 100ms);
  CHECK(l.tolerance() == 500ms);
  const time_point t0 = at(10s);
  CHECK(l.available(t0) == 5);
  for (int i = 0; i < 5; ++i) {
    const auto d = l.try_acquire(1, t0);
    REQUIRE(d.admitted);
    CHECK(d.wait == 0ns);
  }
  // The sixth is one interval away (go-redis' tau = T * burst; redis-cell,
  // with T * (burst + 1), would let a sixth through).
  const auto sixth = l.try_acquire(1, t0);
  CHECK_FALSE(sixth.admitted);
  REQUIRE(sixth.retry_after);
  CHECK(*sixth.retry_after == 100ms);
  CHECK(l.available(t0) == 0);
  // One nanosecond early: still refused, and the refusal changes nothing.
  CHECK_FALSE(l.try_acquire(1, t0 + 100ms - 1ns).admitted);
  CHECK(*l.try_acquire(1, t0 + 100ms - 1ns).retry_after == 1ns);
  // At the boundary exactly: admitted, and only one.
  CHECK(l.try_acquire(1, t0 + 100ms).admitted);
  CHECK_FALSE(l.try_acquire(1, t0 + 100ms).admitted);
  // A quiet spell refills to the burst and no further.
  CHECK(l.available(t0 + 1h) == 5);
  CHECK(l.try_acquire(5, t0 + 1h).admitted);
  CHECK_FALSE(l.try_acquire(1, t0 + 1h).admitted);
}

TEST_CASE("gcra: burst 0 means the limit; a cost of `burst` fits only a full bucket",
          "[rate_limiter]") {
  gcra_limit l({.limit = 60, .period = 1min});
  CHECK(l.tolerance() == 60s);
  CHECK(l.try_acquire(60, at(0s)).admitted);
  CHECK(*l.try_acquire(60, at(0s)).retry_after == 60s);
  CHECK(*l.try_acquire(60, at(30s)).retry_after == 30s);
  CHECK(l.try_acquire(60, at(60s)).admitted);
}

TEST_CASE("gcra: the emission interval rounds up, never faster than the limit", "[rate_limiter]") {
  gcra_limit l({.limit = 7, .period = 1s, .burst = 1});
  CHECK(l.emission_interval() == 142'857'143ns);  // 1e9 / 7 = 142857142.86
  CHECK(l.try_acquire(1, at(0s)).admitted);
  CHECK_FALSE(l.try_acquire(1, at(142'857'142ns)).admitted);
  CHECK(l.try_acquire(1, at(142'857'143ns)).admitted);
}

TEST_CASE(
    "gcra: no boundary burst (resilience4j #2064): any short interval admits at most "
    "burst + its length / T",
    "[rate_limiter]") {
  // A fixed window of 1 s with 10 permits admits 10 at 0.999 s and 10 more
  // at 1.000 s: 20 in a millisecond. The GCRA admits burst + 1 ms / T.
  gcra_limit l({.limit = 10, .period = 1s});
  int admitted = 0;
  for (duration t = 999ms; t <= 1001ms; t += 100us) {
    while (l.try_acquire(1, at(t)).admitted) ++admitted;
  }
  CHECK(admitted == 10);  // the bucket, and 2 ms refill nothing more (T = 100 ms)
  for (duration t = 1001ms; t <= 2001ms; t += 1ms) {
    while (l.try_acquire(1, at(t)).admitted) ++admitted;
  }
  CHECK(admitted == 20);  // 10 + 1000 ms / 100 ms
}

TEST_CASE("gcra: waits are slots reserved in arrival order", "[rate_limiter]") {
  gcra_limit l({.limit = 10, .period = 1s, .burst = 2, .max_wait = 1s});
  REQUIRE(l.try_acquire(2, at(0s)).admitted);
  const auto a = l.try_acquire(1, at(0s), 1s);
  const auto b = l.try_acquire(1, at(0s), 1s);
  const auto c = l.try_acquire(2, at(0s), 1s);
  REQUIRE(a.admitted);
  REQUIRE(b.admitted);
  REQUIRE(c.admitted);
  CHECK(a.wait == 100ms);
  CHECK(b.wait == 200ms);
  CHECK(c.wait == 400ms);  // its second unit's slot is the fourth
  // Beyond the wait: refused, nothing reserved.
  const auto d = l.try_acquire(1, at(0s), 400ms);
  CHECK_FALSE(d.admitted);
  CHECK(*d.retry_after == 500ms);
  CHECK(l.try_acquire(1, at(0s), 500ms).wait == 500ms);
}

TEST_CASE("gcra: a cancelled wait gives back only what the waiters behind it leave free",
          "[rate_limiter]") {
  SECTION("burst 1: nothing, or B and the next caller would both go at 200 ms") {
    gcra_limit l({.limit = 10, .period = 1s, .burst = 1});
    REQUIRE(l.try_acquire(1, at(0s)).admitted);
    const auto a = l.try_acquire(1, at(0s), 1s);  // sends at 100 ms
    const auto b = l.try_acquire(1, at(0s), 1s);  // sends at 200 ms
    REQUIRE(a.wait == 100ms);
    REQUIRE(b.wait == 200ms);
    CHECK(l.refund_all(a.ticket, at(50ms)) == 0ns);
    CHECK(l.try_acquire(1, at(50ms), 1s).wait == 250ms);  // at 300 ms, after B
  }
  SECTION("burst 3: all of it; B keeps its time, the next caller goes with B") {
    gcra_limit l({.limit = 10, .period = 1s, .burst = 3});
    REQUIRE(l.try_acquire(3, at(0s)).admitted);
    const auto a = l.try_acquire(1, at(0s), 1s);  // slot [300, 400 ms], sends at 100 ms
    const auto b = l.try_acquire(1, at(0s), 1s);  // slot [400, 500 ms], sends at 200 ms
    REQUIRE(a.wait == 100ms);
    REQUIRE(b.wait == 200ms);
    CHECK(l.refund_all(a.ticket, at(50ms)) == 100ms);
    CHECK(l.try_acquire(1, at(50ms), 1s).wait == 150ms);  // at 200 ms, with B
    CHECK(l.try_acquire(1, at(50ms), 1s).wait == 250ms);
  }
  SECTION("the last waiter gives back all of its slot") {
    gcra_limit l({.limit = 10, .period = 1s, .burst = 1});
    REQUIRE(l.try_acquire(1, at(0s)).admitted);
    const auto a = l.try_acquire(1, at(0s), 1s);
    CHECK(l.refund_all(a.ticket, at(50ms)) == 100ms);
    CHECK(l.try_acquire(1, at(50ms), 1s).wait == 50ms);  // A's own time, 100 ms
  }
  SECTION("a slot that has passed gives back nothing") {
    gcra_limit l({.limit = 10, .period = 1s, .burst = 1});
    REQUIRE(l.try_acquire(1, at(0s)).admitted);
    const auto a = l.try_acquire(1, at(0s), 1s);
    CHECK(l.refund_all(a.ticket, at(250ms)) == 0ns);
  }
}

TEST_CASE("gcra: a refund gives back only the part of the slot still ahead", "[rate_limiter]") {
  gcra_limit l({.limit = 1, .period = 1s, .burst = 10});  // T = 1 s, tau = 10 s
  const auto r = l.try_acquire(4, at(0s));                // slot [0, 4 s]
  REQUIRE(r.admitted);
  SECTION("all of it ahead") { CHECK(l.refund_all(r.ticket, at(0s)) == 4s); }
  SECTION("half of it behind") {
    CHECK(l.refund_all(r.ticket, at(2s)) == 2s);
    CHECK(l.available(at(2s)) == 10);
  }
  SECTION("all of it behind") { CHECK(l.refund_all(r.ticket, at(5s)) == 0s); }
  SECTION("a refund of some units takes the slot's tail") {
    CHECK(l.refund(r.ticket, 1, at(2s)) == 1s);
    CHECK(l.tat() == at(3s));
  }
}

TEST_CASE("gcra: a refund never lets more through than the bound (the slot that time refilled)",
          "[rate_limiter]") {
  // A takes 10 of 20 at 0 (slot [0, 10 s]); B takes 5 at 5 s (slot [10 s, 15 s]).
  // A's call never left; it says so at 5 s. Had A never asked, the bucket
  // would have stayed full (20) until B took 5: 15 left at 5 s. Giving back
  // all 10 would leave 20, and 25 could go within [0, 5 s] where the bucket
  // was full all along: the 5 s that A's slot refilled are not A's to give.
  gcra_limit l({.limit = 1, .period = 1s, .burst = 20});
  const auto a = l.try_acquire(10, at(0s));
  REQUIRE(a.admitted);
  REQUIRE(l.try_acquire(5, at(5s)).admitted);
  CHECK(l.refund_all(a.ticket, at(5s)) == 5s);
  CHECK(l.available(at(5s)) == 15);
  CHECK(l.try_acquire(15, at(5s)).admitted);
  CHECK_FALSE(l.try_acquire(1, at(5s)).admitted);
}

TEST_CASE("gcra: another refund since the reservation makes a refund conservative",
          "[rate_limiter]") {
  gcra_limit l({.limit = 1, .period = 1s, .burst = 100, .max_wait = 1h});
  const auto first = l.try_acquire(100, at(0s));  // bucket emptied: [0, 100 s]
  REQUIRE(first.admitted);
  const auto a = l.try_acquire(10, at(0s), 1h);  // [100 s, 110 s], waits 10 s
  const auto b = l.try_acquire(10, at(0s), 1h);  // [110 s, 120 s], waits 20 s
  REQUIRE(a.wait == 10s);
  REQUIRE(b.wait == 20s);
  // A gives back what lies after B's sending time (20 s): all of it.
  CHECK(l.refund_all(a.ticket, at(1s)) == 10s);  // B's slot is now [100 s, 110 s]
  // B cannot know whether A's refund was ahead of it: it counts it as if it
  // were, and still gets all of its slot back since even [100 s, 110 s] is
  // after every sending time.
  CHECK(l.refund_all(b.ticket, at(1s)) == 10s);
  CHECK(l.tat() == at(100s));
}

TEST_CASE("gcra: settle refunds or charges the difference, debt bounded", "[rate_limiter]") {
  gcra_limit l({.limit = 10, .period = 1s, .burst = 10, .max_debt = 5});  // T = 100 ms
  const auto r = l.try_acquire(6, at(0s));  // 6 of 10; slot [0, 600 ms]
  REQUIRE(r.admitted);
  SECTION("actual below the estimate, settled at once: the difference comes back") {
    l.settle(r.ticket, 6, 2, at(0s));
    CHECK(l.available(at(0s)) == 8);
  }
  SECTION("actual above: the difference is charged") {
    l.settle(r.ticket, 6, 9, at(0s));
    CHECK(l.available(at(0s)) == 1);
  }
  SECTION("far above: debt of at most max_debt beyond an empty bucket") {
    l.settle(r.ticket, 6, 1000, at(0s));
    CHECK(l.tat() == at(1500ms));  // 10 + 5 units of 100 ms
    CHECK(l.available(at(0s)) == 0);
    CHECK(*l.try_acquire(1, at(0s)).retry_after == 600ms);
  }
  SECTION("equal: nothing changes") {
    l.settle(r.ticket, 6, 6, at(0s));
    CHECK(l.tat() == at(600ms));
  }
}

TEST_CASE("gcra: a Retry-After pauses the limit, capped; a pause never shortens",
          "[rate_limiter]") {
  gcra_limit l({.limit = 10, .period = 1s, .max_pause = 30s});
  CHECK(l.pause(5s, at(1s)));
  CHECK(l.paused_until() == at(6s));
  CHECK(l.available(at(2s)) == 0);
  const auto d = l.try_acquire(1, at(2s));
  CHECK_FALSE(d.admitted);
  CHECK(*d.retry_after == 4s);
  CHECK_FALSE(l.pause(1s, at(2s)));  // earlier than the pause under way: ignored
  CHECK(l.pause(1h, at(2s)));        // cut to 30 s
  CHECK(l.paused_until() == at(32s));
  CHECK_FALSE(l.pause(-5s, at(3s)));
  // A caller allowed to wait reserves its slot at the pause's end.
  const auto w = l.try_acquire(1, at(2s), 1min);
  REQUIRE(w.admitted);
  CHECK(w.wait == 30s);
  CHECK(l.try_acquire(1, at(32s)).admitted);
}

TEST_CASE("gcra: a remaining-quota hint tightens and never loosens", "[rate_limiter]") {
  gcra_limit l({.limit = 100, .period = 1s});  // T = 10 ms, bucket 100
  l.tighten(30, at(0s));
  CHECK(l.available(at(0s)) == 30);
  l.tighten(80, at(0s));  // looser than what is left: nothing
  CHECK(l.available(at(0s)) == 30);
  l.tighten(500, at(0s));
  CHECK(l.available(at(0s)) == 30);
  l.tighten(0, at(0s));
  CHECK(l.available(at(0s)) == 0);
  CHECK(l.available(at(100ms)) == 10);  // and it refills at the limiter's own rate
}

TEST_CASE("gcra: an oversize cost is refused with no retry_after, or admitted into debt",
          "[rate_limiter]") {
  SECTION("reject") {
    gcra_limit l({.limit = 10, .period = 1s, .burst = 5, .max_wait = 1h});
    const auto d = l.try_acquire(6, at(0s), 1h);
    CHECK_FALSE(d.admitted);
    CHECK_FALSE(d.retry_after);
    CHECK(l.available(at(0s)) == 5);
  }
  SECTION("debt: admitted when the bucket is full, the rest owed") {
    gcra_limit l({.limit = 10,
                  .period = 1s,
                  .burst = 5,
                  .oversize = keel::rate_oversize::debt,
                  .max_debt = 3});
    CHECK_FALSE(l.try_acquire(9, at(0s)).retry_after);  // 4 beyond the bucket > 3 of debt
    REQUIRE(l.try_acquire(1, at(0s)).admitted);
    const auto early = l.try_acquire(8, at(0s));  // bucket not full: waits for it
    CHECK_FALSE(early.admitted);
    CHECK(*early.retry_after == 100ms);
    const auto d = l.try_acquire(8, at(100ms));
    REQUIRE(d.admitted);
    CHECK(l.tat() == at(900ms));
    // The debt is paid back before anyone else goes: the next unit is at
    // 900 ms - 500 ms + 100 ms.
    CHECK(*l.try_acquire(1, at(100ms)).retry_after == 400ms);
  }
}

TEST_CASE("gcra: a clock that jumps back admits nothing more, only later", "[rate_limiter]") {
  gcra_limit l({.limit = 10, .period = 1s, .burst = 2});
  REQUIRE(l.try_acquire(2, at(100s)).admitted);
  // The clock reads 40 s earlier: the bucket looks 40 s more drained.
  const auto d = l.try_acquire(1, at(60s));
  CHECK_FALSE(d.admitted);
  CHECK(*d.retry_after == 40100ms);  // until TAT + T - tau: 100.2 s + 0.1 s - 0.2 s
  CHECK(l.available(at(60s)) == 0);
  // Once the clock is back where it was, the limit is as before.
  CHECK(l.available(at(100s)) == 0);
  CHECK(l.available(at(100s) + 100ms) == 1);
  // A refund read on the earlier clock gives back no more than the slot.
  const auto r = l.try_acquire(1, at(100s) + 100ms);
  REQUIRE(r.admitted);
  CHECK(l.refund_all(r.ticket, at(1s)) == 100ms);
}

TEST_CASE("gcra: a refund on a clock behind another caller's never moves that caller's slot",
          "[rate_limiter]") {
  // burst 100, T = 1 s. A at 0 s; B at 50 s (the bucket refilled: B's slot
  // starts at its own time). A refunds on a clock that reads 0.5 s.
  gcra_limit l({.limit = 1, .period = 1s, .burst = 100});
  const auto a = l.try_acquire(1, at(0s));
  REQUIRE(l.try_acquire(1, at(50s)).admitted);
  const auto tat = l.tat();
  CHECK(l.refund_all(a.ticket, at(500ms)) == 0s);  // A's slot ended before B came
  CHECK(l.tat() == tat);
  // So at most 100 units go in [50 s, 50.5 s]: B and 99 more.
  int admitted = 1;
  for (duration t = 50s; t <= 50500ms; t += 100ms) {
    while (l.try_acquire(1, at(t)).admitted) ++admitted;
  }
  CHECK(admitted == 100);
}

TEST_CASE("gcra: a cost of 0 is charged as one unit, and settled from one", "[rate_limiter]") {
  gcra_limit l({.limit = 10, .period = 1s});  // T = 100 ms
  const auto z = l.try_acquire(0, at(0s));
  REQUIRE(z.admitted);
  CHECK(z.ticket.length == 100'000'000);
  CHECK(l.available(at(0s)) == 9);
  l.settle(z.ticket, 0, 0, at(0s));  // it cost nothing after all: the unit comes back
  CHECK(l.available(at(0s)) == 10);
  REQUIRE(l.try_acquire(10, at(0s)).admitted);  // empty now
  const auto refused = l.try_acquire(0, at(0s));
  CHECK_FALSE(refused.admitted);
  CHECK(*refused.retry_after == 100ms);  // when one unit fits
  const auto waits = l.try_acquire(0, at(0s), 100ms);
  REQUIRE(waits.admitted);
  CHECK(waits.wait == 100ms);
  CHECK(l.tat() == at(1100ms));
  l.settle(waits.ticket, 0, 3, at(0s));  // it cost 3: 2 more (into no debt: forgiven)
  CHECK(l.tat() == at(1100ms));
}

TEST_CASE("gcra: extremes saturate and never wrap", "[rate_limiter]") {
  constexpr auto max_u = std::numeric_limits<std::uint64_t>::max();
  SECTION("a huge burst: tau saturates at duration::max()") {
    gcra_limit l({.limit = 1, .period = 1h, .burst = max_u});
    CHECK(l.tolerance() == duration::max());
    CHECK(l.try_acquire(1'000'000, at(0s)).admitted);
    CHECK_FALSE(l.try_acquire(max_u, at(0s)).admitted);  // its need saturates: never
  }
  SECTION("one unit per nanosecond, time near the end of time") {
    gcra_limit l({.limit = 1'000'000'000, .period = 1s, .burst = 1000, .max_wait = 1h});
    const time_point late = time_point::max() - 1ms;
    CHECK(l.try_acquire(1000, late).admitted);
    CHECK(l.try_acquire(10, late, 1h).wait == 10ns);
    // A slot that would end past the end of time is refused, not wrapped.
    const time_point last = time_point::max() - 5ns;
    CHECK_FALSE(l.try_acquire(1000, last, duration::max()).admitted);
    CHECK(l.tat() <= time_point::max());
    CHECK(l.available(time_point::max()) <= 1000);
  }
  SECTION("a period of centuries and a cost of all of it") {
    gcra_limit l({.limit = 2, .period = duration::max() / 4, .burst = 2});
    CHECK(l.try_acquire(2, at(0s)).admitted);
    CHECK_FALSE(l.try_acquire(1, at(0s)).admitted);
  }
  SECTION("a refund of everything, a charge of everything, a pause of forever") {
    gcra_limit l({.limit = 10, .period = 1s, .max_debt = max_u, .max_pause = duration::max()});
    const auto r = l.try_acquire(10, at(0s));
    REQUIRE(r.admitted);
    CHECK(l.refund(r.ticket, max_u, at(0s)) == 1s);
    CHECK(l.charge(max_u, at(0s)) > 1000h);
    CHECK(l.pause(duration::max(), at(1s)));
    CHECK(l.paused_until() == time_point::max());
    CHECK_FALSE(l.try_acquire(1, time_point::max() - 1ns, duration::max()).admitted);
  }
}

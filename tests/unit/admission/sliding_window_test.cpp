// SPDX-License-Identifier: BSL-1.0
// keel::sliding_window_limit, the window limit's decision core:
//  - driven by hand at exact times: the boundary to the nanosecond (closed
//    intervals), no boundary burst, waits in arrival order, refunds,
//    settlement and debt, pauses and quota hints, a cost of 0, oversize
//    costs, clocks that jump back, extremes;
//  - against a model written here independently (a log of what was sent):
//    every decision equals the bucketed rule's, and the units sent never
//    exceed `limit` in any closed interval of one period (fuzzed);
//  - threads sharing one limit (run under TSan by the tsan preset), with a
//    watcher checking the window while they run.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <latch>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <keel/admission/sliding_window_limit.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"
#include "support/rate_bound.hpp"
#include "support/rng.hpp"

namespace {

using namespace std::chrono_literals;
using keel::duration;
using keel::sliding_window_limit;
using keel::sliding_window_options;
using keel::time_point;

using keel_test::most_in_a_period;
using keel_test::sent_unit;

time_point at(duration d) { return time_point(d); }

}  // namespace

TEST_CASE("sliding_window_options: every invalid field is named", "[sliding_window]") {
  CHECK_FALSE(sliding_window_options{}.validate());
  CHECK(sliding_window_options{.limit = 0}.validate()->field == "sliding_window_options.limit");
  CHECK(sliding_window_options{.period = 0s}.validate()->field == "sliding_window_options.period");
  CHECK(sliding_window_options{.period = -1s}.validate()->field == "sliding_window_options.period");
  CHECK(sliding_window_options{.buckets = 0}.validate()->field == "sliding_window_options.buckets");
  CHECK(sliding_window_options{.buckets = 4097}.validate()->field ==
        "sliding_window_options.buckets");
  CHECK_FALSE(sliding_window_options{.buckets = 4096}.validate());
  // A bucket narrower than 1 ns.
  CHECK(sliding_window_options{.period = 59ns}.validate()->field ==
        "sliding_window_options.period");
  CHECK_FALSE(sliding_window_options{.period = 60ns}.validate());
  CHECK(sliding_window_options{.max_wait = -1ns}.validate()->field ==
        "sliding_window_options.max_wait");
  CHECK(sliding_window_options{.max_pause = -1ns}.validate()->field ==
        "sliding_window_options.max_pause");
  CHECK(sliding_window_options{.oversize = static_cast<keel::rate_oversize>(7)}.validate()->field ==
        "sliding_window_options.oversize");
  // The ring reaches max_wait ahead: below 2^20 bucket widths.
  constexpr auto w = sliding_window_options{}.bucket_width();  // 16,666,667 ns
  CHECK(sliding_window_options{.max_wait = w * (1 << 20)}.validate()->field ==
        "sliding_window_options.max_wait");
  CHECK_FALSE(sliding_window_options{.max_wait = w * (1 << 20) - 1ns}.validate());
  static_assert(!sliding_window_options{.limit = 5, .period = 1min, .buckets = 12}.validate());
  static_assert(sliding_window_options{.period = 1s, .buckets = 3}.bucket_width() == 333'333'334ns);
  REQUIRE_THROWS_AS(sliding_window_limit(sliding_window_options{.buckets = 0}), keel::config_error);
}

TEST_CASE("sliding window: the boundary, to the nanosecond: closed intervals of one period",
          "[sliding_window]") {
  // 10 per second in 10 buckets of 100 ms: bucket k is [k * 100 ms, (k + 1) * 100 ms).
  sliding_window_limit l({.limit = 10, .period = 1s, .buckets = 10});
  CHECK(l.bucket_width() == 100ms);
  const time_point t0 = at(10s);  // the start of bucket 100
  CHECK(l.available(t0) == 10);
  for (int i = 0; i < 10; ++i) {
    const auto d = l.try_acquire(1, t0);
    REQUIRE(d.admitted);
    CHECK(d.wait == 0ns);
    CHECK(d.ticket.end == 100);
  }
  const auto full = l.try_acquire(1, t0);
  CHECK_FALSE(full.admitted);
  REQUIRE(full.retry_after);
  // Bucket 100 counts until bucket 111 starts: [t0, t0 + 1 s] is closed, so
  // t0 + 1 s may not send, and the bucket's whole width is counted.
  CHECK(*full.retry_after == 1100ms);
  CHECK_FALSE(l.try_acquire(1, t0 + 1s).admitted);
  CHECK(*l.try_acquire(1, t0 + 1100ms - 1ns).retry_after == 1ns);
  CHECK(l.available(t0 + 1100ms - 1ns) == 0);
  CHECK(l.available(t0 + 1100ms) == 10);
  CHECK(l.try_acquire(10, t0 + 1100ms).admitted);
  CHECK_FALSE(l.try_acquire(1, t0 + 1100ms).admitted);
  CHECK(l.in_window(t0 + 1100ms) == 10);
}

TEST_CASE("sliding window: a unit late in its bucket still counts for the whole bucket",
          "[sliding_window]") {
  // The window counted at t is [start of bucket(t) - buckets * w, t]: between
  // period and period + w long.
  sliding_window_limit l({.limit = 2, .period = 1s, .buckets = 4});  // w = 250 ms
  REQUIRE(l.try_acquire(1, at(249ms)).admitted);                     // bucket 0
  REQUIRE(l.try_acquire(1, at(250ms)).admitted);                     // bucket 1
  CHECK(*l.try_acquire(1, at(1s)).retry_after == 250ms);             // bucket 4 counts 0..4
  CHECK(l.try_acquire(1, at(1250ms)).admitted);                      // bucket 5: 1..5
  CHECK(*l.try_acquire(1, at(1250ms)).retry_after == 250ms);
}

TEST_CASE("sliding window: a period not divisible by the buckets rounds the width up",
          "[sliding_window]") {
  sliding_window_limit l({.limit = 1, .period = 1s, .buckets = 3});
  CHECK(l.bucket_width() == 333'333'334ns);  // 3 buckets cover 1 s + 2 ns
  REQUIRE(l.try_acquire(1, at(0s)).admitted);
  CHECK_FALSE(l.try_acquire(1, at(1'333'333'336ns - 1ns)).admitted);
  CHECK(l.try_acquire(1, at(1'333'333'336ns)).admitted);  // the start of bucket 4
}

TEST_CASE("sliding window: no boundary burst (resilience4j #2064): at most `limit` in any window",
          "[sliding_window]") {
  // A fixed window of 10 per second admits 10 at 0.999 s and 10 more at
  // 1.000 s. The sliding window admits 10 in any second, whatever the phase.
  sliding_window_limit l({.limit = 10, .period = 1s, .buckets = 10});
  std::vector<sent_unit> sent;
  for (duration t = 999ms; t <= 5001ms; t += 100us) {
    while (l.try_acquire(1, at(t)).admitted) sent.push_back({t.count(), 1});
  }
  CHECK(most_in_a_period(sent, 1'000'000'000) == 10);
  // Saturated, it sends 10 per 1.1 s (the window counts one bucket more).
  CHECK(sent.size() == 40);  // at 0.999 s, 2.0 s, 3.1 s and 4.2 s
}

TEST_CASE("sliding window: saturated, it admits at least limit per period + one bucket",
          "[sliding_window]") {
  for (const std::uint32_t buckets : {1U, 4U, 10U, 60U}) {
    sliding_window_limit l({.limit = 60, .period = 1min, .buckets = buckets});
    const std::int64_t w = l.bucket_width().count();
    std::uint64_t admitted = 0;
    std::vector<sent_unit> sent;
    const duration step = l.bucket_width() / 7;
    for (duration t = 0s; t < 100min; t += step) {
      while (l.try_acquire(1, at(t)).admitted) {
        ++admitted;
        sent.push_back({t.count(), 1});
      }
    }
    INFO("buckets " << buckets);
    CHECK(most_in_a_period(sent, 60'000'000'000) == 60);
    // An exact log sends 6000 in 100 periods; the window counts up to
    // period + w, so at least 60 per (period + w), less the last window.
    const auto floor_ = static_cast<std::uint64_t>(6'000'000'000'000 / (60'000'000'000 + w));
    CHECK(admitted + 60 >= floor_ * 60);
    CHECK(admitted <= 6000);
  }
}

TEST_CASE("sliding window: a caller waits for old units to leave, in arrival order",
          "[sliding_window]") {
  sliding_window_limit l({.limit = 10, .period = 1s, .buckets = 10, .max_wait = 2s});
  REQUIRE(l.try_acquire(4, at(0s)).admitted);      // bucket 0
  REQUIRE(l.try_acquire(3, at(200ms)).admitted);   // bucket 2
  REQUIRE(l.try_acquire(3, at(500ms)).admitted);   // bucket 5
  const auto a = l.try_acquire(5, at(600ms), 1s);  // needs buckets 0 and 2 gone: bucket 13
  REQUIRE(a.admitted);
  CHECK(a.wait == 700ms);
  CHECK(a.ticket.end == 13);
  CHECK(a.ticket.at == 1'300'000'000);
  const auto b = l.try_acquire(1, at(600ms), 1s);  // fits with A, but not before A
  REQUIRE(b.admitted);
  CHECK(b.wait == 700ms);
  const auto c = l.try_acquire(3, at(600ms), 1s);  // needs bucket 5 gone: bucket 16
  REQUIRE(c.admitted);
  CHECK(c.wait == 1s);
  // Beyond the wait: refused, nothing counted.
  const auto d = l.try_acquire(1, at(600ms));
  CHECK_FALSE(d.admitted);
  CHECK(*d.retry_after == 1s);
  CHECK(l.available(at(600ms)) == 0);   // behind the waiters
  CHECK(l.available(at(1600ms)) == 1);  // 5 + 1 + 3 counted in buckets 6..16
  CHECK(l.in_window(at(1600ms)) == 9);
}

TEST_CASE("sliding window: a waiter that gives up frees its place in line, exactly",
          "[sliding_window]") {
  sliding_window_limit l({.limit = 10, .period = 1s, .buckets = 10, .max_wait = 3s});
  REQUIRE(l.try_acquire(4, at(0s)).admitted);      // bucket 0
  REQUIRE(l.try_acquire(6, at(500ms)).admitted);   // bucket 5
  const auto a = l.try_acquire(3, at(500ms), 3s);  // bucket 0 leaves: 11
  const auto b = l.try_acquire(2, at(500ms), 3s);  // behind A; 5 leaves: 16
  const auto c = l.try_acquire(2, at(500ms), 3s);  // with B
  REQUIRE((a.admitted && b.admitted && c.admitted));
  CHECK(a.ticket.end == 11);
  CHECK(b.ticket.end == 16);
  CHECK(c.ticket.end == 16);
  CHECK(a.ticket.sends == 1'100'000'000);
  CHECK(c.ticket.sends == 1'600'000'000);
  SECTION("the last waiter gives up: the next one back holds callers") {
    l.done_waiting(c.ticket);
    CHECK(l.refund_all(c.ticket, at(600ms)) == 2);
    // A refusal changes nothing and tells the wait: B is still there (16).
    CHECK(*l.try_acquire(1, at(600ms)).retry_after == 1s);
    l.done_waiting(b.ticket);
    CHECK(l.refund_all(b.ticket, at(600ms)) == 2);
    // A's time holds the next caller: bucket 11, with A.
    CHECK(*l.try_acquire(1, at(600ms)).retry_after == 500ms);
    const auto d = l.try_acquire(1, at(600ms), 3s);
    CHECK(d.ticket.end == 11);
    CHECK(d.wait == 500ms);
  }
  SECTION("a waiter in the middle gives up: the line stays as it was") {
    l.done_waiting(a.ticket);
    CHECK(l.refund_all(a.ticket, at(600ms)) == 3);
    CHECK(l.try_acquire(1, at(600ms), 3s).wait == 1s);  // behind B and C
  }
  SECTION("everyone gives up: a caller goes at once when every window has room") {
    for (const auto* d : {&c, &b, &a}) {
      l.done_waiting(d->ticket);
      l.refund_all(d->ticket, at(600ms));
    }
    CHECK(l.available(at(600ms)) == 0);  // buckets 0 and 5 still count 10
    const auto d = l.try_acquire(3, at(1100ms));
    REQUIRE(d.admitted);
    CHECK(d.wait == 0ns);
    CHECK(d.ticket.end == 11);
  }
  SECTION("sent is not gone: a waiter that sends keeps its place") {
    l.done_waiting(c.ticket, true);
    l.done_waiting(b.ticket, true);
    CHECK(l.try_acquire(1, at(600ms), 3s).wait == 1s);
  }
  SECTION("a ticket that did not wait is ignored") {
    const auto late = l.try_acquire(1, at(2s));  // bucket 20: no wait
    REQUIRE(late.admitted);
    CHECK(late.ticket.sends == std::numeric_limits<std::int64_t>::min());
    l.done_waiting(late.ticket);
    CHECK(l.try_acquire(1, at(2s), 3s).wait == 0ns);
  }
}

TEST_CASE(
    "sliding window: after a waiter gives up, a caller is checked against every window "
    "that counts it, up to units counted ahead",
    "[sliding_window]") {
  sliding_window_limit l({.limit = 10, .period = 1s, .buckets = 10, .max_wait = 3s});
  const auto y = l.try_acquire(4, at(0s));         // bucket 0
  REQUIRE(l.try_acquire(6, at(500ms)).admitted);   // bucket 5
  const auto a = l.try_acquire(4, at(500ms), 3s);  // bucket 11, at 1.1 s
  const auto b = l.try_acquire(1, at(500ms), 3s);  // bucket 16
  REQUIRE((y.admitted && a.admitted && b.admitted));
  l.done_waiting(a.ticket, true);  // A reports early that it sent (settled before its time)
  l.done_waiting(b.ticket);        // B gives up: nobody holds the line
  l.refund_all(b.ticket, at(600ms));
  l.refund_all(y.ticket, at(600ms));  // Y never left: bucket 0 is empty
  // The window at 0.6 s holds 6, but the one at 1.1 s holds 6 + A's 4: one
  // more unit now would put 11 in [0.5 s, 1.5 s]. It goes when bucket 5 leaves.
  CHECK(l.in_window(at(600ms)) == 10);
  CHECK(l.available(at(600ms)) == 0);
  const auto now = l.try_acquire(1, at(600ms));
  CHECK_FALSE(now.admitted);
  CHECK(*now.retry_after == 1s);
  const auto later = l.try_acquire(1, at(600ms), 3s);
  REQUIRE(later.admitted);
  CHECK(later.ticket.end == 16);
  CHECK(later.wait == 1s);
}

TEST_CASE("sliding window: a wait reaches period + bucket + max_wait ahead, no further",
          "[sliding_window]") {
  // max_wait 0: the ring reaches 11 buckets past the present one.
  sliding_window_limit l({.limit = 10, .period = 1s, .buckets = 10});
  REQUIRE(l.try_acquire(10, at(0s)).admitted);
  const auto a = l.try_acquire(10, at(0s), 10s);  // bucket 11: within reach
  REQUIRE(a.admitted);
  CHECK(a.wait == 1100ms);
  const auto b = l.try_acquire(10, at(0s), 10s);  // bucket 22: beyond it
  CHECK_FALSE(b.admitted);
  CHECK(*b.retry_after == 2200ms);
  // Later, the same wait is within reach.
  const auto c = l.try_acquire(10, at(1100ms), 10s);
  REQUIRE(c.admitted);
  CHECK(c.ticket.end == 22);
  // With max_wait 2 s, 20 buckets more.
  sliding_window_limit m({.limit = 10, .period = 1s, .buckets = 10, .max_wait = 2s});
  REQUIRE(m.try_acquire(10, at(0s)).admitted);
  REQUIRE(m.try_acquire(10, at(0s), 10s).admitted);        // 11
  CHECK(m.try_acquire(10, at(0s), 10s).ticket.end == 22);  // within 31
  CHECK_FALSE(m.try_acquire(10, at(0s), 10s).admitted);    // 33: past 31
  CHECK(m.try_acquire(10, at(200ms), 10s).ticket.end == 33);
}

TEST_CASE("sliding window: a small caller never goes before a waiter (no overtaking)",
          "[sliding_window]") {
  sliding_window_limit l({.limit = 10, .period = 1s, .buckets = 10});
  REQUIRE(l.try_acquire(8, at(0s)).admitted);
  const auto a = l.try_acquire(5, at(0s), 2s);
  REQUIRE(a.admitted);
  CHECK(a.wait == 1100ms);
  // Two units are free now, but A reserved first.
  const auto b = l.try_acquire(1, at(0s));
  CHECK_FALSE(b.admitted);
  CHECK(*b.retry_after == 1100ms);
}

TEST_CASE("sliding window: refunds give back units whose bucket is still in the window",
          "[sliding_window]") {
  sliding_window_limit l({.limit = 10, .period = 1s, .buckets = 10, .max_wait = 5s});
  const auto r = l.try_acquire(6, at(0s));
  REQUIRE(r.admitted);
  SECTION("a call that never left: all of it") {
    CHECK(l.refund_all(r.ticket, at(50ms)) == 6);
    CHECK(l.available(at(50ms)) == 10);
    CHECK(l.refund_all(r.ticket, at(50ms)) == 0);  // the bucket has nothing more of it
  }
  SECTION("some units: at most what it counted") {
    CHECK(l.refund(r.ticket, 2, at(900ms)) == 2);
    CHECK(l.available(at(900ms)) == 6);
    CHECK(l.refund(r.ticket, 100, at(900ms)) == 4);  // the ticket's 6, not 100
  }
  SECTION("a bucket that left the window: nothing (it no longer counts)") {
    CHECK(l.refund_all(r.ticket, at(1100ms)) == 0);
    CHECK(l.available(at(1100ms)) == 10);
  }
  SECTION("the last moment its bucket counts") {
    CHECK(l.refund_all(r.ticket, at(1100ms - 1ns)) == 6);
  }
  SECTION("a cancelled waiter: its units go to whoever asks next, behind its slot") {
    const auto w = l.try_acquire(8, at(0s), 5s);  // bucket 11
    REQUIRE(w.admitted);
    CHECK(w.wait == 1100ms);
    CHECK(l.refund_all(w.ticket, at(10ms)) == 8);
    const auto next = l.try_acquire(10, at(10ms), 5s);
    REQUIRE(next.admitted);
    CHECK(next.wait == 1090ms);  // bucket 11, as the waiter it replaces
  }
  SECTION("a refused decision's ticket gives back nothing") {
    const auto no = l.try_acquire(5, at(0s));
    REQUIRE_FALSE(no.admitted);
    CHECK(l.refund_all(no.ticket, at(0s)) == 0);
    CHECK(l.available(at(0s)) == 4);
  }
}

TEST_CASE("sliding window: settle refunds or charges the difference; debt is bounded",
          "[sliding_window]") {
  sliding_window_limit l({.limit = 10, .period = 1s, .buckets = 10, .max_debt = 5});
  const auto r = l.try_acquire(6, at(0s));
  REQUIRE(r.admitted);
  SECTION("below the estimate: the window counts the actual") {
    l.settle(r.ticket, 6, 2, at(300ms));
    CHECK(l.in_window(at(300ms)) == 2);
  }
  SECTION("above: the difference is counted into the current bucket") {
    l.settle(r.ticket, 6, 9, at(300ms));
    CHECK(l.in_window(at(300ms)) == 9);
    // The extra 3 leave with bucket 3, a period after it.
    CHECK(l.in_window(at(1100ms)) == 3);
    CHECK(l.in_window(at(1400ms)) == 0);
  }
  SECTION("far above (vespa #37696): at most limit + max_debt, gone a period later") {
    CHECK(l.charge(1000, at(300ms)) == 9);  // 6 + 9 = 10 + 5
    CHECK(l.in_window(at(300ms)) == 15);
    CHECK(l.charge(1, at(300ms)) == 0);
    CHECK_FALSE(l.try_acquire(1, at(300ms)).admitted);
    // Once bucket 0 (6) leaves, the 9 of debt leave room for one.
    CHECK(*l.try_acquire(1, at(300ms)).retry_after == 800ms);
    CHECK(l.available(at(1400ms)) == 10);
  }
  SECTION("equal: nothing changes") {
    l.settle(r.ticket, 6, 6, at(300ms));
    CHECK(l.in_window(at(300ms)) == 6);
  }
  SECTION("no debt allowed: a charge fills the window and no more") {
    sliding_window_limit z({.limit = 10, .period = 1s, .buckets = 10});
    REQUIRE(z.try_acquire(6, at(0s)).admitted);
    CHECK(z.charge(1000, at(0s)) == 4);
    CHECK(z.in_window(at(0s)) == 10);
  }
}

TEST_CASE("sliding window: a Retry-After pauses it, capped; a pause never shortens",
          "[sliding_window]") {
  // max_wait 30 s: the ring reaches a wait through the longest pause.
  sliding_window_limit l(
      {.limit = 10, .period = 1s, .buckets = 10, .max_wait = 30s, .max_pause = 30s});
  CHECK(l.pause(5s, at(1s)));
  CHECK(l.paused_until() == at(6s));
  CHECK(l.available(at(2s)) == 0);
  const auto d = l.try_acquire(1, at(2s));
  CHECK_FALSE(d.admitted);
  CHECK(*d.retry_after == 4s);
  CHECK_FALSE(l.pause(1s, at(2s)));  // ends before the pause under way
  CHECK(l.pause(1h, at(2s)));        // cut to 30 s
  CHECK(l.paused_until() == at(32s));
  CHECK_FALSE(l.pause(-5s, at(3s)));
  CHECK_FALSE(l.pause(0s, at(3s)));
  // A caller allowed to wait is counted at the pause's end.
  const auto w = l.try_acquire(3, at(2s), 1min);
  REQUIRE(w.admitted);
  CHECK(w.wait == 30s);
  CHECK(w.ticket.end == l.bucket_index(at(32s)));
  CHECK(l.try_acquire(7, at(32s)).admitted);
  CHECK_FALSE(l.try_acquire(1, at(32s)).admitted);
}

TEST_CASE("sliding window: a remaining-quota hint tightens and never loosens", "[sliding_window]") {
  sliding_window_limit l({.limit = 100, .period = 1s, .buckets = 10});
  REQUIRE(l.try_acquire(10, at(0s)).admitted);
  l.tighten(30, at(500ms));
  CHECK(l.available(at(500ms)) == 30);
  l.tighten(80, at(500ms));  // looser than what is left: nothing
  CHECK(l.available(at(500ms)) == 30);
  l.tighten(0, at(500ms));
  CHECK(l.available(at(500ms)) == 0);
  // The units it counted leave with their bucket (5), the first 10 with bucket 0.
  CHECK(l.available(at(1100ms)) == 10);
  CHECK(l.available(at(1600ms)) == 100);
}

TEST_CASE("sliding window: a cost of 0 counts as one unit, and is settled from one",
          "[sliding_window]") {
  sliding_window_limit l({.limit = 3, .period = 1s, .buckets = 10});
  const auto z = l.try_acquire(0, at(0s));
  REQUIRE(z.admitted);
  CHECK(l.in_window(at(0s)) == 1);
  l.settle(z.ticket, 0, 0, at(0s));  // it cost nothing after all
  CHECK(l.in_window(at(0s)) == 0);
  REQUIRE(l.try_acquire(2, at(0s)).admitted);
  // Zero estimates cannot stream through a window with one unit left.
  CHECK(l.try_acquire(0, at(0s)).admitted);
  const auto full = l.try_acquire(0, at(0s));
  CHECK_FALSE(full.admitted);
  CHECK(*full.retry_after == 1100ms);
  // Settled to its actual cost, it is charged from the one unit it holds.
  sliding_window_limit m({.limit = 3, .period = 1s, .buckets = 10});
  const auto e = m.try_acquire(0, at(0s));
  m.settle(e.ticket, 0, 2, at(0s));
  CHECK(m.in_window(at(0s)) == 2);
}

TEST_CASE("sliding window: an oversize cost is refused with no retry_after, or put into debt",
          "[sliding_window]") {
  SECTION("reject") {
    sliding_window_limit l({.limit = 10, .period = 1s, .buckets = 10});
    const auto d = l.try_acquire(11, at(0s), 1h);
    CHECK_FALSE(d.admitted);
    CHECK_FALSE(d.retry_after);
    CHECK(l.available(at(0s)) == 10);
  }
  SECTION("debt: admitted into an empty window; the window pays it back by sliding") {
    sliding_window_limit l({.limit = 10,
                            .period = 1s,
                            .buckets = 10,
                            .oversize = keel::rate_oversize::debt,
                            .max_debt = 3});
    CHECK_FALSE(l.try_acquire(14, at(0s)).retry_after);  // 4 beyond the limit > 3 of debt
    REQUIRE(l.try_acquire(1, at(0s)).admitted);
    const auto early = l.try_acquire(12, at(200ms));  // the window is not empty
    CHECK_FALSE(early.admitted);
    CHECK(*early.retry_after == 900ms);
    const auto d = l.try_acquire(12, at(1100ms));
    REQUIRE(d.admitted);
    CHECK(l.in_window(at(1100ms)) == 12);
    CHECK(*l.try_acquire(1, at(1100ms)).retry_after == 1100ms);
  }
}

TEST_CASE("sliding window: a clock that jumps back counts into the newest bucket",
          "[sliding_window]") {
  sliding_window_limit l({.limit = 10, .period = 1s, .buckets = 10});
  REQUIRE(l.try_acquire(6, at(100s)).admitted);
  // The clock reads 40 s earlier: the window at 100 s still counts.
  CHECK(l.in_window(at(60s)) == 6);
  CHECK(l.available(at(60s)) == 4);
  const auto d = l.try_acquire(4, at(60s));
  REQUIRE(d.admitted);
  CHECK(d.ticket.end == 1000);  // the bucket of 100 s
  CHECK_FALSE(l.try_acquire(1, at(60s)).admitted);
  // Nothing more within a period of 100 s; the window is intact afterwards.
  CHECK_FALSE(l.try_acquire(1, at(101s)).admitted);
  CHECK(l.available(at(101100ms)) == 10);
  // A refund read on the earlier clock gives back what its bucket counts.
  CHECK(l.refund_all(d.ticket, at(1s)) == 4);
  CHECK(l.in_window(at(100s)) == 6);
}

TEST_CASE("sliding window: extremes saturate and never wrap", "[sliding_window]") {
  constexpr auto max_u = std::numeric_limits<std::uint64_t>::max();
  SECTION("times before the epoch floor to their bucket") {
    sliding_window_limit l({.limit = 1, .period = 1s, .buckets = 10});
    CHECK(l.bucket_index(at(-1ns)) == -1);
    CHECK(l.bucket_index(at(-100ms)) == -1);
    CHECK(l.bucket_index(at(-100ms - 1ns)) == -2);
    REQUIRE(l.try_acquire(1, at(-1ns)).admitted);
    CHECK_FALSE(l.try_acquire(1, at(1s - 1ns)).admitted);
    CHECK(l.try_acquire(1, at(1s)).admitted);
  }
  SECTION("time near the end of time") {
    sliding_window_limit l({.limit = 1000, .period = 1s, .buckets = 10, .max_wait = 1h});
    const time_point late = time_point::max() - 1ms;
    CHECK(l.try_acquire(1000, late).admitted);
    // The next room is past the end of time: refused, never wrapped.
    CHECK_FALSE(l.try_acquire(1, late, duration::max()).admitted);
    CHECK(l.available(time_point::max()) == 0);
    CHECK(l.in_window(time_point::max()) == 1000);
  }
  SECTION("a period of centuries and one bucket") {
    sliding_window_limit l({.limit = 2, .period = duration::max() / 4, .buckets = 1});
    CHECK(l.try_acquire(2, at(0s)).admitted);
    CHECK_FALSE(l.try_acquire(1, at(0s)).admitted);
    CHECK(l.try_acquire(1, at(0s), duration::max()).wait == l.bucket_width() * 2);
  }
  SECTION("huge costs, huge debt, a pause of forever") {
    sliding_window_limit l({.limit = 10,
                            .period = 1s,
                            .buckets = 10,
                            .oversize = keel::rate_oversize::debt,
                            .max_debt = max_u,
                            .max_pause = duration::max()});
    const auto r = l.try_acquire(max_u, at(0s));
    REQUIRE(r.admitted);
    CHECK(l.in_window(at(0s)) == max_u);
    CHECK(l.charge(max_u, at(0s)) == 0);
    CHECK(l.refund(r.ticket, max_u, at(0s)) == max_u);
    CHECK(l.charge(max_u, at(0s)) == max_u);
    CHECK(l.pause(duration::max(), at(1s)));
    CHECK(l.paused_until() == time_point::max());
    CHECK_FALSE(l.try_acquire(1, at(1h), duration::max()).admitted);
  }
  SECTION("4096 buckets of 1 ns") {
    sliding_window_limit l({.limit = 5, .period = 4096ns, .buckets = 4096});
    REQUIRE(l.try_acquire(5, at(0s)).admitted);
    CHECK(*l.try_acquire(1, at(4096ns)).retry_after == 1ns);
    CHECK(l.try_acquire(5, at(4097ns)).admitted);
  }
}

namespace {

/// The model: a log of (send time, units) and the bucketed rule, written
/// without the limiter's ring or running total. A caller goes at
/// max(now, pause end, the last waiter's send time); bucket c admits `need`
/// when the units sent from the start of bucket c - buckets on, plus need,
/// are at most `limit`; else the first later bucket that does, from its start.
struct window_model {
  std::uint64_t limit;
  std::int64_t w;
  std::int64_t buckets;
  std::vector<sent_unit> log{};
  std::int64_t paused = std::numeric_limits<std::int64_t>::min();
  std::int64_t last_wait = std::numeric_limits<std::int64_t>::min();

  static std::int64_t floor_div(std::int64_t a, std::int64_t b) {
    return a / b - (a % b < 0 ? 1 : 0);
  }
  std::uint64_t sent_between(std::int64_t a, std::int64_t b) const {
    std::uint64_t s = 0;
    for (const auto& u : log) s += u.at >= a && u.at <= b ? u.units : 0;
    return s;
  }
  std::uint64_t sent_since(std::int64_t t) const {
    std::uint64_t s = 0;
    for (const auto& u : log) s += u.at >= t ? u.units : 0;
    return s;
  }
  struct answer {
    bool admitted;
    std::int64_t wait;
    std::int64_t send;
  };
  answer acquire(std::uint64_t cost, std::int64_t now, std::int64_t max_wait) {
    const std::uint64_t need = std::max<std::uint64_t>(cost, 1);
    if (need > limit) return {false, -1, 0};
    const std::int64_t from = std::max({now, paused, last_wait});
    std::int64_t c = floor_div(from, w);
    while (sent_since((c - buckets) * w) + need > limit) ++c;
    const std::int64_t send = c == floor_div(from, w) ? from : c * w;
    const std::int64_t wait = send - now;
    if (wait > max_wait) return {false, wait, send};
    if (wait > 0) last_wait = std::max(last_wait, send);
    log.push_back({send, need});  // a cost of 0 counts as 1
    return {true, wait, send};
  }
  void give_back(std::int64_t send, std::uint64_t units) {
    for (auto& u : log) {
      if (u.at == send && u.units > 0) {
        const std::uint64_t d = std::min(units, u.units);
        u.units -= d;
        units -= d;
        if (units == 0) return;
      }
    }
  }
};

}  // namespace

TEST_CASE(
    "sliding window model: every decision equals the bucketed rule's on a log, and no "
    "closed period ever holds more than `limit` (fuzzed)",
    "[sliding_window][model]") {
  for (std::uint64_t seed = 1; seed <= 250; ++seed) {
    keel_test::rng rng{seed * 104729};
    const auto limit = static_cast<std::uint64_t>(rng.in(1, 30));
    const auto buckets = static_cast<std::uint32_t>(rng.in(1, 16));
    const duration period = std::chrono::microseconds(rng.in(buckets, 5000));
    // max_wait sizes the ring to reach every wait of up to 2 periods asked below.
    sliding_window_limit l(
        {.limit = limit, .period = period, .buckets = buckets, .max_wait = 2 * period});
    const std::int64_t w = l.bucket_width().count();
    window_model m{limit, w, buckets};
    struct pending {
      keel::rate_ticket ticket;
      std::uint64_t estimate;
    };
    std::vector<pending> out;  // sent, not yet settled
    std::int64_t now = rng.in(-1'000'000, 1'000'000);
    INFO("seed " << seed << " limit " << limit << " buckets " << buckets << " w " << w);
    for (int step = 0; step < 300; ++step) {
      now += rng.chance(30) ? 0 : rng.in(0, 3 * w);
      const time_point tp{duration(now)};
      const int what = static_cast<int>(rng.in(0, 99));
      if (what < 70) {
        const auto cost = static_cast<std::uint64_t>(rng.in(0, static_cast<std::int64_t>(limit)));
        const std::int64_t max_wait = rng.chance(60) ? 0 : rng.in(0, 2 * period.count());
        // Against an exact log of one period, before the decision: what it
        // admits at once fits the exact window, and what it refuses (nobody
        // ahead) is refused for units at most one bucket (and the width's
        // rounding) older than the exact window.
        const std::int64_t p = period.count();
        const std::uint64_t exact = m.sent_between(now - p, now);
        const std::uint64_t beyond =
            m.sent_between(now - (static_cast<std::int64_t>(buckets) + 1) * w + 1, now - p - 1);
        const bool nobody_ahead = now >= m.paused && now >= m.last_wait;
        const std::uint64_t need = std::max<std::uint64_t>(cost, 1);
        const auto got = l.try_acquire(cost, tp, duration(max_wait));
        const auto want = m.acquire(cost, now, max_wait);
        if (got.admitted && got.wait == 0ns) CHECK(exact + need <= limit);
        if (!got.admitted && nobody_ahead) CHECK(exact + beyond + need > limit);
        INFO("step " << step << " cost " << cost << " now " << now);
        REQUIRE(got.admitted == want.admitted);
        if (got.admitted) {
          REQUIRE(got.wait.count() == want.wait);
          REQUIRE(got.ticket.at == want.send);
          if (rng.chance(30)) out.push_back({got.ticket, cost});
        } else {
          REQUIRE(got.retry_after);
          REQUIRE(got.retry_after->count() == want.wait);
        }
      } else if (what < 85 && !out.empty()) {
        // Settled below the estimate (or the call never left: actual 0).
        const auto k =
            static_cast<std::size_t>(rng.in(0, static_cast<std::int64_t>(out.size()) - 1));
        const auto actual =
            static_cast<std::uint64_t>(rng.in(0, static_cast<std::int64_t>(out[k].estimate)));
        // The model gives back only while the bucket still counts: later on, a
        // refund changes nothing any window checks.
        const std::int64_t c = std::max(window_model::floor_div(now, w),
                                        window_model::floor_div(std::max(m.last_wait, now), w));
        l.settle(out[k].ticket, out[k].estimate, actual, tp);
        if (out[k].ticket.end >= c - static_cast<std::int64_t>(buckets)) {
          m.give_back(out[k].ticket.at, std::max<std::uint64_t>(out[k].estimate, 1) - actual);
        }
        out.erase(out.begin() + static_cast<std::ptrdiff_t>(k));
      } else if (what < 92) {
        const std::int64_t pause = rng.in(0, 2 * w);
        l.pause(duration(pause), tp);
        if (pause > 0) m.paused = std::max(m.paused, now + pause);
      }
    }
    CHECK(most_in_a_period(m.log, period.count()) <= limit);
  }
}

TEST_CASE("sliding window stress: no window ever holds more than `limit` (TSan)",
          "[sliding_window][stress]") {
  constexpr int threads = 4;
  constexpr int iterations = 2000;
  constexpr std::uint64_t limit = 12;
  keel::testing::manual_clock clock;
  sliding_window_limit l({.limit = limit, .period = 10ms, .buckets = 5});  // w = 2 ms
  const std::int64_t w = l.bucket_width().count();
  std::mutex mu;
  std::vector<sent_unit> sent;
  std::atomic<bool> done{false};
  std::atomic<int> violations{0};
  std::atomic<int> checks{0};
  std::latch start(threads + 1);
  std::thread watcher([&] {
    start.arrive_and_wait();
    do {  // at least once, however the threads are scheduled
      const time_point now = clock.now();
      if (l.in_window(now) > limit) violations.fetch_add(1);
      if (l.available(now) > limit) violations.fetch_add(1);
      checks.fetch_add(1);
      std::this_thread::yield();
    } while (!done.load());
  });
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      keel_test::rng rng{static_cast<std::uint64_t>(i) + 501};
      std::vector<sent_unit> mine;
      start.arrive_and_wait();
      for (int k = 0; k < iterations; ++k) {
        if (rng.chance(20)) clock.advance(duration(rng.in(0, w / 2)));
        const auto cost = static_cast<std::uint64_t>(rng.in(0, 3));
        const auto d = l.try_acquire(cost, clock.now(), rng.chance(50) ? 3ms : 0ms);
        if (!d.admitted) continue;
        // A stale clock read counts into a later bucket: its units count from there.
        const std::int64_t send =
            std::max(d.ticket.at, l.bucket_start(d.ticket.end).time_since_epoch().count());
        const int what = static_cast<int>(rng.in(0, 9));
        if (what < 2) {
          l.done_waiting(d.ticket);             // gave up (ignored unless it waited)
          l.refund_all(d.ticket, clock.now());  // cancelled: never left
        } else if (what < 4) {
          l.done_waiting(d.ticket, true);
          const auto actual =
              static_cast<std::uint64_t>(rng.in(0, static_cast<std::int64_t>(cost)));
          // Only a refund that lands is taken off what was sent (a bucket that
          // has left the window keeps its count, and no window sees it again).
          const std::uint64_t back = l.refund(d.ticket, cost - actual, clock.now());
          if (cost - back > 0) mine.push_back({send, cost - back});
        } else {
          l.done_waiting(d.ticket, true);
          if (cost > 0) mine.push_back({send, cost});
        }
      }
      const std::lock_guard lock(mu);
      sent.insert(sent.end(), mine.begin(), mine.end());
    });
  }
  for (auto& th : pool) th.join();
  done = true;
  watcher.join();
  CHECK(violations.load() == 0);
  CHECK(checks.load() > 0);
  CHECK(sent.size() > 300);
  CHECK(most_in_a_period(sent, 10'000'000) <= limit);
  clock.advance(1s);
  CHECK(l.available(clock.now()) == limit);
}

namespace {

/// The model of a window whose waiters may give up: a log of (bucket, send
/// time, units) and the rule that a cost fits bucket t when every window that
/// counts t (q = t .. t + buckets) stays within `limit`. A caller goes at
/// max(now, pause end, the send time of the latest waiter still waiting);
/// when that waiter gives up, the latest send time counted in the latest
/// bucket that still holds a waiter takes its place.
struct giving_up_model {
  std::uint64_t limit;
  std::int64_t w;
  std::int64_t buckets;
  struct entry {
    std::int64_t bucket;
    std::int64_t at;
    std::uint64_t units;
  };
  struct waiter {
    std::int64_t bucket;
    std::int64_t send;
    bool waiting;
  };
  std::vector<entry> log{};
  std::vector<waiter> waiters{};
  std::int64_t paused = std::numeric_limits<std::int64_t>::min();
  std::int64_t queue = std::numeric_limits<std::int64_t>::min();
  std::int64_t present = std::numeric_limits<std::int64_t>::min();
  std::int64_t freed = std::numeric_limits<std::int64_t>::min();  // the latest queue given up

  std::int64_t bucket_of(std::int64_t t) const { return t / w - (t % w < 0 ? 1 : 0); }
  std::uint64_t window(std::int64_t q) const {
    std::uint64_t s = 0;
    for (const auto& e : log) s += e.bucket >= q - buckets && e.bucket <= q ? e.units : 0;
    return s;
  }
  bool fits(std::int64_t t, std::uint64_t need) const {
    for (std::int64_t q = t; q <= t + buckets; ++q) {
      if (window(q) + need > limit) return false;
    }
    return true;
  }
  struct answer {
    bool admitted;
    std::int64_t wait;
    std::int64_t send;
    std::size_t entry;
  };
  answer acquire(std::uint64_t cost, std::int64_t now, std::int64_t max_wait) {
    const std::uint64_t need = std::max<std::uint64_t>(cost, 1);
    const std::int64_t at = std::max(now, paused);
    const std::int64_t from = std::max(at, queue);
    const std::int64_t c = std::max(bucket_of(from), std::max(bucket_of(now), present));
    std::int64_t t = c;
    while (!fits(t, need)) ++t;
    const std::int64_t send = t == c ? from : t * w;
    const std::int64_t wait = send - now;
    if (wait > max_wait) return {false, wait, send, 0};
    present = std::max(present, bucket_of(now));  // the clock's: a pause's end is ahead
    log.push_back({t, send, need});
    if (wait > 0) {
      queue = std::max(queue, send);
      waiters.push_back({t, send, true});
    }
    return {true, wait, send, log.size() - 1};
  }
  // Waiter `i` is done: it sends, or gave up (and its units come back).
  void done(std::size_t i, bool sent) {
    waiter& me = waiters[i];
    me.waiting = false;
    bool others = false;
    for (const auto& x : waiters) others = others || (x.waiting && x.bucket == me.bucket);
    if (sent || others || me.send < queue) return;
    freed = std::max(freed, queue);
    queue = std::numeric_limits<std::int64_t>::min();
    std::int64_t top = std::numeric_limits<std::int64_t>::min();
    for (const auto& x : waiters) top = x.waiting ? std::max(top, x.bucket) : top;
    for (const auto& x : waiters) queue = x.bucket == top ? std::max(queue, x.send) : queue;
  }
};

}  // namespace

TEST_CASE(
    "sliding window model: waiters that give up free their room and their place in line, "
    "exactly (fuzzed)",
    "[sliding_window][model]") {
  std::size_t freed_used = 0;
  for (std::uint64_t seed = 1; seed <= 150; ++seed) {
    keel_test::rng rng{seed * 7919 + 3};
    const auto limit = static_cast<std::uint64_t>(rng.in(1, 20));
    const auto buckets = static_cast<std::uint32_t>(rng.in(1, 12));
    const duration period = std::chrono::microseconds(rng.in(buckets, 4000));
    sliding_window_limit l(
        {.limit = limit, .period = period, .buckets = buckets, .max_wait = 3 * period});
    const std::int64_t w = l.bucket_width().count();
    giving_up_model m{limit, w, buckets};
    struct pending {
      keel::rate_ticket ticket;
      std::size_t entry;
      std::size_t waiter;  // SIZE_MAX: did not wait
    };
    std::vector<pending> out;
    std::int64_t now = rng.in(-1'000'000, 1'000'000);
    INFO("seed " << seed << " limit " << limit << " buckets " << buckets << " w " << w);
    for (int step = 0; step < 250; ++step) {
      now += rng.chance(40) ? 0 : rng.in(0, 2 * w);
      const time_point tp{duration(now)};
      const int what = static_cast<int>(rng.in(0, 99));
      INFO("step " << step << " now " << now);
      if (what < 55) {
        const auto cost = static_cast<std::uint64_t>(rng.in(0, static_cast<std::int64_t>(limit)));
        const std::int64_t max_wait = rng.chance(30) ? 0 : rng.in(0, 3 * period.count());
        const auto got = l.try_acquire(cost, tp, duration(max_wait));
        const auto want = m.acquire(cost, now, max_wait);
        INFO("cost " << cost << " max_wait " << max_wait);
        REQUIRE(got.admitted == want.admitted);
        if (!got.admitted) {
          REQUIRE(got.retry_after);
          REQUIRE(got.retry_after->count() == want.wait);
          continue;
        }
        REQUIRE(got.wait.count() == want.wait);
        REQUIRE(got.ticket.at == want.send);
        REQUIRE(got.ticket.end == m.log[want.entry].bucket);
        if (want.send < m.freed) ++freed_used;
        const std::size_t waiter = got.wait > 0ns ? m.waiters.size() - 1 : SIZE_MAX;
        REQUIRE((got.ticket.sends != std::numeric_limits<std::int64_t>::min()) ==
                (waiter != SIZE_MAX));
        out.push_back({got.ticket, want.entry, waiter});
      } else if (what < 80 && !out.empty()) {
        const auto k =
            static_cast<std::size_t>(rng.in(0, static_cast<std::int64_t>(out.size()) - 1));
        const pending p = out[k];
        out.erase(out.begin() + static_cast<std::ptrdiff_t>(k));
        // A waiter may also report that it sends before its time (a
        // reservation settled early): it keeps its units ahead, and a later
        // waiter that gives up then uncovers them (every window is checked).
        if (p.waiter != SIZE_MAX && m.waiters[p.waiter].send > now && rng.chance(60)) {
          // Gives up before its send time: its units and its place come back.
          l.done_waiting(p.ticket, false);
          m.done(p.waiter, false);
          REQUIRE(l.refund_all(p.ticket, tp) == m.log[p.entry].units);
          m.log[p.entry].units = 0;
        } else {
          if (p.waiter != SIZE_MAX) {
            l.done_waiting(p.ticket, true);
            m.done(p.waiter, true);
          }
          // Sent; settled below its estimate while its bucket still counts.
          const std::uint64_t counted = m.log[p.entry].units;
          const auto actual =
              static_cast<std::uint64_t>(rng.in(0, static_cast<std::int64_t>(counted)));
          const std::int64_t c = std::max(m.bucket_of(now), m.present);
          const std::uint64_t back = l.refund(p.ticket, counted - actual, tp);
          REQUIRE(back ==
                  (p.ticket.end >= c - static_cast<std::int64_t>(buckets) ? counted - actual : 0));
          m.log[p.entry].units -= back;
        }
      } else if (what < 85) {
        const std::int64_t pause = rng.in(0, 2 * w);
        l.pause(duration(pause), tp);
        if (pause > 0) m.paused = std::max(m.paused, now + pause);
      } else {
        // Every window that counts the present bucket, against the log.
        const std::int64_t c = std::max(m.bucket_of(now), m.present);
        std::uint64_t most = 0;
        for (std::int64_t q = c; q <= c + static_cast<std::int64_t>(buckets); ++q) {
          most = std::max(most, m.window(q));
        }
        REQUIRE(l.in_window(tp) == most);
      }
    }
    std::vector<sent_unit> sent;
    for (const auto& e : m.log) {
      if (e.units > 0) sent.push_back({e.at, e.units});
    }
    CHECK(most_in_a_period(sent, period.count()) <= limit);
  }
  // The fuzz reaches what it is for: callers sent before a time a waiter
  // that gave up had held them to.
  CHECK(freed_used > 100);
}

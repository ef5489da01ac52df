// SPDX-License-Identifier: BSL-1.0
// keel::gcra_limit against a reference model, with seeded fuzzing:
//  1. without refunds, every decision (admitted or not, the wait, the
//     retry_after) equals that of a plain token bucket written here
//     independently (a level in nanoseconds of credit, refilled by time);
//  2. with refunds of calls that never left, settlements below the estimate,
//     pauses and quota hints mixed in, the units that went (at the times they
//     went) never exceed burst + floor(d / T) over any closed interval of
//     length d: the bound the limiter promises.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include <keel/admission/rate_limiter.hpp>

#include "support/catch.hpp"
#include "support/rate_bound.hpp"
#include "support/rng.hpp"

namespace {

using keel::duration;
using keel::time_point;

/// A token bucket of `tau` nanoseconds of credit, refilled one ns per ns; a
/// unit costs `t` ns of credit; the credit may go below zero by what callers
/// wait for.
struct bucket_model {
  std::int64_t t;
  std::int64_t tau;
  std::int64_t level;
  std::int64_t last = 0;
  bool started = false;

  struct answer {
    bool admitted;
    std::int64_t wait;
  };

  answer acquire(std::uint64_t cost, std::int64_t now, std::int64_t max_wait) {
    if (!started) {
      started = true;
      level = tau;
      last = now;
    }
    if (now > last) {
      level = std::min(tau, level + (now - last));
      last = now;
    }
    const std::int64_t need = t * static_cast<std::int64_t>(cost);
    if (need > tau) return {false, -1};
    const std::int64_t wait = std::max<std::int64_t>(0, need - level);
    if (wait > max_wait) return {false, wait};
    level -= need;
    return {true, wait};
  }
};

using keel_test::sent_unit;
using keel_test::worst_excess;

}  // namespace

TEST_CASE("gcra model: every decision equals a plain token bucket's (fuzzed)",
          "[rate_limiter][model]") {
  for (std::uint64_t seed = 1; seed <= 300; ++seed) {
    keel_test::rng rng{seed};
    const auto limit = static_cast<std::uint64_t>(rng.in(1, 50));
    const duration period = std::chrono::milliseconds(rng.in(1, 5000));
    const auto burst = static_cast<std::uint64_t>(rng.in(0, 20));
    keel::gcra_limit l({.limit = limit, .period = period, .burst = burst});
    bucket_model m{l.emission_interval().count(), l.tolerance().count(), 0};
    std::int64_t now = rng.in(0, 1'000'000'000);
    for (int step = 0; step < 400; ++step) {
      now += rng.chance(30) ? 0 : rng.in(0, 2 * l.emission_interval().count());
      const auto cost = static_cast<std::uint64_t>(rng.in(1, 4));
      const std::int64_t max_wait = rng.chance(50) ? 0 : rng.in(0, l.tolerance().count());
      const auto got = l.try_acquire(cost, time_point(duration(now)), duration(max_wait));
      const auto want = m.acquire(cost, now, max_wait);
      INFO("seed " << seed << " step " << step << " cost " << cost);
      REQUIRE(got.admitted == want.admitted);
      if (got.admitted) {
        REQUIRE(got.wait.count() == want.wait);
      } else if (want.wait < 0) {
        REQUIRE_FALSE(got.retry_after);
      } else {
        REQUIRE(got.retry_after);
        REQUIRE(got.retry_after->count() == want.wait);
      }
    }
  }
}

TEST_CASE(
    "gcra model: with refunds, settlements, pauses and hints, units sent stay within "
    "burst + d / T over every interval (fuzzed)",
    "[rate_limiter][model]") {
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    keel_test::rng rng{seed * 7919};
    const auto limit = static_cast<std::uint64_t>(rng.in(1, 20));
    const duration period = std::chrono::milliseconds(rng.in(10, 2000));
    const auto burst = static_cast<std::uint64_t>(rng.in(1, 12));
    keel::gcra_limit l({.limit = limit, .period = period, .burst = burst});
    const std::int64_t t = l.emission_interval().count();

    struct pending {
      keel::rate_ticket ticket;
      std::uint64_t estimate;
      std::int64_t send_at;
    };
    std::vector<pending> waiting;  // reserved, not yet sent or given back
    std::vector<sent_unit> sent;
    std::int64_t now = 0;
    for (int step = 0; step < 300; ++step) {
      now += rng.chance(40) ? 0 : rng.in(0, 2 * t);
      const time_point tp{duration(now)};
      // Calls whose time has come go, and maybe cost less than estimated.
      for (auto it = waiting.begin(); it != waiting.end();) {
        if (it->send_at <= now) {
          const auto actual =
              static_cast<std::uint64_t>(rng.in(0, static_cast<std::int64_t>(it->estimate)));
          if (actual > 0) sent.push_back({it->send_at, actual});
          l.settle(it->ticket, it->estimate, actual, tp);
          it = waiting.erase(it);
        } else {
          ++it;
        }
      }
      const int what = static_cast<int>(rng.in(0, 99));
      if (what < 60) {
        const auto cost = static_cast<std::uint64_t>(rng.in(1, static_cast<std::int64_t>(burst)));
        const std::int64_t max_wait = rng.chance(50) ? 0 : rng.in(0, l.tolerance().count());
        const auto d = l.try_acquire(cost, tp, duration(max_wait));
        if (d.admitted) waiting.push_back({d.ticket, cost, now + d.wait.count()});
      } else if (what < 80 && !waiting.empty()) {
        // A call that never left (cancelled, or refused inside): all of it back.
        const auto k =
            static_cast<std::size_t>(rng.in(0, static_cast<std::int64_t>(waiting.size()) - 1));
        l.refund_all(waiting[k].ticket, tp);
        waiting.erase(waiting.begin() + static_cast<std::ptrdiff_t>(k));
      } else if (what < 85) {
        l.pause(duration(rng.in(0, 3 * t)), tp);
      } else if (what < 90) {
        l.tighten(static_cast<std::uint64_t>(rng.in(0, static_cast<std::int64_t>(burst))), tp);
      }
    }
    for (const auto& p : waiting) sent.push_back({p.send_at, p.estimate});
    INFO("seed " << seed << " burst " << burst << " T " << t);
    CHECK(worst_excess(sent, burst, t) <= 0);
  }
}

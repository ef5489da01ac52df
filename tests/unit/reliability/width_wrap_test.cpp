// SPDX-License-Identifier: BSL-1.0
// Every counter, cursor and index of the circuit breaker's windows
// (keel/circuit_breaker/detail/windows.hpp) and of the retry budget
// (keel/retry/retry_budget.hpp), its width, and what bounds it; each is run
// to its wrap point, or to its bound, through the test seam
// (unit/circuit_breaker/window_test_access.hpp), never by 2^32 real calls.
//
// windows.hpp
//   fast_mod                     64-bit a % 32-bit d   exact for every a (Barrett + one correction)
//   failure_stamps::cursor_      uint64   one per failure; slot = cursor % (threshold - 1)
//   failure_stamps stamps        int64 ns compared through time_until (saturating)
//   failure_stamps::count()      uint32   <= threshold - 1 < 2^31
//   count_window::pos_, start_   uint64   one per recorded outcome; bit = pos % size
//   count_window::failures_,     int32    <= size <= 2^24 (validate's bound on window_size)
//                 slow_count_
//   window_counts, circuit_metrics calls / window_failures / window_slow_calls
//                                uint64
//   time_window slot bucket      int64    t / bucket length, t >= 0
//   time_window slot calls,      uint64   one per call of one bucket in one stripe
//                failures, slow
//   time_window::counts() sums   uint64   saturating
//   time_window::current_        uint32   a slot index < buckets <= 1000
//   owned_counter stripe owner   uint64   a thread_identity id (an address)
//   owned_counter stripe count,  uint64   one per rejection; total() saturates
//                 shared_
//   thread_identity::spread      unsigned picks a stripe only: wrapping after 2^32 threads is
//   harmless this_thread_stripe() hint    unsigned in [0x100, 0x1ff]: moving on never wraps
// retry_budget.hpp
//   tokens_ and every amount     int64 thousandths of a token, within [0, 1e12];
//                                a sum of two stays below 2^41
//
// A 64-bit cursor would wrap after 2^64 events: 585 years at one per
// nanosecond. The tests run each to its last value, 2^64 - 1.
#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <thread>
#include <utility>

#include <keel/circuit_breaker/breaker_core.hpp>
#include <keel/retry/retry_budget.hpp>

#include "support/catch.hpp"
#include "support/rng.hpp"
#include "unit/circuit_breaker/window_test_access.hpp"

namespace {

using namespace std::chrono_literals;
using keel::detail::window_test_access;

constexpr std::uint64_t two_32 = std::uint64_t{1} << 32;
constexpr std::uint64_t u64_max = std::numeric_limits<std::uint64_t>::max();

keel::time_point at(keel::duration d) { return keel::time_point(d); }

/// Records outcomes (a quarter failed, a fifth slow) into a count window of
/// `size` from cursor `first` until its cursor reaches `until`, comparing
/// its counts after every record with a deque of the last `size` outcomes.
/// Returns how many comparisons differed.
std::uint64_t count_window_mismatches(int size, std::uint64_t first, std::uint64_t until) {
  keel::detail::count_window w;
  w.configure(size, true);
  window_test_access::start_at(w, first);
  std::deque<std::pair<bool, bool>> last;
  std::uint64_t failures = 0, slow = 0, mismatches = 0;
  keel_test::rng gen{42};
  while (window_test_access::cursor(w) != until) {
    const std::uint64_t r = gen.next();
    const bool failed = r % 4 == 0;
    const bool is_slow = (r >> 8) % 5 == 0;
    w.record(failed, is_slow);
    last.emplace_back(failed, is_slow);
    failures += failed ? 1 : 0;
    slow += is_slow ? 1 : 0;
    if (last.size() > static_cast<std::size_t>(size)) {
      failures -= last.front().first ? 1 : 0;
      slow -= last.front().second ? 1 : 0;
      last.pop_front();
    }
    const keel::detail::window_counts c = w.counts();
    if (c.calls != last.size() || c.failures != failures || c.slow != slow) ++mismatches;
  }
  return mismatches;
}

}  // namespace

TEST_CASE("width and wrap: fast_mod is a % d for every 64-bit a", "[reliability][wrap]") {
  keel_test::rng gen{7};
  std::uint64_t wrong = 0, checked = 0;
  for (const std::uint32_t d :
       {1u, 2u, 3u, 7u, 1000u, 4097u, 16'777'216u, 2'147'483'647u, 4'294'967'295u}) {
    const keel::detail::fast_mod mod(d);
    const auto check = [&](std::uint64_t a) {
      ++checked;
      if (mod(a) != a % d) ++wrong;
    };
    for (std::uint64_t k = 0; k < 2000; ++k) {
      check(k);
      check(two_32 - 1000 + k);         // the old 32-bit cut's wrap
      check((u64_max / 2) - 1000 + k);  // 2^63
      check(u64_max - k);               // the last values
      check(gen.next());
    }
    // The multiples of d, and their neighbours, up to the top.
    for (std::uint64_t k = 0; k <= 1000; ++k) {
      const std::uint64_t q = u64_max / d - k;
      check(q * d);
      check(q * d - 1);
      if (q * d <= u64_max - 1) check(q * d + 1);
    }
  }
  CHECK(checked > 100'000);
  CHECK(wrong == 0);
}

TEST_CASE("width and wrap: failures_in_period's cursor runs in order to 2^64 - 1",
          "[reliability][wrap]") {
  // threshold 4: three stamps. The 4th failure within the period trips,
  // never an earlier one, up to the last cursor value. (Past it the cursor
  // would wrap to 0 and, 3 not dividing 2^64, the ring's order jump once:
  // failures 2^64 - 1 and 2^64 would share a slot, and 2 failures could
  // trip. That is 585 years of failures at one per nanosecond.)
  for (const std::uint64_t first : {two_32 - 3, two_32, u64_max - 5}) {
    CAPTURE(first);
    keel::detail::failure_stamps s;
    s.configure(4, 10s);
    window_test_access::set_cursor(s, first);
    CHECK_FALSE(s.record(at(1s)));
    CHECK_FALSE(s.record(at(2s)));
    CHECK_FALSE(s.record(at(3s)));
    CHECK(s.count(at(3s)) == 3);
    CHECK(s.record(at(4s)));  // into the 1 s stamp's slot: 4 failures within 10 s
    CHECK(s.count(at(4s)) == 3);
    CHECK_FALSE(s.record(at(12s)));  // into the 2 s stamp's slot, expired at 12 s
    CHECK(s.count(at(12s)) == 3);    // 3 s, 4 s and 12 s
    CHECK(window_test_access::cursor(s) == first + 5);  // 2^64 - 1 at most
  }
}

TEST_CASE("width and wrap: a count window counts exactly to cursor 2^64 - 1",
          "[reliability][wrap]") {
  for (const int size : {1, 7, 64, 1000}) {
    CAPTURE(size);
    const auto n = static_cast<std::uint64_t>(size);
    CHECK(count_window_mismatches(size, two_32 - 3 * n, two_32 + 3 * n) == 0);
    CHECK(count_window_mismatches(size, u64_max - 3 * n, u64_max) == 0);
  }
}

TEST_CASE("width and wrap: a count window's 32-bit counts hold the largest window",
          "[reliability][wrap]") {
  constexpr int largest = 16'777'216;  // validate's bound on window_size
  REQUIRE(keel::validate(keel::circuit_breaker_options{
              .trip = keel::failure_ratio_count{.window_size = largest, .minimum_calls = 1}}) ==
          std::nullopt);
  REQUIRE_FALSE(keel::validate(keel::circuit_breaker_options{
                    .trip = keel::failure_ratio_count{.window_size = largest + 1,
                                                      .minimum_calls = 1}}) == std::nullopt);
  keel::detail::count_window w;
  w.configure(largest, true);
  window_test_access::start_at(w, u64_max - std::uint64_t{largest});
  for (int i = 0; i < largest; ++i) w.record(true, true);
  CHECK(window_test_access::cursor(w) == u64_max);
  const keel::detail::window_counts c = w.counts();
  CHECK(c.calls == std::uint64_t{largest});
  CHECK(c.failures == std::uint64_t{largest});
  CHECK(c.slow == std::uint64_t{largest});
  w.reset();
  CHECK(w.counts().failures == 0);
  CHECK(w.counts().slow == 0);
}

TEST_CASE("width and wrap: a time window's slots count past 2^32 and its sums saturate",
          "[reliability][wrap]") {
  keel::detail::time_window w;
  w.configure(10s, 2);
  const keel::time_point now = at(1h);
  const std::size_t mine = window_test_access::stripe_of_this_thread(w);
  SECTION("one slot past 2^32") {
    window_test_access::preload(w, mine, now, two_32 - 1, two_32 - 1, two_32 - 1);
    w.record(now, true, true);
    w.record(now, true, false);
    const keel::detail::window_counts c = w.counts(now);
    CHECK(c.calls == two_32 + 1);
    CHECK(c.failures == two_32 + 1);
    CHECK(c.slow == two_32);
  }
  SECTION("one slot at 2^64 - 1") {
    window_test_access::preload(w, mine, now, u64_max - 1);
    w.record(now, false, false);
    CHECK(w.counts(now).calls == u64_max);
  }
  SECTION("two slots whose sum passes 2^64") {
    window_test_access::preload(w, mine, now, u64_max / 2 + 1, 3, 4);
    window_test_access::preload(w, mine, now - 5s, u64_max / 2 + 1, 5, 6);  // the other bucket
    const keel::detail::window_counts c = w.counts(now);
    CHECK(c.calls == u64_max);  // saturated, not 0
    CHECK(c.failures == 8);
    CHECK(c.slow == 10);
  }
  SECTION("bucket numbers at the ends of the clock") {
    w.record(at(0ns), true, false);
    CHECK(w.counts(at(0ns)).calls == 1);
    const keel::time_point last = keel::time_point::max();
    w.record(last, true, false);
    w.record(last, false, false);
    const keel::detail::window_counts c = w.counts(last);
    CHECK(c.calls == 2);
    CHECK(c.failures == 1);
  }
}

TEST_CASE("width and wrap: the rejection counter's total passes 2^32 and saturates at 2^64",
          "[reliability][wrap]") {
  keel::detail::owned_counter c;
  c.configure();
  c.add();  // this thread now owns its stripe
  const std::size_t stripes = window_test_access::stripes(c);
  SECTION("past 2^32") {
    for (std::size_t i = 0; i < stripes; ++i) window_test_access::preload_stripe(c, i, two_32 - 1);
    window_test_access::preload_shared(c, two_32 - 1);
    c.add();
    c.add();
    CHECK(c.total() == (stripes + 1) * (two_32 - 1) + 2);
  }
  SECTION("at 2^64") {
    for (std::size_t i = 0; i < stripes; ++i) window_test_access::preload_stripe(c, i, u64_max / 2);
    window_test_access::preload_shared(c, u64_max / 2 + 2);
    CHECK(c.total() == u64_max);  // saturated, not a small number
  }
}

TEST_CASE(
    "width and wrap: thread identities are unique among live threads; stripe hints never wrap",
    "[reliability][wrap]") {
  using keel::detail::next_stripe_hint;
  const keel::detail::thread_identity& me = keel::detail::this_thread_identity();
  CHECK(me.id != 0);
  CHECK(&keel::detail::this_thread_identity() == &me);  // computed once, kept
  std::uint64_t other = 0;
  std::thread t([&] { other = keel::detail::this_thread_identity().id; });
  t.join();
  CHECK(other != 0);
  CHECK(other != me.id);

  CHECK(keel::detail::this_thread_stripe() >= 0x100u);
  CHECK(keel::detail::this_thread_stripe() <= 0x1ffu);
  unsigned hint = 0x1fbu;
  for (unsigned k = 0; k < 16; ++k) {
    CHECK((hint & 7u) == ((0x1fbu + k) & 7u));  // the low bits cycle through every stripe
    hint = next_stripe_hint(hint);
    CHECK(hint >= 0x100u);
    CHECK(hint <= 0x1ffu);
  }
  CHECK(next_stripe_hint(0x1ffu) == 0x100u);
}

TEST_CASE("width and wrap: retry_budget's amounts at the largest bucket stay exact",
          "[reliability][wrap]") {
  keel::retry_budget b({.max_tokens = 1e9,
                        .token_ratio = 1e9,
                        .failure_cost = 1e9,
                        .retry_cost = 1e9,
                        .retry_threshold = 0});
  constexpr std::int64_t full = 1'000'000'000'000;  // thousandths
  CHECK(b.milli_tokens() == full);
  b.record_success();  // full + full, clamped
  CHECK(b.milli_tokens() == full);
  b.record_failure();
  CHECK(b.milli_tokens() == 0);
  b.record_failure();  // 0 - full, clamped
  CHECK(b.milli_tokens() == 0);
  CHECK_FALSE(b.try_acquire());
  b.record_success();
  CHECK(b.try_acquire());  // takes all of it
  CHECK(b.milli_tokens() == 0);
}

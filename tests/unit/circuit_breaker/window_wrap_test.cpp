// SPDX-License-Identifier: BSL-1.0
// The trip rules' windows where their cursors and counts pass 2^32: reached
// through the test seam (window_test_access.hpp), never by 2^32 real calls.
#include <chrono>
#include <cstdint>
#include <deque>

#include <keel/circuit_breaker/breaker_core.hpp>

#include "support/catch.hpp"
#include "support/rng.hpp"
#include "window_test_access.hpp"

namespace {

using namespace std::chrono_literals;
using keel::call_result;
using keel::circuit_state;
using keel::detail::window_test_access;

constexpr std::uint64_t two_32 = std::uint64_t{1} << 32;

keel::time_point at(keel::duration d) { return keel::time_point(d); }

void call(keel::breaker_state_machine& core, call_result r, keel::time_point now) {
  keel::circuit_admission a = core.try_acquire(now);
  REQUIRE(a.admitted);
  (void)core.record(a, r, now);
}

/// Records outcomes into a count window of `size` whose cursor starts at
/// `first`, until the cursor reaches `until`, comparing its counts after
/// every record with the last `size` outcomes kept in a deque. Returns the
/// number of records after which the counts differed.
std::uint64_t count_window_mismatches(int size, std::uint64_t first, std::uint64_t until) {
  keel::detail::count_window w;
  w.configure(size, true);
  window_test_access::start_at(w, first);
  struct outcome {
    bool failed, slow;
  };
  std::deque<outcome> last;
  std::uint64_t failures = 0, slow = 0, mismatches = 0;
  keel_test::rng gen{2024};
  while (window_test_access::cursor(w) < until) {
    const std::uint64_t r = gen.next();
    const bool failed = r % 100 < 25;
    const bool is_slow = (r >> 8) % 5 == 0;
    w.record(failed, is_slow);
    last.push_back({failed, is_slow});
    failures += failed ? 1 : 0;
    slow += is_slow ? 1 : 0;
    if (last.size() > static_cast<std::size_t>(size)) {
      failures -= last.front().failed ? 1 : 0;
      slow -= last.front().slow ? 1 : 0;
      last.pop_front();
    }
    const keel::detail::window_counts c = w.counts();
    if (c.calls != last.size() || c.failures != failures || c.slow != slow) ++mismatches;
  }
  return mismatches;
}

}  // namespace

// The ring's cursor was cut to 32 bits before the modulo: where the ring size
// does not divide 2^32, the slot order jumped at cursor 2^32, and the failure
// at 2^32 overwrote the stamp of the one just before instead of the oldest.
TEST_CASE("failures_in_period: threshold 4 does not trip on 2 failures across cursor 2^32",
          "[circuit_breaker][regression][wrap]") {
  for (std::uint64_t first = two_32 - 4; first <= two_32 + 1; ++first) {
    CAPTURE(first);
    keel::breaker_state_machine core(
        {.trip = keel::failures_in_period{.threshold = 4, .period = 10s}});
    window_test_access::set_cursor(window_test_access::stamps(core), first);
    call(core, call_result::failure, at(1s));
    call(core, call_result::failure, at(2s));
    CHECK(core.state() == circuit_state::closed);
    call(core, call_result::failure, at(3s));
    CHECK(core.state() == circuit_state::closed);
    call(core, call_result::failure, at(4s));  // the 4th within 10 s
    CHECK(core.state() == circuit_state::open);
    CHECK(window_test_access::cursor(window_test_access::stamps(core)) == first + 4);
  }
}

// Same defect in the count window: a window of 1000 at 25 % failures was off
// by up to 24 outcomes for a lap after the wrap.
TEST_CASE("failure_ratio_count: a window counts its last outcomes exactly across cursor 2^32",
          "[circuit_breaker][regression][wrap]") {
  for (const int size : {1, 7, 64, 1000, 4097}) {
    CAPTURE(size);
    const auto n = static_cast<std::uint64_t>(size);
    CHECK(count_window_mismatches(size, two_32 - 2 * n, two_32 + 2 * n) == 0);
  }
}

// failure_ratio_time's per-slot call counts and their sums were 32-bit: past
// 2^32 calls in a window the count wrapped, and the breaker opened on 50
// failures among 4.3e9 calls.
TEST_CASE("failure_ratio_time: 50 failures after 2^32 - 10 calls in one slot do not open",
          "[circuit_breaker][regression][wrap]") {
  keel::breaker_state_machine core(
      {.trip = keel::failure_ratio_time{.period = 10s, .buckets = 4, .minimum_calls = 10}});
  keel::detail::time_window& w = window_test_access::time(core);
  const keel::time_point now = at(1h);
  window_test_access::preload(w, window_test_access::stripe_of_this_thread(w), now, two_32 - 10);
  for (int i = 0; i < 50; ++i) call(core, call_result::failure, now);
  CHECK(core.state() == circuit_state::closed);
  const keel::circuit_metrics m = core.metrics(now);
  CHECK(m.window_calls == two_32 + 40);
  CHECK(m.window_failures == 50);
  CHECK(m.failure_ratio == Approx(50.0 / static_cast<double>(two_32 + 40)));
  CHECK(m.failures == 50);
}

TEST_CASE("failure_ratio_time: a window whose slots sum past 2^32 counts exactly and does not open",
          "[circuit_breaker][regression][wrap]") {
  keel::breaker_state_machine core(
      {.trip = keel::failure_ratio_time{.period = 10s, .buckets = 4, .minimum_calls = 10},
       .slow_calls = keel::slow_call_ratio{.threshold = 1s, .ratio = 0.5}});
  keel::detail::time_window& w = window_test_access::time(core);
  const keel::time_point now = at(1h);
  const std::size_t stripes = window_test_access::stripes(w);
  const std::uint32_t buckets = window_test_access::buckets(w);
  const std::uint64_t slots = stripes * buckets;
  // Every slot of the window, in every stripe, below 2^32; their sum above it.
  const std::uint64_t each = two_32 / slots + 1;
  for (std::size_t s = 0; s < stripes; ++s) {
    for (std::uint32_t b = 0; b < buckets; ++b) {
      window_test_access::preload(w, s, now - b * window_test_access::bucket_length(w), each, 1, 2);
    }
  }
  for (int i = 0; i < 50; ++i) call(core, call_result::failure, now);
  CHECK(core.state() == circuit_state::closed);
  const keel::circuit_metrics m = core.metrics(now);
  CHECK(m.window_calls == slots * each + 50);
  CHECK(m.window_failures == slots + 50);
  CHECK(m.window_slow_calls == 2 * slots);
}

// SPDX-License-Identifier: BSL-1.0
// The test-only seam of keel/circuit_breaker/detail/windows.hpp: keel declares
// detail::window_test_access a friend of its windows, of its rejection
// counter and of breaker_state_machine, and defines it nowhere; this is its one
// definition, shared by every test that includes it. It puts a cursor or a
// count next to a wrap point (2^32, 2^64) that real calls would need days or
// centuries to reach.
#ifndef KEEL_TESTS_UNIT_CIRCUIT_BREAKER_WINDOW_TEST_ACCESS_HPP_INCLUDED
#define KEEL_TESTS_UNIT_CIRCUIT_BREAKER_WINDOW_TEST_ACCESS_HPP_INCLUDED

#include <cstddef>
#include <cstdint>

#include <keel/circuit_breaker/breaker_core.hpp>
#include <keel/circuit_breaker/detail/windows.hpp>

namespace keel::detail {

struct window_test_access {
  // ---- The windows of a breaker_state_machine ----
  static failure_stamps& stamps(breaker_state_machine& c) {
    return c.cold_->rules.in_period.stamps;
  }
  static count_window& count(breaker_state_machine& c) { return c.cold_->rules.ratio_count.window; }
  static time_window& time(breaker_state_machine& c) { return c.cold_->rules.ratio_time.window; }
  static owned_counter& rejections(breaker_state_machine& c) { return c.cold_->rejections; }

  // ---- failures_in_period ----
  /// The cursor the next failure takes.
  static void set_cursor(failure_stamps& s, std::uint64_t c) { s.cursor_.store(c); }
  static std::uint64_t cursor(const failure_stamps& s) { return s.cursor_.load(); }

  // ---- failure_ratio_count ----
  /// Empties the window; its next outcome takes cursor `c`.
  static void start_at(count_window& w, std::uint64_t c) {
    w.reset();
    w.pos_.store(c);
    w.start_.store(c);
  }
  static std::uint64_t cursor(const count_window& w) { return w.pos_.load(); }

  // ---- failure_ratio_time ----
  static std::size_t stripes(const time_window& w) { return w.stripes_; }
  static std::uint32_t buckets(const time_window& w) { return w.n_; }
  static duration bucket_length(const time_window& w) { return duration(w.len_); }
  /// The stripe the calling thread records into now.
  static std::size_t stripe_of_this_thread(const time_window& w) {
    return this_thread_stripe() & (w.stripes_ - 1);
  }
  /// Claims the slot of the bucket holding `at` in `stripe` (emptied if it
  /// held an older bucket) and sets its counts.
  static void preload(time_window& w, std::size_t stripe, time_point at, std::uint64_t calls,
                      std::uint64_t failures = 0, std::uint64_t slow = 0) {
    auto* s = w.claim(stripe, w.bucket_of(at));
    using count = decltype(s->calls.load());
    s->calls.store(static_cast<count>(calls));
    s->failures.store(static_cast<count>(failures));
    s->slow.store(static_cast<count>(slow));
  }

  // ---- the rejection counter ----
  static std::size_t stripes(const owned_counter& c) { return c.mask_ + 1; }
  static void preload_stripe(owned_counter& c, std::size_t i, std::uint64_t count) {
    c.stripes_[i].count.store(count);
  }
  static void preload_shared(owned_counter& c, std::uint64_t count) { c.shared_.store(count); }
};

}  // namespace keel::detail

#endif  // KEEL_TESTS_UNIT_CIRCUIT_BREAKER_WINDOW_TEST_ACCESS_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_ADMISSION_SLIDING_WINDOW_LIMIT_HPP_INCLUDED
#define KEEL_ADMISSION_SLIDING_WINDOW_LIMIT_HPP_INCLUDED

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <thread>

#include "keel/admission/rate_limiter.hpp"
#include "keel/core/config_error.hpp"
#include "keel/core/time.hpp"
#include "keel/detail/config.hpp"

namespace keel {

/// One window limit: at most `limit` units in any window of length `period`,
/// counted in `buckets` sub-windows.
struct sliding_window_options {
  /// Units admitted in any window of `period` (requests, tokens); >= 1. Default 100.
  std::uint64_t limit = 100;
  /// The window's length; at least `buckets` nanoseconds. Default 1 s.
  duration period = std::chrono::seconds(1);
  /// Sub-windows the period is counted in (1..4096): more is closer to an
  /// exact log, at one counter each. Default 60.
  std::uint32_t buckets = 60;
  /// Longest a call waits for room in the window; 0: never waits. Below
  /// 2^20 bucket widths (the ring reaches this far ahead). Default 0.
  duration max_wait = duration::zero();
  /// A cost above `limit`: rejected (default) or admitted into an empty window, into debt.
  rate_oversize oversize = rate_oversize::reject;
  /// Units an oversize cost or a settle above the estimate may put in a
  /// window beyond `limit`; the rest is forgiven. Default 0.
  std::uint64_t max_debt = 0;
  /// Longest pause a Retry-After hint imposes (longer ones are cut). >= 0; default 60 s.
  duration max_pause = std::chrono::seconds(60);

  /// The width of one bucket: ceil(period / buckets), so that `buckets` of
  /// them cover at least a period.
  /// The units that may go at once into an empty window: limit.
  constexpr std::uint64_t bucket() const noexcept { return limit; }

  constexpr duration bucket_width() const noexcept {
    const auto p = static_cast<std::uint64_t>(period.count());
    return duration(static_cast<std::int64_t>(p / buckets + (p % buckets != 0 ? 1 : 0)));
  }

  constexpr validation_result validate() const {
    if (limit == 0) return config_problem{"sliding_window_options.limit", "must be >= 1"};
    if (period <= duration::zero()) {
      return config_problem{"sliding_window_options.period", "must be > 0"};
    }
    if (buckets == 0 || buckets > 4096) {
      return config_problem{"sliding_window_options.buckets", "must be in 1..4096"};
    }
    if (period.count() < static_cast<std::int64_t>(buckets)) {
      return config_problem{"sliding_window_options.period",
                            "must be at least `buckets` nanoseconds (a bucket is >= 1 ns)"};
    }
    if (max_wait < duration::zero()) {
      return config_problem{"sliding_window_options.max_wait", "must be >= 0"};
    }
    if (max_wait / bucket_width() >= (std::int64_t{1} << 20)) {
      return config_problem{"sliding_window_options.max_wait",
                            "must be below 2^20 bucket widths (the ring reaches that far ahead)"};
    }
    if (max_pause < duration::zero()) {
      return config_problem{"sliding_window_options.max_pause", "must be >= 0"};
    }
    if (oversize != rate_oversize::reject && oversize != rate_oversize::debt) {
      return config_problem{"sliding_window_options.oversize", "must be reject or debt"};
    }
    return std::nullopt;
  }
};

/// The decision core of one window limit: at most `limit` units in any closed
/// interval [s, s + period] of send times. Units are counted in buckets of
/// w = ceil(period / buckets) ns (bucket k is [k*w, (k+1)*w)); a call is
/// admitted into bucket k when every window that counts k (the units of
/// buckets q - buckets .. q, for q from k to k + buckets) stays at most
/// `limit` with its cost. Every period-long interval lies within
/// buckets + 1 buckets, hence the bound; the window it counts is between
/// period and period + w long, so it may refuse what an exact log would admit
/// by the units of one bucket, the oldest. Never blocks on anything but
/// another step, never reads a clock: every step takes `now`.
///
/// Thread-safe: each step holds a short spin lock, allocation-free. A
/// decision reads the window's running total and writes one bucket, the total
/// and the newest bucket's index together; keeping them exact without a lock
/// would take a multi-word compare-and-swap.
///
/// Its rate_decision's ticket means: `end` the bucket the units were counted
/// in, `at` the send time (ns), `refunds` the units counted, `length` 0,
/// `sends` the send time of a caller that waits (else INT64_MIN).
class sliding_window_limit {
 public:
  using options_type = sliding_window_options;

  /// Throws keel::config_error (aborts without exceptions) when `o` is invalid.
  explicit sliding_window_limit(const sliding_window_options& o)
      : options_((require_valid(o.validate()), o)),
        width_(o.bucket_width().count()),
        span_(static_cast<std::int64_t>(o.buckets)),
        horizon_(span_ + 1 + o.max_wait.count() / width_ +
                 (o.max_wait.count() % width_ != 0 ? 1 : 0)),
        slots_(static_cast<std::size_t>(span_ + 1 + horizon_)),
        cap_(o.max_debt > std::numeric_limits<std::uint64_t>::max() - o.limit
                 ? std::numeric_limits<std::uint64_t>::max()
                 : o.limit + o.max_debt),
        ring_(new std::uint64_t[slots_]()),
        waiting_(new std::uint32_t[slots_]()),
        sends_(new std::int64_t[slots_]) {
    std::fill(sends_.get(), sends_.get() + slots_, detail::rl_min);
    head_ = slot_of(newest_);
  }

  sliding_window_limit(const sliding_window_limit&) = delete;
  sliding_window_limit& operator=(const sliding_window_limit&) = delete;

  /// Counts `cost` units into the window if there is room for them within
  /// `max_wait`: at once, or at the start of the first bucket where enough old
  /// units have left (the caller waits decision.wait). Callers go in arrival
  /// order: nobody is counted before the send time of a waiter that has not
  /// given up (done_waiting()). A wait reaches at most `period` + w +
  /// options().max_wait past the latest `now` seen; beyond it a call is
  /// refused with that wait as retry_after. The smallest charge is one unit:
  /// a cost of 0 counts as 1 (settle() corrects it). A refusal changes nothing.
  // Inlined, as gcra_limit's: out of line, the decision goes through memory.
  [[gnu::always_inline]] rate_decision try_acquire(std::uint64_t cost, time_point now,
                                                   duration max_wait = duration::zero()) noexcept {
    const std::uint64_t need = cost == 0 ? 1 : cost;
    const bool oversize = need > options_.limit;
    if (oversize && (options_.oversize == rate_oversize::reject || need > cap_)) {
      return {};  // never fits: no retry_after
    }
    const std::int64_t n = now.time_since_epoch().count();
    const guard g(lock_);
    // Nobody waiting nor paused, nothing counted after now's bucket: the
    // window at now decides (the rest, out of line, in acquire_slow()).
    if (detail::rl_max_of(paused_.load(std::memory_order_relaxed), queue_) <= n &&
        max_wait.count() >= 0) [[likely]] {
      const std::int64_t c = bucket_from(n);
      if (c >= newest_) {
        const std::uint64_t s = c == newest_ ? total_ : window_from(oldest_at(c));
        if (oversize ? s == 0 : s <= options_.limit - need) {
          if (c != newest_) advance(c);
          ring_[head_] += need;  // at most cap_ in a window: no wrap
          total_ += need;
          if (c != present_) set_present(c);
          return {true, {}, std::nullopt, {c, n, 0, need}};
        }
      }
    }
    return acquire_slow(need, oversize, n, max_wait.count());
  }

  /// Gives back up to `units` of the call of `t` (at most what it counted) if
  /// its bucket is still in the window at `now`; returns the units given back.
  /// A call counted by the bucket of a remaining-quota hint still in the
  /// window gets back only as much as keeps the room within what the hint left.
  /// For a call that never left, or a settle below the estimate: the window
  /// then counts what was really sent. Refund or settle a ticket once.
  std::uint64_t refund(const rate_ticket& t, std::uint64_t units, time_point now) noexcept {
    const std::uint64_t give = std::min(units, t.refunds);
    if (give == 0) return 0;
    const guard g(lock_);
    const std::int64_t c = bucket_from(now.time_since_epoch().count());
    if (t.end < oldest_at(c) || t.end > newest_) return 0;  // left the window
    std::uint64_t& b = ring_[slot_back(newest_ - t.end)];
    std::uint64_t d = std::min(give, b);
    // A call counted by the time of a remaining-quota hint (whose bucket is
    // then in the window too): its units come back only as far as the room
    // the hint left (tighten() never loosens).
    if (t.end <= held_) [[unlikely]] {
      const std::uint64_t used = used_at(c);
      const std::uint64_t room = options_.limit > used ? options_.limit - used : 0;
      d = std::min(d, held_room_ > room ? held_room_ - room : 0);
    }
    b -= d;
    if (in_total(t.end)) total_ -= d;
    return d;
  }

  /// Gives back all of the call of `t` (it never left); see refund().
  std::uint64_t refund_all(const rate_ticket& t, time_point now) noexcept {
    return refund(t, std::numeric_limits<std::uint64_t>::max(), now);
  }

  /// Counts `units` more into the current bucket at `now` (a call that cost
  /// more than its estimate; now's own bucket, also while callers wait for a
  /// pause's end), up to `limit` + max_debt in any window that counts it;
  /// the rest is forgiven. Returns the units counted.
  std::uint64_t charge(std::uint64_t units, time_point now) noexcept {
    if (units == 0) return 0;
    const guard g(lock_);
    const std::int64_t c = to_present(now);
    const std::uint64_t used = used_at(c);
    const std::uint64_t d = std::min(units, cap_ > used ? cap_ - used : 0);
    count(c, d);
    return d;
  }

  /// Corrects the call of `t`, counted for `estimate` units, to `actual`:
  /// refunds the difference (see refund()) or charges it (see charge()). An
  /// estimate of 0 was counted as 1.
  void settle(const rate_ticket& t, std::uint64_t estimate, std::uint64_t actual,
              time_point now) noexcept {
    if (estimate == 0) estimate = 1;
    if (actual < estimate) {
      refund(t, estimate - actual, now);
    } else if (actual > estimate) {
      charge(actual - estimate, now);
    }
  }

  /// The caller of `t` is done waiting: it sends now (`sent`), or gave up. A
  /// waiter that gave up no longer holds later callers to its send time. Call
  /// it once per ticket that waited (`t.sends` set; others are ignored); a
  /// waiter never reported holds later callers behind it until it would have sent.
  void done_waiting(const rate_ticket& t, bool sent = false) noexcept {
    if (t.sends == detail::rl_min) return;
    const guard g(lock_);
    if (t.end > newest_ || !in_ring(t.end)) {
      return;  // its slot holds a later bucket now: the send time has passed
    }
    std::uint32_t& w = waiting_[slot_back(newest_ - t.end)];
    if (w == 0) return;
    --w;
    if (sent || w != 0 || t.sends < queue_) return;
    // It was the latest waiter: the next one back (the latest send time of
    // its bucket; exact when that bucket holds one waiter) holds callers now.
    // Only back to the present bucket: a waiter before it sends before the
    // latest now admitted (a ring reaching far ahead is not read in full).
    queue_ = detail::rl_min;
    const auto last = static_cast<std::size_t>(newest_ - present_);  // < slots_
    for (std::size_t back = 0; back <= last; ++back) {
      const std::size_t k = slot_back(static_cast<std::int64_t>(back));
      if (waiting_[k] != 0) {
        queue_ = sends_[k];
        break;
      }
    }
  }

  /// No unit goes before now + retry_after (cut to max_pause); returns true
  /// when that moved the pause later. A pause never shortens.
  bool pause(duration retry_after, time_point now) noexcept {
    const duration d = retry_after < duration::zero()     ? duration::zero()
                       : retry_after > options_.max_pause ? options_.max_pause
                                                          : retry_after;
    if (d == duration::zero()) return false;  // "retry now" pauses nothing
    const std::int64_t until = detail::rl_add(now.time_since_epoch().count(), d.count());
    std::int64_t p = paused_.load(std::memory_order_relaxed);
    while (p < until) {
      if (paused_.compare_exchange_weak(p, until, std::memory_order_relaxed)) return true;
    }
    return false;
  }

  /// The dependency says only `remaining` units are left in its window: from
  /// `now`, the room in this window is at most that (the difference is
  /// counted into the current bucket and leaves with it). Never loosens.
  void tighten(std::uint64_t remaining, time_point now) noexcept {
    const guard g(lock_);
    const std::int64_t c = to_present(now);
    if (remaining >= options_.limit) return;
    const std::uint64_t used = used_at(c);
    const std::uint64_t room = options_.limit > used ? options_.limit - used : 0;
    held_ = c;
    held_room_ = remaining;
    if (remaining >= room) return;
    count(c, room - remaining);
  }

  /// Units that could go at once at `now` (0 while paused or behind a waiter).
  std::uint64_t available(time_point now) const noexcept {
    const std::int64_t n = now.time_since_epoch().count();
    if (paused_.load(std::memory_order_relaxed) > n) return 0;
    const guard g(lock_);
    if (queue_ > n) return 0;
    const std::uint64_t s = used_at(bucket_from(n));
    return options_.limit > s ? options_.limit - s : 0;
  }

  /// The most units counted in a window that counts `now`'s bucket (the
  /// window at `now`, or a later one holding waiters): at most `limit`, or
  /// `limit` + max_debt after debt.
  std::uint64_t in_window(time_point now) const noexcept {
    const guard g(lock_);
    return used_at(bucket_from(now.time_since_epoch().count()));
  }

  /// The end of the current pause (in the past when not paused).
  time_point paused_until() const noexcept {
    return time_point(duration(paused_.load(std::memory_order_relaxed)));
  }
  /// w: the width of one bucket, ceil(period / buckets).
  duration bucket_width() const noexcept { return duration(width_); }
  /// The index of the bucket `t` falls in (floor(t / w)).
  std::int64_t bucket_index(time_point t) const noexcept {
    return bucket_of(t.time_since_epoch().count());
  }
  /// The start of bucket `k` (saturated).
  time_point bucket_start(std::int64_t k) const noexcept {
    return time_point(duration(start_of(k)));
  }
  const sliding_window_options& options() const noexcept { return options_; }

 private:
  class guard {
   public:
    explicit guard(std::atomic<bool>& l) noexcept : l_(l) {
      for (unsigned spins = 0;; ++spins) {
        if (!l_.exchange(true, std::memory_order_acquire)) return;
        while (l_.load(std::memory_order_relaxed)) {
          if (++spins > 64) std::this_thread::yield();
        }
      }
    }
    ~guard() { l_.store(false, std::memory_order_release); }
    guard(const guard&) = delete;
    guard& operator=(const guard&) = delete;

   private:
    std::atomic<bool>& l_;
  };

  std::int64_t bucket_of(std::int64_t t) const noexcept {
    std::int64_t q = t / width_;
    if (t % width_ < 0) --q;  // floor, for times before the epoch
    return q;
  }
  std::int64_t start_of(std::int64_t k) const noexcept {
    std::int64_t r{};
    if (__builtin_mul_overflow(k, width_, &r)) return k > 0 ? detail::rl_max : detail::rl_min;
    return r;
  }
  std::size_t slot_of(std::int64_t k) const noexcept {
    const auto m = static_cast<std::int64_t>(slots_);
    const std::int64_t r = k % m;
    return static_cast<std::size_t>(r < 0 ? r + m : r);
  }
  // The slot of bucket newest_ - back (0 <= back < slots_).
  std::size_t slot_back(std::int64_t back) const noexcept {
    const auto b = static_cast<std::size_t>(back);
    return head_ >= b ? head_ - b : head_ + slots_ - b;
  }
  std::int64_t oldest_at(std::int64_t c) const noexcept { return detail::rl_sub(c, span_); }
  // The bucket a unit sent at t counts in: t's, or the present one if later
  // (no division while t is within the present bucket).
  std::int64_t bucket_from(std::int64_t t) const noexcept {
    return t < present_end_ ? present_ : detail::rl_max_of(bucket_of(t), present_);
  }
  void set_present(std::int64_t c) noexcept {
    present_ = c;
    present_end_ = start_of(detail::rl_add(c, 1));
  }

  // Whether bucket k (<= newest_) is still in the ring (exact at the ends of
  // time: newest_ - k, computed modulo 2^64, is the true distance).
  KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP bool in_ring(std::int64_t k) const noexcept {
    return static_cast<std::uint64_t>(newest_) - static_cast<std::uint64_t>(k) < slots_;
  }
  // Whether bucket k (<= newest_) is counted in total_ (newest_ - span_ .. newest_).
  KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP bool in_total(std::int64_t k) const noexcept {
    return static_cast<std::uint64_t>(newest_) - static_cast<std::uint64_t>(k) <=
           static_cast<std::uint64_t>(span_);
  }
  // The units of bucket k: 0 after newest_ (and before the ring, never read).
  std::uint64_t units_of(std::int64_t k) const noexcept {
    if (k > newest_ || !in_ring(k)) return 0;
    return ring_[slot_back(newest_ - k)];
  }
  // The window at q from the window at q - 1 (its units `s`): the bucket it
  // leaves behind (q - span_ - 1; none before the first bucket of time) out,
  // bucket q in.
  std::uint64_t slide(std::uint64_t s, std::int64_t q) const noexcept {
    const std::int64_t first = oldest_at(q);
    return s - (first == detail::rl_min ? 0 : units_of(first - 1)) + units_of(q);
  }

  // The units of buckets k .. newest_ (k >= the oldest bucket counted at newest_).
  std::uint64_t window_from(std::int64_t k) const noexcept {
    const std::int64_t oldest = oldest_at(newest_);
    if (k > newest_) return 0;
    std::uint64_t s = total_;
    for (std::int64_t j = oldest; j < k; ++j) s -= ring_[slot_of(j)];
    return s;
  }
  // The units of the window at q (buckets q - span_ .. q).
  std::uint64_t window_at(std::int64_t q) const noexcept {
    if (q >= newest_) return window_from(oldest_at(q));
    std::uint64_t s = 0;
    for (std::int64_t j = oldest_at(q); j <= q; ++j) s += units_of(j);
    return s;
  }
  // The most units in a window that counts bucket c (c >= present_): the
  // window at c, or a later one that counts units of waiters.
  std::uint64_t used_at(std::int64_t c) const noexcept {
    std::uint64_t s = window_at(c);
    if (c >= newest_) return s;  // later windows only lose units
    std::uint64_t most = s;
    const std::int64_t last = std::min(newest_, detail::rl_add(c, span_));
    for (std::int64_t q = c + 1; q <= last; ++q) {
      s = slide(s, q);
      most = std::max(most, s);
    }
    return most;
  }

  // Makes `now`'s bucket the present one, if it is later; returns the bucket
  // a unit sent at `now` counts in.
  std::int64_t to_present(time_point now) noexcept {
    const std::int64_t c = bucket_from(now.time_since_epoch().count());
    if (c != present_) set_present(c);
    if (c > newest_) advance(c);
    return c;
  }
  // Counts `units` into bucket c (in the ring, c <= newest_).
  void count(std::int64_t c, std::uint64_t units) noexcept {
    ring_[slot_back(newest_ - c)] += units;
    if (in_total(c)) total_ += units;
  }

  // try_acquire's general case: a pause, a caller behind a waiter, units
  // counted after now's bucket, a wait, a refusal (the lock is held).
  KEEL_DETAIL_NOINLINE rate_decision acquire_slow(std::uint64_t need, bool oversize, std::int64_t n,
                                                  std::int64_t max_wait) noexcept {
    // Not before a pause's end nor before a waiter's send time: a caller that
    // waits for either is counted ahead of the present bucket, as any waiter.
    // A now before the present bucket (another thread's later clock read, a
    // clock that jumped back) counts into the present bucket.
    const std::int64_t present = bucket_from(n);
    const std::int64_t from =
        detail::rl_max_of(detail::rl_max_of(n, paused_.load(std::memory_order_relaxed)), queue_);
    const std::int64_t c = from == n ? present : detail::rl_max_of(bucket_of(from), present);
    std::int64_t target = c;
    if (c >= newest_) {
      // Nothing is counted after c: the window at c is the fullest that counts it.
      const std::uint64_t s = c == newest_ ? total_ : window_from(oldest_at(c));
      if (oversize ? s != 0 : s > options_.limit - need) target = room_after(c, need, oversize);
    } else {
      target = first_fit(c, need, oversize);  // units lie ahead (see first_fit)
    }
    const std::int64_t send = target == c ? from : start_of(target);
    const std::int64_t wait = send > n ? detail::rl_sub(send, n) : 0;
    // The ring reaches horizon_ buckets past the present one (a pause's end
    // or a waiter's bucket past it too: refused).
    if (wait > max_wait || send == detail::rl_max || target > detail::rl_add(present, horizon_)) {
      return {false, {}, duration(wait), {}};
    }
    if (target > newest_) advance(target);
    if (present != present_) set_present(present);
    count(target, need);
    rate_ticket t{target, send, 0, need};
    if (wait > 0) {
      const std::size_t slot = slot_back(newest_ - target);
      queue_ = detail::rl_max_of(queue_, send);
      ++waiting_[slot];
      sends_[slot] = detail::rl_max_of(sends_[slot], send);
      t.sends = send;
    }
    return {true, duration(wait), std::nullopt, t};
  }

  // The first bucket after c where `need` fits (c >= newest_): the one that no
  // longer counts the oldest bucket whose leaving makes room.
  KEEL_DETAIL_NOINLINE std::int64_t room_after(std::int64_t c, std::uint64_t need,
                                               bool oversize) const noexcept {
    std::int64_t k = oldest_at(c);
    std::uint64_t s = window_from(k);
    std::int64_t target = c;
    while (oversize ? s != 0 : s > options_.limit - need) {
      s -= ring_[slot_of(k)];
      target = detail::rl_add(k, detail::rl_add(span_, 1));
      k = detail::rl_add(k, 1);
    }
    return target;
  }

  // The first bucket t >= c (c < newest_) where `need` fits in every window
  // that counts t (q = t .. t + span_): units lie after c, counted for waiters
  // or left by waiters that gave theirs back.
  KEEL_DETAIL_NOINLINE std::int64_t first_fit(std::int64_t c, std::uint64_t need,
                                              bool oversize) const noexcept {
    std::uint64_t s = window_at(c);
    std::int64_t t = c;
    // Past newest_ + span_ every window is empty: t is found at most span_
    // steps later, unless that is past the end of time.
    for (std::int64_t q = c; q != detail::rl_max; ++q) {
      if (q != c) s = slide(s, q);
      if (oversize ? s != 0 : s > options_.limit - need) {
        t = q + 1;
      } else if (q - t >= span_) {
        return t;
      }
    }
    return detail::rl_max;  // never: refused
  }

  // Makes `c` (> newest_) the newest bucket: the window's total moves on,
  // and the slots of the buckets after newest_ are emptied for reuse (they
  // held buckets `slots_` earlier, before any window from the present on).
  void advance(std::int64_t c) noexcept {
    const std::int64_t step = detail::rl_sub(c, newest_);
    if (step > span_) {
      total_ = 0;
    } else {
      for (std::int64_t j = oldest_at(newest_); j < oldest_at(c); ++j) total_ -= units_of(j);
    }
    if (step >= static_cast<std::int64_t>(slots_)) {
      std::fill(ring_.get(), ring_.get() + slots_, std::uint64_t{0});
      std::fill(waiting_.get(), waiting_.get() + slots_, std::uint32_t{0});
      std::fill(sends_.get(), sends_.get() + slots_, detail::rl_min);
      head_ = slot_of(c);
    } else {
      for (std::int64_t i = 0; i < step; ++i) {
        head_ = head_ + 1 == slots_ ? 0 : head_ + 1;
        ring_[head_] = 0;
        waiting_[head_] = 0;
        sends_[head_] = detail::rl_min;
      }
    }
    newest_ = c;
  }

  sliding_window_options options_;
  std::int64_t width_;                        // w, ns
  std::int64_t span_;                         // buckets: the window at k counts k - span_ .. k
  std::int64_t horizon_;                      // a waiter's bucket is at most present_ + horizon_
  std::size_t slots_;                         // span_ + 1 + horizon_: present_ - span_ .. newest_
  std::uint64_t cap_;                         // limit + max_debt, saturated
  std::unique_ptr<std::uint64_t[]> ring_;     // units per bucket
  std::unique_ptr<std::uint32_t[]> waiting_;  // callers waiting per bucket
  std::unique_ptr<std::int64_t[]> sends_;     // their latest send time per bucket
  // Guarded by lock_:
  std::int64_t newest_ = detail::rl_min;       // the newest bucket counted into
  std::int64_t present_ = detail::rl_min;      // the bucket of the latest now seen
  std::int64_t present_end_ = detail::rl_min;  // the start of the bucket after it
  std::uint64_t total_ = 0;                    // the units of buckets newest_ - span_ .. newest_
  std::size_t head_ = 0;                       // the slot of newest_
  std::int64_t queue_ = detail::rl_min;        // the latest send time of a waiter
  std::int64_t held_ = detail::rl_min;         // the bucket of the last remaining-quota hint
  std::uint64_t held_room_ =
      std::numeric_limits<std::uint64_t>::max();  // the room it left; none yet
  mutable std::atomic<bool> lock_{false};
  std::atomic<std::int64_t> paused_{detail::rl_min};  // not paused
};

template <>
struct limit_for<sliding_window_options> {
  using type = sliding_window_limit;
};

// A keel::rate_limiter of window limits: keel::rate_limits(window, ...), or
// keel::rate_limiter(std::array<keel::sliding_window_options, N>{...}). (No
// guide from one options aggregate: keel::rate_limiter({.limit = ...}) would
// then match both kinds.)
// clang-format off
template <std::size_t N>
rate_limiter(std::array<sliding_window_options, N>)
    -> rate_limiter<N, context_cost, no_actual_cost, failure_hint, no_listener,
                    default_environment, sliding_window_limit>;
// clang-format on

}  // namespace keel

#endif  // KEEL_ADMISSION_SLIDING_WINDOW_LIMIT_HPP_INCLUDED

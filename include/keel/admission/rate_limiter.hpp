// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_ADMISSION_RATE_LIMITER_HPP_INCLUDED
#define KEEL_ADMISSION_RATE_LIMITER_HPP_INCLUDED

#include <array>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <stop_token>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>

#include "keel/core/classify.hpp"
#include "keel/core/config_error.hpp"
#include "keel/core/context.hpp"
#include "keel/core/environment.hpp"
#include "keel/core/error.hpp"
#include "keel/core/fluent.hpp"
#include "keel/core/hint.hpp"
#include "keel/core/inspect.hpp"
#include "keel/core/observe.hpp"
#include "keel/core/outcome.hpp"
#include "keel/core/policy.hpp"
#include "keel/core/time.hpp"
#include "keel/detail/config.hpp"

namespace keel {

/// What a limit does with a cost larger than its burst.
enum class rate_oversize : unsigned char {
  /// Refused with errc::rate_limited and no retry_after: waiting never helps.
  reject,
  /// Admitted when the bucket is full, into debt of at most max_debt units.
  debt,
};

/// One rate limit: `limit` units per `period`, `burst` of them at once.
struct rate_limit_options {
  /// Units admitted per period (requests, tokens, cents); >= 1. Default 100.
  std::uint64_t limit = 100;
  /// The period of `limit`; at least `limit` nanoseconds (one unit per ns at most). Default 1 s.
  duration period = std::chrono::seconds(1);
  /// Units that may go at once after a quiet spell (the bucket's size); 0 means `limit`. Default 0.
  std::uint64_t burst = 0;
  /// Longest a call waits for its slot (the context's deadline bounds it too); 0: never waits.
  /// Default 0. With several limits, the smallest applies.
  duration max_wait = duration::zero();
  /// A cost above the burst: rejected (default) or admitted into debt.
  rate_oversize oversize = rate_oversize::reject;
  /// Units a settle above the estimate, or an oversize cost, may owe beyond an empty bucket;
  /// the rest is forgiven. Default 0: never beyond an empty bucket.
  std::uint64_t max_debt = 0;
  /// Longest pause a Retry-After hint imposes (longer ones are cut). >= 0; default 60 s.
  duration max_pause = std::chrono::seconds(60);

  /// The units that may go at once: burst, or limit when burst is 0.
  constexpr std::uint64_t bucket() const noexcept { return burst == 0 ? limit : burst; }

  constexpr validation_result validate() const {
    if (limit == 0) return config_problem{"rate_limit_options.limit", "must be >= 1"};
    if (period <= duration::zero()) {
      return config_problem{"rate_limit_options.period", "must be > 0"};
    }
    if (static_cast<std::uint64_t>(period.count()) < limit) {
      return config_problem{"rate_limit_options.period",
                            "must be at least `limit` nanoseconds (at most one unit per ns)"};
    }
    // T is whole nanoseconds, rounded up; refuse a rate it would cut by over 1 %.
    const auto p = static_cast<std::uint64_t>(period.count());
    const std::uint64_t t = p / limit + (p % limit != 0 ? 1 : 0);
    if (t * limit - p > p / 100) {
      return config_problem{"rate_limit_options.limit",
                            "too fine for whole nanoseconds per unit: ceil(period / limit) would "
                            "cut the rate by over 1 %; count in larger units"};
    }
    if (max_wait < duration::zero()) {
      return config_problem{"rate_limit_options.max_wait", "must be >= 0"};
    }
    if (max_pause < duration::zero()) {
      return config_problem{"rate_limit_options.max_pause", "must be >= 0"};
    }
    if (oversize != rate_oversize::reject && oversize != rate_oversize::debt) {
      return config_problem{"rate_limit_options.oversize", "must be reject or debt"};
    }
    return std::nullopt;
  }
};

namespace detail {

inline constexpr std::int64_t rl_max = std::numeric_limits<std::int64_t>::max();
inline constexpr std::int64_t rl_min = std::numeric_limits<std::int64_t>::min();

constexpr std::int64_t rl_add(std::int64_t a, std::int64_t b) noexcept {
  std::int64_t r{};
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? rl_max : rl_min;
  return r;
}
constexpr std::int64_t rl_sub(std::int64_t a, std::int64_t b) noexcept {
  std::int64_t r{};
  if (__builtin_sub_overflow(a, b, &r)) return b < 0 ? rl_max : rl_min;
  return r;
}
/// a * n for a >= 0, clamped to rl_max.
constexpr std::int64_t rl_mul(std::int64_t a, std::uint64_t n) noexcept {
  if (a == 0 || n == 0) return 0;
  if (n > static_cast<std::uint64_t>(rl_max)) return rl_max;
  std::int64_t r{};
  if (__builtin_mul_overflow(a, static_cast<std::int64_t>(n), &r)) return rl_max;
  return r;
}
constexpr std::int64_t rl_max_of(std::int64_t a, std::int64_t b) noexcept { return a < b ? b : a; }
constexpr std::int64_t rl_min_of(std::int64_t a, std::int64_t b) noexcept { return a < b ? a : b; }

// The refund counter counts nanoseconds twice over (the low bit is the
// refunders' lock) and wraps around on purpose: only differences are read.
KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP constexpr std::uint64_t rl_since(
    std::uint64_t now, std::uint64_t then) noexcept {
  return (now - then) / 2;
}
KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP constexpr std::uint64_t rl_bump(std::uint64_t r,
                                                                      std::int64_t d) noexcept {
  return r + 2 * static_cast<std::uint64_t>(d);
}

}  // namespace detail

/// A slot one limit reserved for a call: what a refund or a settle needs.
struct rate_ticket {
  std::int64_t end = 0;       ///< the limit's theoretical arrival time after this slot (ns)
  std::int64_t at = 0;        ///< when the slot was reserved (ns)
  std::int64_t length = 0;    ///< the time the slot charged: cost * emission interval (ns)
  std::uint64_t refunds = 0;  ///< the limit's refund counter when reserved
  /// A caller that waits: when it sends (ns); INT64_MIN for one that did not
  /// wait. Such a ticket is passed to gcra_limit::done_waiting() once.
  std::int64_t sends = std::numeric_limits<std::int64_t>::min();
};

/// One limit's answer to try_acquire.
struct rate_decision {
  bool admitted = false;
  /// Admitted: how long the caller waits before sending (its reserved slot).
  duration wait{};
  /// Refused: when the same cost would fit if nobody else took it; empty when it
  /// never fits (a cost above the burst).
  std::optional<duration> retry_after{};
  rate_ticket ticket{};
  explicit operator bool() const noexcept { return admitted; }
};

/// The decision core of one rate limit: GCRA (the generic cell rate
/// algorithm) on one atomic theoretical arrival time (TAT), with the
/// semantics of a token bucket of `bucket()` units refilled at limit/period.
/// Never blocks, never reads a clock: every step takes `now`. Thread-safe;
/// acquisitions are lock-free, refunds are serialized among themselves.
///
/// T = ceil(period / limit) ns per unit; tau = T * bucket(). A cost q is
/// admitted at `now` iff max(TAT, now) + T*q - tau <= now (+ the wait it may
/// take), and sets TAT to max(TAT, now) + T*q. So at most bucket() units go at
/// once (go-redis' tau = T*burst; redis-cell's T*(burst+1) lets burst+1 go),
/// and over any closed interval of length d at most bucket() + floor(d / T).
class gcra_limit {
 public:
  using options_type = rate_limit_options;

  /// Throws keel::config_error (aborts without exceptions) when `o` is invalid.
  explicit gcra_limit(const rate_limit_options& o)
      : options_((require_valid(o.validate()), o)),
        interval_(static_cast<std::int64_t>(
            (static_cast<std::uint64_t>(o.period.count()) + o.limit - 1) / o.limit)),
        tau_(detail::rl_mul(interval_, o.bucket())),
        debt_(detail::rl_mul(interval_, o.max_debt)) {}

  gcra_limit(const gcra_limit&) = delete;
  gcra_limit& operator=(const gcra_limit&) = delete;

  /// Reserves `cost` units at `now` if its slot comes within `max_wait`; the
  /// caller then waits decision.wait before sending. A refusal changes nothing.
  /// The smallest charge is one unit: a cost of 0 is charged as 1 (so calls
  /// estimated at 0 cannot stream through an empty bucket; settle() corrects it).
  // Inlined: out of line, the decision goes through memory and costs the
  // policy's call twice the instructions of the exchange itself.
  [[gnu::always_inline]] rate_decision try_acquire(std::uint64_t cost, time_point now,
                                                   duration max_wait = duration::zero()) noexcept {
    const std::int64_t n = now.time_since_epoch().count();
    const std::int64_t need = detail::rl_mul(interval_, cost == 0 ? 1 : cost);
    const bool oversize = need > tau_;
    if (oversize && (options_.oversize == rate_oversize::reject ||
                     need > detail::rl_add(tau_, debt_) || need == detail::rl_max)) {
      return {};  // never fits: no retry_after
    }
    // While paused, a slot is reserved as if asked for when the pause ends:
    // the bucket does not refill for callers who wait it out.
    const std::int64_t from = detail::rl_max_of(paused_.load(std::memory_order_relaxed), n);
    // Read before the reservation: refunds that land after it are counted as
    // possibly ahead of this slot (see refund()).
    const std::uint64_t mark = refunds_.load(std::memory_order_seq_cst) & ~std::uint64_t{1};
    // The latest time a caller was admitted at, published before its slot is
    // taken: no refund moves a slot before its caller's time (refund()), even
    // when a refunder's clock reads earlier. A maximum, not a store: racing
    // admissions must not leave the earlier time (review4 G1). It shares
    // tat_'s cache line, which the slot's compare-and-swap takes anyway.
    std::int64_t seen = seen_.load(std::memory_order_relaxed);
    if (seen < n && !seen_.compare_exchange_strong(seen, n, std::memory_order_relaxed)) [[unlikely]]
      raise(seen_, n);
    std::int64_t tat = tat_.load(std::memory_order_relaxed);
    for (;;) {
      const std::int64_t start = detail::rl_max_of(tat, from);
      const std::int64_t end = detail::rl_add(start, need);
      // An oversize cost waits for a full bucket and then owes the rest.
      const std::int64_t allowed =
          detail::rl_max_of(oversize ? start : detail::rl_sub(end, tau_), from);
      const std::int64_t wait = allowed > n ? detail::rl_sub(allowed, n) : 0;
      if (wait > max_wait.count() || end == detail::rl_max) {
        return {false, {}, duration(wait), {}};
      }
      if (wait > 0) [[unlikely]]
        return acquire_waiting(tat, end, n, need, mark, allowed, max_wait);
      if (tat_.compare_exchange_weak(tat, end, std::memory_order_seq_cst,
                                     std::memory_order_relaxed)) {
        return {true, duration(0), std::nullopt, {end, n, need, mark}};
      }
    }
  }

  /// Gives back `units` of the slot of `t` (at most what it charged) at `now`;
  /// returns the time given back. The limit is one number, the end of the
  /// last slot, so giving time back moves every later slot earlier; it comes
  /// back only as far as no later slot moves before its caller's sending
  /// time. So what comes back is the part of the slot after all of: `now`
  /// (the part behind it has been refilled by time already), the latest time
  /// a caller was admitted at, the latest sending time of a caller that waited
  /// (forgotten once every waiter is done_waiting()), a pause's end and a
  /// remaining-quota hint's floor. A call that never left, with no waiter
  /// left, no pause and no hint, gets back all of its slot still ahead. The
  /// time given back goes to whoever asks next. Exact when no other refund
  /// landed since `t` was reserved, else conservative (the slot may have
  /// moved earlier by at most those refunds). Refund or settle a ticket once
  /// (keel's reservations do).
  duration refund(const rate_ticket& t, std::uint64_t units, time_point now) noexcept {
    const std::int64_t give = detail::rl_min_of(detail::rl_mul(interval_, units), t.length);
    if (give <= 0) return duration::zero();
    // A clock read earlier than the reservation's counts as that time.
    const std::int64_t n = detail::rl_max_of(now.time_since_epoch().count(), t.at);
    // A slot wholly behind `now` has nothing to give back: no lock.
    if (t.end <= n) return duration::zero();
    return give_back(t, give, n);
  }

  /// Gives back the whole slot of `t` (a call that never left); see refund().
  duration refund_all(const rate_ticket& t, time_point now) noexcept {
    return refund(t, std::numeric_limits<std::uint64_t>::max(), now);
  }

  /// Charges `units` more at `now` (a call that cost more than its estimate),
  /// into debt of at most max_debt units beyond an empty bucket; the rest is
  /// forgiven. Returns the time charged.
  duration charge(std::uint64_t units, time_point now) noexcept {
    const std::int64_t extra = detail::rl_mul(interval_, units);
    if (extra <= 0) return duration::zero();
    const std::int64_t n = now.time_since_epoch().count();
    const std::int64_t cap = detail::rl_add(n, detail::rl_add(tau_, debt_));
    std::int64_t tat = tat_.load(std::memory_order_relaxed);
    for (;;) {
      const std::int64_t start = detail::rl_max_of(tat, n);
      const std::int64_t end = detail::rl_min_of(detail::rl_add(start, extra), cap);
      if (end <= tat) return duration::zero();
      if (tat_.compare_exchange_weak(tat, end, std::memory_order_seq_cst,
                                     std::memory_order_relaxed)) {
        return duration(end - start);
      }
    }
  }

  /// Corrects the slot of `t`, charged for `estimate` units, to `actual`:
  /// refunds the difference (see refund()) or charges it (see charge()). An
  /// estimate of 0 was charged as 1.
  void settle(const rate_ticket& t, std::uint64_t estimate, std::uint64_t actual,
              time_point now) noexcept {
    if (estimate == 0) estimate = 1;
    if (actual < estimate) {
      refund(t, estimate - actual, now);
    } else if (actual > estimate) {
      charge(actual - estimate, now);
    }
  }

  /// The caller of `t` is done waiting: it gave up, or sends now (`sent`).
  /// Once every caller that waited is done, their sending times stop holding
  /// refunds back; one that sent holds them as an admission's time does (a
  /// refunder may have read its clock before it woke). Call it once per
  /// ticket that waited (`t.sends` set; others are ignored); a waiter never
  /// reported only makes refunds conservative.
  void done_waiting(const rate_ticket& t, bool sent = false) noexcept {
    if (t.sends == detail::rl_min) return;
    if (sent) raise(seen_, t.sends);  // before the count drops: see forget_waiters()
    std::int64_t w = waiters_.load(std::memory_order_seq_cst);
    while (w > 0 && !waiters_.compare_exchange_weak(w, w - 1, std::memory_order_seq_cst,
                                                    std::memory_order_seq_cst)) {
    }
  }

  /// No call goes before now + retry_after (cut to max_pause); returns true
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

  /// The dependency says `remaining` units are left: from `now`, at most that
  /// many may go at once. Only ever tightens (a larger figure than the
  /// limiter's own changes nothing).
  void tighten(std::uint64_t remaining, time_point now) noexcept {
    const std::int64_t allowance = detail::rl_mul(interval_, remaining);
    if (allowance >= tau_) return;
    const std::int64_t floor =
        detail::rl_add(now.time_since_epoch().count(), detail::rl_sub(tau_, allowance));
    // No refund may move the schedule back before the hint's floor (a slot
    // behind it would give back time the dependency says is gone), also when
    // the TAT is at or past it already.
    raise(held_, floor);
    std::int64_t tat = tat_.load(std::memory_order_relaxed);
    while (tat < floor) {
      if (tat_.compare_exchange_weak(tat, floor, std::memory_order_seq_cst,
                                     std::memory_order_relaxed)) {
        return;
      }
    }
  }

  /// Units that could go at once at `now` (0 while paused).
  std::uint64_t available(time_point now) const noexcept {
    const std::int64_t n = now.time_since_epoch().count();
    if (paused_.load(std::memory_order_relaxed) > n) return 0;
    const std::int64_t ahead =
        detail::rl_sub(detail::rl_max_of(tat_.load(std::memory_order_relaxed), n), n);
    if (ahead >= tau_) return 0;
    return static_cast<std::uint64_t>((tau_ - ahead) / interval_);
  }

  /// The end of the current pause (in the past when not paused).
  time_point paused_until() const noexcept {
    return time_point(duration(paused_.load(std::memory_order_relaxed)));
  }
  /// The theoretical arrival time: the bucket is full from then on.
  time_point tat() const noexcept {
    return time_point(duration(tat_.load(std::memory_order_relaxed)));
  }
  /// T: the time one unit takes to refill, ceil(period / limit).
  duration emission_interval() const noexcept { return duration(interval_); }
  /// tau: T * bucket().
  duration tolerance() const noexcept { return duration(tau_); }
  const rate_limit_options& options() const noexcept { return options_; }

 private:
  // A caller that waits goes later than it asked: it counts itself a waiter
  // and publishes its sending time before its slot is taken, so that no
  // refund moves a slot before it (refund()).
  KEEL_DETAIL_NOINLINE rate_decision acquire_waiting(std::int64_t tat, std::int64_t end,
                                                     std::int64_t n, std::int64_t need,
                                                     std::uint64_t mark, std::int64_t allowed,
                                                     duration max_wait) noexcept {
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    raise(latest_, allowed);
    for (;;) {
      if (tat_.compare_exchange_weak(tat, end, std::memory_order_seq_cst,
                                     std::memory_order_relaxed)) {
        const std::int64_t wait = allowed > n ? detail::rl_sub(allowed, n) : 0;
        // A refund since may have made the slot due now: then it does not
        // wait, and the policy reports only callers that wait done.
        if (wait == 0) {
          waiters_.fetch_sub(1, std::memory_order_seq_cst);
          return {true, duration(0), std::nullopt, {end, n, need, mark}};
        }
        return {true, duration(wait), std::nullopt, {end, n, need, mark, allowed}};
      }
      // Another slot came first: this one moves.
      const std::int64_t from = detail::rl_max_of(paused_.load(std::memory_order_relaxed), n);
      const std::int64_t start = detail::rl_max_of(tat, from);
      end = detail::rl_add(start, need);
      allowed = detail::rl_max_of(need > tau_ ? start : detail::rl_sub(end, tau_), from);
      const std::int64_t wait = allowed > n ? detail::rl_sub(allowed, n) : 0;
      if (wait > max_wait.count() || end == detail::rl_max) {
        waiters_.fetch_sub(1, std::memory_order_seq_cst);
        return {false, {}, duration(wait), {}};
      }
      raise(latest_, allowed);
    }
  }

  // refund() past its checks that need no lock: up to `give` of the slot of
  // `t` after `n` (and the other floors) comes back. Out of line: most
  // refunds of a settle find their slot behind `now` and stop before it.
  KEEL_DETAIL_NOINLINE duration give_back(const rate_ticket& t, std::int64_t give,
                                          std::int64_t n) noexcept {
    const std::uint64_t r = lock_refunds();
    forget_waiters();
    // The slot's end now: moved earlier by at most the refunds since it was
    // reserved, and never before its reservation time plus its length.
    const std::uint64_t moved = detail::rl_since(r, t.refunds);
    const std::int64_t moved_ns = moved > static_cast<std::uint64_t>(detail::rl_max)
                                      ? detail::rl_max
                                      : static_cast<std::int64_t>(moved);
    const std::int64_t end =
        detail::rl_max_of(detail::rl_sub(t.end, moved_ns), detail::rl_add(t.at, t.length));
    // While this lock is held the TAT only grows, so a failed exchange means
    // a new slot: look again. The TAT is read before the floors.
    std::int64_t d = 0;
    std::int64_t tat = tat_.load(std::memory_order_seq_cst);
    for (;;) {
      std::int64_t floor = detail::rl_max_of(n, latest_.load(std::memory_order_seq_cst));
      floor = detail::rl_max_of(floor, seen_.load(std::memory_order_seq_cst));
      floor = detail::rl_max_of(floor, held_.load(std::memory_order_seq_cst));
      floor = detail::rl_max_of(floor, paused_.load(std::memory_order_seq_cst));
      d = end > floor ? detail::rl_min_of(give, detail::rl_sub(end, floor)) : 0;
      if (d <= 0) {
        d = 0;
        break;
      }
      if (tat_.compare_exchange_weak(tat, detail::rl_sub(tat, d), std::memory_order_seq_cst,
                                     std::memory_order_seq_cst)) {
        break;
      }
    }
    refunds_.store(detail::rl_bump(r, d), std::memory_order_seq_cst);
    return duration(d);
  }

  // With no caller waiting, no sending time holds refunds back. A waiter
  // counts itself before it publishes its time: one that came meanwhile
  // either finds the time cleared, or is seen here and the time put back.
  // Under the refunders' lock.
  void forget_waiters() noexcept {
    std::int64_t latest = latest_.load(std::memory_order_seq_cst);
    if (latest == detail::rl_min || waiters_.load(std::memory_order_seq_cst) != 0) return;
    const std::int64_t old = latest;
    if (latest_.compare_exchange_strong(latest, detail::rl_min, std::memory_order_seq_cst,
                                        std::memory_order_seq_cst) &&
        waiters_.load(std::memory_order_seq_cst) != 0) {
      raise(latest_, old);
    }
  }

  // Raises `a` to at least `t`; returns what it held before.
  static std::int64_t raise(std::atomic<std::int64_t>& a, std::int64_t t) noexcept {
    std::int64_t l = a.load(std::memory_order_seq_cst);
    while (l < t &&
           !a.compare_exchange_weak(l, t, std::memory_order_seq_cst, std::memory_order_seq_cst)) {
    }
    return l;
  }

  std::uint64_t lock_refunds() noexcept {
    std::uint64_t r = refunds_.load(std::memory_order_relaxed);
    for (unsigned spins = 0;; ++spins) {
      if ((r & 1U) == 0 && refunds_.compare_exchange_weak(r, r | 1U, std::memory_order_seq_cst,
                                                          std::memory_order_relaxed)) {
        return r;
      }
      if ((r & 1U) != 0) {
        if (spins > 64) std::this_thread::yield();
        r = refunds_.load(std::memory_order_relaxed);
      }
    }
  }

  rate_limit_options options_;
  std::int64_t interval_;
  std::int64_t tau_;
  std::int64_t debt_;
  std::atomic<std::int64_t> tat_{detail::rl_min};     // full bucket
  std::atomic<std::int64_t> paused_{detail::rl_min};  // not paused
  std::atomic<std::uint64_t> refunds_{0};             // 2 * ns refunded, low bit: lock
  std::atomic<std::int64_t> seen_{detail::rl_min};    // the latest admission's `now` or send
  std::atomic<std::int64_t> latest_{detail::rl_min};  // the latest waiter's sending time
  std::atomic<std::int64_t> waiters_{0};              // callers waiting, not yet done_waiting()
  std::atomic<std::int64_t> held_{detail::rl_min};    // a quota hint's floor: refunds stop there
};

// ---- events ----------------------------------------------------------------

/// Event: a rate limiter refused a call.
struct rate_limit_rejected {
  static constexpr event_kind kind = event_kind::rate_limit_rejected;
  std::size_t limit = 0;                  ///< which limit refused (index, 0 for a single limit)
  std::uint64_t cost = 0;                 ///< the cost it refused
  std::optional<duration> retry_after{};  ///< when it would fit; empty: never (oversize)
  event_source source{};
};

/// Event: a hint (Retry-After) paused a rate limiter.
struct rate_limit_paused {
  static constexpr event_kind kind = event_kind::rate_limit_paused;
  std::size_t limit = 0;  ///< which limit
  duration pause{};       ///< for how long (after max_pause)
  event_source source{};
};

// ---- hooks -----------------------------------------------------------------

/// A call's cost as the caller states it in its context:
/// `ctx.set_user_value(keel::rate_cost{tokens})`. The default cost function
/// charges it to every limit (1 when the context has none).
struct rate_cost {
  std::uint64_t units = 1;
};

/// The default cost: the context's keel::rate_cost, else 1.
struct context_cost {
  std::uint64_t operator()(const context& ctx) const noexcept {
    const std::optional<rate_cost> c = ctx.user_value<rate_cost>();
    return c ? c->units : 1;
  }
};

/// The default actual cost: none (the estimate stands).
struct no_actual_cost {
  template <class R>
  std::optional<std::uint64_t> operator()(const outcome<R>&) const noexcept {
    return std::nullopt;
  }
};

/// The default hint reader: a failure's keel::hint (a thrown keel::error or
/// other hint_source), never a rejection by a policy inside.
struct failure_hint {
  template <class R>
  keel::hint operator()(const outcome<R>& o) const {
    if (o.has_value() || o.has_keel_error()) return {};
    return o.hint();
  }
};

namespace detail {

template <std::size_t N>
using rate_costs = std::array<std::uint64_t, N>;

/// A hook's cost (a number, or an array of N) as N costs.
template <std::size_t N, class C>
rate_costs<N> as_costs(const C& c) noexcept {
  if constexpr (std::is_floating_point_v<C>) {
    // A NaN, a negative or a value past 2^64 is no cost: converting it is
    // undefined. As the largest cost it never fits (or is charged to max_debt).
    const std::uint64_t v = c >= C(0) && c < C(0x1p64) ? static_cast<std::uint64_t>(c)
                                                       : std::numeric_limits<std::uint64_t>::max();
    rate_costs<N> all{};
    for (auto& x : all) x = v;
    return all;
  } else if constexpr (std::is_convertible_v<const C&, std::uint64_t>) {
    rate_costs<N> all{};
    for (auto& x : all) x = static_cast<std::uint64_t>(c);
    return all;
  } else {
    static_assert(std::is_convertible_v<const C&, rate_costs<N>>,
                  "keel::rate_limiter: a cost function returns a std::uint64_t, or a "
                  "std::array<std::uint64_t, N> with one cost per limit");
    return c;
  }
}

/// A hook's hint (one keel::hint for every limit, or an array of N) as N hints.
template <std::size_t N, class H>
std::array<hint, N> as_hints(const H& h) {
  if constexpr (std::is_convertible_v<const H&, hint>) {
    std::array<hint, N> all{};
    for (auto& x : all) x = h;
    if constexpr (N > 1) {
      // One quota cannot say which limit it is about.
      for (auto& x : all) x.quota.reset();
    }
    return all;
  } else {
    static_assert(std::is_convertible_v<const H&, std::array<hint, N>>,
                  "keel::rate_limiter: a hint function returns a keel::hint, or a "
                  "std::array<keel::hint, N> with one hint per limit");
    return h;
  }
}

template <std::size_t N, class Limit>
struct rate_state {
  std::array<Limit, N> limits;
};

// The clock for a step that gives slots back or settles them, which must not
// throw: a clock that throws reads as the latest of the tickets' own times
// (a refund never gives back time before its ticket's anyway).
template <std::size_t N, class Env>
time_point now_or_ticket_time(const Env& env, const std::array<rate_ticket, N>& tickets,
                              std::size_t count) noexcept {
#if KEEL_HAS_EXCEPTIONS
  try {
    return static_cast<time_point>(env.now());
  } catch (...) {
    std::int64_t at = rl_min;
    for (std::size_t k = 0; k < count; ++k) at = rl_max_of(at, tickets[k].at);
    return time_point(duration(at));
  }
#else
  static_cast<void>(tickets);
  static_cast<void>(count);
  return static_cast<time_point>(env.now());
#endif
}

// Gives back the slots of limits [0, count) at `now`.
template <std::size_t N, class Limit>
void refund_all(rate_state<N, Limit>& s, const std::array<rate_ticket, N>& tickets,
                std::size_t count, time_point now) noexcept {
  for (std::size_t k = 0; k < count; ++k) s.limits[k].refund_all(tickets[k], now);
}

// The callers of the tickets of limits [0, count) are done waiting.
template <std::size_t N, class Limit>
void done_waiting(rate_state<N, Limit>& s, const std::array<rate_ticket, N>& tickets,
                  std::size_t count, bool sent) noexcept {
  for (std::size_t k = 0; k < count; ++k) s.limits[k].done_waiting(tickets[k], sent);
}

template <class Limit, std::size_t N, std::size_t... I>
std::shared_ptr<rate_state<N, Limit>> make_rate_state(
    const std::array<typename Limit::options_type, N>& o, std::index_sequence<I...>) {
  return std::shared_ptr<rate_state<N, Limit>>(
      new rate_state<N, Limit>{std::array<Limit, N>{Limit(o[I])...}});
}

template <class Options, std::size_t N>
duration least_max_wait(const std::array<Options, N>& o) noexcept {
  duration w = duration::max();
  for (const auto& x : o) w = x.max_wait < w ? x.max_wait : w;
  return w;
}

}  // namespace detail

/// Limits the rate of calls to N limits at once (requests per minute, tokens
/// per minute, dollars per day): a call is admitted by all or by none. Each
/// limit is a `Limit`: a keel::gcra_limit (default), or a
/// keel::sliding_window_limit (<keel/admission/sliding_window_limit.hpp>);
/// a call's costs come from `Cost`
/// (`f(const keel::context&)`, one number for every limit or an array of N),
/// its actual costs, once known, from `Actual` (`f(const keel::outcome<R>&)`
/// returning an optional number or array: the estimate is settled to it),
/// and the dependency's advice from `HintFn` (Retry-After pauses every limit,
/// a remaining quota tightens one).
///
/// A call whose slots come later than max_wait (and its deadline) is refused
/// with errc::rate_limited and a retry_after; one within waits for them with
/// the environment's sleeper, its slots reserved in arrival order (no queue).
/// A call that never left is given its slots back: a stop during the wait
/// (errc::cancelled), or a rejection by a policy inside (keel::is_rejection).
/// A pause that begins during the wait makes the call ask again from its end,
/// within the same bound.
///
/// Copies share the limits' state; with_environment() makes new limits.
template <std::size_t N = 1, class Cost = context_cost, class Actual = no_actual_cost,
          class HintFn = failure_hint, class Listener = no_listener,
          environment Env = default_environment, class Limit = gcra_limit>
class rate_limiter
    : public executable<rate_limiter<N, Cost, Actual, HintFn, Listener, Env, Limit>> {
  static_assert(N >= 1, "keel::rate_limiter needs at least one limit");

 public:
  using costs = detail::rate_costs<N>;
  /// The options of one limit: keel::rate_limit_options for a GCRA limit.
  using options_type = typename Limit::options_type;

  // clang-format 14 and 19 place a requires clause apart: kept as written.
  // clang-format off
  /// One limit. Throws keel::config_error when `o` is invalid.
  explicit rate_limiter(options_type o = {})
    requires(N == 1)
      : rate_limiter(std::array<options_type, 1>{o}) {}
  /// `keel::rate_limiter({})`: the default options.
  explicit rate_limiter(detail::empty_braces)
    requires(N == 1)
      : rate_limiter(options_type()) {}
  // clang-format on
  /// N limits, all of which must admit a call.
  explicit rate_limiter(const std::array<options_type, N>& o)
      : options_(o),
        max_wait_(detail::least_max_wait(o)),
        buckets_(bucket_costs_of(o)),
        state_(detail::make_rate_state<Limit>(o, std::make_index_sequence<N>())) {}

  /// For keel::rebuild: every part.
  rate_limiter(from_parts_t, std::array<options_type, N> o, Cost cost, Actual actual,
               HintFn hint_fn, Listener listener, Env env,
               std::shared_ptr<detail::rate_state<N, Limit>> state, policy_name name)
      : options_(o),
        max_wait_(detail::least_max_wait(o)),
        buckets_(bucket_costs_of(o)),
        cost_(std::move(cost)),
        actual_(std::move(actual)),
        hint_(std::move(hint_fn)),
        listener_(std::move(listener)),
        env_(std::move(env)),
        state_(std::move(state)),
        name_(name) {}

  // Fluent setters: the same limits (shared state), one part replaced.

  /// The cost function: f(const keel::context&) -> std::uint64_t, or
  /// std::array<std::uint64_t, N>. One that throws charges every limit its bucket.
  template <class F>
  auto with_cost(F f) const {
    return rebuild<rate_limiter<N, F, Actual, HintFn, Listener, Env, Limit>, &rate_limiter::cost_>(
        *this, std::move(f), parts{});
  }
  /// The actual-cost function: f(const keel::outcome<R>&) -> std::optional of a
  /// std::uint64_t or of a std::array<std::uint64_t, N>; empty (or a throw):
  /// the estimate stands.
  template <class F>
  auto with_actual_cost(F f) const {
    return rebuild<rate_limiter<N, Cost, F, HintFn, Listener, Env, Limit>, &rate_limiter::actual_>(
        *this, std::move(f), parts{});
  }
  /// The hint reader: f(const keel::outcome<R>&) -> keel::hint, or
  /// std::array<keel::hint, N>; asked after every call that left. A throw: no hint.
  template <class F>
  auto with_hint(F f) const {
    return rebuild<rate_limiter<N, Cost, Actual, F, Listener, Env, Limit>, &rate_limiter::hint_>(
        *this, std::move(f), parts{});
  }
  /// Where events go (rate_limit_rejected, rate_limit_paused); counters stay attached.
  template <class L>
  auto with_listener(L l) const {
    using slot = with_listener_t<Listener, L>;
    return rebuild<rate_limiter<N, Cost, Actual, HintFn, slot, Env, Limit>,
                   &rate_limiter::listener_>(*this, replace_listener(listener_, std::move(l)),
                                             parts{});
  }
  /// Also counts its events into `c`, which must outlive every copy.
  auto with_counters(counters& c) const {
    using slot = with_counters_t<Listener>;
    return rebuild<rate_limiter<N, Cost, Actual, HintFn, slot, Env, Limit>,
                   &rate_limiter::listener_>(*this, attach_counters(listener_, c), parts{});
  }
  /// Named `name` in its events (default "rate_limiter").
  rate_limiter named(std::string_view name) const {
    return rebuild<rate_limiter, &rate_limiter::name_>(*this, policy_name(name), parts{});
  }
  /// The clock and sleeper it uses. A new limiter, with limits of its own
  /// (full buckets): times of two clocks never meet in one limit.
  template <environment E>
  auto with_environment(E env) const {
    using result = rate_limiter<N, Cost, Actual, HintFn, Listener, E, Limit>;
    return result(from_parts, options_, cost_, actual_, hint_, listener_, std::move(env),
                  detail::make_rate_state<Limit>(options_, std::make_index_sequence<N>()), name_);
  }

  /// A reservation of the two-step API: test it, wait wait(), send, then
  /// settle(actual) once. Destroyed unsettled, its estimate stands; cancel()
  /// gives its slots back (the call never left). It shares the limits' state
  /// (and holds a copy of the environment), so it may outlive the limiter.
  class reservation {
   public:
    reservation(reservation&& other) noexcept(std::is_nothrow_move_constructible_v<Env>)
        : state_(std::move(other.state_)),
          env_(std::move(other.env_)),
          estimate_(other.estimate_),
          tickets_(other.tickets_),
          wait_(other.wait_),
          retry_after_(other.retry_after_),
          refused_by_(other.refused_by_) {}
    reservation& operator=(reservation&&) = delete;
    reservation(const reservation&) = delete;
    reservation& operator=(const reservation&) = delete;
    /// Unsettled, its estimate stands (and its caller is done waiting).
    ~reservation() {
      if (state_) detail::done_waiting(*state_, tickets_, N, true);
    }

    explicit operator bool() const noexcept { return refused_by_ == N; }
    bool admitted() const noexcept { return refused_by_ == N; }
    /// Admitted: how long to wait before sending.
    duration wait() const noexcept { return wait_; }
    /// Refused: when it would fit; empty when never (oversize).
    std::optional<duration> retry_after() const noexcept { return retry_after_; }
    /// Refused: the index of the limit that refused.
    std::size_t refused_by() const noexcept { return refused_by_; }
    /// True until settled or cancelled (false for a refusal).
    bool pending() const noexcept { return state_ != nullptr; }

    /// Corrects every limit's charge to `actual` (at most once; later calls do nothing).
    void settle(const costs& actual) noexcept {
      if (const std::shared_ptr<detail::rate_state<N, Limit>> s = std::move(state_)) {
        detail::done_waiting(*s, tickets_, N, true);
        const time_point now = detail::now_or_ticket_time(env_, tickets_, N);
        for (std::size_t k = 0; k < N; ++k) {
          s->limits[k].settle(tickets_[k], estimate_[k], actual[k], now);
        }
      }
    }
    /// settle() with one cost for every limit.
    void settle(std::uint64_t actual) noexcept { settle(detail::as_costs<N>(actual)); }
    /// The call never left: every slot is given back (at most once).
    void cancel() noexcept {
      if (const std::shared_ptr<detail::rate_state<N, Limit>> s = std::move(state_)) {
        detail::done_waiting(*s, tickets_, N, false);
        detail::refund_all(*s, tickets_, N, detail::now_or_ticket_time(env_, tickets_, N));
      }
    }

   private:
    friend class rate_limiter;
    reservation(const Env& env, std::size_t refused_by, std::optional<duration> retry_after)
        : env_(env), retry_after_(retry_after), refused_by_(refused_by) {}
    reservation(const std::shared_ptr<detail::rate_state<N, Limit>>& state, const Env& env,
                const costs& estimate, const std::array<rate_ticket, N>& tickets, duration wait)
        : state_(state), env_(env), estimate_(estimate), tickets_(tickets), wait_(wait) {}
    std::shared_ptr<detail::rate_state<N, Limit>>
        state_;  // empty once settled, cancelled or refused
    [[no_unique_address]] Env env_;
    costs estimate_{};
    std::array<rate_ticket, N> tickets_{};
    duration wait_{};
    std::optional<duration> retry_after_{};
    std::size_t refused_by_ = N;
  };

  /// Reserves `estimate` on every limit (all or none) if the slots come
  /// within `max_wait`; never blocks.
  [[gnu::always_inline]] reservation reserve(const costs& estimate,
                                             duration max_wait = duration::zero()) const {
    const time_point now = env_.now();
    std::array<rate_ticket, N> tickets;
    duration wait = duration::zero();
    for (std::size_t k = 0; k < N; ++k) {
      const rate_decision d = state_->limits[k].try_acquire(estimate[k], now, max_wait);
      if (!d) [[unlikely]]
        return refused(tickets, k, d.retry_after);
      tickets[k] = d.ticket;
      if (d.wait > wait) wait = d.wait;
    }
    // Built here, in place: assigned to a reservation built before, the
    // state's pointer would first test and release the one it held.
    return reservation(state_, env_, estimate, tickets, wait);
  }
  /// reserve() with one cost for every limit.
  [[gnu::always_inline]] reservation reserve(std::uint64_t estimate,
                                             duration max_wait = duration::zero()) const {
    return reserve(detail::as_costs<N>(estimate), max_wait);
  }

  template <class R, class Next>
  outcome<R> run(Next&& next, context& ctx) const {
    const costs c = call_or(
        buckets_, [&] { return detail::as_costs<N>(detail::invoke(cost_, std::as_const(ctx))); });
    duration max_wait = max_wait_;
    if (max_wait > duration::zero() && ctx.has_deadline()) {
      const duration left = ctx.remaining();
      if (left < max_wait) max_wait = left;
    }
    const time_point now = env_.now();
    std::array<rate_ticket, N> tickets;
    duration wait = duration::zero();
    for (std::size_t k = 0; k < N; ++k) {
      const rate_decision d = state_->limits[k].try_acquire(c[k], now, max_wait);
      if (!d) [[unlikely]]
        return refuse<R>(tickets, k, c[k], d.retry_after, ctx);
      tickets[k] = d.ticket;
      if (d.wait > wait) wait = d.wait;
    }
    if (wait > duration::zero()) [[unlikely]] {
      // Not ctx itself: passed out of line, the context would have to be built in full.
      const slot_wait w =
          wait_for_slots(tickets, c, saturating_add(now, max_wait), wait, ctx.stop_token());
      if (w.refused_by < N) {
        if constexpr (observes<Listener, rate_limit_rejected>) {
          const auto refused = [&] {
            return rate_limit_rejected{w.refused_by, c[w.refused_by], w.retry_after,
                                       source_of(name_, ctx)};
          };
          report<rate_limit_rejected>(listener_, refused);
        }
        return outcome<R>::from_keel(errc::rate_limited, w.retry_after);
      }
      if (w.cancelled) return outcome<R>::from_keel(errc::cancelled);
      tickets = w.tickets;
    }
    if (ctx.stop_requested()) [[unlikely]] {
      refund_all(tickets, N);
      return outcome<R>::from_keel(errc::cancelled);
    }
    outcome<R> o = next(ctx);
    if constexpr (std::is_same_v<Actual, no_actual_cost> && std::is_same_v<HintFn, failure_hint>) {
      if (!o.has_value()) [[unlikely]]
        after_call(o, tickets, c, ctx);
    } else {
      after_call(o, tickets, c, ctx);
    }
    return o;
  }

  /// The limits' decision cores, to inspect or drive by hand.
  const Limit& limit(std::size_t k = 0) const noexcept { return state_->limits[k]; }
  Limit& limit(std::size_t k = 0) noexcept { return state_->limits[k]; }
  const std::array<options_type, N>& options() const noexcept { return options_; }
  std::string_view name() const noexcept { return name_; }

 private:
  static constexpr costs bucket_costs_of(const std::array<options_type, N>& o) noexcept {
    costs c{};
    for (std::size_t k = 0; k < N; ++k) c[k] = o[k].bucket();
    return c;
  }

  // reserve() refused by limit k: the slots taken before it are given back.
  KEEL_DETAIL_NOINLINE reservation refused(const std::array<rate_ticket, N>& tickets, std::size_t k,
                                           std::optional<duration> retry_after) const {
    refund_all(tickets, k);
    detail::done_waiting(*state_, tickets, k, false);
    return reservation(env_, k, retry_after);
  }

  // Gives back the slots of limits [0, count).
  void refund_all(const std::array<rate_ticket, N>& tickets, std::size_t count) const noexcept {
    if (count != 0) {
      detail::refund_all(*state_, tickets, count, detail::now_or_ticket_time(env_, tickets, count));
    }
  }

  struct slot_wait {
    std::array<rate_ticket, N> tickets{};  // the slots the call sends in
    bool cancelled = false;                // a stop during the wait
    std::size_t refused_by = N;            // < N: that limit has no slot by `last`
    std::optional<duration> retry_after{};
  };

  // Sleeps until the slots are due. A pause that began meanwhile (a
  // Retry-After another call saw) makes them stale: they are given back and
  // asked for again from the pause's end, all or none, if they come by
  // `last`; else (or on a stop) the call is given back its slots. Takes
  // copies, not references into the call's context: those would make the hot
  // path build the context in full.
  // NOLINTBEGIN(performance-unnecessary-value-param)
  KEEL_DETAIL_NOINLINE slot_wait wait_for_slots(std::array<rate_ticket, N> tickets, costs c,
                                                time_point last, duration wait,
                                                std::stop_token stop) const {
    // NOLINTEND(performance-unnecessary-value-param)
    slot_wait w;
    // A clock or sleeper that throws mid-wait: the call is done waiting all
    // the same (else the count keeps every later sending time alive).
    struct done_on_throw {
      detail::rate_state<N, Limit>& s;
      const std::array<rate_ticket, N>& t;
      bool armed = true;
      ~done_on_throw() {
        if (armed) detail::done_waiting(s, t, N, false);
      }
    } guard{*state_, tickets};
    for (;;) {
      if (!env_.sleep_for(wait, stop)) {
        guard.armed = false;
        detail::done_waiting(*state_, tickets, N, false);
        refund_all(tickets, N);
        w.cancelled = true;
        return w;
      }
      const time_point now = env_.now();
      bool paused = false;
      for (std::size_t i = 0; i < N; ++i) paused = paused || state_->limits[i].paused_until() > now;
      guard.armed = false;
      detail::done_waiting(*state_, tickets, N, !paused);  // it sends now, or asks again
      if (!paused) {
        w.tickets = tickets;
        return w;
      }
      refund_all(tickets, N);
      const duration left = last > now ? last - now : duration::zero();
      wait = duration::zero();
      for (std::size_t k = 0; k < N; ++k) {
        const rate_decision d = state_->limits[k].try_acquire(c[k], now, left);
        if (!d) {
          detail::done_waiting(*state_, tickets, k, false);
          refund_all(tickets, k);
          w.refused_by = k;
          w.retry_after = d.retry_after;
          return w;
        }
        tickets[k] = d.ticket;
        if (d.wait > wait) wait = d.wait;
      }
      guard.armed = true;
    }
  }

  template <class R>
  KEEL_DETAIL_NOINLINE outcome<R> refuse(const std::array<rate_ticket, N>& tickets, std::size_t k,
                                         std::uint64_t cost, std::optional<duration> retry_after,
                                         context& ctx) const {
    refund_all(tickets, k);
    detail::done_waiting(*state_, tickets, k, false);
    if constexpr (observes<Listener, rate_limit_rejected>) {
      report<rate_limit_rejected>(listener_, [&] {
        return rate_limit_rejected{k, cost, retry_after, source_of(name_, ctx)};
      });
    }
    return outcome<R>::from_keel(errc::rate_limited, retry_after);
  }

  template <class R>
  KEEL_DETAIL_NOINLINE void after_call(const outcome<R>& o,
                                       const std::array<rate_ticket, N>& tickets,
                                       const costs& estimate, context& ctx) const {
    if (!o.has_value() && is_rejection(o)) {  // a policy inside refused: it never left
      refund_all(tickets, N);
      return;
    }
    const std::optional<costs> actual =
        call_or(std::optional<costs>(), [&]() -> std::optional<costs> {
          auto a = detail::invoke(actual_, o);
          if (!a) return std::nullopt;
          return detail::as_costs<N>(*a);
        });
    const std::array<hint, N> hints = call_or(
        std::array<hint, N>{}, [&] { return detail::as_hints<N>(detail::invoke(hint_, o)); });
    bool any_hint = false;
    for (const hint& h : hints) any_hint = any_hint || h.retry_after || h.quota;
    if (!actual && !any_hint) return;
    const time_point now = env_.now();
    for (std::size_t k = 0; k < N; ++k) {
      Limit& l = state_->limits[k];
      if (actual) l.settle(tickets[k], estimate[k], (*actual)[k], now);
      if (hints[k].quota) l.tighten(hints[k].quota->remaining, now);
      if (hints[k].retry_after && l.pause(*hints[k].retry_after, now)) {
        if constexpr (observes<Listener, rate_limit_paused>) {
          const duration ra = *hints[k].retry_after;
          const duration cut = ra > l.options().max_pause ? l.options().max_pause
                               : ra < duration::zero()    ? duration::zero()
                                                          : ra;
          const auto paused = [&] { return rate_limit_paused{k, cut, source_of(name_, ctx)}; };
          report<rate_limit_paused>(listener_, paused);
        }
      }
    }
  }

  std::array<options_type, N> options_;
  duration max_wait_;
  costs buckets_;  // what a call costs when the cost function throws
  [[no_unique_address]] Cost cost_{};
  [[no_unique_address]] Actual actual_{};
  [[no_unique_address]] HintFn hint_{};
  [[no_unique_address]] Listener listener_{};
  [[no_unique_address]] Env env_{};
  std::shared_ptr<detail::rate_state<N, Limit>> state_;  // copies share the limits
  policy_name name_{"rate_limiter"};

  using parts = keel::parts<&rate_limiter::options_, &rate_limiter::cost_, &rate_limiter::actual_,
                            &rate_limiter::hint_, &rate_limiter::listener_, &rate_limiter::env_,
                            &rate_limiter::state_, &rate_limiter::name_>;
};

// clang-format off
rate_limiter() -> rate_limiter<1>;
rate_limiter(rate_limit_options) -> rate_limiter<1>;
template <std::size_t N>
rate_limiter(std::array<rate_limit_options, N>) -> rate_limiter<N>;
// clang-format on

/// The decision core a limit's options make: gcra_limit for
/// rate_limit_options (sliding_window_limit.hpp adds its own).
template <class Options>
struct limit_for;
template <>
struct limit_for<rate_limit_options> {
  using type = gcra_limit;
};

// clang-format off
/// Several limits that must all admit a call, all of one kind:
/// `keel::rate_limits(rpm, tpm)` is a keel::rate_limiter<2>.
template <class O, class... More>
  requires((std::same_as<O, More> && ...) && requires { typename limit_for<O>::type; })
auto rate_limits(const O& first, const More&... more) {
  // clang-format on
  constexpr std::size_t n = 1 + sizeof...(More);
  using limiter = rate_limiter<n, context_cost, no_actual_cost, failure_hint, no_listener,
                               default_environment, typename limit_for<O>::type>;
  return limiter(std::array<O, n>{first, more...});
}

}  // namespace keel

#endif  // KEEL_ADMISSION_RATE_LIMITER_HPP_INCLUDED

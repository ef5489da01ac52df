// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CIRCUIT_BREAKER_DETAIL_WINDOWS_HPP_INCLUDED
#define KEEL_CIRCUIT_BREAKER_DETAIL_WINDOWS_HPP_INCLUDED

// The memory of a circuit breaker's trip rules, and its rejection counter.
// Each is lock-free, O(1) per call, allocates only when configured, and keeps
// its memory bounded by its configuration; what every call writes is striped
// per thread, so that threads sharing a breaker share no written cache line.
// They stay behind a small API (configure / record / counts / reset), which
// is all the state machine sees.
//
// Widths: every cursor, and every count that grows with the calls, is
// 64-bit, and every index is reduced from the whole 64-bit cursor: nothing
// wraps or jumps in a process's lifetime (2^64 events take 585 years at one
// per nanosecond). The count window's counts are bounded by its size (at
// most 2^24) and stay 32-bit.
//
// Memory orders: all relaxed, except a time-window slot's bucket number
// (acquire / release). Why that is enough:
// - A count is changed by read-modify-writes (fetch_add, fetch_or,
//   fetch_and, exchange, compare-exchange), by the one thread that owns it
//   (owned_counter), or zeroed when a time-window slot is reused (below).
//   The read-modify-writes of one atomic are totally ordered and each reads
//   the value the one before wrote, in any memory order: no update is lost.
//   So every count is exact at rest, that is once the calls it should see
//   happen before the read (their threads joined, say).
// - No count publishes other data, so a reader needs no happens-before with
//   the writers. A reader running with calls sees each count between its
//   values before and after the calls in flight, and several counts are not
//   one snapshot: a window may show a call a moment before its failure.
// - The one hand-over of data is a time-window slot reused for a newer
//   bucket: the claiming thread marks it `clearing`, zeroes its counts, and
//   publishes the new bucket number with a release store; recorders and
//   readers load the bucket number with acquire, so they see the zeroes, never
//   the old bucket's counts under the new number.

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <thread>

#include "keel/core/time.hpp"
#include "keel/detail/algorithm.hpp"
#include "keel/detail/config.hpp"
#include "keel/detail/thread_identity.hpp"

namespace keel::detail {

/// A test-only seam, declared a friend of every structure here and never
/// defined by keel: keel's tests define it to start a cursor, or preload a
/// count, next to a wrap point (2^32, 2^64) that real calls would need days
/// or centuries to reach.
struct window_test_access;

/// a % d for every 64-bit a, d in [1, 2^32), without a division: the count
/// window runs it per recorded call. Barrett reduction by m = (2^64 - 1) / d:
/// a m / 2^64 lies in (a / d - 1, a / d], so q = floor(a m / 2^64) is a / d or
/// one less, and a - q d lies in [0, 2d): one conditional subtraction.
class fast_mod {
 public:
  fast_mod() = default;
  explicit fast_mod(std::uint32_t d) noexcept : m_(~std::uint64_t{0} / d), d_(d) {}

  std::uint64_t operator()(std::uint64_t a) const noexcept {
    __extension__ using u128 = unsigned __int128;
    const auto q = static_cast<std::uint64_t>((static_cast<u128>(a) * m_) >> 64);
    const std::uint64_t r = a - q * d_;  // q d <= a: no wrap
    return r >= d_ ? r - d_ : r;
  }

 private:
  std::uint64_t m_ = ~std::uint64_t{0};
  std::uint64_t d_ = 1;
};

/// a + b, clamped at 2^64 - 1.
constexpr std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept {
  std::uint64_t r = 0;
  return __builtin_add_overflow(a, b, &r) ? std::numeric_limits<std::uint64_t>::max() : r;
}

/// What a window holds right now.
struct window_counts {
  std::uint64_t calls = 0;
  std::uint64_t failures = 0;
  std::uint64_t slow = 0;
};

/// failures_in_period: the time stamps of the last threshold - 1 failures. A
/// new failure swaps out the stamp of the failure threshold - 1 before it,
/// which is the oldest of the last `threshold`: the rule fires when that one
/// is younger than the period. One fetch_add and one exchange per failure.
///
/// The 64-bit cursor counts failures; failure c takes slot c % (threshold -
/// 1), so the ring turns in order for 2^64 failures. (There the cursor would
/// wrap and, unless threshold - 1 divides 2^64, the order jump once: 585 years
/// at one failure per nanosecond.) At rest the stamps are the last threshold
/// - 1 failures' (each exchange is one read-modify-write of its slot);
/// failures racing each other may each see the other's stamp or the older
/// one, as in some order of the two.
class failure_stamps {
 public:
  friend struct window_test_access;

  static constexpr std::int64_t empty = min_ns;

  void configure(int threshold, duration period) {
    slots_ = static_cast<std::uint32_t>(threshold - 1);
    period_ = period;
    mod_ = fast_mod(slots_ == 0 ? 1 : slots_);
    if (slots_ > 0) {
      stamps_ = std::make_unique<std::atomic<std::int64_t>[]>(slots_);
      reset();
    }
  }

  /// Records a failure at `now`; true when `threshold` failures lie within the period.
  bool record(time_point now) noexcept {
    if (slots_ == 0) return true;
    const std::uint64_t c = cursor_.fetch_add(1, std::memory_order_relaxed);
    const std::int64_t old =
        stamps_[mod_(c)].exchange(now.time_since_epoch().count(), std::memory_order_relaxed);
    return old != empty && within(old, now);
  }

  /// Failures remembered that lie within the period ending at `now` (at most threshold - 1).
  std::uint32_t count(time_point now) const noexcept {
    std::uint32_t n = 0;
    for (std::uint32_t i = 0; i < slots_; ++i) {
      const std::int64_t s = stamps_[i].load(std::memory_order_relaxed);
      if (s != empty && within(s, now)) ++n;
    }
    return n;
  }

  void reset() noexcept {
    for (std::uint32_t i = 0; i < slots_; ++i) stamps_[i].store(empty, std::memory_order_relaxed);
  }

 private:
  // A failure at s is inside the period (now - period, now]: it expires at s + period exactly.
  bool within(std::int64_t s, time_point now) const noexcept {
    return time_until(time_point(duration(s)), now) < period_;
  }

  std::unique_ptr<std::atomic<std::int64_t>[]> stamps_;
  std::atomic<std::uint64_t> cursor_{0};
  std::uint32_t slots_ = 0;
  fast_mod mod_{};
  duration period_{};
};

/// Outcomes a count window holds, from its cursor `pos` and its `start`, read
/// in that order while calls and a reset may run: a reset in between can
/// store a start past `pos` (other calls recorded meanwhile), and that window
/// was just emptied. Never wraps.
constexpr std::uint64_t recorded_between(std::uint64_t start, std::uint64_t pos) noexcept {
  return pos > start ? pos - start : 0;
}

/// recorded_between(start, pos) >= n, in one compare (the closed path asks it
/// on every success): a start past `pos` holds nothing.
constexpr bool holds_at_least(std::uint64_t start, std::uint64_t pos, std::uint64_t n) noexcept {
  return pos >= start + n;
}

/// failure_ratio_count: the last `size` outcomes as two rings of bits (failed,
/// slow) and their population counts. A success over a success is one
/// fetch_add on the cursor and one load: the bit is only written when it
/// changes. A success into a full window of successes writes nothing at all:
/// turning a ring of zeros leaves it as it was, so a healthy dependency's
/// calls share no written cache line.
///
/// The 64-bit cursor `pos_` counts recorded outcomes; outcome p takes bit
/// p % size, so the ring turns in order for 2^64 records. (There, 585 years at
/// one record per nanosecond, the cursor would wrap: the window would read as
/// empty until its next reset, and the bit order jump once unless size
/// divides 2^64.) Exact at rest: a bit's count changes only with the
/// read-modify-write that flips the bit, so each count is the population of
/// its ring, and calls = min(pos - start, size). A record delayed by a whole
/// lap can still overwrite the newer outcome of its bit (a ring holds one
/// outcome per bit); the counts then follow the bits.
class count_window {
 public:
  friend struct window_test_access;

  void configure(int size, bool track_slow) {
    size_ = static_cast<std::uint32_t>(size);
    mod_ = fast_mod(size_);
    const std::size_t words = (size_ + 63) / 64;
    failed_ = std::make_unique<std::atomic<std::uint64_t>[]>(words);
    if (track_slow) slow_ = std::make_unique<std::atomic<std::uint64_t>[]>(words);
    words_ = words;
  }

  void record(bool failed, bool slow) noexcept {
    if (!failed && !slow && full_of_successes()) return;
    const std::uint64_t p = pos_.fetch_add(1, std::memory_order_relaxed);
    const auto i = static_cast<std::uint32_t>(mod_(p));  // < size_
    set(failed_.get(), i, failed, failures_);
    if (slow_) set(slow_.get(), i, slow, slow_count_);
  }

  /// True when the window is full and holds only successes: recording a
  /// success (neither failed nor slow) then changes nothing. Reads the cursor
  /// before the counts: a window seen full stays full until a reset, which a
  /// record may race with anyway.
  bool full_of_successes() const noexcept {
    const std::uint64_t pos = pos_.load(std::memory_order_relaxed);
    return holds_at_least(start_.load(std::memory_order_relaxed), pos, size_) &&
           failures_.load(std::memory_order_relaxed) == 0 &&
           slow_count_.load(std::memory_order_relaxed) == 0;
  }

  window_counts counts() const noexcept {
    return {detail::min<std::uint64_t>(recorded(), size_), clamp(failures_), clamp(slow_count_)};
  }

  /// Empties the window. Bits are cleared by exchange and the counts lowered by
  /// what was cleared, so a record racing with the reset cannot skew them.
  void reset() noexcept {
    start_.store(pos_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    clear(failed_.get(), failures_);
    if (slow_) clear(slow_.get(), slow_count_);
  }

 private:
  std::uint64_t recorded() const noexcept {
    const std::uint64_t pos = pos_.load(std::memory_order_relaxed);
    return recorded_between(start_.load(std::memory_order_relaxed), pos);
  }

  // The counts are at most size_ <= 2^24 (validate's bound on window_size):
  // 32 bits hold them.
  static std::uint64_t clamp(const std::atomic<std::int32_t>& c) noexcept {
    // Transiently negative when a clear overtakes the matching set's increment.
    return static_cast<std::uint64_t>(detail::max(0, c.load(std::memory_order_relaxed)));
  }

  static void set(std::atomic<std::uint64_t>* words, std::uint32_t i, bool value,
                  std::atomic<std::int32_t>& count) noexcept {
    std::atomic<std::uint64_t>& w = words[i >> 6];
    const std::uint64_t mask = std::uint64_t{1} << (i & 63);
    const bool is_set = (w.load(std::memory_order_relaxed) & mask) != 0;
    if (is_set == value) return;  // the common case: nothing changes, nothing is written
    if (value) {
      if ((w.fetch_or(mask, std::memory_order_relaxed) & mask) == 0)
        count.fetch_add(1, std::memory_order_relaxed);
    } else {
      if ((w.fetch_and(~mask, std::memory_order_relaxed) & mask) != 0)
        count.fetch_sub(1, std::memory_order_relaxed);
    }
  }

  void clear(std::atomic<std::uint64_t>* words, std::atomic<std::int32_t>& count) noexcept {
    for (std::size_t k = 0; k < words_; ++k) {
      const std::uint64_t old = words[k].exchange(0, std::memory_order_relaxed);
      if (old != 0) count.fetch_sub(std::popcount(old), std::memory_order_relaxed);
    }
  }

  // Read by every call and written only by configure: kept off the line of
  // the cursor, which calls write while the window holds a failure, so that a
  // second thread's cursor update does not also evict what the first one
  // needs to read.
  std::unique_ptr<std::atomic<std::uint64_t>[]> failed_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> slow_;
  std::size_t words_ = 0;
  std::uint32_t size_ = 1;
  fast_mod mod_{};
  alignas(64) std::atomic<std::uint64_t> pos_{0};
  std::atomic<std::uint64_t> start_{0};
  // Written when a bit changes only; read by every success.
  alignas(64) std::atomic<std::int32_t> failures_{0};
  std::atomic<std::int32_t> slow_count_{0};
};

/// A counter that many threads add to and few read, exact and without a
/// locked instruction on the common path: the first thread to add through a
/// stripe owns it and adds with a plain load and store, which no other thread
/// writes; a thread whose stripe another owns adds to a shared atomic. A
/// stripe stays owned after its thread ends (its count stays in the total).
///
/// The owner is a thread_identity id, unique among live threads in the whole
/// process. A thread started after the owner ended may get the same address
/// for its thread_local, hence the same id, and go on adding to that stripe:
/// still one writer at a time, since memory passes from an ended thread to a
/// new one only through the thread library's or the allocator's
/// synchronization, which orders the old owner's last store before the new
/// one's first load. So the owner's load reads the stripe's latest value, and
/// its store loses nothing. Exact at rest; a concurrent total() is between
/// the adds done before it began and those begun before it ended.
class owned_counter {
 public:
  friend struct window_test_access;

  void configure() {
    mask_ = stripe_count() - 1;
    stripes_ = std::make_unique<stripe[]>(mask_ + 1);
  }

  void add() noexcept {
    const thread_identity& me = this_thread_identity();
    stripe& s = stripes_[me.spread & mask_];
    if (owns(s.owner, me.id)) {
      add_as_owner(s.count);
    } else {
      shared_.fetch_add(1, std::memory_order_relaxed);
    }
  }

  /// The sum: exact once the adds it should see happened before this call.
  std::uint64_t total() const noexcept {
    std::uint64_t sum = shared_.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i <= mask_; ++i)
      sum = saturating_add(sum, stripes_[i].count.load(std::memory_order_relaxed));
    return sum;
  }

 private:
  struct alignas(64) stripe {
    std::atomic<std::uint64_t> owner{0};  // a thread_identity id; 0: nobody yet
    std::atomic<std::uint64_t> count{0};
  };
  std::unique_ptr<stripe[]> stripes_;
  std::size_t mask_ = 0;
  alignas(64) std::atomic<std::uint64_t> shared_{0};
};

/// failure_ratio_time: `buckets` buckets of period / buckets each. Bucket k
/// covers [k len, (k + 1) len) of the clock and lives in slot k % buckets; the
/// window at time t holds the buckets k with k > t / len - buckets, so what
/// was recorded in [s, s + len) expires exactly at s + buckets len (s +
/// period when buckets divides it). Reusing a slot
/// for a newer bucket is the only step that waits (for the one thread that
/// clears it), once per bucket length.
///
/// Every call writes its bucket's counters, so the ring is striped: each
/// thread writes the rings of its own stripe (one stripe per hardware thread,
/// at most 8; see this_thread_stripe), and a decision sums the rings. Sums
/// do not depend on order, so the window holds exactly what one ring would;
/// two threads on different stripes never write the same cache line.
///
/// A stripe has two rings. The first thread to record through a stripe owns
/// it (as in owned_counter) and is the only one to claim or count in its
/// owned ring: it counts with a plain load and store, no locked instruction.
/// Any other thread on that stripe counts in its shared ring, with
/// read-modify-writes. (reset() only marks slots unused; the counts of a slot
/// are zeroed by whoever claims it, in the owned ring its owner.)
///
/// A slot's counts and their sums are 64-bit: no call rate can wrap them
/// within a window (the sums saturate all the same). Exact at rest: every
/// count of a shared ring is a read-modify-write after the acquire load that
/// found the bucket, and every count of an owned ring has one writer. Only a
/// record delayed by the whole period, past the reuse of its slot for a newer
/// bucket by another thread, would land in that newer bucket.
class time_window {
 public:
  friend struct window_test_access;

  void configure(duration period, int buckets) {
    n_ = static_cast<std::uint32_t>(buckets);
    len_ = period.count() / buckets;
    stripes_ = stripe_count();
    current_.store(0, std::memory_order_relaxed);
    stride_ = n_ + (n_ & 1);  // the same bucket of two rings lies >= 64 bytes apart
    slots_ = std::make_unique<slot[]>(2 * std::size_t{stripes_} * stride_);
  }

  /// Records a success: when the calling thread owns its stripe and the
  /// bucket is the last record's, a few loads and one plain store, else
  /// record(now, false, false). Out of line: inlined, it grew the closed path
  /// of every breaker (whatever its rule) and moved GCC's inlining around it.
  KEEL_DETAIL_NOINLINE void record_success(time_point now) noexcept {
    const std::int64_t t = now.time_since_epoch().count();
    const thread_identity& me = this_thread_identity();
    const std::size_t stripe = me.stripe & (stripes_ - 1);
    if (owners_[stripe].load(std::memory_order_relaxed) == me.id) {
      slot& s = slots_[stripe * stride_ + current_.load(std::memory_order_relaxed)];
      const std::int64_t b = s.bucket.load(std::memory_order_acquire);
      // As find(), for t < 0 too: no bucket b >= 0 holds it.
      if (b >= 0 && t >= b * len_ && t - b * len_ < len_) [[likely]] {
        add_as_owner(s.calls);
        return;
      }
    }
    record(now, false, false);
  }

  // Out of line: record_success's tail, and the failure path's.
  KEEL_DETAIL_NOINLINE void record(time_point now, bool failed, bool slow) noexcept {
    const std::int64_t t = detail::max(now.time_since_epoch().count(), std::int64_t{0});
    unsigned& mine = this_thread_stripe();
    const std::size_t stripe = mine & (stripes_ - 1);
    if (owns(owners_[stripe], this_thread_identity().id)) [[likely]] {
      slot* s = find(stripe, t);
      if (s == nullptr) return;  // this result is older than the window: it has expired
      add_as_owner(s->calls);
      if (failed) add_as_owner(s->failures);
      if (slow) add_as_owner(s->slow);
      return;
    }
    slot* s = find(stripes_ + stripe, t);
    if (s == nullptr) return;
    // A CAS that fails means another thread wrote this ring meanwhile: count
    // with fetch_add and move to the next stripe for later calls. Either
    // way, a stripe nobody owns yet is taken by the next call.
    std::uint64_t calls = s->calls.load(std::memory_order_relaxed);
    if (!s->calls.compare_exchange_strong(calls, calls + 1, std::memory_order_relaxed)) {
      s->calls.fetch_add(1, std::memory_order_relaxed);
      mine = next_stripe_hint(mine);
    }
    for (unsigned i = 0; i < stripes_; ++i) {
      if (owners_[i].load(std::memory_order_relaxed) == 0) {
        mine = 0x100u | i;  // a hint (see next_stripe_hint) whose stripe is i
        break;
      }
    }
    if (failed) s->failures.fetch_add(1, std::memory_order_relaxed);
    if (slow) s->slow.fetch_add(1, std::memory_order_relaxed);
  }

  /// The window ending at `now`: O(buckets x stripes), used only to decide a
  /// trip and for metrics.
  window_counts counts(time_point now) const noexcept {
    const std::int64_t k = bucket_of(now);
    window_counts c;
    for (std::size_t i = 0, end = slot_count(); i < end; ++i) {
      const slot& s = slots_[i];
      const std::int64_t b = s.bucket.load(std::memory_order_acquire);
      // b < 0: unused, or being cleared (its counts are stale).
      if (b >= 0 && b > k - static_cast<std::int64_t>(n_) && b <= k) {
        c.calls = saturating_add(c.calls, s.calls.load(std::memory_order_relaxed));
        c.failures = saturating_add(c.failures, s.failures.load(std::memory_order_relaxed));
        c.slow = saturating_add(c.slow, s.slow.load(std::memory_order_relaxed));
      }
    }
    return c;
  }

  /// Forgets every bucket (a bucket being cleared by a recorder is left to it).
  void reset() noexcept {
    for (std::size_t i = 0, end = slot_count(); i < end; ++i) {
      std::int64_t current = slots_[i].bucket.load(std::memory_order_relaxed);
      while (current != clearing &&
             !slots_[i].bucket.compare_exchange_weak(current, unused, std::memory_order_relaxed)) {
      }
    }
  }

 private:
  static constexpr std::int64_t unused = -1;
  static constexpr std::int64_t clearing = -2;

  // 32 bytes, so that a slot never straddles two cache lines. The padding
  // slot of an odd stride is never used and stays `unused`.
  struct alignas(32) slot {
    std::atomic<std::int64_t> bucket{unused};
    std::atomic<std::uint64_t> calls{0};
    std::atomic<std::uint64_t> failures{0};
    std::atomic<std::uint64_t> slow{0};
  };
  static_assert(sizeof(slot) == 32);

  // Every ring: the owned ring of each stripe, then the shared one of each.
  std::size_t slot_count() const noexcept { return 2 * std::size_t{stripes_} * stride_; }

  std::int64_t bucket_of(time_point now) const noexcept {
    const std::int64_t t = now.time_since_epoch().count();
    return t < 0 ? 0 : t / len_;
  }

  // The slot of ring `ring` holding the bucket of time t >= 0, or null when
  // that bucket has expired. Usually the bucket of the last record: found
  // without a division (two 64-bit divisions cost more than the rest of the
  // call together).
  slot* find(std::size_t ring, std::int64_t t) noexcept {
    slot* s = &slots_[ring * stride_ + current_.load(std::memory_order_relaxed)];
    const std::int64_t b = s->bucket.load(std::memory_order_acquire);  // < 0: unused, clearing
    // b * len_ <= the time b was computed from: no overflow.
    if (b < 0 || t < b * len_ || t - b * len_ >= len_) return claim(ring, t / len_);
    return s;
  }

  // The slot of bucket k in ring `ring`, holding k once this returns (cleared
  // if it held an older bucket); null when it already holds a newer one.
  slot* claim(std::size_t ring, std::int64_t k) noexcept {
    const auto index = static_cast<std::uint32_t>(k % n_);  // k >= 0: exact, < n_
    slot& s = slots_[ring * stride_ + index];
    for (;;) {
      std::int64_t current = s.bucket.load(std::memory_order_acquire);
      if (current == k) break;
      if (current == clearing) {
        std::this_thread::yield();
        continue;
      }
      if (current > k) return nullptr;
      if (s.bucket.compare_exchange_weak(current, clearing, std::memory_order_acquire)) {
        s.calls.store(0, std::memory_order_relaxed);
        s.failures.store(0, std::memory_order_relaxed);
        s.slow.store(0, std::memory_order_relaxed);
        s.bucket.store(k, std::memory_order_release);
        break;
      }
    }
    current_.store(index, std::memory_order_relaxed);
    return &s;
  }

  std::unique_ptr<slot[]> slots_;
  std::int64_t len_ = 1;
  std::uint32_t n_ = 1;
  std::uint32_t stride_ = 1;
  std::size_t stripes_ = 1;
  // The slot index of the newest bucket recorded: read by every record,
  // written once per bucket length.
  std::atomic<std::uint32_t> current_{0};
  // Who owns each stripe's owned ring (a thread_identity id; 0: nobody yet):
  // written once per stripe, read by every record.
  std::atomic<std::uint64_t> owners_[max_stripes] = {};
};

}  // namespace keel::detail

#endif  // KEEL_CIRCUIT_BREAKER_DETAIL_WINDOWS_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_ADMISSION_BULKHEAD_CORE_HPP_INCLUDED
#define KEEL_ADMISSION_BULKHEAD_CORE_HPP_INCLUDED

#include <atomic>
#include <cassert>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string_view>
#include <utility>

#include "keel/core/config_error.hpp"
#include "keel/core/environment.hpp"
#include "keel/core/inspect.hpp"
#include "keel/core/time.hpp"
#include "keel/detail/config.hpp"

namespace keel {

/// Which waiter a freed permit goes to.
enum class queue_order : unsigned char {
  fifo,  ///< the one that has waited longest (fair; resilience4j's fair semaphore)
  lifo,  ///< the newest (the freshest caller, whose own caller is likeliest still waiting)
};

/// The enumerator's name ("fifo"); "unknown" otherwise.
constexpr std::string_view to_string_view(queue_order o) noexcept {
  switch (o) {
    case queue_order::fifo:
      return "fifo";
    case queue_order::lifo:
      return "lifo";
  }
  return "unknown";
}

/// max_queue without a bound (a waiter is still bounded by max_wait).
inline constexpr std::uint32_t unbounded_queue = std::numeric_limits<std::uint32_t>::max();

/// Options of keel::bulkhead (and bulkhead_core). A call waits for a permit
/// only when both max_queue and max_wait are above zero.
struct bulkhead_options {
  /// Calls that may run at once (permits); >= 1. Default 25 (resilience4j).
  std::uint32_t max_concurrent = 25;
  /// Calls that may wait for a permit at once; 0 (default): none waits.
  /// keel::unbounded_queue: no bound but max_wait.
  std::uint32_t max_queue = 0;
  /// How long a call may wait for a permit, also bounded by its context's
  /// deadline; 0 (default): never waits; duration::max(): until granted,
  /// its deadline or its stop request.
  duration max_wait = duration::zero();
  /// Which waiter a freed permit goes to; default FIFO.
  queue_order order = queue_order::fifo;
  /// Retry-after hint put on every rejection; none by default (a bulkhead
  /// cannot know when a permit will be free).
  std::optional<duration> retry_after = std::nullopt;

  constexpr validation_result validate() const {
    if (max_concurrent == 0) {
      return config_problem{"bulkhead_options.max_concurrent", "must be >= 1"};
    }
    if (max_wait < duration::zero()) {
      return config_problem{"bulkhead_options.max_wait", "must be >= 0"};
    }
    if (max_queue > 0 && max_wait == duration::zero()) {
      return config_problem{"bulkhead_options.max_wait",
                            "must be > 0 when max_queue > 0 (duration::max() for no bound)"};
    }
    if (max_wait > duration::zero() && max_queue == 0) {
      return config_problem{"bulkhead_options.max_queue",
                            "must be > 0 when max_wait > 0 (keel::unbounded_queue for no bound)"};
    }
    if (retry_after && *retry_after < duration::zero()) {
      return config_problem{"bulkhead_options.retry_after", "must be >= 0"};
    }
    return std::nullopt;
  }
};

/// How a call's request to wait for a permit began (bulkhead_core::enqueue).
enum class wait_start : unsigned char {
  granted,     ///< a permit was free and nobody waited: held at once
  queued,      ///< the call waits in the queue
  queue_full,  ///< max_queue calls already wait: refused
  no_time,     ///< its wait would end before it began (deadline passed): refused
};

/// How a wait ended (bulkhead_core::finish_wait).
enum class wait_end : unsigned char {
  waiting,    ///< not yet: neither granted, nor at its end, nor cancelled
  granted,    ///< a permit was handed to the waiter: held now
  expired,    ///< its wait ran out before a permit came
  cancelled,  ///< the caller stopped waiting (a permit granted meanwhile was given back)
};

template <clock Clock>
class bulkhead_core;

/// One call waiting for a permit of a bulkhead_core: a node the core links
/// into its queue (no allocation). Lives on the waiting caller's stack; it
/// must not be destroyed while queued (finish_wait takes it out). Neither
/// copyable nor movable.
class bulkhead_waiter {
 public:
  /// `wake` (optional) is stopped when the waiter is granted or expired by
  /// another thread: give its token to the sleeper the caller waits in.
  explicit bulkhead_waiter(std::stop_source* wake = nullptr) noexcept : wake_(wake) {}
  bulkhead_waiter(const bulkhead_waiter&) = delete;
  bulkhead_waiter& operator=(const bulkhead_waiter&) = delete;
  ~bulkhead_waiter() { assert(state_.load(std::memory_order_relaxed) != queued_state); }

  /// True once a permit was handed to this waiter (finish_wait then returns it).
  bool granted() const noexcept { return state_.load(std::memory_order_acquire) == granted_state; }
  /// When its wait ends (set by enqueue).
  time_point until() const noexcept { return until_; }

 private:
  template <clock>
  friend class bulkhead_core;

  static constexpr unsigned char idle_state = 0;
  static constexpr unsigned char queued_state = 1;
  static constexpr unsigned char granted_state = 2;
  static constexpr unsigned char expired_state = 3;

  std::stop_source* wake_;
  bulkhead_waiter* prev_ = nullptr;
  bulkhead_waiter* next_ = nullptr;
  time_point until_{};
  // Written under the core's lock; read without it by granted().
  std::atomic<unsigned char> state_{idle_state};
};

/// A permission to run one call, from a bulkhead_core: move-only, and
/// released exactly once (by release() or the destructor). A moved-from or
/// released permit holds nothing and releasing it again does nothing, so a
/// double release can never create a permit.
template <clock Clock>
class bulkhead_permit {
 public:
  /// Holds nothing.
  bulkhead_permit() noexcept = default;
  bulkhead_permit(bulkhead_permit&& other) noexcept
      : core_(std::exchange(other.core_, nullptr)), keep_alive_(std::move(other.keep_alive_)) {}
  bulkhead_permit& operator=(bulkhead_permit&& other) noexcept {
    if (this != &other) {
      release();
      core_ = std::exchange(other.core_, nullptr);
      keep_alive_ = std::move(other.keep_alive_);
    }
    return *this;
  }
  bulkhead_permit(const bulkhead_permit&) = delete;
  bulkhead_permit& operator=(const bulkhead_permit&) = delete;
  ~bulkhead_permit() { release(); }

  /// True while it holds a permit.
  explicit operator bool() const noexcept { return core_ != nullptr; }
  bool held() const noexcept { return core_ != nullptr; }

  /// Keeps `owner` (what owns the core) alive as long as the permit holds:
  /// keel::bulkhead's two-step permits outlive every copy of the bulkhead.
  void keep_alive(std::shared_ptr<const void> owner) noexcept {
    if (core_ != nullptr) keep_alive_ = std::move(owner);
  }

  /// Gives the permit back (to the next waiter, or to the pool); once.
  void release() noexcept {
    if (bulkhead_core<Clock>* c = std::exchange(core_, nullptr)) c->give_back();
    keep_alive_.reset();
  }

 private:
  friend class bulkhead_core<Clock>;
  explicit bulkhead_permit(bulkhead_core<Clock>* core) noexcept : core_(core) {}

  bulkhead_core<Clock>* core_ = nullptr;
  std::shared_ptr<const void> keep_alive_;  // released after the permit
};

/// The decision core of a bulkhead: at most limit() calls hold a permit at
/// once; others wait in a bounded queue (FIFO or LIFO) until a permit is
/// handed to them, their wait ends or they give up. Never blocks (a short
/// internal lock guards the queue, never the fast path) and never calls
/// user code. Time comes in as `now`; `Clock` is read only when a permit is
/// given back while calls wait (to expire those whose wait has ended).
///
/// The state is one atomic word: calls holding a permit in the low 32 bits,
/// waiters in the high 32. Taking a free permit when nobody waits is one
/// compare-exchange; giving one back when nobody waits is one fetch_sub.
/// Neither copyable nor movable.
template <clock Clock = steady_clock>
class bulkhead_core {
 public:
  /// Throws keel::config_error (aborts without exceptions) when `options` are invalid.
  explicit bulkhead_core(const bulkhead_options& options, Clock clock = Clock())
      : options_((require_valid(options.validate()), options)),
        clock_(std::move(clock)),
        limit_(options.max_concurrent) {}
  bulkhead_core(const bulkhead_core&) = delete;
  bulkhead_core& operator=(const bulkhead_core&) = delete;
  ~bulkhead_core() { assert(head_ == nullptr); }

  using permit = bulkhead_permit<Clock>;

  /// A permit if one is free and nobody waits (a waiter is never overtaken);
  /// else an empty permit. One compare-exchange; never blocks.
  permit try_acquire() noexcept { return permit(try_take() ? this : nullptr); }

  struct start_result {
    wait_start status;
    permit held;  ///< the permit when status == granted
  };
  /// Starts a wait that ends at `until` (now + max_wait, or the call's
  /// deadline if sooner): granted at once if a permit is free and nobody
  /// waits, else queued (up to max_queue waiters) unless `until <= now`.
  /// A queued `w` must be ended with finish_wait before it is destroyed.
  start_result enqueue(bulkhead_waiter& w, time_point now, time_point until) {
    std::lock_guard lock(mutex_);
    std::uint64_t s = state_.load(std::memory_order_relaxed);
    for (;;) {
      if (s < limit_.load(std::memory_order_relaxed)) {  // nobody waits, a permit is free
        if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
          return {wait_start::granted, permit(this)};
        }
        continue;
      }
      if (waiters_of(s) >= options_.max_queue) return {wait_start::queue_full, permit()};
      if (until <= now) return {wait_start::no_time, permit()};
      // The same word as every release: a release that saw no waiter came
      // before this, and this saw its permit (the branch above); one after
      // this sees the waiter and grants.
      if (state_.compare_exchange_weak(s, s + one_waiter, std::memory_order_acq_rel,
                                       std::memory_order_relaxed)) {
        break;
      }
    }
    w.until_ = until;
    w.state_.store(bulkhead_waiter::queued_state, std::memory_order_relaxed);
    link(w);
    return {wait_start::queued, permit()};
  }

  struct end_result {
    wait_end status;
    permit held;  ///< the permit when status == granted
  };
  /// Ends (or checks) the wait of `w` at `now`. Granted: the permit, even
  /// when `now` is already past its end (it was granted before). Not
  /// granted: expired when `now >= w.until()`, cancelled when `cancel`,
  /// else still waiting. `cancel` on a waiter granted at the same moment
  /// gives the permit straight back (to the next waiter or the pool): a
  /// permit is never lost and never doubled.
  end_result finish_wait(bulkhead_waiter& w, time_point now, bool cancel) {
    std::lock_guard lock(mutex_);
    switch (w.state_.load(std::memory_order_relaxed)) {
      case bulkhead_waiter::granted_state:
        w.state_.store(bulkhead_waiter::idle_state, std::memory_order_relaxed);
        if (!cancel) return {wait_end::granted, permit(this)};
        if (state_.fetch_sub(1, std::memory_order_release) >= one_waiter) grant_locked(now);
        return {wait_end::cancelled, permit()};
      case bulkhead_waiter::expired_state:
        w.state_.store(bulkhead_waiter::idle_state, std::memory_order_relaxed);
        return {wait_end::expired, permit()};
      case bulkhead_waiter::queued_state:
        if (now < w.until_ && !cancel) return {wait_end::waiting, permit()};
        unlink(w);
        state_.fetch_sub(one_waiter, std::memory_order_relaxed);
        w.state_.store(bulkhead_waiter::idle_state, std::memory_order_relaxed);
        return {cancel ? wait_end::cancelled : wait_end::expired, permit()};
      default:
        return {cancel ? wait_end::cancelled : wait_end::expired, permit()};
    }
  }

  /// Changes how many calls may run at once (0 pauses admission). Raising
  /// it hands the new permits to waiters at once (those whose wait ended by
  /// `now` expire); lowering it lets running calls finish: no new call
  /// starts until fewer than the new limit run.
  void set_limit(std::uint32_t n, time_point now) {
    std::lock_guard lock(mutex_);
    limit_.store(n, std::memory_order_relaxed);
    grant_locked(now);
  }

  /// Expires, at `now`, every waiter whose wait has ended (a driver's
  /// waiters expire themselves; this is for waiters driven by hand).
  void expire(time_point now) {
    std::lock_guard lock(mutex_);
    for (bulkhead_waiter* w = head_; w != nullptr;) {
      bulkhead_waiter* next = w->next_;
      if (w->until_ <= now) drop_locked(*w);
      w = next;
    }
  }

  /// Calls holding a permit now (above limit() for a while after a lowering).
  std::uint32_t in_flight() const noexcept {
    return static_cast<std::uint32_t>(state_.load(std::memory_order_relaxed) & in_flight_mask);
  }
  /// Calls waiting for a permit now.
  std::uint32_t queued() const noexcept {
    return waiters_of(state_.load(std::memory_order_relaxed));
  }
  /// Permits free now (0 when in_flight() >= limit()).
  std::uint32_t available() const noexcept {
    const std::uint32_t l = limit();
    const std::uint32_t n = in_flight();
    return n < l ? l - n : 0;
  }
  /// Calls that may run at once now.
  std::uint32_t limit() const noexcept { return limit_.load(std::memory_order_relaxed); }
  const bulkhead_options& options() const noexcept { return options_; }
  const Clock& clock() const noexcept { return clock_; }

  // The raw steps under the permits, for keel's drivers: a taken unit must
  // be given back exactly once. Prefer try_acquire()'s permit.

  /// Takes a permit if one is free and nobody waits: one compare-exchange.
  bool try_take() noexcept {
    std::uint64_t s = state_.load(std::memory_order_relaxed);
    const std::uint64_t lim = limit_.load(std::memory_order_relaxed);
    // Waiters live in the high bits: `s < lim` is "nobody waits and a permit is free".
    while (s < lim) {
      if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }
  /// Gives back a permit taken by try_take (or held by a permit): one
  /// fetch_sub; with waiters, hands it to the next one.
  void give_back() noexcept {
    if (state_.fetch_sub(1, std::memory_order_release) >= one_waiter) [[unlikely]]
      give_back_slow();
  }

 private:
  static constexpr std::uint64_t one_waiter = std::uint64_t{1} << 32;
  static constexpr std::uint64_t in_flight_mask = one_waiter - 1;

  static std::uint32_t waiters_of(std::uint64_t s) noexcept {
    return static_cast<std::uint32_t>(s >> 32);
  }

  KEEL_DETAIL_NOINLINE void give_back_slow() noexcept {
    // A clock that throws expires nobody this time: the permit still moves on.
    const time_point now = call_or(time_point::min(), [this] { return clock_.now(); });
    std::lock_guard lock(mutex_);
    grant_locked(now);
  }

  // Hands free permits to waiters, in queue order, while any are free; a
  // waiter whose wait ended by `now` expires instead (woken, not granted).
  void grant_locked(time_point now) noexcept {
    while (head_ != nullptr) {
      std::uint64_t s = state_.load(std::memory_order_relaxed);
      if ((s & in_flight_mask) >= limit_.load(std::memory_order_relaxed)) return;
      bulkhead_waiter& w = options_.order == queue_order::fifo ? *head_ : *tail_;
      if (w.until_ <= now) {
        drop_locked(w);
        continue;
      }
      // Only in_flight can change under us (releases, and takes while no one
      // waits, which cannot be now): retry on a changed word.
      if (!state_.compare_exchange_weak(s, s + 1 - one_waiter, std::memory_order_acq_rel,
                                        std::memory_order_relaxed)) {
        continue;
      }
      unlink(w);
      w.state_.store(bulkhead_waiter::granted_state, std::memory_order_release);
      wake(w);
    }
  }

  void drop_locked(bulkhead_waiter& w) noexcept {
    unlink(w);
    state_.fetch_sub(one_waiter, std::memory_order_relaxed);
    w.state_.store(bulkhead_waiter::expired_state, std::memory_order_release);
    wake(w);
  }

  // Under the lock, so the waiter (which ends its wait under the lock) is alive.
  static void wake(bulkhead_waiter& w) noexcept {
    if (w.wake_ != nullptr) w.wake_->request_stop();
  }

  void link(bulkhead_waiter& w) noexcept {
    w.prev_ = tail_;
    w.next_ = nullptr;
    if (tail_ != nullptr) {
      tail_->next_ = &w;
    } else {
      head_ = &w;
    }
    tail_ = &w;
  }
  void unlink(bulkhead_waiter& w) noexcept {
    (w.prev_ != nullptr ? w.prev_->next_ : head_) = w.next_;
    (w.next_ != nullptr ? w.next_->prev_ : tail_) = w.prev_;
    w.prev_ = w.next_ = nullptr;
  }

  bulkhead_options options_;
  [[no_unique_address]] Clock clock_;
  // The hot word first, alone on its cache line with the limit it is compared to.
  alignas(64) std::atomic<std::uint64_t> state_{0};
  std::atomic<std::uint32_t> limit_;
  alignas(64) std::mutex mutex_;  // guards the queue only
  bulkhead_waiter* head_ = nullptr;
  bulkhead_waiter* tail_ = nullptr;
};

}  // namespace keel

#endif  // KEEL_ADMISSION_BULKHEAD_CORE_HPP_INCLUDED

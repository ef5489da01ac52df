// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_ADMISSION_ADAPTIVE_THROTTLE_HPP_INCLUDED
#define KEEL_ADMISSION_ADAPTIVE_THROTTLE_HPP_INCLUDED

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

#include "keel/circuit_breaker/detail/windows.hpp"
#include "keel/core/classify.hpp"
#include "keel/core/config_error.hpp"
#include "keel/core/context.hpp"
#include "keel/core/environment.hpp"
#include "keel/core/error.hpp"
#include "keel/core/events.hpp"
#include "keel/core/fluent.hpp"
#include "keel/core/inspect.hpp"
#include "keel/core/observe.hpp"
#include "keel/core/outcome.hpp"
#include "keel/core/policy.hpp"
#include "keel/core/time.hpp"
#include "keel/detail/config.hpp"

namespace keel {

/// Client-side adaptive throttling (the SRE book's "Handling Overload").
/// Aggregate.
struct adaptive_throttle_options {
  /// Calls sent per call the dependency accepts before local shedding starts,
  /// >= 1. Default 2 (the SRE book's K).
  double k = 2.0;
  /// How far back requests and accepts count. Default 2 min.
  duration window = std::chrono::minutes(2);
  /// Buckets the window is kept in (its resolution), 1..4096. Default 24 (5 s each).
  std::uint32_t buckets = 24;
  /// The highest rejection probability, in [0, 1): below 1, some calls
  /// always go, so recovery is seen. Default 0.9 (failsafe-go's).
  double max_rejection = 0.9;
  constexpr validation_result validate() const {
    if (!(k >= 1.0 && k <= 1e6))
      return config_problem{"adaptive_throttle_options.k", "must be in [1, 1e6]"};
    if (buckets < 1 || buckets > 4096)
      return config_problem{"adaptive_throttle_options.buckets", "must be in [1, 4096]"};
    if (window < duration(buckets))
      return config_problem{"adaptive_throttle_options.window", "must be >= buckets nanoseconds"};
    if (!(max_rejection >= 0.0 && max_rejection < 1.0))
      return config_problem{"adaptive_throttle_options.max_rejection", "must be in [0, 1)"};
    return std::nullopt;
  }
};

/// What a finished call tells the throttle.
enum class throttle_result : unsigned char {
  accepted,  ///< the dependency took the call (a success, or a failure not counted as a refusal)
  refused,   ///< the dependency did not accept it (overloaded, failed, timed out)
  ignored,   ///< neither: a cancellation, an inner policy's rejection; un-counts the request
};

/// A call's admission by adaptive_throttle_core::try_acquire. Every admission,
/// refused or not, counted one request.
struct throttle_admission {
  std::uint32_t epoch = 0;   ///< the bucket's epoch the request was counted in (24 bits)
  std::uint32_t bucket = 0;  ///< the bucket's index
  double probability = 0.0;  ///< the rejection probability it was decided under
  bool admitted = false;
  explicit operator bool() const noexcept { return admitted; }
};

/// Event: a call was shed locally with `probability`.
struct throttle_rejected {
  static constexpr event_kind kind = event_kind::throttle_rejected;
  double probability = 0.0;
  event_source source{};  ///< the throttle, and the call's pipeline
};

/// The decision core of keel::adaptive_throttle. Rejects a call with
/// p = min(max_rejection, max(0, (requests - k * accepts) / (requests + 1)))
/// over the window. p is kept in one atomic word: while it is 0 an admission
/// decides with one relaxed load and draws no random number. p is computed
/// again when a call is refused (locally or by the dependency), forgotten,
/// or accepted while p > 0. Thread-safe and lock-free; never blocks.
///
/// Requests and accepts are counted per thread: the first thread through a
/// stripe (one per hardware thread, at most 8) owns its ring of buckets and
/// counts with a plain load and store; other threads on that stripe count in
/// its second ring with compare-and-swap, and move to another stripe when
/// they collide. Up to one thread per stripe, threads sharing a throttle
/// share no written cache line on the healthy path; the counts stay exact.
class adaptive_throttle_core {
 public:
  explicit adaptive_throttle_core(adaptive_throttle_options options = {})
      : options_((require_valid(options.validate()), options)),
        bucket_ns_(options.window.count() / options.buckets),
        mask_(static_cast<std::uint32_t>(detail::stripe_count()) - 1),
        stride_((options.buckets + 3) & ~std::uint32_t{3}),
        storage_(std::make_unique<cell[]>(std::size_t{2} * (mask_ + 1) * stride_ + 3)),
        cells_(line_aligned(storage_.get())),
        forgotten_(std::make_unique<std::atomic<std::uint64_t>[]>(options.buckets)) {}
  adaptive_throttle_core(const adaptive_throttle_core&) = delete;
  adaptive_throttle_core& operator=(const adaptive_throttle_core&) = delete;

  /// Counts a request at `now` and decides it: admitted, or shed with the
  /// current probability. `draw()` (uniform in [0, 1)) is called only when p > 0.
  template <class Draw>
  throttle_admission try_acquire(time_point now, Draw&& draw) {
    throttle_admission a;
    const std::uint32_t p = p_.load(std::memory_order_relaxed);
    a.admitted = p == 0 || !(detail::clamp_draw(static_cast<double>(draw())) * two32 <
                             static_cast<double>(p));
    a.probability = static_cast<double>(p) / two32;
    count_request(now, a);
    if (!a.admitted) recompute(epoch_of(now));
    return a;
  }
  throttle_admission try_acquire(time_point now, double draw) {
    return try_acquire(now, [draw] { return draw; });
  }

  /// Finishes an admitted call. `now()` is read only when p must be computed
  /// again (a refusal, a forgotten call, an accept while p > 0), or when an
  /// accept is the first of its bucket in the thread's ring.
  template <class NowFn>
  void finish(const throttle_admission& a, throttle_result r, NowFn&& now) {
    if (!a.admitted) return;
    if (r == throttle_result::accepted && count_accept_at_once(a)) [[likely]] {
      if (p_.load(std::memory_order_relaxed) == 0) return;
      recompute(epoch_of(static_cast<time_point>(now())));
      return;
    }
    finish_at(a, r, epoch_of(static_cast<time_point>(now())));
  }
  void finish(const throttle_admission& a, throttle_result r, time_point now) {
    finish(a, r, [now] { return now; });
  }

  /// The current rejection probability.
  double probability() const noexcept {
    return static_cast<double>(p_.load(std::memory_order_relaxed)) / two32;
  }
  /// Requests and accepts in the window that ends at `now`.
  struct window_counts {
    std::uint64_t requests = 0;
    std::uint64_t accepts = 0;
  };
  window_counts counts(time_point now) const noexcept { return sum(epoch_of(now)); }
  const adaptive_throttle_options& options() const noexcept { return options_; }

 private:
  // A count's word: its epoch (24 bits, wrapping) over a 40-bit count, so a
  // word from an older epoch is recognised and restarted in one step, with no
  // separate reset that could lose a count. 2^40 calls per bucket never fill.
  static constexpr int count_bits = 40;
  static constexpr std::uint64_t count_mask = (std::uint64_t{1} << count_bits) - 1;
  static constexpr std::uint64_t mask = (std::uint64_t{1} << 24) - 1;
  static constexpr double two32 = 4294967296.0;
  struct alignas(16) cell {
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> accepts{0};
  };
  static_assert(sizeof(cell) == 16);
  // Rings start on a cache line of their own: cells_ is, and stride_ is a
  // multiple of 4 cells.
  static cell* line_aligned(cell* p) noexcept {
    const auto offset = reinterpret_cast<std::uintptr_t>(p) % 64;
    return p + (offset == 0 ? 0 : (64 - offset) / sizeof(cell));
  }
  // A stripe's owner, and the bucket of its last request, so that the owner
  // finds it without a division. Written by the owner only (after its claim).
  struct alignas(64) ring {
    std::atomic<std::uint64_t> owner{0};  // a detail::thread_identity id; 0: nobody yet
    std::atomic<std::int64_t> start{1};   // the bucket covers [start, end): none at first
    std::atomic<std::int64_t> end{0};
    std::atomic<std::uint64_t> bucket{0};  // the 24-bit epoch << 32 | the index
    // Whether the stripe's second ring was ever written: a sum skips it until then.
    std::atomic<bool> shared{false};
  };
  // The second ring of stripe s, marked written (once: after, a load only).
  cell& shared_cell(std::uint32_t s, std::uint32_t b) noexcept {
    if (!rings_[s].shared.load(std::memory_order_relaxed)) {
      rings_[s].shared.store(true, std::memory_order_relaxed);
    }
    return at(mask_ + 1 + s, b);
  }

  cell& at(std::size_t r, std::uint32_t b) const noexcept { return cells_[r * stride_ + b]; }

  std::uint64_t epoch_of(time_point now) const noexcept {
    const std::int64_t ns = now.time_since_epoch().count();
    return ns <= 0 ? 0 : static_cast<std::uint64_t>(ns / bucket_ns_);
  }
  static std::uint32_t epoch_of_word(std::uint64_t w) noexcept {
    return static_cast<std::uint32_t>(w >> count_bits);
  }
  // (a - b) in 24-bit wrapping arithmetic, as a signed distance.
  KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP static std::int32_t distance(std::uint32_t a,
                                                                     std::uint32_t b) noexcept {
    const std::uint32_t d = (a - b) & static_cast<std::uint32_t>(mask);
    return d >= (1U << 23) ? static_cast<std::int32_t>(d) - (1 << 24)
                           : static_cast<std::int32_t>(d);
  }
  static std::uint64_t word(std::uint32_t epoch, std::uint64_t count) noexcept {
    return (static_cast<std::uint64_t>(epoch) << count_bits) | count;
  }
  static std::uint64_t plus_one(std::uint64_t w) noexcept {
    return w + ((w & count_mask) < count_mask ? 1 : 0);
  }

  // The newest bucket a request was counted at, as a 24-bit epoch.
  std::uint32_t newest() const noexcept {
    return static_cast<std::uint32_t>(newest_.load(std::memory_order_relaxed) & mask);
  }
  // A 24-bit epoch alone cannot tell a later bucket from one 2^23 buckets or
  // more older (it wrapped). `ref` is the caller's bucket (its clock's).
  // Whether word epoch we is such an idle one: later by over a window than
  // both the caller's bucket and the newest request's (a far-future clock
  // read there cannot make current words idle; a caller's stale clock alone
  // cannot either).
  bool idle(std::uint32_t we, std::uint32_t ref) const noexcept {
    const auto n = static_cast<std::int32_t>(options_.buckets);
    return distance(ref, we) < -n && distance(newest(), we) < -n;
  }
  // Whether nonempty word w holds a later epoch than `epoch` (and is no idle one).
  KEEL_DETAIL_NOINLINE bool later(std::uint64_t w, std::uint32_t epoch,
                                  std::uint32_t ref) const noexcept {
    const std::uint32_t we = epoch_of_word(w);
    return (w & count_mask) != 0 && distance(epoch, we) < 0 && !idle(we, ref);
  }
  // A request at `epoch` counted into word w: it joins w's epoch if that is
  // this one or later (the clock went back), else restarts w at `epoch`.
  // An empty word is anyone's (at first every word reads epoch 0).
  bool joins(std::uint64_t w, std::uint32_t epoch) const noexcept {
    return epoch_of_word(w) == epoch || later(w, epoch, epoch);
  }
  // An accept or a forgotten request of `epoch` counted into word w at the
  // caller's bucket `ref`: the next word, or w itself when w holds a later
  // epoch or `epoch` is over a window from `ref` (the request is gone too).
  std::uint64_t counted_at(std::uint64_t w, std::uint32_t epoch, std::uint32_t ref) const noexcept {
    if (epoch_of_word(w) == epoch) return plus_one(w);
    const std::int32_t d = distance(ref, epoch);
    const auto n = static_cast<std::int32_t>(options_.buckets);
    return d >= n || d < -n || later(w, epoch, ref) ? w : word(epoch, 1);
  }
  // The newest bucket a request was counted at: once per bucket per owner.
  void note(std::uint64_t e) noexcept {
    std::uint64_t n = newest_.load(std::memory_order_relaxed);
    while (n < e && !newest_.compare_exchange_weak(n, e, std::memory_order_relaxed)) {
    }
  }
  void shared_add(std::atomic<std::uint64_t>& slot, std::uint32_t epoch,
                  std::uint32_t ref) const noexcept {
    std::uint64_t w = slot.load(std::memory_order_relaxed);
    for (;;) {
      const std::uint64_t next = counted_at(w, epoch, ref);
      if (next == w || slot.compare_exchange_weak(w, next, std::memory_order_relaxed)) return;
    }
  }

  // The owner's path, inlined: its ring's current bucket, one plain store.
  void count_request(time_point now, throttle_admission& a) noexcept {
    const std::int64_t t = now.time_since_epoch().count();
    const detail::thread_identity& me = detail::this_thread_identity();
    const std::uint32_t s = me.stripe & mask_;
    const ring& g = rings_[s];
    if (g.owner.load(std::memory_order_relaxed) == me.id &&
        t >= g.start.load(std::memory_order_relaxed) && t < g.end.load(std::memory_order_relaxed))
        [[likely]] {
      count_owned(s, a);
      return;
    }
    count_request_slow(now, a);
  }

  void count_owned(std::uint32_t s, throttle_admission& a) const noexcept {
    const std::uint64_t bucket = rings_[s].bucket.load(std::memory_order_relaxed);
    a.bucket = static_cast<std::uint32_t>(bucket);
    const auto epoch = static_cast<std::uint32_t>(bucket >> 32);
    std::atomic<std::uint64_t>& slot = at(s, a.bucket).requests;
    const std::uint64_t w = slot.load(std::memory_order_relaxed);
    const bool join = joins(w, epoch);
    // The owner is this ring's only writer: a plain store loses nothing.
    slot.store(join ? plus_one(w) : word(epoch, 1), std::memory_order_relaxed);
    a.epoch = join ? epoch_of_word(w) : epoch;
  }

  // A new bucket, a first call through the stripe, or a thread that does not own it.
  KEEL_DETAIL_NOINLINE void count_request_slow(time_point now, throttle_admission& a) noexcept {
    detail::thread_identity& me = detail::this_thread_record();
    const std::uint32_t s = me.stripe & mask_;
    ring& g = rings_[s];
    if (detail::owns(g.owner, me.id)) {
      locate(g, now.time_since_epoch().count());
      count_owned(s, a);
      return;
    }
    const std::uint64_t e = epoch_of(now);
    note(e);
    a.bucket = static_cast<std::uint32_t>(e % options_.buckets);
    const auto epoch = static_cast<std::uint32_t>(e & mask);
    std::atomic<std::uint64_t>& slot = shared_cell(s, a.bucket).requests;
    std::uint64_t w = slot.load(std::memory_order_relaxed);
    bool collided = false;
    for (;;) {
      const bool join = joins(w, epoch);
      if (slot.compare_exchange_weak(w, join ? plus_one(w) : word(epoch, 1),
                                     std::memory_order_relaxed)) {
        a.epoch = join ? epoch_of_word(w) : epoch;
        break;
      }
      collided = true;
    }
    move_on(me, collided);
  }

  // A thread that does not own its stripe goes back to one it owns (its hint
  // was moved, by a breaker's window too), else takes one nobody owns yet,
  // else, after a collision, tries the next (Java's LongAdder does the same).
  void move_on(detail::thread_identity& me, bool collided) const noexcept {
    std::uint32_t free = mask_ + 1;
    for (std::uint32_t i = 0; i <= mask_; ++i) {
      const std::uint64_t o = rings_[i].owner.load(std::memory_order_relaxed);
      if (o == me.id) {
        free = i;
        break;
      }
      if (o == 0 && free > mask_) free = i;
    }
    if (free <= mask_) {
      me.stripe = 0x100u | free;  // a hint whose stripe is `free` (see detail::next_stripe_hint)
    } else if (collided) {
      me.stripe = detail::next_stripe_hint(me.stripe);
    }
  }

  // The owner's bucket of time t (once per bucket length, and for t < 0).
  KEEL_DETAIL_NOINLINE void locate(ring& g, std::int64_t t) noexcept {
    const std::uint64_t e = epoch_of(time_point(duration(t)));
    note(e);
    const auto start = static_cast<std::int64_t>(e) * bucket_ns_;  // <= t, or 0: no overflow
    g.start.store(t < 0 ? 1 : start, std::memory_order_relaxed);
    g.end.store(
        t < 0 ? 0
              : start + detail::min(bucket_ns_, std::numeric_limits<std::int64_t>::max() - start),
        std::memory_order_relaxed);
    g.bucket.store((e & mask) << 32 | e % options_.buckets, std::memory_order_relaxed);
  }

  // finish() but for a first accept of its bucket here: at the clock's bucket e.
  KEEL_DETAIL_NOINLINE void finish_at(const throttle_admission& a, throttle_result r,
                                      std::uint64_t e) noexcept {
    const auto ref = static_cast<std::uint32_t>(e & mask);
    if (r == throttle_result::accepted) {
      count_accept(a, ref);
      if (p_.load(std::memory_order_relaxed) == 0) return;
    } else if (r == throttle_result::ignored) {
      shared_add(forgotten_[a.bucket], a.epoch, ref);
    }
    recompute(e);
  }

  // The owner's accept into its bucket's word, when that word is the
  // request's epoch already: no clock read. False: count_accept() counts it.
  bool count_accept_at_once(const throttle_admission& a) noexcept {
    const detail::thread_identity& me = detail::this_thread_identity();
    const std::uint32_t s = me.stripe & mask_;
    if (rings_[s].owner.load(std::memory_order_relaxed) != me.id) return false;
    std::atomic<std::uint64_t>& slot = at(s, a.bucket).accepts;
    const std::uint64_t w = slot.load(std::memory_order_relaxed);
    if (epoch_of_word(w) != a.epoch) return false;
    slot.store(plus_one(w), std::memory_order_relaxed);
    return true;
  }

  void count_accept(const throttle_admission& a, std::uint32_t ref) noexcept {
    const detail::thread_identity& me = detail::this_thread_identity();
    const std::uint32_t s = me.stripe & mask_;
    if (detail::owns(rings_[s].owner, me.id)) {
      std::atomic<std::uint64_t>& slot = at(s, a.bucket).accepts;
      slot.store(counted_at(slot.load(std::memory_order_relaxed), a.epoch, ref),
                 std::memory_order_relaxed);
      return;
    }
    shared_add(shared_cell(s, a.bucket).accepts, a.epoch, ref);
  }

  window_counts sum(std::uint64_t epoch) const noexcept {
    const auto now24 = static_cast<std::uint32_t>(epoch & mask);
    const auto n = static_cast<std::int32_t>(options_.buckets);
    const auto counted = [&](std::uint64_t w) -> std::uint64_t {
      const std::int32_t d = distance(now24, epoch_of_word(w));
      return d > -n && d < n ? w & count_mask : 0;
    };
    std::uint64_t requests = 0, accepts = 0, forgotten = 0;
    // Ring by ring: each is read in order, one cache line after another. A
    // ring nobody wrote yet is skipped (no owner; a second ring not marked):
    // with few threads, a sum reads few rings.
    for (std::size_t r = 0; r < 2 * (std::size_t{mask_} + 1); ++r) {
      const ring& g = rings_[r & mask_];
      if (r <= mask_ ? g.owner.load(std::memory_order_relaxed) == 0
                     : !g.shared.load(std::memory_order_relaxed)) {
        continue;
      }
      for (std::uint32_t b = 0; b < options_.buckets; ++b) {
        const cell& c = at(r, b);
        requests += counted(c.requests.load(std::memory_order_relaxed));
        accepts += counted(c.accepts.load(std::memory_order_relaxed));
      }
    }
    for (std::uint32_t b = 0; b < options_.buckets; ++b)
      forgotten += counted(forgotten_[b].load(std::memory_order_relaxed));
    // Read while calls run, a forget may be seen before its request.
    requests = requests > forgotten ? requests - forgotten : 0;
    return {requests, accepts};
  }

  void recompute(std::uint64_t epoch) noexcept {
    const window_counts c = sum(epoch);
    const double requests = static_cast<double>(c.requests);
    double p = (requests - options_.k * static_cast<double>(c.accepts)) / (requests + 1.0);
    if (!(p > 0.0)) p = 0.0;
    if (p > options_.max_rejection) p = options_.max_rejection;
    p_.store(static_cast<std::uint32_t>(p * two32), std::memory_order_relaxed);
  }

  adaptive_throttle_options options_;
  std::int64_t bucket_ns_;
  std::uint32_t mask_;    // stripes - 1 (a power of two); ring i's second ring is mask_ + 1 + i
  std::uint32_t stride_;  // cells per ring
  std::unique_ptr<cell[]> storage_;
  cell* cells_;                                              // in storage_, at a cache line
  std::unique_ptr<std::atomic<std::uint64_t>[]> forgotten_;  // per bucket, shared
  ring rings_[detail::max_stripes];
  alignas(64) std::atomic<std::uint32_t> p_{0};  // p * 2^32; 0: healthy
  // The newest bucket (the whole epoch) a request was counted at: tells an
  // idle word whose epoch wrapped from a later one. Written once per bucket.
  alignas(64) std::atomic<std::uint64_t> newest_{0};
};

/// Sheds calls locally when the dependency has been refusing them, before it
/// has to: a call is rejected with errc::throttled (a rejection) with
/// probability p = min(max_rejection, max(0, (requests - k * accepts) /
/// (requests + 1))) over the last `window`. Every call is a request, shed
/// ones included; an outcome matching `Refusals` (default: any failure) is not
/// an accept; a cancellation or an inner policy's rejection counts as neither
/// (its request is taken back). Copies share one state.
///
///     keel::adaptive_throttle throttle{};
///     auto r = keel::pipeline(keel::retry({}), throttle).try_execute(call);
template <class Refusals = on::any_failure_t, class Listener = no_listener,
          environment Env = default_environment>
class adaptive_throttle : public executable<adaptive_throttle<Refusals, Listener, Env>> {
 public:
  explicit adaptive_throttle(adaptive_throttle_options options = {}, Refusals refusals = Refusals(),
                             Listener listener = Listener(), Env env = Env())
      : refusals_(std::move(refusals)),
        listener_(std::move(listener)),
        env_(std::move(env)),
        core_(std::make_shared<adaptive_throttle_core>(options)) {}
  /// `keel::adaptive_throttle({})`: the default options.
  explicit adaptive_throttle(detail::empty_braces)
      : adaptive_throttle(adaptive_throttle_options()) {}

  /// For keel::rebuild: every part.
  adaptive_throttle(from_parts_t, std::shared_ptr<adaptive_throttle_core> core, Refusals refusals,
                    Listener listener, Env env, policy_name name)
      : refusals_(std::move(refusals)),
        listener_(std::move(listener)),
        env_(std::move(env)),
        core_(std::move(core)),
        name_(name) {}

  /// Which failures mean the dependency did not accept the call (default:
  /// any failure); other failures count as accepts.
  template <class P>
  auto refuse_on(P refusals) const {
    return rebuild<adaptive_throttle<P, Listener, Env>, &adaptive_throttle::refusals_>(
        *this, std::move(refusals), parts{});
  }
  /// Where events go (throttle_rejected); counters attached stay attached.
  template <class L>
  auto with_listener(L listener) const {
    using slot = with_listener_t<Listener, L>;
    return rebuild<adaptive_throttle<Refusals, slot, Env>, &adaptive_throttle::listener_>(
        *this, replace_listener(listener_, std::move(listener)), parts{});
  }
  /// Also counts its events into `c`, which must outlive the throttle.
  auto with_counters(counters& c) const {
    using slot = with_counters_t<Listener>;
    return rebuild<adaptive_throttle<Refusals, slot, Env>, &adaptive_throttle::listener_>(
        *this, attach_counters(listener_, c), parts{});
  }
  /// Named `name` in its events (default "adaptive_throttle").
  adaptive_throttle named(std::string_view name) const {
    return rebuild<adaptive_throttle, &adaptive_throttle::name_>(*this, policy_name(name), parts{});
  }
  /// The clock and random source it reads.
  template <environment E>
  auto with_environment(E env) const {
    return rebuild<adaptive_throttle<Refusals, Listener, E>, &adaptive_throttle::env_>(
        *this, std::move(env), parts{});
  }

  template <class R, class Next>
  outcome<R> run(Next&& next, context& ctx) const {
    adaptive_throttle_core& core = *core_;
    const time_point admitted_at = env_.now();
    const throttle_admission a = core.try_acquire(admitted_at, [this] { return env_.uniform(); });
    if (!a) [[unlikely]] {
      if constexpr (observes<Listener, throttle_rejected>) {
        const auto shed = [&] { return throttle_rejected{a.probability, source_of(name_, ctx)}; };
        report<throttle_rejected>(listener_, shed);
      }
      return outcome<R>::from_keel(errc::throttled);
    }
    outcome<R> o = next(ctx);  // an outcome: never throws
    // The call ran: a clock that throws now must not lose its outcome. Its
    // result then counts at the admission's time.
    core.finish(a, classify(o), [this, admitted_at]() noexcept {
      return call_or(admitted_at, [this] { return static_cast<time_point>(env_.now()); });
    });
    return o;
  }

  /// How the throttle reads an outcome.
  template <class R>
  throttle_result classify(const outcome<R>& o) const {
    if (!o.has_value() && (is_cancellation(o) || is_rejection(o))) return throttle_result::ignored;
    return detail::ask_user_predicate(refusals_, o) ? throttle_result::refused
                                                    : throttle_result::accepted;
  }

  /// The current rejection probability.
  double probability() const noexcept { return core_->probability(); }
  std::string_view name() const noexcept { return name_; }
  /// The shared decision core, to drive by hand next to this throttle.
  adaptive_throttle_core& core() const noexcept { return *core_; }

 private:
  [[no_unique_address]] Refusals refusals_;
  [[no_unique_address]] Listener listener_;
  [[no_unique_address]] Env env_;
  std::shared_ptr<adaptive_throttle_core> core_;  // copies share one state
  policy_name name_{"adaptive_throttle"};

  using parts = keel::parts<&adaptive_throttle::core_, &adaptive_throttle::refusals_,
                            &adaptive_throttle::listener_, &adaptive_throttle::env_,
                            &adaptive_throttle::name_>;

  static_assert(detail::may_take_outcome<Refusals>(),
                "keel::adaptive_throttle::refuse_on needs a predicate on the outcome: a keel::on:: "
                "predicate, or a callable taking const keel::outcome<R>&");
};

// clang-format off
adaptive_throttle() -> adaptive_throttle<>;
adaptive_throttle(adaptive_throttle_options) -> adaptive_throttle<>;
// clang-format on

}  // namespace keel

#endif  // KEEL_ADMISSION_ADAPTIVE_THROTTLE_HPP_INCLUDED

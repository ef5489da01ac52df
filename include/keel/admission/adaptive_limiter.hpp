// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_ADMISSION_ADAPTIVE_LIMITER_HPP_INCLUDED
#define KEEL_ADMISSION_ADAPTIVE_LIMITER_HPP_INCLUDED

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

#include "keel/admission/limit_algorithms.hpp"
#include "keel/core/classify.hpp"
#include "keel/core/config_error.hpp"
#include "keel/core/context.hpp"
#include "keel/core/environment.hpp"
#include "keel/core/error.hpp"
#include "keel/core/events.hpp"
#include "keel/core/fluent.hpp"
#include "keel/core/observe.hpp"
#include "keel/core/outcome.hpp"
#include "keel/core/policy.hpp"
#include "keel/core/time.hpp"

namespace keel {

namespace detail {
constexpr duration clamp_limit_duration(duration d, duration lo, duration hi) noexcept {
  return d < lo ? lo : (d > hi ? hi : d);
}
}  // namespace detail

/// How the limiter gathers calls into windows (Netflix's WindowedLimit
/// defaults). Aggregate.
struct adaptive_limiter_options {
  /// A window lasts clamp(2 * its mean RTT, min_window, max_window). Default 1 s.
  duration min_window = std::chrono::seconds(1);
  /// Default 1 s.
  duration max_window = std::chrono::seconds(1);
  /// Measured calls a window needs before it closes (a drop closes it sooner). Default 10.
  std::uint32_t min_window_samples = 10;
  /// A call faster than this is not measured (a cache hit, a local refusal). Default 100 us.
  duration min_rtt = std::chrono::microseconds(100);
  constexpr validation_result validate() const {
    if (min_window < duration::zero())
      return config_problem{"adaptive_limiter_options.min_window", "must be >= 0"};
    if (max_window < min_window)
      return config_problem{"adaptive_limiter_options.max_window", "must be >= min_window"};
    if (min_window_samples < 1)
      return config_problem{"adaptive_limiter_options.min_window_samples", "must be >= 1"};
    if (min_rtt < duration::zero())
      return config_problem{"adaptive_limiter_options.min_rtt", "must be >= 0"};
    return std::nullopt;
  }
};

/// What a finished call tells the limiter.
enum class limiter_result : unsigned char {
  measured,  ///< the dependency answered (success or an ordinary failure): its RTT is a sample
  dropped,   ///< a timeout or an overload answer (429, 503): the limit must fall
  ignored,   ///< says nothing about the dependency: a cancellation, an inner policy's rejection
};

/// A call's admission by adaptive_limiter_core::try_acquire.
struct limiter_admission {
  time_point start{};           ///< when it was admitted (the `now` given)
  std::uint32_t in_flight = 0;  ///< calls in flight with it; 0 when refused
  std::uint32_t limit = 0;      ///< the limit it was admitted (or refused) under
  bool admitted = false;
  explicit operator bool() const noexcept { return admitted; }
};

/// Event: a closed window changed the limit.
struct limit_changed {
  static constexpr event_kind kind = event_kind::limit_changed;
  std::uint32_t from = 0;
  std::uint32_t to = 0;
  limit_sample window{};  ///< the window that changed it
  time_point at{};
  event_source source{};  ///< the limiter (a window belongs to no one call)
};

/// Event: a call was refused because `in_flight` calls already ran under `limit`.
struct limiter_rejected {
  static constexpr event_kind kind = event_kind::limiter_rejected;
  std::uint32_t limit = 0;
  std::uint32_t in_flight = 0;
  event_source source{};  ///< the limiter, and the call's pipeline
};

/// The decision core of keel::adaptive_limiter: admits while in-flight <
/// limit, gathers finished calls into windows, and feeds each closed window to
/// `Algorithm` (aimd_limit, gradient2_limit, vegas_limit, or a type of yours
/// with `double limit() const` and `double update(const keel::limit_sample&)`).
/// Never blocks, never reads a clock: every step takes `now`. Thread-safe;
/// the hot path is lock-free (a CAS to admit; to finish, a fetch_sub and two
/// fetch_adds, plus a CAS when the call sets a new lowest RTT or highest
/// in-flight). One thread at a time closes a window; the others go on.
/// Each admitted call must be finished exactly once (finish() or forget()).
template <class Algorithm = aimd_limit>
class adaptive_limiter_core {
 public:
  explicit adaptive_limiter_core(Algorithm algorithm = Algorithm(),
                                 adaptive_limiter_options options = {})
      : options_((require_valid(options.validate()), options)),
        algorithm_(std::move(algorithm)),
        limit_(to_limit(algorithm_.limit())) {}
  adaptive_limiter_core(const adaptive_limiter_core&) = delete;
  adaptive_limiter_core& operator=(const adaptive_limiter_core&) = delete;

  /// Admits a call when fewer than limit() calls are in flight.
  limiter_admission try_acquire(time_point now) noexcept {
    std::uint32_t running = in_flight_.load(std::memory_order_relaxed);
    std::uint32_t limit = limit_.load(std::memory_order_relaxed);
    do {  // a refused call never counts, so it cannot crowd out the next one
      if (running >= limit) return {now, running, limit, false};
    } while (!in_flight_.compare_exchange_weak(running, running + 1, std::memory_order_relaxed));
    return {now, running + 1, limit, true};
  }

  /// Finishes an admitted call at `now` with what it told. Returns the window
  /// summary and the old limit when this call closed a window that changed
  /// the limit. `draw()` (a uniform double in [0, 1]) is called only when a
  /// window closes.
  template <class Draw>
  std::optional<limit_changed> finish(const limiter_admission& a, limiter_result r, time_point now,
                                      Draw&& draw) {
    if (!a.admitted) return std::nullopt;
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    if (r == limiter_result::ignored) return std::nullopt;
    if (r == limiter_result::measured) {
      const duration rtt = now - a.start;
      // A clock that went back, or a call too fast to say anything.
      if (rtt < options_.min_rtt || rtt <= duration::zero()) return std::nullopt;
      add(rtt);
    } else {
      counts_.fetch_add(drop_unit, std::memory_order_relaxed);
    }
    raise_max(max_in_flight_, a.in_flight);
    if (now.time_since_epoch().count() < next_update_ns_.load(std::memory_order_relaxed))
      return std::nullopt;
    return close_window(now, draw);
  }
  std::optional<limit_changed> finish(const limiter_admission& a, limiter_result r,
                                      time_point now) {
    return finish(a, r, now, [] { return 0.5; });
  }
  /// Gives an admitted call's slot back without a sample (limiter_result::ignored).
  void forget(const limiter_admission& a) noexcept {
    if (a.admitted) in_flight_.fetch_sub(1, std::memory_order_relaxed);
  }

  std::uint32_t limit() const noexcept { return limit_.load(std::memory_order_relaxed); }
  std::uint32_t in_flight() const noexcept { return in_flight_.load(std::memory_order_relaxed); }
  const adaptive_limiter_options& options() const noexcept { return options_; }

  /// Runs `f(const Algorithm&)` while no window closes (for a look at its state).
  template <class F>
  decltype(auto) inspect(F&& f) const {
    lock_window();
    struct unlock {
      const adaptive_limiter_core& c;
      ~unlock() { c.closing_.store(false, std::memory_order_release); }
    } u{*this};
    return std::forward<F>(f)(static_cast<const Algorithm&>(algorithm_));
  }

 private:
  static constexpr std::uint64_t drop_unit = std::uint64_t{1} << 32;
  static constexpr std::uint64_t no_rtt = std::numeric_limits<std::uint64_t>::max();

  static std::uint32_t to_limit(double l) noexcept {
    if (!(l >= 1.0)) return 1;  // NaN too
    if (l >= 16777216.0) return 16777216U;
    return static_cast<std::uint32_t>(l);
  }

  static void raise_max(std::atomic<std::uint32_t>& slot, std::uint32_t v) noexcept {
    std::uint32_t seen = slot.load(std::memory_order_relaxed);
    while (v > seen && !slot.compare_exchange_weak(seen, v, std::memory_order_relaxed)) {
    }
  }

  void add(duration rtt) noexcept {
    const auto ns = static_cast<std::uint64_t>(rtt.count());
    rtt_sum_ns_.fetch_add(ns, std::memory_order_relaxed);
    counts_.fetch_add(1, std::memory_order_relaxed);
    std::uint64_t seen = min_rtt_ns_.load(std::memory_order_relaxed);
    while (ns < seen && !min_rtt_ns_.compare_exchange_weak(seen, ns, std::memory_order_relaxed)) {
    }
  }

  void lock_window() const noexcept {
    while (closing_.exchange(true, std::memory_order_acquire)) {
    }
  }

  // The window's counters are taken one by one: a call finishing meanwhile
  // may land half in this window and half in the next (its RTT in one, its
  // count in the other). That skews one window by one call at most.
  template <class Draw>
  std::optional<limit_changed> close_window(time_point now, Draw& draw) {
    if (closing_.exchange(true, std::memory_order_acquire)) return std::nullopt;
    struct unlock {
      adaptive_limiter_core& c;
      ~unlock() { c.closing_.store(false, std::memory_order_release); }
    } u{*this};
    const std::int64_t now_ns = now.time_since_epoch().count();
    if (now_ns < next_update_ns_.load(std::memory_order_relaxed)) return std::nullopt;
    const std::uint64_t peek = counts_.load(std::memory_order_relaxed);
    if ((peek >> 32) == 0 && (peek & 0xffffffffU) < options_.min_window_samples)
      return std::nullopt;  // not ready: keep gathering (a short window's drop is never lost)
    const std::uint64_t counts = counts_.exchange(0, std::memory_order_relaxed);
    const std::uint64_t sum = rtt_sum_ns_.exchange(0, std::memory_order_relaxed);
    const std::uint64_t min_rtt = min_rtt_ns_.exchange(no_rtt, std::memory_order_relaxed);
    limit_sample s;
    s.samples = static_cast<std::uint32_t>(counts & 0xffffffffU);
    s.drops = static_cast<std::uint32_t>(counts >> 32);
    s.in_flight = max_in_flight_.exchange(0, std::memory_order_relaxed);
    if (s.samples > 0) {
      s.rtt = duration(static_cast<std::int64_t>(sum / s.samples));
      s.min_rtt = duration(min_rtt == no_rtt ? s.rtt.count() : static_cast<std::int64_t>(min_rtt));
    }
    const duration length = detail::clamp_limit_duration(saturating_mul(s.rtt, 2.0),
                                                         options_.min_window, options_.max_window);
    next_update_ns_.store(saturating_add(now, length).time_since_epoch().count(),
                          std::memory_order_relaxed);
    s.draw = detail::clamp_draw(static_cast<double>(draw()));
    const std::uint32_t before = limit_.load(std::memory_order_relaxed);
    double next = algorithm_.update(s);
    // A window that used less than half the limit says nothing about more.
    if (!s.dropped() && 2.0 * s.in_flight < before && next > before) next = before;
    const std::uint32_t after = to_limit(next);
    if (after == before) return std::nullopt;
    limit_.store(after, std::memory_order_relaxed);
    return limit_changed{before, after, s, now, {}};
  }

  adaptive_limiter_options options_;
  Algorithm algorithm_;  // touched only by the thread that holds closing_
  alignas(64) std::atomic<std::uint32_t> in_flight_{0};
  std::atomic<std::uint32_t> limit_;
  alignas(64) std::atomic<std::uint64_t> rtt_sum_ns_{0};
  std::atomic<std::uint64_t> counts_{0};  // measured calls (low 32 bits), drops (high 32)
  std::atomic<std::uint64_t> min_rtt_ns_{no_rtt};
  std::atomic<std::uint32_t> max_in_flight_{0};
  std::atomic<std::int64_t> next_update_ns_{std::numeric_limits<std::int64_t>::min()};
  mutable std::atomic<bool> closing_{false};
};

/// A concurrency limit that finds the dependency's capacity by itself: admits
/// while fewer than limit() calls are in flight, refuses the rest at once with
/// errc::bulkhead_full (a rejection), and moves the limit with `Algorithm`
/// from each window of finished calls. Timeouts (errc::timeout, or anything
/// equal to std::errc::timed_out) and outcomes matching `Drops` (an overload
/// answer: 429, 503) are drops; cancellations and inner policies' rejections
/// are ignored; every other outcome is an RTT sample. Two clock reads per
/// admitted call (before and after), none for a refused or ignored one.
/// Copies share one state (limit, in-flight, windows).
///
///     keel::adaptive_limiter limiter{keel::gradient2_limit{}};
///     auto r = limiter.try_execute([] { return fetch(); });
template <class Algorithm = aimd_limit, class Drops = on::nothing_t, class Listener = no_listener,
          environment Env = default_environment>
class adaptive_limiter : public executable<adaptive_limiter<Algorithm, Drops, Listener, Env>> {
 public:
  using core_type = adaptive_limiter_core<Algorithm>;

  explicit adaptive_limiter(Algorithm algorithm = Algorithm(),
                            adaptive_limiter_options options = {}, Drops drops = Drops(),
                            Listener listener = Listener(), Env env = Env())
      : drops_(std::move(drops)),
        listener_(std::move(listener)),
        env_(std::move(env)),
        core_(std::make_shared<core_type>(std::move(algorithm), options)) {}

  /// For keel::rebuild: every part.
  adaptive_limiter(from_parts_t, std::shared_ptr<core_type> core, Drops drops, Listener listener,
                   Env env, policy_name name)
      : drops_(std::move(drops)),
        listener_(std::move(listener)),
        env_(std::move(env)),
        core_(std::move(core)),
        name_(name) {}

  // Fluent setters: each returns a limiter sharing this one's state.

  /// Which outcomes are overload answers (drops), besides timeouts:
  /// `keel::on::result(is_503_or_429)`, `keel::on::code(...)`.
  template <class D>
  auto drop_on(D drops) const {
    return rebuild<adaptive_limiter<Algorithm, D, Listener, Env>, &adaptive_limiter::drops_>(
        *this, std::move(drops), parts{});
  }
  /// Where events go (limit_changed, limiter_rejected); counters attached stay attached.
  template <class L>
  auto with_listener(L listener) const {
    using slot = with_listener_t<Listener, L>;
    return rebuild<adaptive_limiter<Algorithm, Drops, slot, Env>, &adaptive_limiter::listener_>(
        *this, replace_listener(listener_, std::move(listener)), parts{});
  }
  /// Also counts its events into `c`, which must outlive the limiter.
  auto with_counters(counters& c) const {
    using slot = with_counters_t<Listener>;
    return rebuild<adaptive_limiter<Algorithm, Drops, slot, Env>, &adaptive_limiter::listener_>(
        *this, attach_counters(listener_, c), parts{});
  }
  /// Named `name` in its events (default "adaptive_limiter").
  adaptive_limiter named(std::string_view name) const {
    return rebuild<adaptive_limiter, &adaptive_limiter::name_>(*this, policy_name(name), parts{});
  }
  /// The clock and random source it reads.
  template <environment E>
  auto with_environment(E env) const {
    return rebuild<adaptive_limiter<Algorithm, Drops, Listener, E>, &adaptive_limiter::env_>(
        *this, std::move(env), parts{});
  }

  template <class R, class Next>
  outcome<R> run(Next&& next, context& ctx) const {
    core_type& core = *core_;
    const limiter_admission a = core.try_acquire(env_.now());
    if (!a) [[unlikely]] {
      if constexpr (observes<Listener, limiter_rejected>) {
        const auto refused = [&] {
          return limiter_rejected{a.limit, a.in_flight, source_of(name_, ctx)};
        };
        report<limiter_rejected>(listener_, refused);
      }
      return outcome<R>::from_keel(errc::bulkhead_full);
    }
    outcome<R> o = next(ctx);  // an outcome: never throws
    const limiter_result r = classify(o);
    if (r == limiter_result::ignored) {
      core.forget(a);
    } else if (auto change = core.finish(a, r, env_.now(), [this] { return env_.uniform(); }))
        [[unlikely]] {
      if constexpr (observes<Listener, limit_changed>) {
        change->source = source_of(name_);
        emit(listener_, *change);
      }
    }
    return o;
  }

  /// How the limiter reads an outcome.
  template <class R>
  limiter_result classify(const outcome<R>& o) const {
    if (o.has_value()) {
      return detail::ask_user_predicate(drops_, o) ? limiter_result::dropped
                                                   : limiter_result::measured;
    }
    if (is_cancellation(o) || (is_rejection(o))) return limiter_result::ignored;
    if (o.is(errc::timeout) || call_or(false, [&] { return o.code() == condition::timeout; }))
      return limiter_result::dropped;
    return detail::ask_user_predicate(drops_, o) ? limiter_result::dropped
                                                 : limiter_result::measured;
  }

  std::uint32_t limit() const noexcept { return core_->limit(); }
  std::uint32_t in_flight() const noexcept { return core_->in_flight(); }
  std::string_view name() const noexcept { return name_; }
  /// The shared decision core, to drive by hand next to this limiter.
  core_type& core() const noexcept { return *core_; }

 private:
  [[no_unique_address]] Drops drops_;
  [[no_unique_address]] Listener listener_;
  [[no_unique_address]] Env env_;
  std::shared_ptr<core_type> core_;  // copies share one state
  policy_name name_{"adaptive_limiter"};

  using parts =
      keel::parts<&adaptive_limiter::core_, &adaptive_limiter::drops_, &adaptive_limiter::listener_,
                  &adaptive_limiter::env_, &adaptive_limiter::name_>;

  static_assert(detail::may_take_outcome<Drops>(),
                "keel::adaptive_limiter::drop_on needs a predicate on the outcome: a keel::on:: "
                "predicate, or a callable taking const keel::outcome<R>&");
};

}  // namespace keel

#endif  // KEEL_ADMISSION_ADAPTIVE_LIMITER_HPP_INCLUDED

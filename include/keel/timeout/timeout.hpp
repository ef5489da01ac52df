// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_TIMEOUT_TIMEOUT_HPP_INCLUDED
#define KEEL_TIMEOUT_TIMEOUT_HPP_INCLUDED

#include <optional>
#include <stop_token>
#include <string_view>
#include <type_traits>
#include <utility>

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
#include "keel/detail/config.hpp"
#include "keel/timeout/timeout_events.hpp"
#include "keel/timeout/timeout_options.hpp"
#include "keel/timeout/watchdog.hpp"

namespace keel {

namespace detail {

/// Forwards the caller's stop request to the timeout's own stop source.
struct stop_linker {
  std::stop_source* target;
  void operator()() const noexcept { target->request_stop(); }
};

/// What a timeout with a watchdog sets up per call: a stop source the
/// watchdog can trigger, linked to the caller's token, and the registration.
/// Member order matters: the registration goes first, the link next.
template <class Watchdog>
struct timeout_watch {
  std::stop_source source;
  std::optional<std::stop_callback<stop_linker>> link;
  typename Watchdog::ticket ticket;

  timeout_watch(Watchdog& w, time_point deadline, const std::stop_token& caller)
      : source(), link(), ticket(w.arm(deadline, source)) {
    if (caller.stop_possible()) link.emplace(caller, stop_linker{&source});
  }
};

struct no_watchdog {};

}  // namespace detail

/// A cooperative deadline. The call runs with a copy of the context whose
/// deadline is the earlier of the one it had and now + options.timeout, so
/// nested timeouts compose (the earliest wins) and the callable reads it
/// through ctx.deadline() / ctx.remaining(). A call that returns at or after
/// its deadline gives errc::timeout (its late result is discarded unless
/// keep_late_result). The running call is never abandoned: to wake a callable
/// blocked in a stop-token-aware wait, attach a keel::watchdog. A stop request
/// of the caller is a cancellation, never a timeout. Reads the clock twice per call.
template <class Listener = no_listener, environment Env = default_environment,
          class Watchdog = void>
class timeout : public executable<timeout<Listener, Env, Watchdog>> {
  using watchdog_ptr = std::conditional_t<std::is_void_v<Watchdog>, detail::no_watchdog, Watchdog*>;

 public:
  /// A timeout with the given options (validated: throws keel::config_error).
  explicit timeout(timeout_options options = {}, Listener listener = Listener(), Env env = Env())
      : timeout(from_parts, options, std::move(listener), std::move(env), watchdog_ptr{},
                default_name) {}
  /// `keel::timeout({})`: the default options.
  explicit timeout(detail::empty_braces) : timeout(timeout_options()) {}

  /// For keel::rebuild: every part, the options validated again.
  timeout(from_parts_t, const timeout_options& options, Listener listener, Env env, watchdog_ptr w,
          policy_name name)
      : options_(options),
        listener_(std::move(listener)),
        env_(std::move(env)),
        watchdog_(w),
        name_(name) {
    detail::require_valid(validate(options_));
  }

  /// The same timeout reporting timed_out and late_result_kept to `l`;
  /// counters attached with with_counters stay attached.
  template <class L>
  auto with_listener(L&& l) const {
    return rebuild<timeout<with_listener_t<Listener, L>, Env, Watchdog>, &timeout::listener_>(
        *this, replace_listener(listener_, std::forward<L>(l)), parts{});
  }

  /// The same timeout, also counting its events into `c` (keel::counters),
  /// which every copy shares and which must outlive them.
  auto with_counters(counters& c) const {
    return rebuild<timeout<with_counters_t<Listener>, Env, Watchdog>, &timeout::listener_>(
        *this, attach_counters(listener_, c), parts{});
  }

  /// The same timeout, named `name` in its events' source (default
  /// "timeout"; cut at policy_name::capacity bytes).
  timeout named(std::string_view name) const {
    return rebuild<timeout, &timeout::name_>(*this, name, parts{});
  }

  /// The same timeout reading time from `e` (keel::testing::virtual_environment in tests).
  template <environment E>
  timeout<Listener, E, Watchdog> with_environment(E e) const {
    return rebuild<timeout<Listener, E, Watchdog>, &timeout::env_>(*this, std::move(e), parts{});
  }

  /// The same timeout, whose calls `w` stops when their deadline passes. Each
  /// call then allocates a std::stop_source linked to the caller's token (the
  /// one cost of a watchdog); without one the caller's token passes unchanged.
  /// `w` must use the same clock as this timeout and outlive it.
  template <class W>
  timeout<Listener, Env, W> with_watchdog(W& w) const {
    return rebuild<timeout<Listener, Env, W>, &timeout::watchdog_>(*this, &w, parts{});
  }

  /// Runs `next` under the deadline; never throws.
  template <class R, class Next>
  outcome<R> run(Next&& next, context& ctx) const {
    if (ctx.stop_requested()) return outcome<R>::from_keel(errc::cancelled);
    const time_point start = env_.now();
    context inner = ctx;  // a copy: the caller's context keeps its own deadline
    const time_point deadline = deadline_for(start, ctx);
    inner.tighten_deadline(deadline, env_);
    if (missed(start, deadline)) {  // an outer deadline has passed: do not even start
      return expire<R>(start, start, deadline, ctx);
    }

    return run_until<R>(next, ctx, inner, start, deadline);
  }

  /// The options, as validated.
  const timeout_options& options() const noexcept { return options_; }
  /// The name set by named() ("timeout" by default).
  std::string_view name() const noexcept { return name_.view(); }

  // ---- The deadline arithmetic and the verdict, for a driver of one's own -----

  /// The deadline of a call starting at `start` (this timeout's clock): the
  /// earlier of start + options().timeout (saturating) and ctx.deadline().
  time_point deadline_for(time_point start, const context& ctx) const noexcept {
    const time_point own = detail::saturating_add(start, options_.timeout);
    return own < ctx.deadline() ? own : ctx.deadline();
  }

  /// The verdict on a call that ends (or would start) at `end`: true, timed
  /// out, when end >= deadline; one that ends 1 ns before it is in time.
  static constexpr bool missed(time_point end, time_point deadline) noexcept {
    return end >= deadline;
  }

  /// For a call that missed its deadline with outcome `o`: true when `o`
  /// stands (the caller `ctx` asked to stop, or keep_late_result: emits
  /// late_result_kept); false: the call gives expire(). `stopped_by_watchdog`:
  /// a watchdog stopped the call, whose cancellation then is not kept.
  template <class R>
  bool keeps_late(const outcome<R>& o, const context& ctx, bool stopped_by_watchdog,
                  time_point start, time_point end, time_point deadline) const {
    // The caller's own stop request: a cancellation, whatever time it is.
    if (ctx.stop_requested()) return true;
    if (options_.keep_late_result && !(stopped_by_watchdog && is_cancellation(o))) {
      if constexpr (observes<Listener, late_result_kept>) {
        report<late_result_kept>(listener_, [&] {
          return late_result_kept{options_.timeout, end - start, deadline, source_of(name_, ctx)};
        });
      }
      return true;
    }
    return false;
  }

  /// What a call (in `ctx`) that missed its deadline gives: errc::timeout;
  /// emits timed_out.
  template <class R>
  outcome<R> expire(time_point start, time_point end, time_point deadline,
                    const context& ctx = context()) const {
    if constexpr (observes<Listener, timed_out>) {
      report<timed_out>(listener_, [&] {
        return timed_out{options_.timeout, end - start, deadline, source_of(name_, ctx)};
      });
    }
    return outcome<R>::from_keel(errc::timeout);
  }

 private:
  // The call itself, under `deadline`. Returns `o` only: GCC builds a named
  // result in the caller's slot only when every return names it.
  template <class R, class Next>
  outcome<R> run_until(Next& next, context& ctx, context& inner, time_point start,
                       time_point deadline) const {
    if constexpr (std::is_void_v<Watchdog>) {
      outcome<R> o = next(inner);
      ctx.take_slots(inner);  // what the layers inside chose (a target, tried endpoints)
      const time_point end = env_.now();
      if (missed(end, deadline) && !keeps_late(o, ctx, false, start, end, deadline)) {
        o = expire<R>(start, end, deadline, ctx);
      }
      return o;
    } else {
      std::optional<detail::timeout_watch<Watchdog>> watch;
#if KEEL_HAS_EXCEPTIONS
      try {
        watch.emplace(*watchdog_, deadline, ctx.stop_token());
      } catch (...) {
        // Out of memory: this call goes without a watchdog; its deadline still holds.
      }
#else
      watch.emplace(*watchdog_, deadline, ctx.stop_token());
#endif
      if (watch) inner.set_stop_token(watch->source.get_token());
      outcome<R> o = next(inner);
      ctx.take_slots(inner);  // what the layers inside chose (a target, tried endpoints)
      const time_point end = env_.now();
      const bool stopped_by_watchdog =
          watch && watch->source.stop_requested() && !ctx.stop_requested();
      // Decided by missed() alone: a stop after an in-time end is no timeout.
      if (missed(end, deadline) && !keeps_late(o, ctx, stopped_by_watchdog, start, end, deadline)) {
        o = expire<R>(start, end, deadline, ctx);
      }
      return o;
    }
  }

  timeout_options options_;
  [[no_unique_address]] Listener listener_;
  [[no_unique_address]] Env env_;
  [[no_unique_address]] watchdog_ptr watchdog_;
  policy_name name_;
  static constexpr policy_name default_name{"timeout"};  // a constant: see retry's

  // What the fluent setters carry over, in the order of the from_parts constructor.
  using parts = keel::parts<&timeout::options_, &timeout::listener_, &timeout::env_,
                            &timeout::watchdog_, &timeout::name_>;
};

// clang-format off
timeout() -> timeout<>;
timeout(timeout_options) -> timeout<>;
// clang-format on

}  // namespace keel

#endif  // KEEL_TIMEOUT_TIMEOUT_HPP_INCLUDED

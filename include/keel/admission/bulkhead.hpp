// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_ADMISSION_BULKHEAD_HPP_INCLUDED
#define KEEL_ADMISSION_BULKHEAD_HPP_INCLUDED

#include <cstdint>
#include <memory>
#include <optional>
#include <stop_token>
#include <string_view>
#include <type_traits>
#include <utility>

#include "keel/admission/bulkhead_core.hpp"
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
#include "keel/detail/algorithm.hpp"
#include "keel/detail/config.hpp"

namespace keel {

/// Why a bulkhead refused a call (every refusal is errc::bulkhead_full).
enum class bulkhead_rejection : unsigned char {
  full,          ///< no permit free, and the call could not wait (no queue, or no time left)
  queue_full,    ///< no permit free, and max_queue calls already wait
  wait_expired,  ///< the call waited max_wait (or until its deadline) without a permit
};

/// The enumerator's name ("full"); "unknown" otherwise.
constexpr std::string_view to_string_view(bulkhead_rejection r) noexcept {
  switch (r) {
    case bulkhead_rejection::full:
      return "full";
    case bulkhead_rejection::queue_full:
      return "queue_full";
    case bulkhead_rejection::wait_expired:
      return "wait_expired";
  }
  return "unknown";
}

/// Event: a call was refused with errc::bulkhead_full.
struct bulkhead_rejected {
  static constexpr event_kind kind = event_kind::bulkhead_rejected;
  std::uint32_t in_flight;                ///< calls holding a permit when it was refused
  std::uint32_t queued;                   ///< calls waiting when it was refused
  bulkhead_rejection reason;              ///< why
  std::optional<duration> retry_after{};  ///< the hint it carried (options.retry_after)
  event_source source{};                  ///< the bulkhead, and the pipeline of the call
};

/// Event: a call began to wait for a permit.
struct bulkhead_queued {
  static constexpr event_kind kind = event_kind::bulkhead_queued;
  std::uint32_t in_flight;  ///< calls holding a permit as it was queued
  std::uint32_t queued;     ///< calls waiting, itself included
  duration max_wait;        ///< how long it may wait (max_wait, or less before its deadline)
  event_source source{};    ///< the bulkhead, and the pipeline of the call
};

/// Event: a waiting call was handed a permit.
struct bulkhead_granted {
  static constexpr event_kind kind = event_kind::bulkhead_granted;
  duration waited;        ///< how long it waited
  event_source source{};  ///< the bulkhead, and the pipeline of the call
};

/// Limits how many calls run at once: at most `max_concurrent` hold a
/// permit; others wait (at most `max_queue` of them, each at most `max_wait`
/// and never past its context's deadline, woken at once by its stop token)
/// or are refused with errc::bulkhead_full, a rejection. Copies share one
/// bulkhead (its permits and queue): a pipeline's copy limits the same
/// calls. Put it inside a retry, so that no permit is held during a backoff.
///
///     const keel::bulkhead<> bulkhead({.max_concurrent = 8, .max_queue = 16, .max_wait = 50ms});
///     auto r = keel::pipeline(keel::retry({}), bulkhead).try_execute(call);
template <class Listener = no_listener, environment Env = default_environment>
class bulkhead : public executable<bulkhead<Listener, Env>> {
  using core_type = bulkhead_core<Env>;

 public:
  using permit = bulkhead_permit<Env>;

  /// Throws keel::config_error (aborts without exceptions) when `options` are invalid.
  explicit bulkhead(bulkhead_options options = {}, Listener listener = Listener(), Env env = Env())
      : listener_(std::move(listener)),
        env_(std::move(env)),
        core_(std::make_shared<core_type>(options, env_)) {}
  /// `keel::bulkhead({})`: the default options.
  explicit bulkhead(detail::empty_braces) : bulkhead(bulkhead_options()) {}

  /// For keel::rebuild: every part; `state` is shared when it is a state of
  /// this bulkhead's type, else (null, or another type) a fresh one is made.
  template <class State>
  bulkhead(from_parts_t, const bulkhead_options& options, Listener listener, Env env,
           policy_name name, std::shared_ptr<State> state)
      : listener_(std::move(listener)), env_(std::move(env)), name_(name) {
    if constexpr (std::is_same_v<State, core_type>) core_ = std::move(state);
    if (core_ == nullptr) core_ = std::make_shared<core_type>(options, env_);
  }

  /// The same bulkhead (sharing its permits), reporting its events
  /// (bulkhead_rejected, bulkhead_queued, bulkhead_granted) to `listener`;
  /// counters attached stay attached.
  template <class L>
  auto with_listener(L listener) const {
    using slot = with_listener_t<Listener, L>;
    return rebuild<bulkhead<slot, Env>, &bulkhead::listener_>(
        *this, replace_listener(listener_, std::move(listener)), parts{});
  }
  /// The same bulkhead, also counting its events into `c`, which must outlive it.
  auto with_counters(counters& c) const {
    using slot = with_counters_t<Listener>;
    return rebuild<bulkhead<slot, Env>, &bulkhead::listener_>(*this, attach_counters(listener_, c),
                                                              parts{});
  }
  /// The same bulkhead, named `name` in its events (default "bulkhead").
  bulkhead named(std::string_view name) const {
    return rebuild<bulkhead, &bulkhead::name_>(*this, policy_name(name), parts{});
  }
  /// A new bulkhead (its own permits) with the same options, on `env`'s clock and sleeper.
  template <environment E>
  auto with_environment(E env) const {
    // Not a rebuild: the state is never carried over, even to the same environment type.
    return bulkhead<Listener, E>(from_parts, options(), listener_, std::move(env), name_,
                                 std::shared_ptr<const void>());
  }

  /// Runs `next` with a permit, waiting for one if the options allow; a
  /// refusal is outcome<R>::from_keel(errc::bulkhead_full, options.retry_after),
  /// a stop request while waiting errc::cancelled. No allocation unless the
  /// call waits. Never throws.
  template <class R, class Next>
  outcome<R> run(Next&& next, context& ctx) const {
    core_type& c = *core_;
    if (c.try_take()) [[likely]] {
      const give_back_on_exit leave{c};
      return next(ctx);
    }
    return run_slow<R>(detail::pass_next(next), ctx);
  }

  /// What acquire() got: a permit, or why not.
  struct acquisition {
    permit held;     ///< holds a permit when admitted
    errc refused{};  ///< when not admitted: bulkhead_full or cancelled
    explicit operator bool() const noexcept { return held.held(); }
  };

  /// The two-step API: a permit if one is free and nobody waits, else an
  /// empty permit. Never waits. The permit keeps the bulkhead's state alive.
  permit try_acquire() const {
    permit p = core_->try_acquire();
    if (!p) report_rejected(bulkhead_rejection::full, source_of(name()));
    return keep_alive(std::move(p));
  }

  /// The two-step API with waiting: as run() decides, for the call whose
  /// deadline and stop token are in `ctx`. Blocks while it waits.
  acquisition acquire(const context& ctx = context()) const {
    if (permit p = core_->try_acquire()) return {keep_alive(std::move(p)), errc{}};
    acquisition a = wait_for_permit(ctx);
    a.held = keep_alive(std::move(a.held));
    return a;
  }

  /// Changes how many calls may run at once: raising it hands permits to
  /// waiters at once, lowering it lets running calls finish. 0 pauses.
  void set_limit(std::uint32_t n) const { core_->set_limit(n, env_.now()); }

  /// Calls holding a permit now.
  std::uint32_t in_flight() const noexcept { return core_->in_flight(); }
  /// Calls waiting for a permit now.
  std::uint32_t queued() const noexcept { return core_->queued(); }
  /// Permits free now.
  std::uint32_t available() const noexcept { return core_->available(); }
  /// Calls that may run at once now (options().max_concurrent until set_limit).
  std::uint32_t limit() const noexcept { return core_->limit(); }
  const bulkhead_options& options() const noexcept { return core_->options(); }
  std::string_view name() const noexcept { return name_; }
  /// The decision core itself, shared by every copy.
  core_type& core() const noexcept { return *core_; }

 private:
  struct give_back_on_exit {
    core_type& c;
    explicit give_back_on_exit(core_type& core) noexcept : c(core) {}
    give_back_on_exit(const give_back_on_exit&) = delete;
    give_back_on_exit& operator=(const give_back_on_exit&) = delete;
    ~give_back_on_exit() { c.give_back(); }
  };

  permit keep_alive(permit p) const {
    p.keep_alive(core_);
    return p;
  }

  template <class R, class Next>
  KEEL_DETAIL_NOINLINE outcome<R> run_slow(Next next, context& ctx) const {
    acquisition a = wait_for_permit(ctx);
    if (!a)
      return outcome<R>::from_keel(
          a.refused, a.refused == errc::bulkhead_full ? options().retry_after : std::nullopt);
    return next(ctx);  // a.held gives the permit back after the call
  }

  // No permit at first look: waits if the options allow, reporting events.
  acquisition wait_for_permit(const context& ctx) const {
    core_type& c = *core_;
    const bulkhead_options& o = c.options();
    if (o.max_queue == 0) return refuse(bulkhead_rejection::full, ctx);
    if (ctx.stop_requested()) return {permit(), errc::cancelled};
    const time_point start = env_.now();
    const time_point until = detail::min(saturating_add(start, o.max_wait), ctx.deadline());
    // Stopped by a grant, by an expiry another thread decides, and (linked
    // below) by the caller's stop: the one token the sleeper waits on.
    std::optional<std::stop_source> wake;
    if (!call_or(false, [&] { return (wake.emplace(), true); })) {
      return refuse(bulkhead_rejection::full, ctx);  // out of memory: cannot wait
    }
    bulkhead_waiter w(&*wake);
    typename core_type::start_result s = c.enqueue(w, start, until);
    switch (s.status) {
      case wait_start::granted:
        return {std::move(s.held), errc{}};
      case wait_start::queue_full:
        return refuse(bulkhead_rejection::queue_full, ctx);
      case wait_start::no_time:
        return refuse(bulkhead_rejection::full, ctx);
      case wait_start::queued:
        break;
    }
    if constexpr (observes<Listener, bulkhead_queued>) {
      report<bulkhead_queued>(listener_, [&] {
        return bulkhead_queued{c.in_flight(), c.queued(), time_until(start, until),
                               source_of(name(), ctx)};
      });
    }
    const std::stop_callback link(ctx.stop_token(), [&wake]() noexcept { wake->request_stop(); });
    time_point now = start;
    for (;;) {
      // A sleeper or a clock that throws ends the wait as if its time were up:
      // `w` must leave the queue before this frame does.
      bool broken = !call_or(false, [&] { return (now = env_.now(), true); });
      if (!broken && !w.granted() && now < until && !ctx.stop_requested()) {
        broken = !call_or(false, [&] {
          static_cast<void>(env_.sleep_for(time_until(now, until), wake->get_token()));
          now = env_.now();
          return true;
        });
      }
      typename core_type::end_result e = c.finish_wait(w, now, broken || ctx.stop_requested());
      switch (e.status) {
        case wait_end::waiting:
          continue;
        case wait_end::granted:
          if constexpr (observes<Listener, bulkhead_granted>) {
            report<bulkhead_granted>(listener_, [&] {
              return bulkhead_granted{time_until(start, now), source_of(name(), ctx)};
            });
          }
          return {std::move(e.held), errc{}};
        case wait_end::cancelled:
          if (!broken) return {permit(), errc::cancelled};
          [[fallthrough]];
        case wait_end::expired:
          return refuse(bulkhead_rejection::wait_expired, ctx);
      }
    }
  }

  acquisition refuse(bulkhead_rejection why, const context& ctx) const {
    if constexpr (observes<Listener, bulkhead_rejected>)
      report_rejected(why, source_of(name(), ctx));
    return {permit(), errc::bulkhead_full};
  }

  void report_rejected([[maybe_unused]] bulkhead_rejection why,
                       [[maybe_unused]] const event_source& source) const {
    if constexpr (observes<Listener, bulkhead_rejected>) {
      report<bulkhead_rejected>(listener_, [&] {
        return bulkhead_rejected{in_flight(), queued(), why, options().retry_after, source};
      });
    }
  }

  [[no_unique_address]] Listener listener_;
  [[no_unique_address]] Env env_;
  policy_name name_ = "bulkhead";
  std::shared_ptr<core_type> core_;  // copies share one bulkhead

  // What the fluent setters carry over, in the order of the from_parts constructor.
  using parts = keel::parts<&bulkhead::options, &bulkhead::listener_, &bulkhead::env_,
                            &bulkhead::name_, &bulkhead::core_>;
};

// clang-format off
bulkhead() -> bulkhead<>;
bulkhead(bulkhead_options) -> bulkhead<>;
// clang-format on

}  // namespace keel

#endif  // KEEL_ADMISSION_BULKHEAD_HPP_INCLUDED

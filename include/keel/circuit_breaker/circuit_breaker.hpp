// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CIRCUIT_BREAKER_CIRCUIT_BREAKER_HPP_INCLUDED
#define KEEL_CIRCUIT_BREAKER_CIRCUIT_BREAKER_HPP_INCLUDED

#include <cstdint>
#include <optional>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include "keel/circuit_breaker/breaker_state_machine.hpp"
#include "keel/circuit_breaker/breaker_types.hpp"
#include "keel/circuit_breaker/circuit_breaker_events.hpp"
#include "keel/circuit_breaker/circuit_breaker_options.hpp"
#include "keel/core/classify.hpp"
#include "keel/core/context.hpp"
#include "keel/core/environment.hpp"
#include "keel/core/error.hpp"
#include "keel/core/events.hpp"
#include "keel/core/expected_like.hpp"
#include "keel/core/fluent.hpp"
#include "keel/core/observe.hpp"
#include "keel/core/outcome.hpp"
#include "keel/core/policy.hpp"
#include "keel/core/time.hpp"
#include "keel/detail/algorithm.hpp"

namespace keel {

/// Protects a caller and the dependency it calls: after enough failures (the
/// trip rule) the circuit opens and rejects calls at once with
/// errc::circuit_open; when the open time is over it lets `permitted_probes`
/// calls through, and closes when enough of them succeed.
///
/// `Handles` says which outcomes are failures (default: any failure);
/// `Ignores` which outcomes say nothing about the dependency's health (a 404,
/// a validation error: counted as neither). Cancellation is always ignored.
/// Stateful and thread-safe: not copyable or movable; share it with std::ref
/// or std::shared_ptr.
///
///     keel::circuit_breaker breaker{{.trip = keel::consecutive_failures{.threshold = 3}}};
///     auto r = breaker.try_execute([] { return fetch(); });
template <class Handles = on::any_failure_t, class Listener = no_listener,
          environment Env = default_environment, class Ignores = on::nothing_t>
class circuit_breaker : public executable<circuit_breaker<Handles, Listener, Env, Ignores>> {
 public:
  /// Throws keel::config_error (aborts without exceptions) when `options` are invalid.
  // `X()` rather than `{}`: copy-list-initialization would make a type with an
  // explicit default constructor (virtual_environment) a hard error to ask
  // std::is_constructible about.
  explicit circuit_breaker(circuit_breaker_options options = {}, Handles handles = Handles(),
                           Listener listener = Listener(), Env env = Env(),
                           Ignores ignores = Ignores())
      : handles_(std::move(handles)),
        ignores_(std::move(ignores)),
        listener_(std::move(listener)),
        env_(std::move(env)),
        core_(std::move(options)) {}
  /// `keel::circuit_breaker({})`: the default options.
  explicit circuit_breaker(detail::empty_braces) : circuit_breaker(circuit_breaker_options()) {}

  circuit_breaker(const circuit_breaker&) = delete;
  circuit_breaker& operator=(const circuit_breaker&) = delete;

  /// For keel::rebuild: every part.
  circuit_breaker(from_parts_t, circuit_breaker_options options, Handles handles, Listener listener,
                  Env env, Ignores ignores, std::string_view name)
      : handles_(std::move(handles)),
        ignores_(std::move(ignores)),
        listener_(std::move(listener)),
        env_(std::move(env)),
        core_(std::move(options), name) {}

  // Fluent setters: each builds a new breaker (fresh state) with the same options.

  /// Which outcomes count as failures (keel::on:: predicates).
  template <class H>
  auto handle(H handles) && {
    return rebuild<circuit_breaker<H, Listener, Env, Ignores>, &circuit_breaker::handles_>(
        std::move(*this), std::move(handles), parts{});
  }
  /// Which failures say nothing about the dependency's health: counted as
  /// neither success nor failure (a probe slot is freed).
  template <class I>
  auto ignore(I ignores) && {
    return rebuild<circuit_breaker<Handles, Listener, Env, I>, &circuit_breaker::ignores_>(
        std::move(*this), std::move(ignores), parts{});
  }
  /// Where events go (circuit_opened, circuit_half_opened, circuit_closed,
  /// circuit_state_changed, call_rejected); counters attached stay attached.
  template <class L>
  auto with_listener(L listener) && {
    using slot = with_listener_t<Listener, L>;
    return rebuild<circuit_breaker<Handles, slot, Env, Ignores>, &circuit_breaker::listener_>(
        std::move(*this), replace_listener(std::move(listener_), std::move(listener)), parts{});
  }
  /// Also counts its events into `c` (keel::counters), which must outlive the breaker.
  auto with_counters(counters& c) && {
    using slot = with_counters_t<Listener>;
    return rebuild<circuit_breaker<Handles, slot, Env, Ignores>, &circuit_breaker::listener_>(
        std::move(*this), attach_counters(std::move(listener_), c), parts{});
  }
  /// Named `name` in its events' source (default "circuit_breaker"; cut at
  /// policy_name::capacity bytes).
  auto named(std::string_view name) && {
    return rebuild<circuit_breaker, &circuit_breaker::name>(std::move(*this), name, parts{});
  }
  /// The clock (and sleeper, random source) the breaker reads.
  template <environment E>
  auto with_environment(E env) && {
    return rebuild<circuit_breaker<Handles, Listener, E, Ignores>, &circuit_breaker::env_>(
        std::move(*this), std::move(env), parts{});
  }

  /// A scoped permission to make one call; see try_acquire().
  class permit {
   public:
    permit(permit&& other) noexcept
        : owner_(std::exchange(other.owner_, nullptr)),
          retry_after_ns_(other.retry_after_ns_),
          generation_(other.generation_),
          state_(other.state_),
          admitted_(other.admitted_) {}
    permit& operator=(permit&&) = delete;
    permit(const permit&) = delete;
    permit& operator=(const permit&) = delete;

    /// An unrecorded permit is released: counts as neither success nor
    /// failure, and frees its half-open probe slot for another caller.
    ~permit() { release(); }

    /// True when the call may go.
    explicit operator bool() const noexcept { return admitted_; }
    bool admitted() const noexcept { return admitted_; }
    /// True when the call is a half-open probe.
    bool is_probe() const noexcept { return admitted_ && state_ == circuit_state::half_open; }
    /// The generation (epoch) the call was admitted in: 0 at construction, +1
    /// at every transition and every isolate(), disable() or reset().
    std::uint64_t generation() const noexcept { return generation_; }
    /// For a rejection: circuit_open, or circuit_isolated when isolated by hand.
    errc rejection_code() const noexcept {
      return state_ == circuit_state::isolated ? errc::circuit_isolated : errc::circuit_open;
    }
    /// For a rejection: time until a probe may go, when known.
    std::optional<duration> retry_after() const noexcept {
      if (retry_after_ns_ < 0) return std::nullopt;
      return duration(retry_after_ns_);
    }
    /// The rejection as keel's error data (code and retry-after).
    error_info rejection() const { return {make_error_code(rejection_code()), retry_after()}; }

    /// Reports a success; `elapsed` is the call's duration (slow-call rule).
    void record_success(duration elapsed = {}) {
      finish(call_result::success, elapsed, std::nullopt);
    }
    /// Reports a failure; `retry_after` is a hint it carried (a Retry-After header).
    void record_failure(duration elapsed = {}, std::optional<duration> retry_after = std::nullopt) {
      finish(call_result::failure, elapsed, retry_after);
    }
    /// Classifies `o` with the breaker's predicates and reports it.
    template <class R>
    void record(const outcome<R>& o, duration elapsed = {}) {
      if (owner_ == nullptr) return;
      const call_result r =
          owner_->classify(o);  // may run user predicates: classify before letting go
      const circuit_breaker* b = std::exchange(owner_, nullptr);
      if (r == call_result::success && elapsed == duration::zero() &&
          b->core_.success_changes_nothing(generation_)) {
        return;
      }
      b->finish(
          generation_, r, elapsed, [b] { return b->env_.now(); }, [&o] { return o.retry_after(); });
    }
    /// Gives the permit back without a result (see the destructor).
    void release() noexcept {
      if (owner_ == nullptr) return;
      std::exchange(owner_, nullptr)->core_.release(generation_);
    }

   private:
    friend class circuit_breaker;
    permit(const circuit_breaker* owner, std::uint64_t generation, circuit_state state,
           bool admitted, std::optional<duration> retry_after = std::nullopt) noexcept
        : owner_(admitted ? owner : nullptr),
          retry_after_ns_(retry_after ? detail::max(retry_after->count(), std::int64_t{0}) : -1),
          generation_(generation),
          state_(state),
          admitted_(admitted) {}

    void finish(call_result r, duration elapsed, std::optional<duration> hint) {
      if (owner_ == nullptr) return;
      const circuit_breaker* b = std::exchange(owner_, nullptr);
      const auto now = [b] { return b->env_.now(); };
      b->finish(generation_, r, elapsed, now, [hint] { return hint; });
    }

    const circuit_breaker* owner_;  // null once recorded or released, and for rejections
    std::int64_t retry_after_ns_;   // -1: none (not std::optional: this is built on every call)
    std::uint64_t generation_;
    circuit_state state_;
    bool admitted_;
  };

  /// Asks to make one call (the two-step API, for code that cannot hand over a
  /// callable). Test the permit; if admitted, make the call and record its
  /// result on the permit. Never blocks; reads the clock only when not closed.
  permit try_acquire() const { return acquire(nullptr); }

  /// Runs `next` if the circuit lets it; a rejection is returned as
  /// outcome<R>::from_keel(circuit_open / circuit_isolated, retry_after):
  /// no exception, no allocation. Never throws.
  template <class R, class Next>
  outcome<R> run(Next&& next, context& ctx) const {
    // The closed path: one load admits; a success of a call admitted with no
    // run of failures under way (and no ratio window to feed) records nothing
    // and reads nothing more. No permit. Everything else (a slow-call rule,
    // any state but closed) goes through run_slow. Only prvalues are
    // returned here, so both paths build the outcome in the caller's slot.
    const admission_t a = core_.admit_closed();
    if (!a) [[unlikely]]
      return run_slow<R>(detail::pass_next(next), ctx);
    return run_closed<R>(a, next, ctx);
  }

  /// Forces the circuit open until reset(): calls get errc::circuit_isolated.
  void isolate() const { emit_for(listener_, core_.isolate(env_.now()), source_of(name())); }
  /// Keeps the circuit closed whatever happens (outcomes are still counted).
  void disable() const { emit_for(listener_, core_.disable(env_.now()), source_of(name())); }
  /// Closes the circuit with empty windows and the initial open time.
  void reset() const { emit_for(listener_, core_.reset(env_.now()), source_of(name())); }

  circuit_state state() const noexcept { return core_.state(); }
  /// The name set by named() ("circuit_breaker" by default), kept by the state machine.
  std::string_view name() const noexcept { return core_.name(); }
  /// Counters and the current window, readable without a listener.
  circuit_metrics metrics() const { return core_.metrics(env_.now()); }
  const circuit_breaker_options& options() const noexcept { return core_.options(); }
  /// The state machine itself, to drive by hand next to this breaker.
  breaker_state_machine& core() const noexcept { return core_; }

  /// How the breaker counts an outcome: ignored (Ignores, a cancellation, or
  /// an inner policy's rejection, whatever Handles says), failure (Handles),
  /// else success.
  template <class R>
  call_result classify(const outcome<R>& o) const {
    if (detail::ask_user_predicate(ignores_, o)) return call_result::ignored;
    if (may_be_cancellation(o)) {
      if (is_cancellation(o)) return call_result::ignored;
      // A rejection (a full bulkhead, a rate limit inside the breaker) never
      // reached the dependency: neither a failure nor a success of it.
      if (inner_rejection(o)) return call_result::ignored;
    }
    return detail::ask_user_predicate(handles_, o) ? call_result::failure : call_result::success;
  }

 private:
  using admission_t = breaker_state_machine::closed_admission;
  // Whether anything hears or counts one of the breaker's events: without,
  // no source is ever built.
  static constexpr bool observed =
      observes<Listener, circuit_state_changed> || observes<Listener, circuit_opened> ||
      observes<Listener, circuit_half_opened> || observes<Listener, circuit_closed> ||
      observes<Listener, call_rejected>;

  // try_acquire(); a rejection's source names the pipeline of `ctx`, if any.
  permit acquire(const context* ctx) const {
    const circuit_admission a = core_.try_acquire_with([this] { return env_.now(); });
    if constexpr (observed) {
      emit_for(listener_, a, source_of(name()),
               ctx != nullptr ? source_of(name(), *ctx) : source_of(name()));
    }
    return permit(this, a.generation, a.state, a.admitted, a.retry_after);
  }

  // Admitted on the closed path. Returns `o` only: GCC builds a named result
  // in the caller's slot only when every return names it.
  template <class R, class Next>
  outcome<R> run_closed(const admission_t& a, Next& next, context& ctx) const {
    outcome<R> o = next(ctx);
    const call_result r = classify(o);
    if (r == call_result::success) [[likely]] {
      core_.record_closed_success(a, [this] { return env_.now(); });
    } else if (r != call_result::failure || !core_.record_closed_failure(a)) {
      finish_closed(a.generation(), r, o);
    }
    return o;
  }

  // Not admitted on the first look (reloaded with acquire): an open circuit
  // rejects with one clock read, one load of the open time and one counter
  // increment; a circuit closed in a later cell than the first (after 2^27 transitions, see
  // detail/state_word.hpp) takes the closed path on that cell; anything else
  // takes a permit. `next` comes by value (detail::pass_next), so that the
  // closed path keeps it in registers.
  template <class R, class Next>
  outcome<R> run_slow(Next next, context& ctx) const {
    const open_rejection r =
        core_.reject_open(core_.admit_closed_current(), [this] { return env_.now(); });
    if (r) {
      if constexpr (observed) emit_for(listener_, r, source_of(name(), ctx));
      return outcome<R>::from_keel(errc::circuit_open, r.retry_after());
    }
    return run_permitted<R>(next, ctx);
  }

  // The general path of run(): the closed path on a later cell, or a permit,
  // a clock read around the call when the slow-call rule wants one, and the
  // rejection as a keel failure.
  template <class R, class Next>
  outcome<R> run_permitted(Next next, context& ctx) const {
    // A fresh look first (nothing of run_slow's is kept across its clock
    // read): closed in a later cell, or closed again meanwhile.
    if (const admission_t a = core_.admit_closed_current()) [[unlikely]]
      return run_closed<R>(a, next, ctx);
    permit p = acquire(&ctx);
    const bool timed = p.admitted_ && core_.measures_duration();
    const time_point start = timed ? env_.now() : time_point{};
    outcome<R> o =
        p.admitted_ ? next(ctx) : outcome<R>::from_keel(p.rejection_code(), p.retry_after());
    if (p.owner_ != nullptr) {
      if (timed) {
        const time_point end = env_.now();
        const call_result r = classify(o);
        p.owner_ = nullptr;
        if (r != call_result::success ||
            !core_.success_changes_nothing(p.generation_, end - start)) {
          finish(
              p.generation_, r, end - start, [end] { return end; },
              [&o] { return o.retry_after(); });
        }
      } else {
        const call_result r = classify(o);
        p.owner_ = nullptr;
        if (r != call_result::success || !core_.success_changes_nothing(p.generation_)) {
          finish(
              p.generation_, r, duration::zero(), [this] { return env_.now(); },
              [&o] { return o.retry_after(); });
        }
      }
    }
    return o;
  }

  // A failure (or an ignored outcome) of a call admitted on the closed path
  // that record_closed_failure could not take: may trip, so it stays out of line.
  template <class R>
  KEEL_DETAIL_NOINLINE void finish_closed(std::uint64_t generation, call_result r,
                                          const outcome<R>& o) const {
    finish(
        generation, r, duration::zero(), [this] { return env_.now(); },
        [&o] { return o.retry_after(); });
  }

  template <class NowFn, class HintFn>
  void finish(std::uint64_t generation, call_result r, duration elapsed, NowFn&& now,
              HintFn&& hint) const {
    if (auto t = core_.record_with(generation, r, elapsed, now, hint)) [[unlikely]]
      if constexpr (observed) emit_for(listener_, *t, source_of(name()));
  }

  // Out of line: a failure path only, kept from changing how the hot paths inline.
  template <class R>
  KEEL_DETAIL_NOINLINE static bool inner_rejection(const outcome<R>& o) noexcept {
    return is_rejection(o);
  }

  // is_cancellation compares error codes through virtual calls; an error value
  // that is not an error code can never be a cancellation, so skip it then.
  template <class R>
  static bool may_be_cancellation(const outcome<R>& o) noexcept {
    if (o.has_value()) return false;
    if constexpr (expected_like<R>) {
      using E = error_type_t<R>;
      if constexpr (!std::is_convertible_v<const E&, std::error_code> &&
                    !std::is_error_code_enum_v<E>) {
        if (o.has_error_value()) return false;
      }
    }
    return true;
  }

  // The empty members first: Handles and Ignores usually share a base
  // (on::predicate_base), and only at the front can both take no space.
  [[no_unique_address]] Handles handles_;
  [[no_unique_address]] Ignores ignores_;
  [[no_unique_address]] Listener listener_;
  [[no_unique_address]] Env env_;
  mutable breaker_state_machine core_;

  // What the fluent setters carry over, in the order of the from_parts constructor.
  using parts = keel::parts<&circuit_breaker::options, &circuit_breaker::handles_,
                            &circuit_breaker::listener_, &circuit_breaker::env_,
                            &circuit_breaker::ignores_, &circuit_breaker::name>;

  // Last in the class: Clang 14 drops the members declared after a failed
  // one, and keel::rebuild would then report a second error.
  static_assert(detail::may_take_outcome<Handles>(),
                "keel::circuit_breaker::handle needs a predicate on the outcome: a keel::on:: "
                "predicate, or a callable taking const keel::outcome<R>&; to test the returned "
                "value use keel::on::result(f), an error value keel::on::error(f)");
  static_assert(detail::may_take_outcome<Ignores>(),
                "keel::circuit_breaker::ignore needs a predicate on the outcome: a keel::on:: "
                "predicate, or a callable taking const keel::outcome<R>&; to test the returned "
                "value use keel::on::result(f), an error value keel::on::error(f)");
};

// clang-format off
circuit_breaker() -> circuit_breaker<>;
circuit_breaker(circuit_breaker_options) -> circuit_breaker<>;
// clang-format on

}  // namespace keel

#endif  // KEEL_CIRCUIT_BREAKER_CIRCUIT_BREAKER_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_RETRY_RETRY_HPP_INCLUDED
#define KEEL_RETRY_RETRY_HPP_INCLUDED

#include <atomic>
#include <concepts>
#include <cstdint>
#include <exception>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>

#include "keel/core/classify.hpp"
#include "keel/core/config_error.hpp"
#include "keel/core/context.hpp"
#include "keel/core/environment.hpp"
#include "keel/core/error.hpp"
#include "keel/core/events.hpp"
#include "keel/core/expected_like.hpp"
#include "keel/core/outcome.hpp"
#include "keel/core/policy.hpp"
#include "keel/core/time.hpp"
#include "keel/detail/config.hpp"
#include "keel/retry/backoff.hpp"
#include "keel/retry/retry_budget.hpp"
#include "keel/retry/retry_events.hpp"
#include "keel/retry/retry_options.hpp"

namespace keel {

/// Placeholder of retry_hooks: no hint extractor (keel's own hints still apply).
struct no_retry_hint {};
/// Placeholder of retry_hooks: no user delay function (the backoff decides).
struct no_delay_function {};

/// The optional parts of a retry, each set by a fluent call and each a type of
/// its own so that nothing is type-erased: `abort_on(pred)`, `with_hint(f)`,
/// `with_delay(f)`. Empty members take no space.
template <class AbortOn = on::nothing_t, class Hint = no_retry_hint,
          class Delay = no_delay_function>
struct retry_hooks {
  static_assert(
      detail::may_take_outcome<AbortOn>(),
      "keel::retry::abort_on needs a predicate on the outcome: a keel::on:: predicate, or a "
      "callable taking const keel::outcome<R>&; to test the returned value use "
      "keel::on::result(f), an error value keel::on::error(f)");

  [[no_unique_address]] AbortOn abort_on{};
  [[no_unique_address]] Hint hint{};
  [[no_unique_address]] Delay delay{};
};

namespace detail {

/// keel::is_cancellation, without its error-category comparison for an error
/// value whose code is empty (an error type that is not an error code), which
/// can never be a cancellation.
template <class R>
bool is_cancelled_failure(const outcome<R>& o) {
  if (o.has_error_value() && !o.code()) return false;
  return is_cancellation(o);
}

/// True when a failure is a timeout (keel's, an error value or a thrown
/// std::system_error equivalent to std::errc::timed_out): the AWS quota charges more.
/// A category whose equivalent() throws (user code) makes it false.
template <class R>
bool is_timeout(const outcome<R>& o) noexcept {
  return call_or(false, [&] {
    if (o.has_exception()) {
      return inspect_exception<std::system_error>(
          o.exception(), false, [](const auto& e) { return e.code() == std::errc::timed_out; });
    }
    return o.code() == std::errc::timed_out;
  });
}

/// A relaxed atomic counter that copies its value, so that a policy holding
/// counters stays copyable.
class relaxed_counter {
 public:
  relaxed_counter() = default;
  relaxed_counter(const relaxed_counter& other) noexcept : value_(other.get()) {}
  relaxed_counter& operator=(const relaxed_counter& other) noexcept {
    value_.store(other.get(), std::memory_order_relaxed);
    return *this;
  }
  void increment() noexcept { value_.fetch_add(1, std::memory_order_relaxed); }
  std::uint64_t get() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

struct retry_counter_block {
  relaxed_counter retries, successes_after_retry, exhausted, aborted, budget_refusals;
};

struct retry_unchecked_t {};
inline constexpr retry_unchecked_t retry_unchecked{};

/// Puts the caller's attempt number back when the retry loop ends.
class attempt_restorer {
 public:
  explicit attempt_restorer(context& ctx) noexcept : ctx_(ctx), attempt_(ctx.attempt()) {}
  ~attempt_restorer() { ctx_.set_attempt(attempt_); }
  attempt_restorer(const attempt_restorer&) = delete;
  attempt_restorer& operator=(const attempt_restorer&) = delete;

 private:
  context& ctx_;
  int attempt_;
};

/// What one call's retry loop remembers; lives on that call's stack, never in
/// the (shared) policy.
struct retry_run_state {
  backoff_state backoff{};
  time_point start{};
  bool timed = false;                     // start was read (max_elapsed is set)
  bool last_retry_after_timeout = false;  // for the budget's refund
};

}  // namespace detail

/// Calls again what failed: up to `max_attempts` calls, waiting a backoff
/// between them, honouring hints, deadlines, cancellation and a shared budget.
///
///     keel::retry retry{{.max_attempts = 4}};
///     int v = retry.execute([] { return fetch(); });
///
/// Which outcomes are retried: those `Handles` matches (default: any failure),
/// except cancellations, those `abort_on` matches, and rejections by inner
/// policies unless `retry_rejections`. const and thread-safe: one policy may
/// serve any number of threads; per-call state lives on each call's stack.
template <class Handles = on::any_failure_t, class Listener = no_listener,
          environment Env = default_environment, class Hooks = retry_hooks<>>
class retry : public executable<retry<Handles, Listener, Env, Hooks>> {
  static_assert(
      detail::may_take_outcome<Handles>(),
      "keel::retry::handle needs a predicate on the outcome: a keel::on:: predicate, or a "
      "callable taking const keel::outcome<R>&; to test the returned value use "
      "keel::on::result(f), an error value keel::on::error(f)");

 public:
  /// Throws keel::config_error when `options` are invalid (see validate()).
  // Env() rather than {}: an environment's default constructor may be explicit.
  explicit retry(retry_options options = {}, Handles handles = Handles(),
                 Listener listener = Listener(), Env env = Env())
      : options_(checked(std::move(options))),
        handles_(std::move(handles)),
        listener_(std::move(listener)),
        env_(std::move(env)),
        plain_(options_.max_elapsed == duration::max()) {}
  /// `keel::retry({})`: the default options.
  explicit retry(detail::empty_braces) : retry(retry_options()) {}

  /// The same retry handling the outcomes `h` matches (a keel::on predicate).
  template <class H>
  auto handle(H h) const {
    return retry<H, Listener, Env, Hooks>(detail::retry_unchecked, options_, std::move(h),
                                          listener_, env_, hooks_, budget_);
  }

  /// The same retry, which never retries a failure `p` matches (a keel::on
  /// predicate): it returns it at once with a retry_aborted event.
  template <class P>
  auto abort_on(P p) const {
    using hooks = retry_hooks<P, decltype(hooks_.hint), decltype(hooks_.delay)>;
    return retry<Handles, Listener, Env, hooks>(
        detail::retry_unchecked, options_, handles_, listener_, env_,
        hooks{std::move(p), hooks_.hint, hooks_.delay}, budget_);
  }

  /// The same retry, reading a hint from the callable's result:
  /// `f(const R&)` (or, for an expected-like R, `f(value)` / `f(error)`) returns
  /// std::optional<keel::duration>, e.g. from an HTTP 429's Retry-After
  /// (keel::parse_retry_after). A hint wins over the backoff, up to max_hint_delay.
  /// An exception from `f` counts as "no hint".
  template <class F>
  auto with_hint(F f) const {
    using hooks = retry_hooks<decltype(hooks_.abort_on), F, decltype(hooks_.delay)>;
    return retry<Handles, Listener, Env, hooks>(
        detail::retry_unchecked, options_, handles_, listener_, env_,
        hooks{hooks_.abort_on, std::move(f), hooks_.delay}, budget_);
  }

  /// The same retry, asking `f(attempt, const keel::failure&)` or
  /// `f(attempt, const keel::outcome<R>&)` for each delay instead of the backoff;
  /// `attempt` is the attempt that failed, and std::nullopt means "stop retrying"
  /// (as does an exception from `f`). Called only after a failure.
  template <class F>
  auto with_delay(F f) const {
    using hooks = retry_hooks<decltype(hooks_.abort_on), decltype(hooks_.hint), F>;
    return retry<Handles, Listener, Env, hooks>(
        detail::retry_unchecked, options_, handles_, listener_, env_,
        hooks{hooks_.abort_on, hooks_.hint, std::move(f)}, budget_);
  }

  /// The same retry, reporting to `l` (pass std::ref(l) to share one).
  template <class L>
  auto with_listener(L l) const {
    return retry<Handles, L, Env, Hooks>(detail::retry_unchecked, options_, handles_, std::move(l),
                                         env_, hooks_, budget_);
  }

  /// The same retry, reading time, sleeping and drawing random numbers through `e`.
  template <environment E>
  auto with_environment(E e) const {
    return retry<Handles, Listener, E, Hooks>(detail::retry_unchecked, options_, handles_,
                                              listener_, std::move(e), hooks_, budget_);
  }

  /// The same retry, asking `budget` before every retry and feeding it every
  /// attempt's result. Not owned: the budget must outlive this policy.
  retry with_budget(retry_budget& budget) const {
    retry r(detail::retry_unchecked, options_, handles_, listener_, env_, hooks_, &budget);
    return r;
  }

  /// Runs `next` until it succeeds or retrying stops; never throws.
  template <class R, class Next>
  outcome<R> run(Next&& next, context& ctx) const {
    detail::attempt_restorer restore(ctx);
    ctx.set_attempt(1);
    // Only prvalues are returned here, so both paths build the outcome in
    // the caller's slot.
    if (!plain_) [[unlikely]]
      return run_measured<R>(next, ctx);
    return run_plain<R>(next, ctx);
  }

  const retry_options& options() const noexcept { return options_; }
  /// The budget set by with_budget, or null.
  retry_budget* budget() const noexcept { return budget_; }
  /// A snapshot of the counters (relaxed reads).
  retry_counters counters() const noexcept {
    return {counters_.retries.get(), counters_.successes_after_retry.get(),
            counters_.exhausted.get(), counters_.aborted.get(), counters_.budget_refusals.get()};
  }

 private:
  template <class, class, environment, class>
  friend class retry;

  retry(detail::retry_unchecked_t, retry_options options, Handles handles, Listener listener,
        Env env, Hooks hooks, retry_budget* budget)
      : options_(std::move(options)),
        handles_(std::move(handles)),
        listener_(std::move(listener)),
        env_(std::move(env)),
        hooks_(std::move(hooks)),
        budget_(budget),
        plain_(options_.max_elapsed == duration::max() && budget == nullptr) {}

  static retry_options checked(retry_options o) {
    detail::require_valid(validate(o));
    return o;
  }

  // The first attempt of a plain retry: a call and a test, no state.
  template <class R, class Next>
  outcome<R> run_plain(Next& next, context& ctx) const {
    outcome<R> o = next(ctx);
    if (detail::ask_user_predicate(handles_, o)) [[unlikely]] {
      detail::retry_run_state state;
      retry_until_done(o, detail::pass_next(next), ctx, state);
    }
    return o;
  }

  // With a budget or max_elapsed: the start time is read before the first
  // attempt, and the budget hears of every success.
  template <class R, class Next>
  outcome<R> run_measured(Next& next, context& ctx) const {
    detail::retry_run_state state;
    if (options_.max_elapsed != duration::max()) {  // the only clock read before a failure
      state.start = env_.now();
      state.timed = true;
    }
    outcome<R> o = next(ctx);
    if (detail::ask_user_predicate(handles_, o)) {
      retry_until_done(o, detail::pass_next(next), ctx, state);
    } else {
      note_success(1, state);
    }
    return o;
  }

  // `o` is the failure of attempt 1; on return it holds what the caller gets.
  // `next` comes by value (detail::pass_next): the fast path keeps it in registers.
  template <class R, class Next>
  void retry_until_done(outcome<R>& o, Next next, context& ctx,
                        detail::retry_run_state& state) const {
    for (int attempt = 1; should_retry(o, attempt, state, ctx);) {
      ctx.set_attempt(++attempt);
      o = next(ctx);
      if (!detail::ask_user_predicate(handles_, o)) {
        note_success(attempt, state);
        return;
      }
    }
  }

  void note_success(int attempt, const detail::retry_run_state& state) const noexcept {
    if (attempt > 1) counters_.successes_after_retry.increment();
    if (budget_ != nullptr) budget_->record_success(attempt > 1, state.last_retry_after_timeout);
  }

  // The failure path, kept out of run() so that the success path stays a
  // call, a test and a return. True: sleep done, try again. False: `o` is what
  // the caller gets (the failure, or errc::cancelled after a stop request).
  template <class R>
  bool should_retry(outcome<R>& o, int attempt, detail::retry_run_state& state,
                    context& ctx) const {
    if (detail::is_cancelled_failure(o)) return aborted(o, attempt, give_up_reason::cancelled);
    if (detail::ask_user_predicate(hooks_.abort_on, o))
      return aborted(o, attempt, give_up_reason::abort_predicate);
    if (!options_.retry_rejections && detail::ask_user_predicate(on::rejection, o)) {
      return aborted(o, attempt, give_up_reason::rejection);
    }
    // Only a budget cares whether it was a timeout; don't pay a rethrow otherwise.
    const bool timed_out = budget_ != nullptr && detail::is_timeout(o);
    if (budget_ != nullptr) budget_->record_failure();
    if (attempt >= options_.max_attempts)
      return exhausted(o, attempt, give_up_reason::max_attempts);
    if (ctx.stop_requested()) {
      aborted(o, attempt, give_up_reason::cancelled);
      o = outcome<R>::from_keel(errc::cancelled);
      return false;
    }

    duration delay{};
    if constexpr (std::is_same_v<decltype(hooks_.delay), no_delay_function>) {
      delay = options_.backoff.next(attempt, state.backoff, env_);
    } else {
      const std::optional<duration> chosen = user_delay(attempt, o);
      if (!chosen) return exhausted(o, attempt, give_up_reason::delay_function);
      delay = *chosen > duration::zero() ? *chosen : duration::zero();
    }
    bool from_hint = false;
    // Only keel failures, exceptions and an extractor can carry a hint; testing
    // first keeps an error value's retry free of the optional's round trip.
    if (o.has_keel_error() || o.has_exception() ||
        !std::is_same_v<decltype(hooks_.hint), no_retry_hint>) {
      if (const std::optional<duration> hint = hint_of(o)) {
        delay = *hint < duration::zero() ? duration::zero() : *hint;
        if (delay > options_.max_hint_delay) delay = options_.max_hint_delay;
        from_hint = true;
      }
    }

    if (state.timed) {
      const duration elapsed = detail::time_until(state.start, env_.now());
      if (detail::saturating_add(elapsed, delay) >= options_.max_elapsed) {
        return exhausted(o, attempt, give_up_reason::max_elapsed);
      }
    }
    // remaining() reads the clock of whoever set the deadline, which is the
    // right one even when that policy's environment differs from ours.
    if (ctx.has_deadline() && delay >= ctx.remaining()) {
      return exhausted(o, attempt, give_up_reason::deadline);
    }
    if (budget_ != nullptr && !budget_->try_acquire(timed_out)) {
      counters_.budget_refusals.increment();
      if constexpr (detail::listens_to<Listener, retry_budget_exhausted>) {
        detail::emit(listener_, retry_budget_exhausted{attempt, o.describe()});
      }
      return false;
    }
    state.last_retry_after_timeout = timed_out;

    counters_.retries.increment();
    if constexpr (detail::listens_to<Listener, retry_scheduled>) {
      detail::emit(listener_, retry_scheduled{attempt, delay, o.describe(), from_hint});
    }
    if (!env_.sleep_for(delay, ctx.stop_token())) {
      aborted(o, attempt, give_up_reason::cancelled);
      o = outcome<R>::from_keel(errc::cancelled);
      return false;
    }
    return true;
  }

  template <class R>
  bool aborted(const outcome<R>& o, int attempt, give_up_reason reason) const {
    counters_.aborted.increment();
    if constexpr (detail::listens_to<Listener, retry_aborted>) {
      detail::emit(listener_, retry_aborted{attempt, reason, o.describe()});
    }
    return false;
  }

  template <class R>
  bool exhausted(const outcome<R>& o, int attempts, give_up_reason reason) const {
    counters_.exhausted.increment();
    if constexpr (detail::listens_to<Listener, retries_exhausted>) {
      detail::emit(listener_, retries_exhausted{attempts, reason, o.describe()});
    }
    return false;
  }

  // A user function that throws must not make run() throw: a delay function
  // that throws means "stop retrying", a hint extractor that throws means "no hint".
  template <class R>
  std::optional<duration> user_delay(int attempt, const outcome<R>& o) const noexcept {
#if KEEL_HAS_EXCEPTIONS
    try {
      return call_user_delay(attempt, o);
    } catch (...) {
      return std::nullopt;
    }
#else
    return call_user_delay(attempt, o);
#endif
  }

  template <class R>
  std::optional<duration> call_user_delay(int attempt, const outcome<R>& o) const {
    using F = decltype(hooks_.delay);
    if constexpr (std::invocable<const F&, int, const outcome<R>&>) {
      return hooks_.delay(attempt, o);
    } else {
      static_assert(std::invocable<const F&, int, const failure&>,
                    "keel: with_delay(f): f must be callable as f(int attempt, const "
                    "keel::failure&) or f(int attempt, const keel::outcome<R>&) and return "
                    "std::optional<keel::duration>");
      return hooks_.delay(attempt, o.describe());
    }
  }

  template <class R>
  std::optional<duration> hint_of(const outcome<R>& o) const {
    using F = decltype(hooks_.hint);
    if constexpr (!std::is_same_v<F, no_retry_hint> && !std::is_void_v<R>) {
      if (o.has_result()) {
#if KEEL_HAS_EXCEPTIONS
        try {
          return result_hint(o.value());
        } catch (...) {
          return std::nullopt;
        }
#else
        return result_hint(o.value());
#endif
      }
    }
    return o.retry_after();  // keel's own failures and a thrown keel::error
  }

  template <class R>
  std::optional<duration> result_hint(const R& r) const {
    using F = decltype(hooks_.hint);
    if constexpr (std::invocable<const F&, const R&>) {
      return hooks_.hint(r);
    } else if constexpr (expected_like<R>) {
      constexpr bool on_value = std::invocable<const F&, decltype(*std::declval<const R&>())>;
      constexpr bool on_error =
          std::invocable<const F&, decltype(std::declval<const R&>().error())>;
      static_assert(on_value || on_error,
                    "keel: with_hint(f): f cannot take this callable's result, its value or "
                    "its error");
      if (r.has_value()) {
        if constexpr (on_value) return hooks_.hint(*r);
      } else {
        if constexpr (on_error) return hooks_.hint(r.error());
      }
      return std::nullopt;
    } else {
      static_assert(std::invocable<const F&, const R&>,
                    "keel: with_hint(f): f must be callable as f(const R&) with the callable's "
                    "result type R and return std::optional<keel::duration>");
      return std::nullopt;
    }
  }

  retry_options options_;
  [[no_unique_address]] Handles handles_;
  [[no_unique_address]] Listener listener_;
  [[no_unique_address]] Env env_;
  [[no_unique_address]] Hooks hooks_{};
  retry_budget* budget_ = nullptr;
  // Neither max_elapsed nor a budget: the success path then tests this one flag.
  bool plain_ = true;
  mutable detail::retry_counter_block counters_{};
};

retry() -> retry<>;
retry(retry_options) -> retry<>;

}  // namespace keel

#endif  // KEEL_RETRY_RETRY_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_RETRY_RETRY_HPP_INCLUDED
#define KEEL_RETRY_RETRY_HPP_INCLUDED

#include <concepts>
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
#include "keel/core/fluent.hpp"
#include "keel/core/inspect.hpp"
#include "keel/core/observe.hpp"
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

/// The delay a hint extractor's answer asks for: an optional duration as it
/// is, a keel::hint's retry_after.
inline std::optional<duration> delay_of(std::optional<duration> d) noexcept { return d; }
inline std::optional<duration> delay_of(const keel::hint& h) noexcept { return h.retry_after; }

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

}  // namespace detail

template <class Handles, class Listener, environment Env, class Hooks>
class retry;

/// One call's progress through a retry: its attempt number and what the
/// backoff, max_elapsed and the budget remember between attempts. Made by
/// retry::begin(); it lives with the call (a stack or coroutine frame), never
/// in the shared policy, and only the policy changes it.
class retry_call {
 public:
  /// 1-based number of the attempt under way; once decide() said "again", the
  /// number of the attempt to make after the wait.
  int attempt() const noexcept { return attempt_; }

 private:
  template <class, class, environment, class>
  friend class retry;
  retry_call() = default;

  backoff_state backoff_{};
  time_point start_{};
  int attempt_ = 1;
  bool timed_ = false;                     // start_ was read (max_elapsed is set)
  bool last_retry_after_timeout_ = false;  // for the budget's refund
  // For the step API only (run() never reads them): a decision is waited
  // on; the call is over. A driver that asks out of turn changes nothing.
  bool waiting_ = false;
  bool over_ = false;
};

/// What retry::decide() answers after a failure: again, after delay(), with
/// attempt call.attempt(); or stop, and the outcome holds what the caller gets.
class retry_decision {
 public:
  /// Stop retrying.
  static constexpr retry_decision stop() noexcept { return {}; }
  /// Retry after `delay`; `from_hint`: the delay is a hint, not the backoff.
  static constexpr retry_decision after(duration delay, bool from_hint) noexcept {
    retry_decision d;
    d.delay_ = delay;
    d.kind_ = from_hint ? hint_delay : backoff_delay;
    return d;
  }

  /// True when the call is to be retried after delay().
  constexpr bool again() const noexcept { return kind_ != stopped; }
  /// again(), for `if (!decision)`.
  explicit constexpr operator bool() const noexcept { return again(); }
  /// The wait before the next attempt (>= 0); zero when stopping.
  constexpr duration delay() const noexcept { return delay_; }
  /// True when delay() is a hint (Retry-After, a keel failure's retry_after()).
  constexpr bool from_hint() const noexcept { return kind_ == hint_delay; }

 private:
  // One byte rather than two bools: the answer then fits two registers cheaply.
  enum kind : unsigned char { stopped, backoff_delay, hint_delay };
  duration delay_{};
  kind kind_ = stopped;
};

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
 public:
  /// Throws keel::config_error when `options` are invalid (see validate()).
  // Env() rather than {}: an environment's default constructor may be explicit.
  explicit retry(retry_options options = {}, Handles handles = Handles(),
                 Listener listener = Listener(), Env env = Env())
      : options_(checked(std::move(options))),
        handles_(std::move(handles)),
        listener_(std::move(listener)),
        env_(std::move(env)),
        fixed_delay_(fixed_delay_of(options_.backoff)),
        plain_(options_.max_elapsed == duration::max()) {}
  /// `keel::retry({})`: the default options.
  explicit retry(detail::empty_braces) : retry(retry_options()) {}

  /// For keel::rebuild: every part, the options validated again.
  retry(from_parts_t, retry_options options, Handles handles, Listener listener, Env env,
        Hooks hooks, retry_budget* budget, policy_name name)
      : options_(checked(std::move(options))),
        handles_(std::move(handles)),
        listener_(std::move(listener)),
        env_(std::move(env)),
        hooks_(std::move(hooks)),
        budget_(budget),
        name_(name),
        fixed_delay_(fixed_delay_of(options_.backoff)),
        plain_(options_.max_elapsed == duration::max() && budget == nullptr) {}

  /// The same retry handling the outcomes `h` matches (a keel::on predicate).
  template <class H>
  auto handle(H h) const {
    return rebuild<retry<H, Listener, Env, Hooks>, &retry::handles_>(*this, std::move(h), parts{});
  }

  /// The same retry, which never retries a failure `p` matches (a keel::on
  /// predicate): it returns it at once with a retry_aborted event.
  template <class P>
  auto abort_on(P p) const {
    using hooks = retry_hooks<P, decltype(hooks_.hint), decltype(hooks_.delay)>;
    return rebuild<retry<Handles, Listener, Env, hooks>, &retry::hooks_>(
        *this, hooks{std::move(p), hooks_.hint, hooks_.delay}, parts{});
  }

  /// The same retry, reading a hint from the callable's result:
  /// `f(const R&)` (or, for an expected-like R, `f(value)` / `f(error)`) returns
  /// std::optional<keel::duration> or a keel::hint (its retry_after is used),
  /// e.g. from an HTTP 429's Retry-After (keel::parse_retry_after). A hint wins
  /// over the backoff, up to max_hint_delay. An exception from `f` counts as "no hint".
  template <class F>
  auto with_hint(F f) const {
    using hooks = retry_hooks<decltype(hooks_.abort_on), F, decltype(hooks_.delay)>;
    return rebuild<retry<Handles, Listener, Env, hooks>, &retry::hooks_>(
        *this, hooks{hooks_.abort_on, std::move(f), hooks_.delay}, parts{});
  }

  /// The same retry, asking `f(attempt, const keel::failure&)` or
  /// `f(attempt, const keel::outcome<R>&)` for each delay instead of the backoff;
  /// `attempt` is the attempt that failed, and std::nullopt means "stop retrying"
  /// (as does an exception from `f`). Called only after a failure.
  template <class F>
  auto with_delay(F f) const {
    using hooks = retry_hooks<decltype(hooks_.abort_on), decltype(hooks_.hint), F>;
    return rebuild<retry<Handles, Listener, Env, hooks>, &retry::hooks_>(
        *this, hooks{hooks_.abort_on, hooks_.hint, std::move(f)}, parts{});
  }

  /// The same retry, reporting to `l` (pass std::ref(l) to share one);
  /// counters attached with with_counters stay attached.
  template <class L>
  auto with_listener(L l) const {
    return rebuild<retry<Handles, with_listener_t<Listener, L>, Env, Hooks>, &retry::listener_>(
        *this, replace_listener(listener_, std::move(l)), parts{});
  }

  /// The same retry, also counting its events into `c` (keel::counters),
  /// which every copy shares and which must outlive them.
  auto with_counters(counters& c) const {
    return rebuild<retry<Handles, with_counters_t<Listener>, Env, Hooks>, &retry::listener_>(
        *this, attach_counters(listener_, c), parts{});
  }

  /// The same retry, named `name` in its events' source (default "retry";
  /// cut at policy_name::capacity bytes).
  retry named(std::string_view name) const {
    return rebuild<retry, &retry::name_>(*this, name, parts{});
  }

  /// The same retry, reading time, sleeping and drawing random numbers through `e`.
  template <environment E>
  auto with_environment(E e) const {
    return rebuild<retry<Handles, Listener, E, Hooks>, &retry::env_>(*this, std::move(e), parts{});
  }

  /// The same retry, asking `budget` before every retry and feeding it every
  /// attempt's result. Not owned: the budget must outlive this policy.
  retry with_budget(retry_budget& budget) const {
    return rebuild<retry, &retry::budget_>(*this, &budget, parts{});
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

  // ---- The rules, one step at a time, for a driver of one's own -----------
  // run() is one driver over them; an asynchronous one makes the same calls
  // and waits its own way (docs/retry.md, "Driving it yourself").

  /// Starts a call at attempt 1. Reads the clock (the start of max_elapsed)
  /// only when max_elapsed is set; call it before the first attempt.
  retry_call begin() const {
    retry_call call;
    if (options_.max_elapsed != duration::max()) {  // the only clock read before a failure
      call.start_ = env_.now();
      call.timed_ = true;
    }
    return call;
  }

  /// True when `o` is an outcome this retry handles (`Handles` matches: a
  /// failure to decide() about); false: the call is over, report succeeded().
  template <class R>
  bool handles(const outcome<R>& o) const noexcept {
    return detail::ask_user_predicate(handles_, o);
  }

  /// After attempt call.attempt() ended in `o`, a failure handles() matched:
  /// again after a delay (the attempt is advanced) or stop, with `o` what the
  /// caller gets (errc::cancelled after a stop request). Counts, feeds the budget, emits.
  /// Once the call is over (a stop, succeeded(), interrupted()), answers
  /// stop and changes nothing.
  template <class R>
  retry_decision decide(outcome<R>& o, retry_call& call, const context& ctx) const {
    if (call.over_) return retry_decision::stop();
    const retry_decision d = decide_now<false>(o, call, ctx);
    call.waiting_ = d.again();
    call.over_ = !d.again();
    return d;
  }

  /// The call ended after call.attempt() attempts with an outcome handles()
  /// does not match: emits retry_succeeded if it was retried, tells the
  /// budget. Once per call; nothing after the call is over.
  void succeeded(retry_call& call, const context& ctx = context()) const noexcept {
    if (call.over_) return;
    call.over_ = true;
    note_success(call.attempt_ > 1, call, ctx);
  }

  /// The wait decide() asked for ended early on a stop request: reports the
  /// failure in `o` as aborted (cancelled) and makes `o` errc::cancelled.
  /// Only while a decision to try again is waited on; otherwise nothing.
  template <class R>
  void interrupted(outcome<R>& o, retry_call& call, const context& ctx = context()) const {
    if (!call.waiting_ || call.over_) return;
    call.over_ = true;
    cancel(o, call.attempt_ - 1, ctx);
  }

  const retry_options& options() const noexcept { return options_; }
  /// The budget set by with_budget, or null.
  retry_budget* budget() const noexcept { return budget_; }
  /// The name set by named() ("retry" by default).
  std::string_view name() const noexcept { return name_.view(); }

 private:
  static retry_options checked(retry_options o) {
    detail::require_valid(validate(o));
    return o;
  }

  // The delay of a constant backoff without jitter (backoff::none() too),
  // which a failure then reads without asking the backoff; else negative.
  static duration fixed_delay_of(const backoff& b) noexcept {
    const auto* c = std::get_if<constant_backoff>(&b.get());
    return c != nullptr && c->jitter == 0.0 ? c->delay : duration(-1);
  }

  // The first attempt of a plain retry: a call and a test, no state.
  template <class R, class Next>
  outcome<R> run_plain(Next& next, context& ctx) const {
    outcome<R> o = next(ctx);
    if (handles(o)) [[unlikely]] {
      retry_call call;  // what begin() makes when max_elapsed is unset: no clock read
      retry_until_done(o, detail::pass_next(next), ctx, call);
    }
    return o;
  }

  // With a budget or max_elapsed: the start time is read before the first
  // attempt, and the budget hears of every success.
  template <class R, class Next>
  outcome<R> run_measured(Next& next, context& ctx) const {
    retry_call call = begin();
    outcome<R> o = next(ctx);
    if (handles(o)) {
      retry_until_done(o, detail::pass_next(next), ctx, call);
    } else {
      note_success(false, call, ctx);  // succeeded(call) after attempt 1
    }
    return o;
  }

  // The synchronous driver. `o` is the failure of attempt 1; on return it
  // holds what the caller gets. `next` comes by value (detail::pass_next).
  // Out of line, with every decision inlined into it: one call per failed
  // call, and the success path in run() stays a call and a test.
  template <class R, class Next>
  KEEL_DETAIL_NOINLINE void retry_until_done(outcome<R>& o, Next next, context& ctx,
                                             retry_call& call) const {
    // One loop for both kinds of retry, so that `next` is called from one
    // place here (a second copy of the loop stops GCC inlining a pipeline's
    // inner layers into run()); a plain retry's decisions skip the budget
    // and the clock.
    while (plain_ ? decide_and_wait<true>(o, call, ctx) : decide_and_wait<false>(o, call, ctx)) {
      ctx.set_attempt(call.attempt_);
      o = next(ctx);
      if (!handles(o)) {
        note_success(true, call, ctx);  // succeeded(call), knowing the call was retried
        return;
      }
    }
  }

  // The budget, or null where the caller knows there is none (Plain: no
  // budget and no max_elapsed, which is what plain_ says).
  template <bool Plain>
  retry_budget* budget_if() const noexcept {
    if constexpr (Plain) {
      return nullptr;
    } else {
      return budget_;
    }
  }

  // succeeded(), for a driver that knows whether the call was retried.
  void note_success(bool retried, const retry_call& call, const context& ctx) const noexcept {
    if (retried) {
      if constexpr (observes<Listener, retry_succeeded>) {
        const auto succeeded = [&] {
          return retry_succeeded{call.attempt_, source_of(name_, ctx)};
        };
        report<retry_succeeded>(listener_, succeeded);
      }
    }
    if (budget_ != nullptr) budget_->record_success(retried, call.last_retry_after_timeout_);
  }

  // decide()'s rules, inlined into decide() and into the synchronous driver's
  // step. Plain: only when plain_ (no budget, no max_elapsed).
  template <bool Plain, class R>
  [[gnu::always_inline]] retry_decision decide_now(outcome<R>& o, retry_call& call,
                                                   const context& ctx) const {
    retry_budget* const budget = budget_if<Plain>();
    const int attempt = call.attempt_;
    const bool codeless = detail::is_codeless_result(o);
    if (!codeless && detail::is_cancelled_failure(o))
      return aborted(o, attempt, give_up_reason::cancelled, ctx);
    if (detail::ask_user_predicate(hooks_.abort_on, o))
      return aborted(o, attempt, give_up_reason::abort_predicate, ctx);
    if (!options_.retry_rejections && !codeless && detail::ask_user_predicate(on::rejection, o)) {
      return aborted(o, attempt, give_up_reason::rejection, ctx);
    }
    // Only a budget cares whether it was a timeout; don't pay a look otherwise.
    const bool timed_out = budget != nullptr && !codeless && detail::is_timeout(o);
    // A failure that is not retried feeds the budget here; one that is, below,
    // in the same write as the retry's token.
    if (attempt >= options_.max_attempts)
      return exhausted<Plain>(o, attempt, give_up_reason::max_attempts, ctx);
    if (ctx.stop_requested()) {
      if (budget != nullptr) budget->record_failure();
      return cancel(o, attempt, ctx);
    }

    // The answer is built as the delay is chosen (a hint replaces it).
    retry_decision d;
    if constexpr (std::is_same_v<decltype(hooks_.delay), no_delay_function>) {
      d = retry_decision::after(fixed_delay_ >= duration::zero()
                                    ? fixed_delay_
                                    : options_.backoff.next(attempt, call.backoff_, env_),
                                false);
    } else {
      const std::optional<duration> chosen = user_delay(attempt, o);
      if (!chosen) return exhausted<Plain>(o, attempt, give_up_reason::delay_function, ctx);
      d = retry_decision::after(*chosen > duration::zero() ? *chosen : duration::zero(), false);
    }
    // Only keel failures, exceptions and an extractor can carry a hint; testing
    // first keeps an error value's retry free of the optional's round trip.
    if (o.has_keel_error() || o.has_exception() ||
        !std::is_same_v<decltype(hooks_.hint), no_retry_hint>) {
      if (const std::optional<duration> hint = hint_of(o)) {
        const duration h = *hint < duration::zero() ? duration::zero() : *hint;
        d = retry_decision::after(h > options_.max_hint_delay ? options_.max_hint_delay : h, true);
      }
    }

    if (!Plain && call.timed_) {
      const duration elapsed = detail::time_until(call.start_, env_.now());
      if (detail::saturating_add(elapsed, d.delay()) >= options_.max_elapsed) {
        return exhausted<Plain>(o, attempt, give_up_reason::max_elapsed, ctx);
      }
    }
    // remaining() reads the clock of whoever set the deadline, which is the
    // right one even when that policy's environment differs from ours.
    if (ctx.has_deadline() && d.delay() >= ctx.remaining()) {
      return exhausted<Plain>(o, attempt, give_up_reason::deadline, ctx);
    }
    if (budget != nullptr) {
      if (!budget->record_failure_and_acquire(timed_out)) {
        if constexpr (observes<Listener, retry_budget_exhausted>) {
          report<retry_budget_exhausted>(listener_, [&] {
            return retry_budget_exhausted{attempt, o.describe(), source_of(name_, ctx)};
          });
        }
        return retry_decision::stop();
      }
      call.last_retry_after_timeout_ = timed_out;  // read by succeeded(), with a budget only
    }

    if constexpr (observes<Listener, retry_scheduled>) {
      report<retry_scheduled>(listener_, [&] {
        return retry_scheduled{attempt, d.delay(), o.describe(), d.from_hint(),
                               source_of(name_, ctx)};
      });
    }
    ++call.attempt_;  // in place: `attempt` need not live this long
    return d;
  }

  // One step of the synchronous driver: decide(), then the wait it asks for.
  // True: try again.
  template <bool Plain, class R>
  [[gnu::always_inline]] bool decide_and_wait(outcome<R>& o, retry_call& call,
                                              const context& ctx) const {
    const retry_decision d = decide_now<Plain>(o, call, ctx);
    if (!d) return false;
    if (!env_.sleep_for(d.delay(), ctx.stop_token())) [[unlikely]] {
      cancel(o, call.attempt_ - 1, ctx);  // interrupted(), without the step API's checks
      return false;
    }
    return true;
  }

  // Out of line: a stop request is rare, and the driver inlines better without it.
  template <class R>
  KEEL_DETAIL_NOINLINE retry_decision cancel(outcome<R>& o, int attempt, const context& ctx) const {
    aborted(o, attempt, give_up_reason::cancelled, ctx);
    o = outcome<R>::from_keel(errc::cancelled);
    return retry_decision::stop();
  }

  template <class R>
  retry_decision aborted(const outcome<R>& o, int attempt, give_up_reason reason,
                         const context& ctx) const {
    if constexpr (observes<Listener, retry_aborted>) {
      report<retry_aborted>(listener_, [&] {
        return retry_aborted{attempt, reason, o.describe(), source_of(name_, ctx)};
      });
    }
    return retry_decision::stop();
  }

  // A failure that ends the call: the budget hears of it (a retried one pays
  // it with the retry's token, in record_failure_and_acquire).
  template <bool Plain, class R>
  retry_decision exhausted(const outcome<R>& o, int attempts, give_up_reason reason,
                           const context& ctx) const {
    if (retry_budget* b = budget_if<Plain>()) b->record_failure();
    if constexpr (observes<Listener, retries_exhausted>) {
      report<retries_exhausted>(listener_, [&] {
        return retries_exhausted{attempts, reason, o.describe(), source_of(name_, ctx)};
      });
    }
    return retry_decision::stop();
  }

  // A user function that throws must not make run() throw: a delay function
  // that throws means "stop retrying", a hint extractor that throws means "no hint".
  template <class R>
  std::optional<duration> user_delay(int attempt, const outcome<R>& o) const noexcept {
    return call_or(std::optional<duration>(), [&] { return call_user_delay(attempt, o); });
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
        return call_or(std::optional<duration>(), [&] { return result_hint(o.value()); });
      }
    }
    return o.retry_after();  // keel's own failures and a thrown keel::error
  }

  template <class R>
  std::optional<duration> result_hint(const R& r) const {
    using F = decltype(hooks_.hint);
    if constexpr (std::invocable<const F&, const R&>) {
      return detail::delay_of(hooks_.hint(r));
    } else if constexpr (expected_like<R>) {
      constexpr bool on_value = std::invocable<const F&, decltype(*std::declval<const R&>())>;
      constexpr bool on_error =
          std::invocable<const F&, decltype(std::declval<const R&>().error())>;
      static_assert(on_value || on_error,
                    "keel: with_hint(f): f cannot take this callable's result, its value or "
                    "its error");
      if (r.has_value()) {
        if constexpr (on_value) return detail::delay_of(hooks_.hint(*r));
      } else {
        if constexpr (on_error) return detail::delay_of(hooks_.hint(r.error()));
      }
      return std::nullopt;
    } else {
      static_assert(std::invocable<const F&, const R&>,
                    "keel: with_hint(f): f must be callable as f(const R&) with the callable's "
                    "result type R and return std::optional<keel::duration> or keel::hint");
      return std::nullopt;
    }
  }

  retry_options options_;
  [[no_unique_address]] Handles handles_;
  [[no_unique_address]] Listener listener_;
  [[no_unique_address]] Env env_;
  [[no_unique_address]] Hooks hooks_{};
  retry_budget* budget_ = nullptr;
  // A constant copied in, never a string measured and copied at run time: a
  // heavier constructor changes how GCC inlines the code around a static policy.
  static constexpr policy_name default_name{"retry"};
  policy_name name_ = default_name;
  duration fixed_delay_{-1};  // see fixed_delay_of
  // Neither max_elapsed nor a budget: the success path then tests this one flag.
  bool plain_ = true;

  // What the fluent setters carry over, in the order of the from_parts constructor.
  using parts = keel::parts<&retry::options_, &retry::handles_, &retry::listener_, &retry::env_,
                            &retry::hooks_, &retry::budget_, &retry::name_>;

  // Last in the class: Clang 14 drops the members declared after a failed
  // one, and keel::rebuild would then report a second error.
  static_assert(
      detail::may_take_outcome<Handles>(),
      "keel::retry::handle needs a predicate on the outcome: a keel::on:: predicate, or a "
      "callable taking const keel::outcome<R>&; to test the returned value use "
      "keel::on::result(f), an error value keel::on::error(f)");
};

// clang-format off
retry() -> retry<>;
retry(retry_options) -> retry<>;
// clang-format on

}  // namespace keel

#endif  // KEEL_RETRY_RETRY_HPP_INCLUDED

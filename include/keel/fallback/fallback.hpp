// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_FALLBACK_FALLBACK_HPP_INCLUDED
#define KEEL_FALLBACK_FALLBACK_HPP_INCLUDED

#include <array>
#include <concepts>
#include <cstddef>
#include <memory>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "keel/core/classify.hpp"
#include "keel/core/context.hpp"
#include "keel/core/error.hpp"
#include "keel/core/events.hpp"
#include "keel/core/fluent.hpp"
#include "keel/core/observe.hpp"
#include "keel/core/outcome.hpp"
#include "keel/core/policy.hpp"
#include "keel/fallback/alternative.hpp"
#include "keel/fallback/fallback_events.hpp"

namespace keel {

namespace detail {

template <class Chain, class... Ts>
struct builds_chain_t : std::false_type {};
template <class... Alternatives, class... Ts>
struct builds_chain_t<std::tuple<Alternatives...>, Ts...> {
  static constexpr bool value = [] {
    if constexpr (sizeof...(Alternatives) == sizeof...(Ts)) {
      return (std::same_as<as_alternative_t<Ts>, Alternatives> && ...);
    } else {
      return false;
    }
  }();
};

/// True when the arguments Ts make exactly the alternatives of Chain (a tuple),
/// so that the constructor never hijacks a copy.
template <class Chain, class... Ts>
concept builds_chain = builds_chain_t<Chain, Ts...>::value;

}  // namespace detail

template <class Handles, class Listener, class... Alternatives>
class fallback;

/// One call's walk down a fallback chain of `Alternatives` alternatives: the
/// failures so far (the primary's first, then each failed alternative's) and
/// the alternative under way. Made by fallback::begin<R>(); it lives with the
/// call (a stack or coroutine frame), and only the chain changes it. Neither
/// copyable nor movable: it holds the failures in place.
template <class R, std::size_t Alternatives>
class fallback_call {
 public:
  fallback_call(const fallback_call&) = delete;
  fallback_call& operator=(const fallback_call&) = delete;
  // Out of line: it runs only after a failure, and inlined in every driver it
  // would crowd out what the success paths need inlined.
  KEEL_DETAIL_NOINLINE ~fallback_call() {
    for (std::size_t i = 0; i < size_; ++i) std::destroy_at(&tried_[i].o);
  }

  /// Failures recorded so far: 0 until decide() has seen the primary's.
  std::size_t failures() const noexcept { return size_; }
  /// The failure the alternative under way stands in for (the last one
  /// recorded); requires failures() > 0.
  const outcome<R>& why() const noexcept { return tried_[size_ - 1].o; }

 private:
  template <class, class, class...>
  friend class fallback;
  // The slots stay raw until used: no stores on entry. `= default` would
  // zero them all when begin() value-initializes.
  fallback_call() noexcept {}  // NOLINT(modernize-use-equals-default)

  void push(outcome<R>&& o) noexcept {  // outcome's move never throws
    std::construct_at(&tried_[size_].o, std::move(o));
    ++size_;
  }

  // One failure's place, built only when it is recorded.
  union slot {
    slot() noexcept {}
    ~slot() {}
    outcome<R> o;
  };

  // Every failure so far, on the call's own frame: the vector of causes is
  // built only when the whole chain failed.
  slot tried_[Alternatives + 1];
  std::size_t size_ = 0;
  std::size_t current_ = 0;  // the alternative under way, once size_ > 0; or finished

  static constexpr std::size_t finished = static_cast<std::size_t>(-1);
};

/// What fallback::decide() answers: call alternative() next, or done: the
/// outcome given to decide() is what the caller gets.
class fallback_decision {
 public:
  /// The chain is over.
  static constexpr fallback_decision done() noexcept { return fallback_decision(none); }
  /// Call the alternative at 0-based `index` next.
  static constexpr fallback_decision try_alternative(std::size_t index) noexcept {
    return fallback_decision(index);
  }

  /// True when an alternative is to be called.
  constexpr bool again() const noexcept { return index_ != none; }
  /// again(), for `if (!decision)`.
  explicit constexpr operator bool() const noexcept { return again(); }
  /// The 0-based index of the alternative to call; only when again().
  constexpr std::size_t alternative() const noexcept { return index_; }

 private:
  static constexpr std::size_t none = static_cast<std::size_t>(-1);
  constexpr explicit fallback_decision(std::size_t index) noexcept : index_(index) {}
  std::size_t index_;
};

/// An ordered chain of alternatives tried when the guarded call fails:
///
///     keel::fallback(keel::alternative(backup).through(std::ref(backup_breaker)),
///                    keel::alternative(cache.serve(key)).when(keel::on::keel_error),
///                    simplified_answer, "service unavailable")
///
/// The call itself (the primary) runs first; when its outcome is a failure
/// the chain handles (`Handles`, default any failure) the alternatives are
/// tried in order. Each one that handles the current failure (its `when`,
/// default every failure the chain handles) runs and sees it; the first outcome that is not a
/// handled failure is the result. When the alternatives that were tried all
/// failed, the result is errc::all_fallbacks_failed whose causes() are the
/// primary's outcome and each tried alternative's, in order. When none was
/// tried, the primary's failure is returned unchanged. A cancellation (or a
/// stop request of the caller) stops the chain: it is not a failure to
/// degrade from. The success path costs one test of the outcome.
template <class Handles, class Listener, class... Alternatives>
class fallback : public executable<fallback<Handles, Listener, Alternatives...>> {
  static_assert(sizeof...(Alternatives) > 0, "keel::fallback needs at least one alternative");

 public:
  /// Builds the chain from values, callables and keel::alternative objects, in order.
  // clang-format off
  template <class... Ts>
    requires detail::builds_chain<std::tuple<Alternatives...>, Ts...>
  explicit fallback(Ts&&... alternatives)
      : alternatives_(detail::make_alternative(std::forward<Ts>(alternatives))...) {}
  // clang-format on

  /// For keel::rebuild: every part.
  fallback(from_parts_t, std::tuple<Alternatives...> alternatives, Handles handles,
           Listener listener, policy_name name)
      : alternatives_(std::move(alternatives)),
        handles_(std::move(handles)),
        listener_(std::move(listener)),
        name_(name) {}

  /// A chain that treats only the failures `h` matches as worth degrading from
  /// (a keel::on:: predicate); other failures of the primary pass through.
  template <class H>
  fallback<std::decay_t<H>, Listener, Alternatives...> handle(H&& h) const {
    return rebuild<fallback<std::decay_t<H>, Listener, Alternatives...>, &fallback::handles_>(
        *this, std::forward<H>(h), parts{});
  }

  /// The same chain reporting its events (fallback_used, fallback_skipped,
  /// all_fallbacks_failed, fallback_cancelled) to `l`; counters attached with
  /// with_counters stay attached.
  template <class L>
  auto with_listener(L&& l) const {
    using slot = with_listener_t<Listener, L>;
    return rebuild<fallback<Handles, slot, Alternatives...>, &fallback::listener_>(
        *this, replace_listener(listener_, std::forward<L>(l)), parts{});
  }

  /// The same chain, also counting its events into `c` (keel::counters),
  /// which every copy shares and which must outlive them.
  auto with_counters(counters& c) const {
    using slot = with_counters_t<Listener>;
    return rebuild<fallback<Handles, slot, Alternatives...>, &fallback::listener_>(
        *this, attach_counters(listener_, c), parts{});
  }

  /// The same chain, named `name` in its events' source (default
  /// "fallback"; cut at policy_name::capacity bytes).
  fallback named(std::string_view name) const {
    return rebuild<fallback, &fallback::name_>(*this, name, parts{});
  }

  /// Runs `next` (the primary), then the alternatives if it failed; never throws.
  template <class R, class Next>
  outcome<R> run(Next&& next, context& ctx) const {
    // One named result on every path, so the success path returns it in place.
    outcome<R> result = next(ctx);
    if (handles(result)) [[unlikely]]
      degrade(result, ctx);
    return result;
  }

  /// The alternatives, in order.
  const std::tuple<Alternatives...>& alternatives() const noexcept { return alternatives_; }

  /// Number of alternatives.
  static constexpr std::size_t size() noexcept { return sizeof...(Alternatives); }
  /// The name set by named() ("fallback" by default).
  std::string_view name() const noexcept { return name_.view(); }

  // ---- The rules, one step at a time, for a driver of one's own -----------
  // run() is one driver over them; an asynchronous one makes the same calls
  // and awaits each alternative its own way (docs/fallback.md, "Driving it yourself").

  /// The per-call state for a primary returning R.
  template <class R>
  using call_type = fallback_call<R, sizeof...(Alternatives)>;

  /// Starts a call's walk down the chain (nothing recorded yet).
  template <class R>
  call_type<R> begin() const noexcept {
    return call_type<R>();
  }

  /// True when `o` (the primary's or an alternative's outcome) is a failure
  /// the chain handles: decide() what next. False: `o` is the result, report succeeded().
  template <class R>
  bool handles(const outcome<R>& o) const noexcept {
    return detail::ask_user_predicate(handles_, o);
  }

  /// After the primary's or the named alternative's outcome `o`, a failure
  /// handles() matched: the next alternative whose `when` takes it (`o` is
  /// kept in `call`), or done with `o` the result: a cancellation,
  /// errc::cancelled after a stop request, the primary's failure when no
  /// alternative takes it, or errc::all_fallbacks_failed with every failure
  /// as causes(). Emits fallback_skipped, fallback_cancelled, all_fallbacks_failed.
  /// Once it has answered done, the call is over: asking again answers done
  /// and leaves `o` and the call as they are.
  template <class R>
  fallback_decision decide(outcome<R>& o, call_type<R>& call, const context& ctx) const {
    if (call.current_ == call_type<R>::finished) [[unlikely]]
      return fallback_decision::done();
    if (is_cancellation(o)) {  // not a failure to degrade from
      if (call.size_ > 0) {
        if constexpr (observes<Listener, fallback_cancelled>) {
          const auto cancelled = [&] {
            return fallback_cancelled{call.size_ + 1, source_of(name_, ctx)};
          };
          report<fallback_cancelled>(listener_, cancelled);
        }
      }
      return finish(call);
    }
    std::size_t i = call.size_ == 0 ? 0 : call.current_ + 1;
    call.push(std::move(o));
    for (; i < count; ++i) {
      if (ctx.stop_requested()) {
        stopped(o, call, ctx);
        return finish(call);
      }
      const outcome<R>& why = call.why();
      if (visit_alternative(i, [&](const auto& alt) { return alt.handles(why); })) {
        call.current_ = i;
        return fallback_decision::try_alternative(i);
      }
      if constexpr (observes<Listener, fallback_skipped>) {
        const auto skipped = [&] { return fallback_skipped{i, source_of(name_, ctx)}; };
        report<fallback_skipped>(listener_, skipped);
      }
    }
    all_failed(o, call, ctx);
    return finish(call);
  }

  /// The call (in `ctx`) ended with an outcome handles() does not match:
  /// emits fallback_used when an alternative produced it. The call is then
  /// over: succeeded() or decide() again answers done and emits nothing.
  template <class R>
  void succeeded(call_type<R>& call, const context& ctx = context()) const noexcept {
    if (call.current_ == call_type<R>::finished) return;
    if (call.size_ > 0) report_used(call, ctx);
    call.current_ = call_type<R>::finished;
  }

  /// Calls `f(alternative)` with the alternative at 0-based index `i`
  /// (i < size()) and returns what it returns, which must be one type for all.
  template <class F>
  decltype(auto) visit_alternative(std::size_t i, F&& f) const {
    return visit_from<0>(i, f);
  }

  /// Alternative `i`'s outcome after call.why(), produced here and now (its
  /// own policy included); never throws. An asynchronous driver awaits its own.
  template <class R>
  outcome<R> produce(std::size_t i, const call_type<R>& call, const context& ctx) const noexcept {
    const outcome<R>& why = call.why();
    return visit_alternative(i, [&](const auto& alt) { return alt.template produce<R>(why, ctx); });
  }

 private:
  static constexpr std::size_t count = sizeof...(Alternatives);

  // The synchronous driver: `o` is the primary's handled failure; on return
  // it holds what the caller gets.
  template <class R>
  void degrade(outcome<R>& o, const context& ctx) const {
    call_type<R> call;
    for (fallback_decision d = decide(o, call, ctx); d; d = decide(o, call, ctx)) {
      o = produce(d.alternative(), call, ctx);
      if (!handles(o)) {
        report_used(call, ctx);  // succeeded(), knowing an alternative ran and the call ends here
        return;
      }
    }
  }

  template <class R>
  void report_used(const call_type<R>& call, const context& ctx) const noexcept {
    if constexpr (observes<Listener, fallback_used>) {
      const auto used = [&] {
        return fallback_used{call.current_, call.why().describe(), source_of(name_, ctx)};
      };
      report<fallback_used>(listener_, used);
    }
  }

  template <std::size_t I, class F>
  decltype(auto) visit_from(std::size_t i, F& f) const {
    if constexpr (I + 1 == count) {
      return f(std::get<I>(alternatives_));  // i == I when i < size()
    } else {
      if (i == I) return f(std::get<I>(alternatives_));
      return visit_from<I + 1>(i, f);
    }
  }

  // The ends of a walk that found no stand-in, out of line: they are rare,
  // and the caller's code stays small.
  template <class R>
  static fallback_decision finish(call_type<R>& call) noexcept {
    call.current_ = call_type<R>::finished;
    return fallback_decision::done();
  }

  template <class R>
  [[gnu::cold]] KEEL_DETAIL_NOINLINE void stopped(outcome<R>& o, const call_type<R>& call,
                                                  const context& ctx) const {
    if constexpr (observes<Listener, fallback_cancelled>) {
      const auto cancelled = [&] { return fallback_cancelled{call.size_, source_of(name_, ctx)}; };
      report<fallback_cancelled>(listener_, cancelled);
    }
    o = outcome<R>::from_keel(errc::cancelled);
  }

  template <class R>
  [[gnu::cold]] KEEL_DETAIL_NOINLINE void all_failed(outcome<R>& o, call_type<R>& call,
                                                     const context& ctx) const {
    // Nothing stood in: the fallback did not act, the caller sees the failure as it was.
    if (call.size_ == 1) {
      o = std::move(call.tried_[0].o);
      return;
    }
    if constexpr (observes<Listener, all_fallbacks_failed>) {
      const auto failed = [&] { return all_fallbacks_failed{call.size_, source_of(name_, ctx)}; };
      report<all_fallbacks_failed>(listener_, failed);
    }
    std::vector<outcome<R>> causes;
#if KEEL_HAS_EXCEPTIONS
    try {
      causes.reserve(call.size_);
      for (std::size_t i = 0; i < call.size_; ++i) causes.push_back(std::move(call.tried_[i].o));
      o = outcome<R>::from_keel(error_info{make_error_code(errc::all_fallbacks_failed)},
                                std::move(causes));
    } catch (...) {
      // Out of memory for the list of causes: still report the right code.
      o = outcome<R>::from_keel(errc::all_fallbacks_failed);
    }
#else
    causes.reserve(call.size_);
    for (std::size_t i = 0; i < call.size_; ++i) causes.push_back(std::move(call.tried_[i].o));
    o = outcome<R>::from_keel(error_info{make_error_code(errc::all_fallbacks_failed)},
                              std::move(causes));
#endif
  }

  std::tuple<Alternatives...> alternatives_;
  [[no_unique_address]] Handles handles_{};
  [[no_unique_address]] Listener listener_{};
  static constexpr policy_name default_name{"fallback"};  // a constant: see retry's
  policy_name name_ = default_name;

  // What the fluent setters carry over, in the order of the from_parts constructor.
  using parts = keel::parts<&fallback::alternatives_, &fallback::handles_, &fallback::listener_,
                            &fallback::name_>;
  // Last in the class: Clang 14 drops the members declared after a failed one.
  static_assert(
      detail::may_take_outcome<Handles>(),
      "keel::fallback::handle needs a predicate on the outcome: a keel::on:: predicate, or a "
      "callable taking const keel::outcome<R>&; to test the returned value use "
      "keel::on::result(f), an error value keel::on::error(f)");
};

template <class... Ts>
fallback(Ts&&...) -> fallback<on::any_failure_t, no_listener, detail::as_alternative_t<Ts>...>;

}  // namespace keel

#endif  // KEEL_FALLBACK_FALLBACK_HPP_INCLUDED

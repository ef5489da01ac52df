// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_FALLBACK_ALTERNATIVE_HPP_INCLUDED
#define KEEL_FALLBACK_ALTERNATIVE_HPP_INCLUDED

#include <concepts>
#include <exception>
#include <type_traits>
#include <utility>

#include "keel/core/classify.hpp"
#include "keel/core/context.hpp"
#include "keel/core/outcome.hpp"
#include "keel/core/policy.hpp"
#include "keel/detail/config.hpp"
#include "keel/detail/functional.hpp"

namespace keel {

namespace detail {

/// An alternative that runs without a policy of its own.
struct unguarded {};

/// The default `when` of an alternative: every failure the chain hands it
/// (what the fallback's own `handle` predicate calls a failure).
struct chain_failures : on::predicate_base {
  template <class R>
  bool operator()(const outcome<R>&) const noexcept {
    return true;
  }
};

/// How an alternative is called, tried in this order (the first that compiles wins):
/// 1 f(ctx, why), 2 f(why), 3 f(ctx), 4 f(), 0 not callable: a plain value.
template <class R, class F>
consteval int alternative_form() {
  if constexpr (std::invocable<const F&, const context&, const outcome<R>&>) {
    return 1;
  } else if constexpr (std::invocable<const F&, const outcome<R>&>) {
    return 2;
  } else if constexpr (std::invocable<const F&, const context&>) {
    return 3;
  } else if constexpr (std::invocable<const F&>) {
    return 4;
  } else {
    return 0;
  }
}

template <class R, class F>
decltype(auto) call_alternative(const F& f, const context& ctx, const outcome<R>& why) {
  constexpr int form = alternative_form<R, F>();
  if constexpr (form == 1) {
    return detail::invoke(f, ctx, why);
  } else if constexpr (form == 2) {
    return detail::invoke(f, why);
  } else if constexpr (form == 3) {
    return detail::invoke(f, ctx);
  } else if constexpr (form == 4) {
    return detail::invoke(f);
  } else {
    return static_cast<const F&>(f);  // a plain value, copied into the outcome
  }
}

/// What an alternative F yields when the chain's result type is R.
template <class R, class F>
using alternative_result_t = decltype(call_alternative<R>(
    std::declval<const F&>(), std::declval<const context&>(), std::declval<const outcome<R>&>()));

/// True when an alternative yielding Ret can stand in for a primary returning R:
/// it returns outcome<R>, or something convertible to R (void for void).
template <class Ret, class R>
inline constexpr bool converts_to_result =
    std::is_void_v<R> ? std::is_void_v<Ret> : std::convertible_to<Ret, R>;
template <class Ret, class R>
concept stands_in_for =
    std::same_as<std::remove_cvref_t<Ret>, outcome<R>> || converts_to_result<Ret, R>;

}  // namespace detail

/// True when F can be an alternative of a chain whose primary returns R:
/// a value convertible to R, or a callable taking (), (why), (ctx) or (ctx, why),
/// where why is `const keel::outcome<R>&`, returning R, something convertible
/// to R, or `keel::outcome<R>`.
template <class F, class R>
concept alternative_for = detail::stands_in_for<detail::alternative_result_t<R, F>, R>;

/// One step of a fallback chain: a plain value or a callable, the failures it
/// handles (default: every failure the chain degrades from) and, optionally,
/// a policy of its own (its own breaker, retry or pipeline). Built with
/// keel::alternative(f), refined with `.when(predicate)` and `.through(policy)`;
/// a bare value or callable given to keel::fallback becomes one with the defaults.
template <class F, class Handles = detail::chain_failures, class Guard = detail::unguarded>
class alternative {
 public:
  /// Wraps a value or callable; `handles` says which failures it may stand in
  /// for; `guard` is a policy holder (by value, std::ref or shared_ptr) it runs under.
  explicit alternative(F f, Handles handles = Handles(), Guard guard = Guard())
      : f_(std::move(f)), handles_(std::move(handles)), guard_(std::move(guard)) {}

  /// The same alternative, tried only for failures `p` matches (a keel::on::
  /// predicate, or any callable taking `const keel::outcome<R>&`).
  template <class P>
  alternative<F, std::decay_t<P>, Guard> when(P&& p) const& {
    return alternative<F, std::decay_t<P>, Guard>(f_, std::forward<P>(p), guard_);
  }
  template <class P>
  alternative<F, std::decay_t<P>, Guard> when(P&& p) && {
    return alternative<F, std::decay_t<P>, Guard>(std::move(f_), std::forward<P>(p),
                                                  std::move(guard_));
  }

  /// The same alternative, run under its own policy or pipeline. Share a
  /// stateful policy (a breaker) with std::ref or a shared_ptr.
  template <class G>
  alternative<F, Handles, std::decay_t<G>> through(G&& guard) const& {
    static_assert(policy_holder<std::decay_t<G>>,
                  "keel::alternative::through needs a policy or pipeline (by value, std::ref "
                  "or std::shared_ptr)");
    return alternative<F, Handles, std::decay_t<G>>(f_, handles_, std::forward<G>(guard));
  }
  template <class G>
  alternative<F, Handles, std::decay_t<G>> through(G&& guard) && {
    static_assert(policy_holder<std::decay_t<G>>,
                  "keel::alternative::through needs a policy or pipeline (by value, std::ref "
                  "or std::shared_ptr)");
    return alternative<F, Handles, std::decay_t<G>>(std::move(f_), std::move(handles_),
                                                    std::forward<G>(guard));
  }

  /// True when this alternative may stand in after failure `why`; a `when`
  /// predicate that throws answers true.
  template <class R>
  bool handles(const outcome<R>& why) const noexcept {
    return detail::ask_user_predicate(handles_, why);
  }

  /// Produces this alternative's outcome after failure `why`; never throws.
  template <class R>
  outcome<R> produce(const outcome<R>& why, const context& ctx) const noexcept {
    static_assert(alternative_for<F, R>,
                  "keel::fallback: an alternative does not fit the primary's result type R: it "
                  "must be a value convertible to R, or a callable taking (), "
                  "(const keel::outcome<R>&), (const keel::context&) or both, returning R, "
                  "something convertible to R, or keel::outcome<R>");
    if constexpr (!alternative_for<F, R>) {
      return outcome<R>::from_keel(errc::all_fallbacks_failed);  // not reached: keeps errors to one
    } else if constexpr (std::is_same_v<Guard, detail::unguarded>) {
      return invoke<R>(why, ctx);
    } else {
      // The guard may refine the context (a retry sets the attempt): give it a copy.
      context guarded_ctx = ctx;
      return detail::policy_of(guard_).template run<R>(
          detail::make_next([&](context& c) { return invoke<R>(why, c); }), guarded_ctx);
    }
  }

  /// The wrapped value or callable.
  const F& target() const noexcept { return f_; }

 private:
  template <class R>
  outcome<R> invoke(const outcome<R>& why, const context& ctx) const noexcept {
#if KEEL_HAS_EXCEPTIONS
    try {
      return invoke_unguarded<R>(why, ctx);
    } catch (...) {
      return outcome<R>::from_exception(std::current_exception());
    }
#else
    return invoke_unguarded<R>(why, ctx);
#endif
  }

  template <class R>
  outcome<R> invoke_unguarded(const outcome<R>& why, const context& ctx) const {
    using Ret = detail::alternative_result_t<R, F>;
    if constexpr (std::same_as<std::remove_cvref_t<Ret>, outcome<R>>) {
      return detail::call_alternative<R>(f_, ctx, why);
    } else if constexpr (std::is_void_v<R>) {
      detail::call_alternative<R>(f_, ctx, why);
      return outcome<R>();
    } else {
      return outcome<R>(std::in_place, detail::call_alternative<R>(f_, ctx, why));
    }
  }

  F f_;
  [[no_unique_address]] Handles handles_;
  [[no_unique_address]] Guard guard_;
  // Last in the class: Clang 14 drops the members declared after a failed one.
  static_assert(
      detail::may_take_outcome<Handles>(),
      "keel::alternative::when needs a predicate on the outcome: a keel::on:: predicate, or a "
      "callable taking const keel::outcome<R>&; to test the returned value use "
      "keel::on::result(f), an error value keel::on::error(f)");
};

template <class F>
alternative(F) -> alternative<F>;
template <class F, class H>
alternative(F, H) -> alternative<F, H>;
template <class F, class H, class G>
alternative(F, H, G) -> alternative<F, H, G>;

namespace detail {

template <class T>
struct as_alternative {
  using type = alternative<T>;
};
template <class F, class H, class G>
struct as_alternative<alternative<F, H, G>> {
  using type = alternative<F, H, G>;
};

/// A value or callable given to keel::fallback, as an alternative.
template <class T>
using as_alternative_t = typename as_alternative<std::decay_t<T>>::type;

template <class T>
as_alternative_t<T> make_alternative(T&& t) {
  if constexpr (std::same_as<as_alternative_t<T>, std::decay_t<T>>) {
    return std::forward<T>(t);
  } else {
    return as_alternative_t<T>(std::forward<T>(t));
  }
}

}  // namespace detail
}  // namespace keel

#endif  // KEEL_FALLBACK_ALTERNATIVE_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_POLICY_HPP_INCLUDED
#define KEEL_CORE_POLICY_HPP_INCLUDED

#include <concepts>
#include <exception>
#include <memory>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "keel/core/context.hpp"
#include "keel/core/outcome.hpp"
#include "keel/detail/config.hpp"
#include "keel/detail/functional.hpp"

namespace keel {

namespace detail {

template <class T>
inline constexpr bool sets_up_call =
    std::is_same_v<T, std::stop_token> || std::is_same_v<T, context>;

/// A first argument of execute / try_execute that sets up the call rather
/// than being the callable: a stop token or a whole context.
template <class F>
concept call_setting = sets_up_call<std::remove_cvref_t<F>>;

/// A first argument of execute / try_execute that is the callable.
template <class F>
concept not_call_setting = !call_setting<F>;

/// True when the callable wants the context as its first argument.
template <class F, class... Args>
concept takes_context = std::invocable<F&, const context&, Args&...>;

template <class F, class... Args>
concept guardable = takes_context<F, Args...> || std::invocable<F&, Args&...>;

template <class F, class... Args>
struct call_result;
// clang-format off
template <class F, class... Args>
  requires takes_context<F, Args...>
struct call_result<F, Args...> {
  using type = std::invoke_result_t<F&, const context&, Args&...>;
};
template <class F, class... Args>
  requires(!takes_context<F, Args...> && std::invocable<F&, Args&...>)
struct call_result<F, Args...> {
  using type = std::invoke_result_t<F&, Args&...>;
};
// clang-format on

/// What calling F with Args (and perhaps a context first) returns.
template <class F, class... Args>
using call_result_t = typename call_result<F, Args...>::type;

template <class R, class F, class... Args>
outcome<R> call_with_context(F& f, const context& ctx, Args&... args) {
  if constexpr (takes_context<F, Args...>) {
    if constexpr (std::is_void_v<R>) {
      detail::invoke(f, ctx, args...);
      return outcome<R>();
    } else {
      return outcome<R>(std::in_place, detail::invoke(f, ctx, args...));
    }
  } else {
    if constexpr (std::is_void_v<R>) {
      detail::invoke(f, args...);
      return outcome<R>();
    } else {
      return outcome<R>(std::in_place, detail::invoke(f, args...));
    }
  }
}

/// Calls f once and captures whatever it does: its result or its exception.
/// Arguments are passed as lvalues, because a retry passes them again.
template <class R, class F, class... Args>
outcome<R> invoke_capturing(F& f, const context& ctx, Args&... args) noexcept {
#if KEEL_HAS_EXCEPTIONS
  try {
    return call_with_context<R>(f, ctx, args...);
  } catch (...) {
    return outcome<R>::from_exception(std::current_exception());
  }
#else
  return call_with_context<R>(f, ctx, args...);
#endif
}

/// The innermost step of a pipeline, as the policies see it: `next(ctx)`.
struct probe_next {
  outcome<int> operator()(context&) const;
};

/// A `next` that keel builds itself (the call execute() wraps, a pipeline
/// layer, a guarded alternative): it holds only pointers and the copies it
/// was built from, and is called through const, so a copy of it is it.
template <class F>
struct keel_next {
  F f;
  auto operator()(context& ctx) const { return f(ctx); }
};

/// Wraps one of keel's own closures as a keel_next.
template <class F>
keel_next<F> make_next(F f) noexcept {
  return {f};
}

template <class Next>
inline constexpr bool is_keel_next = false;
template <class F>
inline constexpr bool is_keel_next<keel_next<F>> = true;

/// True when a policy may copy `next` instead of referring to it: one of
/// keel's own closures, trivially copyable and at most eight pointers. A
/// user's `next` is never copied, whatever state or overloads it has.
template <class Next>
concept cheap_next = is_keel_next<std::remove_cv_t<Next>> && std::is_trivially_copyable_v<Next> &&
                     sizeof(Next) <= 8 * sizeof(void*);

/// The policy inside a holder: by value, std::reference_wrapper (exactly, as
/// std::unwrap_reference says) or a smart pointer.
template <class P>
const std::remove_reference_t<std::unwrap_reference_t<P>>& policy_of(const P& p) noexcept {
  return p;
}
template <class P>
const P& policy_of(const std::shared_ptr<P>& p) noexcept {
  return *p;
}
template <class P>
const P& policy_of(const std::unique_ptr<P>& p) noexcept {
  return *p;
}

}  // namespace detail

/// `next` as a policy hands it on by value (to its out-of-line paths, or
/// into a pipeline layer's closure): a copy when that is cheap_next, else a
/// keel_next that refers to it, so every attempt calls the caller's object.
/// Either way the result is itself cheap_next. Taken by reference, `next`
/// would have to sit in memory on the fast path too, for the slow one.
template <class Next>
auto pass_next(Next& next) noexcept {
  if constexpr (detail::cheap_next<Next>) {
    return std::remove_cv_t<Next>(next);
  } else {
    return detail::make_next([&next](context& ctx) { return next(ctx); });
  }
}

namespace detail {
using keel::pass_next;
}  // namespace detail

/// A policy wraps the rest of a pipeline: `p.run<R>(next, ctx)` decides whether
/// and how often to call `next(ctx)` (an `outcome<R>(context&)` callable) and
/// returns the outcome. Policies never throw out of run().
template <class P>
concept policy = requires(const P& p, const detail::probe_next& next, context& ctx) {
  { p.template run<int>(next, ctx) } -> std::same_as<outcome<int>>;
};

/// A policy held by value, by std::ref, or by std::shared_ptr / std::unique_ptr.
template <class H>
concept policy_holder =
    policy<std::remove_cvref_t<decltype(detail::policy_of(std::declval<const H&>()))>>;

/// Gives a policy (or pipeline) its public face: `execute` and `try_execute`.
/// Derived must provide `run<R>(next, ctx)`.
template <class Derived>
class executable {
 public:
  /// Runs f(args...) (or f(ctx, args...)) under the policy and returns what
  /// came out; never throws.
  template <detail::not_call_setting F, class... Args>
  auto try_execute(F&& f, Args&&... args) const {
    return guarded(context(), f, args...);
  }

  /// As above, with the caller's stop token: the call sees it in its context,
  /// and every policy honours it.
  template <class F, class... Args>
  auto try_execute(std::stop_token token, F&& f, Args&&... args) const {
    return guarded(context(std::move(token)), f, args...);
  }

  /// As above, in the caller's context: its deadline (set with
  /// context::tighten_deadline) and stop token bound the call, and every
  /// policy honours them as if an outer timeout had set them.
  template <class F, class... Args>
  auto try_execute(context ctx, F&& f, Args&&... args) const {
    return guarded(std::move(ctx), f, args...);
  }

  /// Runs f under the policy and returns its result. A thrown exception is
  /// rethrown unchanged; keel's own failures throw keel::error, or, for an
  /// expected-like result, come back as its error (keel::error_traits).
  template <detail::not_call_setting F, class... Args>
  auto execute(F&& f, Args&&... args) const {
    return result_of(guarded(context(), f, args...));
  }

  /// As above, with the caller's stop token.
  template <class F, class... Args>
  auto execute(std::stop_token token, F&& f, Args&&... args) const {
    return result_of(guarded(context(std::move(token)), f, args...));
  }

  /// As above, in the caller's context (deadline and stop token).
  template <class F, class... Args>
  auto execute(context ctx, F&& f, Args&&... args) const {
    return result_of(guarded(std::move(ctx), f, args...));
  }

 private:
  // The callable's exception is rethrown here, in the caller's own frame: each
  // frame between a throw and its catch costs the unwinder a table lookup and
  // a parse, more than the rest of a failed call.
  template <class R>
  [[gnu::always_inline]] static R result_of(outcome<R>&& o) {
#if KEEL_HAS_EXCEPTIONS
    if (o.has_exception()) [[unlikely]]
      std::rethrow_exception(o.exception());
#endif
    return std::move(o).get();
  }

  template <class F, class... Args>
  auto guarded(context ctx, F& f, Args&... args) const {
    static_assert(detail::guardable<F, Args...>,
                  "keel: the callable cannot be called with these arguments, neither as "
                  "f(args...) nor as f(const keel::context&, args...)");
    using R = detail::call_result_t<F, Args...>;
    const auto call =
        detail::make_next([&](context& c) { return detail::invoke_capturing<R>(f, c, args...); });
    return static_cast<const Derived&>(*this).template run<R>(call, ctx);
  }
};

}  // namespace keel

#endif  // KEEL_CORE_POLICY_HPP_INCLUDED

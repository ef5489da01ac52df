// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_CLASSIFY_HPP_INCLUDED
#define KEEL_CORE_CLASSIFY_HPP_INCLUDED

#include <concepts>
#include <exception>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>

#include "keel/core/error.hpp"
#include "keel/core/expected_like.hpp"
#include "keel/core/inspect.hpp"
#include "keel/core/outcome.hpp"
#include "keel/detail/config.hpp"

namespace keel {

namespace detail {

/// True when R's error values may hold an error code (and so be a
/// cancellation, a rejection or a timeout).
template <class R>
inline constexpr bool result_may_hold_code = [] {
  if constexpr (expected_like<R>) {
    using E = error_type_t<R>;
    return std::convertible_to<const E&, std::error_code> || std::is_error_code_enum_v<E>;
  } else {
    return false;
  }
}();

/// True when `o` is the callable's result (a value or an error value) of a
/// type that cannot hold an error code: never a cancellation, a rejection nor
/// a timeout, which a policy then need not look for.
template <class R>
bool is_codeless_result(const outcome<R>& o) noexcept {
  return !result_may_hold_code<R> && o.has_result();
}

template <class R>
bool is_cancellation_unguarded(const outcome<R>& o) {
  if (o.has_keel_error()) {
    const std::error_code& c = o.keel_error().code;
    // keel's own code is compared directly: no virtual call on the common path.
    if (c.category() == error_category()) return c.value() == static_cast<int>(errc::cancelled);
    return c == std::errc::operation_canceled;
  }
  if constexpr (expected_like<R>) {
    using E = error_type_t<R>;
    if constexpr (std::convertible_to<const E&, std::error_code> || std::is_error_code_enum_v<E>) {
      if (o.has_error_value()) return o.code() == std::errc::operation_canceled;
    }
  }
  return inspect_exception<std::system_error>(o.exception(), false, [](const auto& e) {
    return e.code() == std::errc::operation_canceled;
  });
}

template <class R>
bool is_rejection_unguarded(const outcome<R>& o) {
  if (o.has_keel_error()) {
    const std::error_code& c = o.keel_error().code;
    // keel's own codes are decided without a virtual call.
    if (c.category() == error_category()) {
      return detail::keel_code_means(static_cast<errc>(c.value()), condition::rejected);
    }
    return c == condition::rejected;
  }
  if constexpr (expected_like<R>) {
    using E = error_type_t<R>;
    if constexpr (std::convertible_to<const E&, std::error_code> || std::is_error_code_enum_v<E>) {
      if (o.has_error_value()) return o.code() == condition::rejected;
    }
  }
  return false;
}

}  // namespace detail

/// True when the outcome means "the caller asked to stop": keel::errc::cancelled,
/// or an error code, error value or thrown std::system_error equivalent to
/// std::errc::operation_canceled. Policies never retry it and never count it
/// against a dependency's health.
template <class R>
bool is_cancellation(const outcome<R>& o) noexcept {
  if (detail::is_codeless_result(o)) return false;  // no look at an exception that is not there
  // Comparing another category's code runs its equivalent(): user code. One
  // that throws leaves the outcome a plain failure.
  return call_or(false, [&] { return detail::is_cancellation_unguarded(o); });
}

/// True when the outcome is a failure that a policy produced by refusing the
/// call (code == keel::condition::rejected): an open or isolated circuit, a
/// full bulkhead, a rate limit, a spent retry budget, or another library's
/// code that maps onto the condition. The call itself did not run.
template <class R>
bool is_rejection(const outcome<R>& o) noexcept {
  // As is_cancellation: a category whose equivalent() throws means "no".
  return call_or(false, [&] { return detail::is_rejection_unguarded(o); });
}

namespace on {
struct predicate_base;
}

namespace detail {

/// Converts to `const outcome<R>&` for any R: asks whether a callable takes an
/// outcome before the call's R is known. Unevaluated use only.
struct any_outcome {
  template <class R>
  operator const outcome<R>&() const noexcept;
};

/// False when P provably cannot take a `const outcome<R>&`, whatever R: a
/// function pointer or a class with one non-template operator() that does not
/// accept it, or no callable at all. A keel::on:: predicate, or a generic or
/// overloaded callable, may: those are checked where they are called.
template <class P>
consteval bool may_take_outcome() {
  if constexpr (std::is_base_of_v<on::predicate_base, P>) {
    return true;
  } else if constexpr (std::is_pointer_v<P> || requires { &P::operator(); }) {
    return std::is_invocable_v<const P&, const any_outcome&>;
  } else {
    return std::is_class_v<P>;
  }
}

}  // namespace detail

/// Asks a predicate: a keel::on:: predicate or any user callable. Every
/// policy asks its predicates through this, whatever their type. One that
/// throws answers "matches" (for a composed predicate, the whole of it: a
/// part that throws is not negated by `!`): a policy's run() never throws, and treating an
/// undecidable outcome as handled is the cautious reading (a breaker counts a
/// failure, a retry retries within max_attempts, a fallback falls back). A
/// noexcept predicate costs nothing more than the call.
template <class P, class... A>
bool ask_predicate(const P& pred, const A&... args) noexcept {
  static_assert(std::is_invocable_v<const P&, const A&...>,
                "keel: an outcome predicate (given to handle, ignore, abort_on or an "
                "alternative's when) cannot take this call's outcome: it must accept "
                "const keel::outcome<R>& for the callable's result type R");
  if constexpr (std::is_invocable_v<const P&, const A&...>) {
    return call_or(true, [&] { return static_cast<bool>(pred(args...)); });
  } else {
    return true;  // not reached: keeps the errors to one
  }
}

namespace detail {
/// keel's own name for keel::ask_predicate, for the predicates of keel's
/// policies: each checks them with may_take_outcome where its type is formed
/// and says so in a sentence naming its setter, so one refused there is not
/// reported again here.
template <class P, class... A>
bool ask_user_predicate(const P& pred, const A&... args) noexcept {
  if constexpr (!std::is_invocable_v<const P&, const A&...> && !may_take_outcome<P>()) {
    return true;  // not reached: the program does not compile
  } else {
    return keel::ask_predicate(pred, args...);
  }
}
}  // namespace detail

/// Outcome predicates: tell a policy which outcomes it handles (retries, counts
/// as a breaker failure, falls back from...). Combine them with ||, && and !.
/// Every predicate may be written as a call: `on::exception<E>()` is
/// `on::exception<E>`, `on::any_failure()` is `on::any_failure`, as
/// `on::code(...)` and `on::result(f)` are calls.
///
///     keel::on::exception<std::system_error>() || keel::on::result(is_5xx)
namespace on {

/// Tag base: marks a keel outcome predicate so the operators below apply to it.
struct predicate_base {};

/// Any failure: a thrown exception, an expected-like error, or a keel failure.
/// The default "what counts" of every policy.
struct any_failure_t : predicate_base {
  /// `on::any_failure()` is `on::any_failure`.
  constexpr any_failure_t operator()() const noexcept { return *this; }
  template <class R>
  bool operator()(const outcome<R>& o) const noexcept {
    return !o.has_value();
  }
};
inline constexpr any_failure_t any_failure{};

/// Never matches.
struct nothing_t : predicate_base {
  /// `on::nothing()` is `on::nothing`.
  constexpr nothing_t operator()() const noexcept { return *this; }
  template <class R>
  bool operator()(const outcome<R>&) const noexcept {
    return false;
  }
};
inline constexpr nothing_t nothing{};

template <class... Es>
inline constexpr bool names_thrown_types =
    std::conjunction_v<std::negation<std::disjunction<std::is_void<Es>, std::is_reference<Es>>>...>;

/// A thrown exception of one of the types Es (or derived from one).
template <class... Es>
struct exception_t : predicate_base {
  static_assert(sizeof...(Es) > 0, "keel::on::exception needs at least one exception type");
  static_assert(
      names_thrown_types<Es...>,
      "keel::on::exception<E>: E is the type thrown (a class such as std::runtime_error), "
      "not void or a reference");

  /// `on::exception<E>()` is `on::exception<E>`.
  constexpr exception_t operator()() const noexcept { return *this; }

  template <class R>
  bool operator()(const outcome<R>& o) const noexcept {
    if (!o.has_exception()) return false;
    // One look per type, in order, through the one inspection helper.
    return (call_or(false,
                    [&] {
                      return inspect_exception<Es>(o.exception(), false,
                                                   [](const Es&) { return true; });
                    }) ||
            ...);
  }
};
template <class... Es>
inline constexpr exception_t<Es...> exception{};

/// A returned value for which `pred(value)` is true (HTTP 503, say). For an
/// expected-like result or a std::optional, `pred` may take the contained
/// value, and sees it when there is one. A predicate that can take neither
/// never matches (one policy may serve calls of several result types); one that throws
/// makes the whole predicate a policy asks match (see detail::ask_user_predicate).
template <class P>
struct result_t : predicate_base {
  P pred;

  template <class R>
  bool operator()(const outcome<R>& o) const {
    if constexpr (std::is_void_v<R>) {
      return false;
    } else {
      if (!o.has_value()) return false;
      const R& r = o.value();
      if constexpr (expected_like<R>) {
        if constexpr (requires { pred(*r); }) {
          return static_cast<bool>(pred(*r));
        } else {
          return false;
        }
      } else if constexpr (std::predicate<const P&, const R&>) {
        return static_cast<bool>(pred(r));
      } else if constexpr (requires {
                             r.has_value();
                             pred(*r);
                           }) {  // std::optional
        return r.has_value() && static_cast<bool>(pred(*r));
      } else {
        return false;
      }
    }
  }
};
template <class P>
constexpr result_t<std::decay_t<P>> result(P&& pred) {
  return {{}, std::forward<P>(pred)};
}

/// An expected-like error for which `pred(error)` is true.
template <class P>
struct error_t : predicate_base {
  P pred;

  template <class R>
  bool operator()(const outcome<R>& o) const {
    if constexpr (expected_like<R>) {
      if constexpr (std::predicate<const P&, const error_type_t<R>&>) {
        return o.has_error_value() && static_cast<bool>(pred(o.error_value()));
      }
    }
    return false;
  }
};
template <class P>
constexpr error_t<std::decay_t<P>> error(P&& pred) {
  return {{}, std::forward<P>(pred)};
}

/// A failure whose code (keel's, or an error value that is a std::error_code)
/// equals one of `codes`: keel::errc values, std::errc conditions, error codes.
template <class... Codes>
struct code_t : predicate_base {
  std::tuple<Codes...> codes;

  template <class R>
  bool operator()(const outcome<R>& o) const {
    if (o.has_value()) return false;
    const std::error_code c = o.code();
    if (!c) return false;
    return std::apply([&](const auto&... wanted) { return ((c == wanted) || ...); }, codes);
  }
};
template <class... Codes>
constexpr code_t<Codes...> code(Codes... codes) {
  return {{}, std::tuple<Codes...>(codes...)};
}

/// Any failure keel produced itself (open circuit, timeout, ...).
struct keel_error_t : predicate_base {
  /// `on::keel_error()` is `on::keel_error`.
  constexpr keel_error_t operator()() const noexcept { return *this; }
  template <class R>
  bool operator()(const outcome<R>& o) const noexcept {
    return o.has_keel_error();
  }
};
inline constexpr keel_error_t keel_error{};

/// A rejection by a policy (see keel::is_rejection): use it, not a list of
/// codes, to catch "the circuit is open or isolated, the bulkhead full, ...".
struct rejection_t : predicate_base {
  /// `on::rejection()` is `on::rejection`.
  constexpr rejection_t operator()() const noexcept { return *this; }
  template <class R>
  bool operator()(const outcome<R>& o) const {
    return is_rejection(o);
  }
};
inline constexpr rejection_t rejection{};

/// A cancellation (see keel::is_cancellation).
struct cancellation_t : predicate_base {
  /// `on::cancellation()` is `on::cancellation`.
  constexpr cancellation_t operator()() const noexcept { return *this; }
  template <class R>
  bool operator()(const outcome<R>& o) const {
    return is_cancellation(o);
  }
};
inline constexpr cancellation_t cancellation{};

/// Any predicate on the whole outcome, `pred(const keel::outcome<R>&)`. One
/// that throws makes the whole predicate a policy asks match, `!` and `&&`
/// around it included (see detail::ask_user_predicate).
template <class P>
struct when_t : predicate_base {
  static_assert(detail::may_take_outcome<P>(),
                "keel::on::when needs a callable taking const keel::outcome<R>&; to test the "
                "returned value use keel::on::result(f), an error value keel::on::error(f)");
  P pred;

  template <class R>
  bool operator()(const outcome<R>& o) const {
    if constexpr (std::is_invocable_v<const P&, const outcome<R>&>) {
      return static_cast<bool>(pred(o));
    } else {
      // Refused above when that could be seen without R; else refused here.
      static_assert(!detail::may_take_outcome<P>(),
                    "keel::on::when: the callable cannot take this call's outcome: it must "
                    "accept const keel::outcome<R>& for the callable's result type R");
      return true;
    }
  }
};
template <class P>
constexpr when_t<std::decay_t<P>> when(P&& pred) {
  return {{}, std::forward<P>(pred)};
}

template <class A, class B>
struct or_t : predicate_base {
  A a;
  B b;
  template <class R>
  bool operator()(const outcome<R>& o) const {
    return a(o) || b(o);
  }
};
template <class A, class B>
struct and_t : predicate_base {
  A a;
  B b;
  template <class R>
  bool operator()(const outcome<R>& o) const {
    return a(o) && b(o);
  }
};
template <class A>
struct not_t : predicate_base {
  A a;
  template <class R>
  bool operator()(const outcome<R>& o) const {
    return !a(o);
  }
};

template <class T>
concept predicate = std::derived_from<std::remove_cvref_t<T>, predicate_base>;

template <predicate A, predicate B>
constexpr auto operator||(A&& a, B&& b) {
  return or_t<std::decay_t<A>, std::decay_t<B>>{{}, std::forward<A>(a), std::forward<B>(b)};
}
template <predicate A, predicate B>
constexpr auto operator&&(A&& a, B&& b) {
  return and_t<std::decay_t<A>, std::decay_t<B>>{{}, std::forward<A>(a), std::forward<B>(b)};
}
template <predicate A>
constexpr auto operator!(A&& a) {
  return not_t<std::decay_t<A>>{{}, std::forward<A>(a)};
}

}  // namespace on
}  // namespace keel

#endif  // KEEL_CORE_CLASSIFY_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_EVENTS_HPP_INCLUDED
#define KEEL_CORE_EVENTS_HPP_INCLUDED

#include <tuple>
#include <type_traits>
#include <utility>

#include "keel/core/inspect.hpp"
#include "keel/detail/config.hpp"

namespace keel {

/// The default listener: hears nothing, costs nothing.
struct no_listener {};

/// A listener is any object; it hears event E when it has `on(const E&) const`,
/// or, a lambda or other callable, when it is callable as `l(const E&)` (a
/// generic lambda hears every event). Pass std::ref(listener) to share one,
/// keel::listeners(a, b, ...) to attach several. Handlers should not throw: if
/// one does, keel ignores the exception, so a policy's state is never corrupted.
namespace detail {

// std::reference_wrapper<T>, exactly (as std::unwrap_reference says, which
// <type_traits> gives without <functional>), is unwrapped to T&; anything
// else, a type derived from it included, is the listener itself.
template <class T>
inline constexpr bool is_reference_wrapper = !std::is_same_v<std::unwrap_reference_t<T>, T>;

template <class T>
using unwrapped_t =
    std::conditional_t<is_reference_wrapper<T>, std::unwrap_reference_t<T>, const T&>;

template <class T>
unwrapped_t<T> unwrap_ref(const T& t) noexcept {
  return t;
}

/// The listener a holder refers to: T for std::reference_wrapper<T>, else L.
template <class L>
using listener_of_t = std::remove_reference_t<std::unwrap_reference_t<L>>;

// clang-format off
template <class L, class E>
inline constexpr bool has_on_handler = requires(const L& l, const E& e) { unwrap_ref(l).on(e); };

/// A listener with no on() for E that is a callable taking it: a lambda.
template <class L, class E>
inline constexpr bool is_callable_handler =
    !has_on_handler<L, E> && requires(const L& l, const E& e) { unwrap_ref(l)(e); };
// clang-format on

template <class L, class E>
inline constexpr bool has_const_handler = has_on_handler<L, E> || is_callable_handler<L, E>;

/// Calls the handler of `l` for `e`: its on(), or the callable itself.
template <class L, class E>
void deliver(const L& l, const E& e) {
  if constexpr (has_on_handler<L, E>) {
    unwrap_ref(l).on(e);
  } else {
    unwrap_ref(l)(e);
  }
}

/// True when L (or what it refers to) has a handler for E that keel could
/// call only on a non-const listener, or only with a non-const or rvalue
/// event: a mistake that would otherwise silence the handler without a word.
// clang-format off
template <class L, class E, class U = std::remove_const_t<listener_of_t<L>>>
inline constexpr bool has_unusable_handler =
    !has_const_handler<L, E> &&
    (requires(U& u, const E& e) { u.on(e); } || requires(const U& u, E& e) { u.on(e); } ||
     requires(U& u, E& e) { u.on(e); } ||
     requires(const U& u, E&& e) { u.on(static_cast<E&&>(e)); } ||
     requires(U& u, E&& e) { u.on(static_cast<E&&>(e)); } || requires(U& u, const E& e) { u(e); });
// clang-format on

template <class L, class E>
consteval bool check_listener() {
  static_assert(!has_unusable_handler<L, E>,
                "keel: this listener has an on() handler for this event that keel cannot call: "
                "handlers must be callable on a const listener with a const event, as "
                "`void on(const Event&) const`. Make on() const (keep mutable state in "
                "atomics or behind a pointer), or pass std::ref(listener) to a non-const "
                "listener");
  return has_const_handler<L, E>;
}

}  // namespace detail

/// True when L has a handler for E; test it before building a costly event.
/// A handler keel cannot call (a non-const on(), or one taking a non-const
/// event) is a compile error rather than a silent no-op.
template <class L, class E>
inline constexpr bool listens_to = detail::check_listener<L, E>();

/// Delivers `event` to `listener` if it listens for it (a listener held by
/// std::ref included); an exception from the handler is swallowed.
template <class L, class E>
void emit(const L& listener, const E& event) noexcept {
  if constexpr (listens_to<L, E>) {
    // A broken listener must not break the call it observes.
    call_ignoring_exceptions([&] { detail::deliver(listener, event); });
  }
}

/// E is heard by at least one of Ls.
template <class E, class... Ls>
concept heard_by_one_of = std::disjunction_v<std::bool_constant<listens_to<Ls, E>>...>;

/// Several listeners as one: each event goes to every member that hears it,
/// in order; a member whose handler throws does not keep it from the others.
template <class... Ls>
struct listener_set {
  std::tuple<Ls...> members;

  template <heard_by_one_of<Ls...> E>
  void on(const E& event) const noexcept {
    std::apply([&](const auto&... m) { (emit(m, event), ...); }, members);
  }
};

/// Attaches several listeners at once: `policy.with_listener(keel::listeners(
/// log, metrics, std::ref(recorder)))`. Each is held as given (by value, or
/// by reference through std::ref).
template <class... Ls>
listener_set<Ls...> listeners(Ls... ls) {
  return {std::tuple<Ls...>(std::move(ls)...)};
}

namespace detail {
using keel::emit;
using keel::listens_to;
}  // namespace detail
}  // namespace keel

#endif  // KEEL_CORE_EVENTS_HPP_INCLUDED

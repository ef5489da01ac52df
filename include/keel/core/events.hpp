// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_EVENTS_HPP_INCLUDED
#define KEEL_CORE_EVENTS_HPP_INCLUDED

#include <functional>
#include <type_traits>

#include "keel/detail/config.hpp"

namespace keel {

/// The default listener: hears nothing, costs nothing.
struct no_listener {};

/// A listener is any object; it hears event E when it has `on(const E&) const`.
/// Pass std::ref(listener) to share one. Handlers should not throw: if one
/// does, keel ignores the exception, so a policy's state is never corrupted.
namespace detail {

template <class T>
const T& unwrap_ref(const T& t) noexcept {
  return t;
}
template <class T>
T& unwrap_ref(const std::reference_wrapper<T>& t) noexcept {
  return t.get();
}

template <class L, class E>
inline constexpr bool has_const_handler = requires(const L& l, const E& e) { unwrap_ref(l).on(e); };

/// The listener a holder refers to: T for std::reference_wrapper<T>, else L.
template <class L>
struct listener_of {
  using type = L;
};
template <class T>
struct listener_of<std::reference_wrapper<T>> {
  using type = T;
};

/// True when L (or what it refers to) has a handler for E that keel could
/// call only on a non-const listener, or only with a non-const or rvalue
/// event: a mistake that would otherwise silence the handler without a word.
template <class L, class E, class U = std::remove_const_t<typename listener_of<L>::type>>
inline constexpr bool has_unusable_handler =
    !has_const_handler<L, E> &&
    (
        requires(U & u, const E& e) { u.on(e); } || requires(const U& u, E& e) { u.on(e); } ||
        requires(U & u, E& e) { u.on(e); } ||
        requires(const U& u, E&& e) { u.on(static_cast<E&&>(e)); } ||
        requires(U & u, E&& e) { u.on(static_cast<E&&>(e)); });

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
#if KEEL_HAS_EXCEPTIONS
    try {
      detail::unwrap_ref(listener).on(event);
    } catch (...) {  // a broken listener must not break the call it observes
    }
#else
    detail::unwrap_ref(listener).on(event);
#endif
  }
}

namespace detail {
using keel::emit;
using keel::listens_to;
}  // namespace detail
}  // namespace keel

#endif  // KEEL_CORE_EVENTS_HPP_INCLUDED

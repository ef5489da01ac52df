// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_INSPECT_HPP_INCLUDED
#define KEEL_CORE_INSPECT_HPP_INCLUDED

#include <cstring>
#include <exception>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "keel/detail/config.hpp"

// With libstdc++ and RTTI, an exception_ptr is looked at without rethrowing
// it: one type_info comparison (the one the unwinder makes to pick a catch
// clause) instead of a throw, about 40 times cheaper. Elsewhere: a rethrow.
#if KEEL_HAS_EXCEPTIONS && defined(__GLIBCXX__) && (defined(__cpp_rtti) || defined(__GXX_RTTI))
#define KEEL_DETAIL_PEEKS_EXCEPTIONS 1
#else
#define KEEL_DETAIL_PEEKS_EXCEPTIONS 0
#endif

namespace keel {

/// `f()`, or `otherwise` when it throws: how keel calls user code whose
/// exception must not escape (a predicate, a hint extractor, a conversion).
/// Without exceptions, `f()`.
template <class T, class F>
T call_or(T otherwise, F&& f) noexcept {
#if KEEL_HAS_EXCEPTIONS
  try {
    return std::forward<F>(f)();
  } catch (...) {
    return otherwise;
  }
#else
  static_cast<void>(otherwise);
  return std::forward<F>(f)();
#endif
}

/// Calls `f()` and ignores anything it throws (a listener's handler).
template <class F>
void call_ignoring_exceptions(F&& f) noexcept {
#if KEEL_HAS_EXCEPTIONS
  try {
    std::forward<F>(f)();
  } catch (...) {  // user code that must not break the call it observes
  }
#else
  std::forward<F>(f)();
#endif
}

namespace detail {

/// What peek_exception found: the object as an E, or that it is not one,
/// or (unknown) that only a rethrow can tell.
template <class E>
struct peeked {
  const E* object = nullptr;
  bool known = false;
};

/// The exception in non-null `p` as a `const E&` handler would catch it
/// (public, unambiguous base or the type itself), without rethrowing it.
/// Class types only; `known` is false where the ABI is not libstdc++'s.
template <class E>
peeked<E> peek_exception([[maybe_unused]] const std::exception_ptr& p) noexcept {
#if KEEL_DETAIL_PEEKS_EXCEPTIONS
  if constexpr (std::is_class_v<E>) {
    const std::type_info* thrown = p.__cxa_exception_type();
    if (thrown == nullptr) return {};
    // libstdc++'s exception_ptr is the address of the thrown object, and
    // __do_catch is the test (and base-class adjustment) its unwinder runs.
    static_assert(sizeof(std::exception_ptr) == sizeof(void*));
    void* object = nullptr;
    std::memcpy(static_cast<void*>(&object), static_cast<const void*>(&p), sizeof object);
    if (object == nullptr) return {};
    if (!typeid(E).__do_catch(thrown, &object, 1)) return {nullptr, true};
    return {static_cast<const E*>(object), true};
  }
#endif
  return {};
}

/// inspect_exception by rethrowing, which every ABI supports.
template <class E, class T, class F>
T inspect_by_rethrow(const std::exception_ptr& p, T otherwise, F&& f) {
#if KEEL_HAS_EXCEPTIONS
  if (p) {
    try {
      std::rethrow_exception(p);
    } catch (const E& e) {
      return std::forward<F>(f)(e);
    } catch (...) {  // not an E
    }
  }
#else
  static_cast<void>(p);
  static_cast<void>(f);
#endif
  return otherwise;
}

/// The two-type inspect_exception by rethrowing.
template <class E1, class E2, class T, class F1, class F2>
T inspect_by_rethrow(const std::exception_ptr& p, T otherwise, F1&& f1, F2&& f2) {
#if KEEL_HAS_EXCEPTIONS
  if (p) {
    try {
      std::rethrow_exception(p);
    } catch (const E1& e) {
      return std::forward<F1>(f1)(e);
    } catch (const E2& e) {
      return std::forward<F2>(f2)(e);
    } catch (...) {  // neither
    }
  }
#else
  static_cast<void>(p);
  static_cast<void>(f1);
  static_cast<void>(f2);
#endif
  return otherwise;
}

}  // namespace detail

/// `f(e)` for the exception `p` holds when it is an E (or derives from one),
/// else `otherwise` (also for a null `p`, and always without exceptions).
/// The one place keel looks into an exception: with libstdc++, without a throw.
template <class E, class T, class F>
T inspect_exception(const std::exception_ptr& p, T otherwise, F&& f) {
  if (!p) return otherwise;
  if (const detail::peeked<E> e = detail::peek_exception<E>(p); e.known) {
    if (e.object == nullptr) return otherwise;
    return std::forward<F>(f)(*e.object);
  }
  return detail::inspect_by_rethrow<E>(p, std::move(otherwise), std::forward<F>(f));
}

/// As above for two types (one rethrow where one is needed): `f1(e)` for an
/// E1, else `f2(e)` for an E2, else `otherwise`. E1 first: an exception that
/// is both (or is an E2 only ambiguously) is handled as an E1.
template <class E1, class E2, class T, class F1, class F2>
T inspect_exception(const std::exception_ptr& p, T otherwise, F1&& f1, F2&& f2) {
  if (!p) return otherwise;
  const detail::peeked<E1> e1 = detail::peek_exception<E1>(p);
  const detail::peeked<E2> e2 = detail::peek_exception<E2>(p);
  if (e1.known && e2.known) {
    if (e1.object != nullptr) return std::forward<F1>(f1)(*e1.object);
    if (e2.object != nullptr) return std::forward<F2>(f2)(*e2.object);
    return otherwise;
  }
  return detail::inspect_by_rethrow<E1, E2>(p, std::move(otherwise), std::forward<F1>(f1),
                                            std::forward<F2>(f2));
}

}  // namespace keel

#endif  // KEEL_CORE_INSPECT_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_INSPECT_HPP_INCLUDED
#define KEEL_CORE_INSPECT_HPP_INCLUDED

#include <exception>
#include <type_traits>
#include <utility>

#include "keel/detail/config.hpp"

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

/// `f(e)` for the exception `p` holds when it is an E (or derives from one),
/// else `otherwise` (also for a null `p`, and always without exceptions).
/// The one place keel rethrows an exception to look at it.
template <class E, class T, class F>
T inspect_exception(const std::exception_ptr& p, T otherwise, F&& f) {
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

/// As above for two types with one rethrow: `f1(e)` for an E1, else `f2(e)`
/// for an E2, else `otherwise`. E1 first: an exception that is both (or is
/// an E2 only ambiguously) is handled as an E1.
template <class E1, class E2, class T, class F1, class F2>
T inspect_exception(const std::exception_ptr& p, T otherwise, F1&& f1, F2&& f2) {
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

}  // namespace keel

#endif  // KEEL_CORE_INSPECT_HPP_INCLUDED

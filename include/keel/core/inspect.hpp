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

}  // namespace keel

#endif  // KEEL_CORE_INSPECT_HPP_INCLUDED

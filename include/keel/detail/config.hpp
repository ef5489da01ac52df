// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_DETAIL_CONFIG_HPP_INCLUDED
#define KEEL_DETAIL_CONFIG_HPP_INCLUDED

// The only configuration keel reads from the preprocessor: whether exceptions
// are enabled. Everything else is configured through types.

#include <cstdlib>

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#define KEEL_HAS_EXCEPTIONS 1
#else
#define KEEL_HAS_EXCEPTIONS 0
#endif

namespace keel::detail {

/// Throws `e`, or aborts when exceptions are disabled (there is nowhere else to go).
template <class E>
[[noreturn]] void throw_or_abort([[maybe_unused]] E&& e) {
#if KEEL_HAS_EXCEPTIONS
  throw static_cast<E&&>(e);
#else
  std::abort();
#endif
}

}  // namespace keel::detail

#endif  // KEEL_DETAIL_CONFIG_HPP_INCLUDED

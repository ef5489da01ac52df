// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_DETAIL_CONFIG_HPP_INCLUDED
#define KEEL_DETAIL_CONFIG_HPP_INCLUDED

// The only configuration keel reads from the preprocessor: whether exceptions
// are enabled. Everything else is configured through types. Also the
// compiler attributes keel's headers share.

#include <cstdlib>

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#define KEEL_HAS_EXCEPTIONS 1
#else
#define KEEL_HAS_EXCEPTIONS 0
#endif

// Keeps a cold path out of its caller, so that the hot path stays small
// enough to be inlined through a pipeline.
#if defined(__GNUC__) || defined(__clang__)
#define KEEL_DETAIL_NOINLINE __attribute__((noinline))
#elif defined(_MSC_VER)
#define KEEL_DETAIL_NOINLINE __declspec(noinline)
#else
#define KEEL_DETAIL_NOINLINE
#endif

// Marks a function whose unsigned arithmetic wraps around on purpose (a hash,
// a random number generator): wrap-around is well defined, but clang's
// -fsanitize=unsigned-integer-overflow and unsigned-shift-base (part of
// -fsanitize=integer, which the asan preset enables) report it all the same.
#if defined(__clang__) && __clang_major__ >= 12
#define KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP \
  __attribute__((no_sanitize("unsigned-integer-overflow", "unsigned-shift-base")))
#else
#define KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP
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

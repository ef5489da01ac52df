// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_EXPECTED_LIKE_HPP_INCLUDED
#define KEEL_CORE_EXPECTED_LIKE_HPP_INCLUDED

#include <concepts>
#include <system_error>
#include <type_traits>
#include <utility>
#include <version>

#include "keel/core/error.hpp"
#include "keel/core/inspect.hpp"
#include "keel/detail/config.hpp"

#if defined(__cpp_lib_expected)
#include <expected>
#endif

namespace keel {

/// A result type that carries either a value or an error: std::expected,
/// tl::expected, or anything with `has_value()` and `error()`.
/// A callable returning one fails when it holds an error.
template <class T>
concept expected_like = requires(const T& t) {
  { t.has_value() } -> std::convertible_to<bool>;
  t.error();
};

/// The error type of an expected-like result.
template <expected_like T>
using error_type_t = std::remove_cvref_t<decltype(std::declval<const T&>().error())>;

/// Customization point: how a keel failure (open circuit, timeout, ...) becomes
/// the error type E of an expected-like result. Specialize it for your E with
/// `static E from_keel(const keel::error_info&)`. Automatic when E is
/// constructible from std::error_code (std::error_code itself included).
template <class E>
struct error_traits {};

template <class E>
  requires std::constructible_from<E, std::error_code>
struct error_traits<E> {
  static E from_keel(const error_info& info) { return E(info.code); }
};

/// True when keel can report its own failures as E.
template <class E>
concept keel_error_convertible = requires(const error_info& info) {
  { error_traits<E>::from_keel(info) } -> std::convertible_to<E>;
};

namespace detail {

/// Builds an expected-like R that holds the error `e`.
template <expected_like R, class E>
R make_error_result(E&& e) {
  if constexpr (requires { typename R::unexpected_type; }) {
    using U = typename R::unexpected_type;
    if constexpr (std::is_constructible_v<U, E&&>) {
      return R(U(std::forward<E>(e)));
    } else {
      return R(U{std::forward<E>(e)});  // an aggregate (no parenthesized init before clang 16)
    }
#if defined(__cpp_lib_expected)
  } else if constexpr (std::constructible_from<R, std::unexpected<error_type_t<R>>>) {
    return R(std::unexpected<error_type_t<R>>(std::forward<E>(e)));
#endif
  } else {
    static_assert(std::constructible_from<R, E>,
                  "keel: cannot build this expected-like type from an error: give it an "
                  "`unexpected_type` member type, as std::expected and tl::expected have");
    return R(std::forward<E>(e));
  }
}

template <expected_like R>
std::error_code convert_error_value(const R& r) {
  using E = error_type_t<R>;
  if constexpr (std::convertible_to<const E&, std::error_code>) {
    return std::error_code(r.error());
  } else {
    return make_error_code(r.error());
  }
}

/// The error value of R as a std::error_code where it converts to one, else
/// empty. The conversion is the user's code: one that throws gives no code
/// (the outcome stays a failure that no code matches), never an escape.
template <expected_like R>
std::error_code error_value_code(const R& r) noexcept {
  using E = error_type_t<R>;
  if constexpr (std::convertible_to<const E&, std::error_code> || std::is_error_code_enum_v<E>) {
    return call_or(std::error_code(), [&] { return convert_error_value(r); });
  } else {
    return {};
  }
}

}  // namespace detail
}  // namespace keel

#endif  // KEEL_CORE_EXPECTED_LIKE_HPP_INCLUDED

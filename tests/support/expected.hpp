// SPDX-License-Identifier: BSL-1.0
// A minimal expected-like type for tests: std::expected is not in GCC 12's
// C++20 library. Shaped like std::expected / tl::expected where keel looks
// (has_value, error, operator*, value, unexpected_type).
#ifndef KEEL_TESTS_SUPPORT_EXPECTED_HPP_INCLUDED
#define KEEL_TESTS_SUPPORT_EXPECTED_HPP_INCLUDED

#include <cstdlib>
#include <type_traits>
#include <utility>
#include <variant>

namespace keel_test {

template <class E>
struct unexpected {
  E error;
  explicit unexpected(E e) : error(std::move(e)) {}
};

/// expected<T, E> for a non-void T (use std::monostate for "no value").
template <class T, class E>
class expected {
  static_assert(!std::is_void_v<T>, "keel_test::expected: use std::monostate instead of void");

 public:
  using value_type = T;
  using error_type = E;
  using unexpected_type = unexpected<E>;

  expected(T v) : state_(std::in_place_index<0>, std::move(v)) {}  // NOLINT: implicit
  expected(unexpected<E> u) : state_(std::in_place_index<1>, std::move(u.error)) {}  // NOLINT

  bool has_value() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  const T& operator*() const { return std::get<0>(state_); }
  T& operator*() { return std::get<0>(state_); }
  const T& value() const {
    if (!has_value()) std::abort();
    return std::get<0>(state_);
  }
  const E& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, E> state_;
};

}  // namespace keel_test

#endif  // KEEL_TESTS_SUPPORT_EXPECTED_HPP_INCLUDED

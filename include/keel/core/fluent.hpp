// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_FLUENT_HPP_INCLUDED
#define KEEL_CORE_FLUENT_HPP_INCLUDED

#include <type_traits>
#include <utility>

#include "keel/detail/functional.hpp"

namespace keel {

/// The parts a policy's fluent setters carry over, in the order its
/// all-parts constructor takes them: pointers to data members, or to const
/// member functions that return a part (`&circuit_breaker::options`).
/// Declared once per policy: `using parts = keel::parts<&my_policy::options_, ...>;`.
template <auto... Parts>
struct parts {};

/// Tag of a policy's all-parts constructor, for a policy whose public
/// constructors take fewer parts: `my_policy(keel::from_parts_t, parts...)`.
struct from_parts_t {
  explicit constexpr from_parts_t() = default;
};
/// The tag's value.
inline constexpr from_parts_t from_parts{};

namespace detail {

/// True when parts `A` and `B` are the same member (or getter).
template <auto A, auto B>
consteval bool same_part() {
  if constexpr (std::is_same_v<decltype(A), decltype(B)>) {
    return A == B;
  } else {
    return false;
  }
}

/// Part `Part` of `self` (moved out of an rvalue `self`), or `value` when
/// `Part` is the one being replaced.
template <auto Part, auto Replaced, class Self, class V>
decltype(auto) part_or(Self&& self, V& value) {
  if constexpr (same_part<Part, Replaced>()) {
    return std::forward<V>(value);
  } else if constexpr (std::is_member_object_pointer_v<decltype(Part)>) {
    return detail::invoke(Part, std::forward<Self>(self));  // an rvalue's member is moved
  } else {
    return detail::invoke(Part, std::as_const(self));  // a getter: its part is copied
  }
}

}  // namespace detail

/// `self` rebuilt as a `To`: every part listed in `parts<Parts...>` carried
/// over (moved from an rvalue `self`), except `Replaced`, which becomes
/// `value` and may change type. Calls `To(keel::from_parts, parts...)` when To
/// has that constructor, else `To(parts...)`. The whole fluent setter:
///
///     template <class L>
///     auto with_listener(L l) const {
///       return keel::rebuild<my_policy<L>, &my_policy::listener_>(*this, std::move(l), parts{});
///     }
template <class To, auto Replaced, class Self, class V, auto... Parts>
To rebuild(Self&& self, V&& value, parts<Parts...>) {
  static_assert((detail::same_part<Parts, Replaced>() || ...),
                "keel::rebuild: the part to replace is not in the policy's keel::parts list");
  if constexpr (std::is_constructible_v<To, from_parts_t,
                                        decltype(detail::part_or<Parts, Replaced>(
                                            std::forward<Self>(self), value))...>) {
    return To(from_parts, detail::part_or<Parts, Replaced>(std::forward<Self>(self), value)...);
  } else {
    return To(detail::part_or<Parts, Replaced>(std::forward<Self>(self), value)...);
  }
}

}  // namespace keel

#endif  // KEEL_CORE_FLUENT_HPP_INCLUDED

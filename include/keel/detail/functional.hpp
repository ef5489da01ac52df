// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_DETAIL_FUNCTIONAL_HPP_INCLUDED
#define KEEL_DETAIL_FUNCTIONAL_HPP_INCLUDED

// std::invoke without <functional>, which brings the searchers' containers
// to every includer: INVOKE is std::apply's job. (keel recognises a
// std::reference_wrapper through <type_traits>' std::unwrap_reference.)

#include <tuple>
#include <type_traits>
#include <utility>

namespace keel::detail {

/// std::invoke: a member pointer goes through std::apply (which is INVOKE),
/// anything else is called directly.
template <class F, class... A>
constexpr decltype(auto) invoke(F&& f, A&&... a) noexcept(std::is_nothrow_invocable_v<F, A...>) {
  if constexpr (std::is_member_pointer_v<std::remove_cvref_t<F>>) {
    return std::apply(std::forward<F>(f), std::forward_as_tuple(std::forward<A>(a)...));
  } else {
    return std::forward<F>(f)(std::forward<A>(a)...);
  }
}

}  // namespace keel::detail

#endif  // KEEL_DETAIL_FUNCTIONAL_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_DETAIL_FUNCTIONAL_HPP_INCLUDED
#define KEEL_DETAIL_FUNCTIONAL_HPP_INCLUDED

// The two things keel needs from <functional>, without <functional>: that
// header brings the searchers' containers and costs a third of keel's compile
// time, while INVOKE is std::apply's job and a reference wrapper is a shape.

#include <concepts>
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

/// std::reference_wrapper<T>, recognised by its shape (so boost's is too):
/// a `type`, a `get()` returning `type&`, and a conversion to `type&`.
template <class R>
concept reference_wrapper_like = requires(const R& r) {
  typename R::type;
  { r.get() } -> std::same_as<typename R::type&>;
} && std::is_convertible_v<const R&, typename R::type&>;

}  // namespace keel::detail

#endif  // KEEL_DETAIL_FUNCTIONAL_HPP_INCLUDED

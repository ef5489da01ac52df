// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_DETAIL_ALGORITHM_HPP_INCLUDED
#define KEEL_DETAIL_ALGORITHM_HPP_INCLUDED

// std::min, std::max and std::clamp, the only algorithms keel uses, without
// <algorithm> and its ranges machinery.

namespace keel::detail {

/// The smaller of a and b (a when equal), as std::min.
template <class T>
constexpr const T& min(const T& a, const T& b) noexcept(noexcept(b < a)) {
  return b < a ? b : a;
}

/// The larger of a and b (a when equal), as std::max.
template <class T>
constexpr const T& max(const T& a, const T& b) noexcept(noexcept(a < b)) {
  return a < b ? b : a;
}

/// v limited to [lo, hi], as std::clamp (lo <= hi).
template <class T>
constexpr const T& clamp(const T& v, const T& lo, const T& hi) noexcept(noexcept(v < lo)) {
  return v < lo ? lo : hi < v ? hi : v;
}

}  // namespace keel::detail

#endif  // KEEL_DETAIL_ALGORITHM_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_CALL_SLOTS_HPP_INCLUDED
#define KEEL_CORE_CALL_SLOTS_HPP_INCLUDED

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>
#include <type_traits>
#if defined(__cpp_rtti) || defined(__GXX_RTTI)
#include <typeinfo>
#endif

namespace keel {

namespace detail {

#if defined(__cpp_rtti) || defined(__GXX_RTTI)
/// Identifies a type for the typed reads of a context's slots: its
/// std::type_info, which the C++ ABI compares equal across shared libraries
/// (by name) and keeps distinct for local types and types with internal
/// linkage. Without RTTI, the address of a per-type function, which a shared
/// library built with hidden visibility duplicates: a read across that
/// boundary then finds nothing, never the wrong type.
using type_key = const std::type_info& (*)() noexcept;
template <class T>
const std::type_info& type_info_of() noexcept {
  return typeid(T);
}
template <class T>
inline constexpr type_key type_key_of = &type_info_of<std::remove_cv_t<T>>;
inline bool same_type(type_key a, type_key b) noexcept {
  return a == b || (a != nullptr && b != nullptr && a() == b());
}
#else
using type_key = void (*)() noexcept;
template <class T>
void type_anchor() noexcept {}
template <class T>
inline constexpr type_key type_key_of = &type_anchor<std::remove_cv_t<T>>;
inline bool same_type(type_key a, type_key b) noexcept { return a == b; }
#endif

}  // namespace detail

/// The endpoint a replica pool chose for the current attempt: its index in
/// the pool and a typed pointer to it. Empty outside a pool.
class target {
 public:
  /// The index of an empty target.
  static constexpr std::size_t none = static_cast<std::size_t>(-1);

  /// An empty target.
  constexpr target() noexcept = default;

  /// Endpoint `index` of a pool, `endpoint` itself. Not owned: valid for the
  /// whole call that received it, and after it while the pool holds that
  /// endpoint (a pool's replace() may remove it).
  template <class E>
  constexpr target(std::size_t index, const E& endpoint) noexcept
      : endpoint_(&endpoint), key_(detail::type_key_of<E>), index_(index) {}

  /// True when a pool chose an endpoint.
  constexpr bool has_value() const noexcept { return index_ != none; }
  /// The endpoint's index in its pool; target::none when empty.
  constexpr std::size_t index() const noexcept { return index_; }

  /// The endpoint, when there is one and it is an E; null otherwise.
  template <class E>
  const E* get() const noexcept {
    if (!detail::same_type(key_, detail::type_key_of<E>)) return nullptr;
    return static_cast<const E*>(endpoint_);
  }

 private:
  const void* endpoint_ = nullptr;
  detail::type_key key_ = nullptr;
  std::size_t index_ = none;
};

/// The endpoint indexes a call has already tried, so that a retry or a hedge
/// can avoid them. Exact for indexes below 128; a larger index shares a bit
/// with index % 128, so contains() may answer true for one never inserted.
class tried_set {
 public:
  /// Indexes below this are tracked exactly.
  static constexpr std::size_t exact_below = 128;

  /// Marks `index` as tried.
  constexpr void insert(std::size_t index) noexcept {
    bits_[(index / 64) % 2] |= std::uint64_t{1} << (index % 64);
  }
  /// True when `index` (or, above 127, one sharing its bit) was inserted.
  constexpr bool contains(std::size_t index) const noexcept {
    return (bits_[(index / 64) % 2] >> (index % 64) & 1u) != 0;
  }
  /// How many distinct bits are set: the number of indexes tried, when all are below 128.
  constexpr std::size_t size() const noexcept {
    return static_cast<std::size_t>(std::popcount(bits_[0])) +
           static_cast<std::size_t>(std::popcount(bits_[1]));
  }
  /// True when nothing was inserted.
  constexpr bool empty() const noexcept { return (bits_[0] | bits_[1]) == 0; }
  /// Forgets every index.
  constexpr void clear() noexcept { bits_[0] = bits_[1] = 0; }

  friend constexpr bool operator==(const tried_set&, const tried_set&) = default;

 private:
  std::uint64_t bits_[2] = {0, 0};
};

namespace detail {
/// True when indexes a and b share a bit of a tried_set: contains(b) after insert(a).
constexpr bool same_tried_bit(std::size_t a, std::size_t b) noexcept {
  return a % tried_set::exact_below == b % tried_set::exact_below;
}
}  // namespace detail

/// A short name kept inside the object, so that a copy can never outlive the
/// characters it shows: an operation's name for metrics and logs. A longer
/// name is cut to at most `capacity` bytes, at a UTF-8 character boundary.
class short_name {
 public:
  /// Bytes kept; a longer name is cut at a character boundary at or below this.
  static constexpr std::size_t capacity = 31;

  constexpr short_name() noexcept = default;
  /// A copy of `s`, or of its first `capacity` bytes, backed off to the start
  /// of a UTF-8 character so that a cut name stays valid UTF-8.
  constexpr short_name(std::string_view s) noexcept  // NOLINT: implicit by design
      : size_(static_cast<unsigned char>(cut(s))) {
    s.copy(chars_, size_);
  }

  /// The characters kept; valid while this object lives.
  constexpr std::string_view view() const noexcept { return {chars_, size_}; }
  /// True for the empty name.
  constexpr bool empty() const noexcept { return size_ == 0; }

  friend constexpr bool operator==(const short_name& a, const short_name& b) noexcept {
    return a.view() == b.view();
  }

 private:
  static constexpr std::size_t cut(std::string_view s) noexcept {
    if (s.size() <= capacity) return s.size();
    std::size_t n = capacity;
    // s[n] is the first byte left out: while it continues a character, the
    // character began inside the kept part; drop that part too.
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0u) == 0x80u) --n;
    return n;
  }

  char chars_[capacity] = {};
  unsigned char size_ = 0;
};

/// A value a context can keep for its caller: trivially copyable, at most
/// 16 bytes (user_slot::capacity).
template <class T>
concept small_value = std::is_trivially_copyable_v<T> && sizeof(T) <= 16;  // user_slot::capacity

/// Room in a context for a caller's own small value: anything trivially
/// copyable of up to 16 bytes (a tenant id, a trace id), read back by type.
class user_slot {
 public:
  /// Largest value kept, in bytes.
  static constexpr std::size_t capacity = 16;

  template <class T>
  static constexpr bool fits = small_value<T>;
  static_assert(capacity == 16, "small_value's bound");

  /// Keeps `value`, replacing what was there.
  template <small_value T>
  void set(const T& value) noexcept {
    std::memcpy(bytes_, &value, sizeof(T));
    key_ = detail::type_key_of<T>;
  }

  /// The value kept, when it is a T.
  template <small_value T>
  std::optional<T> get() const noexcept {
    if (!detail::same_type(key_, detail::type_key_of<T>)) return std::nullopt;
    std::array<unsigned char, sizeof(T)> raw;
    std::memcpy(raw.data(), bytes_, sizeof(T));
    return std::bit_cast<T>(raw);  // T need not be default-constructible
  }

  /// True when a value was set.
  bool has_value() const noexcept { return key_ != nullptr; }
  /// Forgets the value.
  void reset() noexcept { key_ = nullptr; }

 private:
  unsigned char bytes_[capacity] = {};
  detail::type_key key_ = nullptr;
};

}  // namespace keel

#endif  // KEEL_CORE_CALL_SLOTS_HPP_INCLUDED

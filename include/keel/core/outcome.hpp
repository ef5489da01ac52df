// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_OUTCOME_HPP_INCLUDED
#define KEEL_CORE_OUTCOME_HPP_INCLUDED

#include <cstddef>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "keel/core/error.hpp"
#include "keel/core/expected_like.hpp"
#include "keel/core/inspect.hpp"
#include "keel/detail/config.hpp"

namespace keel {

namespace detail {
/// Stands in for the value of a void callable.
struct unit {};
template <class R>
using stored_t = std::conditional_t<std::is_void_v<R>, unit, R>;

/// The three-way storage of an outcome: a result (index 0), an exception (1)
/// or a keel failure (2). A hand-written union rather than std::variant: its
/// destructor and moves inline to a tag test, where std::variant's go through
/// an out-of-line visit that costs more than a whole closed breaker.
// GCC 12 at -O2 reports the members of the union below as "maybe used
// uninitialized" when an assignment moves through a temporary: it cannot see
// that index_ selects the live member. A false positive; silenced here only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
template <class T, class K>
class outcome_storage {
 public:
  template <class... Args>
  explicit outcome_storage(std::in_place_index_t<0>, Args&&... args) : index_(0) {
    std::construct_at(&value_, std::forward<Args>(args)...);
  }
  explicit outcome_storage(std::in_place_index_t<1>, std::exception_ptr e) noexcept : index_(1) {
    std::construct_at(&exception_, std::move(e));
  }
  /// Holds `v`, or the exception T's constructor threw while taking it.
  template <class V>
  outcome_storage(std::in_place_type_t<T>, V&& v) noexcept : index_(0) {
    construct_value(std::forward<V>(v));
  }
  explicit outcome_storage(std::in_place_index_t<2>, K k) noexcept : index_(2) {
    std::construct_at(&keel_, std::move(k));
  }
  /// Builds the keel failure in place from what `make()` returns (no move).
  template <class F>
  explicit outcome_storage(std::in_place_index_t<3>, F make) noexcept : index_(2) {
    ::new (static_cast<void*>(std::addressof(keel_))) K(make());
  }

  // Copies and moves never throw: when T's copy or move constructor throws,
  // the new storage holds that exception instead (the result could not be
  // handed on, so the exception is what the call produced). A policy can then
  // assign and return outcomes on any path without a try block, and an
  // exception from T never escapes try_execute or destroys a value twice.
  // Requires-clauses: clang-format 14 and 19 lay them out differently.
  // clang-format off
  outcome_storage(const outcome_storage& other) noexcept
    requires std::copy_constructible<T>
      : index_(other.index_) {
    // clang-format on
    switch (index_) {
      case 0:
        construct_value(other.value_);
        break;
      case 1:
        std::construct_at(&exception_, other.exception_);
        break;
      default:
        std::construct_at(&keel_, other.keel_);
        break;
    }
  }
  outcome_storage(outcome_storage&& other) noexcept : index_(other.index_) {
    switch (index_) {
      case 0:
        construct_value(std::move(other.value_));
        break;
      case 1:
        std::construct_at(&exception_, std::move(other.exception_));
        break;
      default:
        std::construct_at(&keel_, std::move(other.keel_));
        break;
    }
  }
  // Destroy, then build anew: neither step throws (see above), so `this`
  // always holds exactly one live member. T's assignment operators are never
  // used. `other` may live inside what `this` holds (`o = o.causes()[0]`), so
  // unless destroying `this` frees nothing, it is first taken out.
  // clang-format off
  outcome_storage& operator=(const outcome_storage& other) noexcept
    requires std::copy_constructible<T>
  {
    // clang-format on
    if (this != &other) {
      outcome_storage copy(other);
      destroy();
      std::construct_at(this, std::move(copy));
    }
    return *this;
  }
  outcome_storage& operator=(outcome_storage&& other) noexcept {
    if (this == &other) return *this;
    if (index_ == 0 && std::is_trivially_destructible_v<T>) {
      std::construct_at(this, std::move(other));  // nothing of ours to free first
    } else {
      outcome_storage taken(std::move(other));
      destroy();
      std::construct_at(this, std::move(taken));
    }
    return *this;
  }
  ~outcome_storage() { destroy(); }

  unsigned char index() const noexcept { return index_; }

  template <std::size_t I>
  auto& get() & noexcept {
    if constexpr (I == 0)
      return value_;
    else if constexpr (I == 1)
      return exception_;
    else
      return keel_;
  }
  template <std::size_t I>
  const auto& get() const& noexcept {
    if constexpr (I == 0)
      return value_;
    else if constexpr (I == 1)
      return exception_;
    else
      return keel_;
  }

 private:
  // Builds value_ from `v`; if T's constructor throws, holds its exception.
  template <class V>
  void construct_value(V&& v) noexcept {
    if constexpr (std::is_nothrow_constructible_v<T, V&&> || !KEEL_HAS_EXCEPTIONS) {
      std::construct_at(&value_, std::forward<V>(v));
    } else {
#if KEEL_HAS_EXCEPTIONS
      try {
        std::construct_at(&value_, std::forward<V>(v));
      } catch (...) {
        index_ = 1;
        std::construct_at(&exception_, std::current_exception());
      }
#endif
    }
  }

  // A failure is moved out before it dies: its release code then takes the
  // address of that temporary, not of this storage, which the compiler can
  // therefore keep in registers on the success path.
  void destroy() noexcept {
    switch (index_) {
      case 0:
        std::destroy_at(&value_);
        break;
      case 1: {
        const std::exception_ptr dying(std::move(exception_));
        std::destroy_at(&exception_);
        break;
      }
      default: {
        const K dying(std::move(keel_));
        std::destroy_at(&keel_);
        break;
      }
    }
  }

  union {
    T value_;
    std::exception_ptr exception_;
    K keel_;
  };
  unsigned char index_;
};
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
}  // namespace detail

/// What a guarded call produced: the callable's result (a value, or an
/// expected-like result that may hold an error), the exception it threw, or a
/// failure keel produced itself (keel::errc). `try_execute` returns one and never throws.
template <class R>
class outcome {
  static_assert(!std::is_reference_v<R>,
                "keel: the callable returns a reference, which keel cannot store or retry "
                "safely: return a value, a pointer or a std::reference_wrapper instead");
  static_assert(std::is_void_v<R> || std::is_move_constructible_v<R>,
                "keel: the callable's result type must be move-constructible");

  using stored = detail::stored_t<R>;
  using causes_t = std::shared_ptr<const std::vector<outcome>>;
  struct keel_failure {
    error_info info;
    causes_t causes;  // only for all_fallbacks_failed
  };

 public:
  using result_type = R;

  /// A successful void outcome.
  // clang-format off
  outcome() noexcept
    requires std::is_void_v<R>
      : state_(std::in_place_index<0>) {}

  /// Holds the callable's result (or, if moving it in throws, that exception).
  outcome(stored value) noexcept  // NOLINT: implicit by design
    requires(!std::is_void_v<R>)
      : state_(std::in_place_type<stored>, std::move(value)) {}
  // clang-format on

  /// Builds the result in place.
  template <class... Args>
  explicit outcome(std::in_place_t, Args&&... args)
      : state_(std::in_place_index<0>, std::forward<Args>(args)...) {}

  /// Holds a thrown exception.
  static outcome from_exception(std::exception_ptr e) noexcept {
    return outcome(std::in_place_index<1>, std::move(e));
  }

  /// Holds a failure keel produced; `causes` lists earlier failures (fallback chains).
  static outcome from_keel(error_info info, std::vector<outcome> causes = {}) {
    causes_t list;
    if (!causes.empty()) list = std::make_shared<const std::vector<outcome>>(std::move(causes));
    return outcome(std::in_place_index<2>, keel_failure{std::move(info), std::move(list)});
  }

  /// Holds a failure keel produced, by code.
  static outcome from_keel(errc code, std::optional<duration> retry_after = std::nullopt) {
    // Built directly, without the empty causes vector: an open breaker's
    // rejection builds one per call.
    return outcome(std::in_place_index<3>, [&]() noexcept {
      return keel_failure{error_info{make_error_code(code), retry_after}, causes_t()};
    });
  }

  /// True when the callable returned and its result is not an expected-like error.
  bool has_value() const noexcept {
    if (state_.index() != 0) return false;
    if constexpr (expected_like<R>) {
      return static_cast<bool>(state_.template get<0>().has_value());
    } else {
      return true;
    }
  }
  explicit operator bool() const noexcept { return has_value(); }

  /// True when the callable returned (its result may be an expected-like error).
  bool has_result() const noexcept { return state_.index() == 0; }
  /// True when the callable returned an expected-like result holding an error.
  bool has_error_value() const noexcept { return has_result() && !has_value(); }
  /// True when the callable threw.
  bool has_exception() const noexcept { return state_.index() == 1; }
  /// True when keel produced the failure (open circuit, timeout, ...).
  bool has_keel_error() const noexcept { return state_.index() == 2; }

  /// The callable's result; if there is none, throws the failure (see rethrow()).
  std::add_lvalue_reference_t<R> value() & {
    if (!has_result()) rethrow();
    if constexpr (!std::is_void_v<R>) return state_.template get<0>();
  }
  std::add_lvalue_reference_t<const R> value() const& {
    if (!has_result()) rethrow();
    if constexpr (!std::is_void_v<R>) return state_.template get<0>();
  }
  R value() && {
    if (!has_result()) rethrow();
    if constexpr (!std::is_void_v<R>) return std::move(state_.template get<0>());
  }

  /// The error the callable returned. Precondition: has_error_value().
  // clang-format off
  decltype(auto) error_value() const
    requires expected_like<R>
  {
    // clang-format on
    return state_.template get<0>().error();
  }

  /// The exception the callable threw, or null.
  std::exception_ptr exception() const noexcept {
    return has_exception() ? state_.template get<1>() : std::exception_ptr();
  }

  /// keel's failure (code and hint). Precondition: has_keel_error().
  const error_info& keel_error() const { return state_.template get<2>().info; }

  /// keel's code, or the error value as a std::error_code where it is one; else empty.
  std::error_code code() const noexcept {
    if (has_keel_error()) return keel_error().code;
    if constexpr (expected_like<R>) {
      if (has_error_value()) return detail::error_value_code(state_.template get<0>());
    }
    return {};
  }

  /// True when the outcome is keel failure `e`.
  bool is(errc e) const noexcept {
    return has_keel_error() && keel_error().code == make_error_code(e);
  }

  /// The hint of a keel failure (its retry-after), or of a thrown
  /// keel::error or other keel::hint_source, which must be a single public
  /// base (one rethrow to find it); empty
  /// otherwise. A result's or error value's hint is read by the policy's own
  /// extractor (retry's with_hint).
  keel::hint hint() const {
    if (has_keel_error()) return {keel_error().retry_after, {}, {}};
    if (!has_exception()) return {};
    // keel::error first: a type that derives from it and from another
    // hint_source has hint_source only as an ambiguous base.
    return inspect_exception<keel::error, hint_source>(
        exception(), keel::hint(), [](const keel::error& e) { return e.hint(); },
        [](const hint_source& e) { return e.hint(); });
  }

  /// hint().retry_after: how long to wait before trying again, if known.
  std::optional<duration> retry_after() const {
    if (has_keel_error()) return keel_error().retry_after;
    if (!has_exception()) return std::nullopt;
    return hint().retry_after;
  }

  /// For all_fallbacks_failed: the failure of the primary and of each alternative, in order.
  std::span<const outcome> causes() const noexcept {
    if (has_keel_error() && state_.template get<2>().causes)
      return *state_.template get<2>().causes;
    return {};
  }

  /// This outcome as a failure record, for events and aggregated errors.
  failure describe() const {
    switch (state_.index()) {
      case 1:
        return {failure_kind::exception, {}, exception(), {}};
      case 2:
        return {failure_kind::keel, keel_error().code, {}, {keel_error().retry_after, {}, {}}};
      default:
        return {has_value() ? failure_kind::result : failure_kind::error_value, code(), {}, {}};
    }
  }

  /// Throws the failure: the captured exception unchanged, or keel::error for
  /// a keel failure (with every cause for all_fallbacks_failed). Aborts
  /// without exceptions. Precondition: !has_result().
  [[noreturn]] void rethrow() const {
    if (has_exception()) {
#if KEEL_HAS_EXCEPTIONS
      std::rethrow_exception(exception());
#else
      std::abort();
#endif
    }
    std::vector<failure> list;
    for (const outcome& cause : causes()) list.push_back(cause.describe());
    detail::throw_or_abort(error(keel_error(), std::move(list)));
  }

  /// What `execute` returns: the result; for an expected-like R, keel failures
  /// become its error type (keel::error_traits); otherwise the failure is thrown.
  R get() && {
    if constexpr (expected_like<R>) {
      if (has_keel_error()) {
        using E = error_type_t<R>;
        static_assert(keel_error_convertible<E>,
                      "keel: execute() must report keel's own failures (open circuit, timeout, "
                      "cancellation) in this expected-like type, but its error type is not "
                      "constructible from std::error_code: specialize keel::error_traits<E> or "
                      "use try_execute()");
        return detail::make_error_result<R>(error_traits<E>::from_keel(keel_error()));
      }
    }
    return std::move(*this).value();
  }

 private:
  template <std::size_t I, class... Args>
  explicit outcome(std::in_place_index_t<I> i, Args&&... args)
      : state_(i, std::forward<Args>(args)...) {}

  detail::outcome_storage<stored, keel_failure> state_;
};

}  // namespace keel

#endif  // KEEL_CORE_OUTCOME_HPP_INCLUDED

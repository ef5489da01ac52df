// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_ERROR_HPP_INCLUDED
#define KEEL_CORE_ERROR_HPP_INCLUDED

#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include "keel/core/hint.hpp"
#include "keel/core/time.hpp"

namespace keel {

/// Failures that keel itself produces. Zero is never used, so a default
/// std::error_code still means "no error".
enum class errc : int {
  circuit_open = 1,        ///< a circuit breaker is open and rejected the call
  circuit_isolated,        ///< a circuit breaker was forced open by hand
  retry_budget_exhausted,  ///< a shared retry budget refused a retry
  timeout,                 ///< the call did not finish before its deadline
  cancelled,               ///< the caller requested stop
  all_fallbacks_failed,    ///< the primary and every alternative of a fallback chain failed
  bulkhead_full,           ///< no concurrency slot was free
  rate_limited,            ///< a rate limiter refused the call
  no_endpoint_available,   ///< a replica pool had no endpoint it could send the call to
  throttled,  ///< a client-side adaptive throttle shed the call: the dependency has been refusing
};

/// The enumerator's name ("circuit_open"), for logs and metrics labels; "unknown" otherwise.
constexpr std::string_view to_string_view(errc e) noexcept {
  switch (e) {
    case errc::circuit_open:
      return "circuit_open";
    case errc::circuit_isolated:
      return "circuit_isolated";
    case errc::retry_budget_exhausted:
      return "retry_budget_exhausted";
    case errc::timeout:
      return "timeout";
    case errc::cancelled:
      return "cancelled";
    case errc::all_fallbacks_failed:
      return "all_fallbacks_failed";
    case errc::bulkhead_full:
      return "bulkhead_full";
    case errc::rate_limited:
      return "rate_limited";
    case errc::no_endpoint_available:
      return "no_endpoint_available";
    case errc::throttled:
      return "throttled";
  }
  return "unknown";
}

namespace detail {

class keel_category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "keel"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::circuit_open:
        return "circuit breaker is open";
      case errc::circuit_isolated:
        return "circuit breaker is isolated";
      case errc::retry_budget_exhausted:
        return "retry budget exhausted";
      case errc::timeout:
        return "operation timed out";
      case errc::cancelled:
        return "operation cancelled";
      case errc::all_fallbacks_failed:
        return "all fallbacks failed";
      case errc::bulkhead_full:
        return "bulkhead is full";
      case errc::rate_limited:
        return "rate limited";
      case errc::no_endpoint_available:
        return "no endpoint available";
      case errc::throttled:
        return "throttled: the dependency has been refusing calls";
    }
    return "unknown keel error";
  }

  // So that `code == std::errc::timed_out` and `code == std::errc::operation_canceled`
  // hold for keel's timeout and cancellation, as generic code expects.
  std::error_condition default_error_condition(int value) const noexcept override {
    switch (static_cast<errc>(value)) {
      case errc::timeout:
        return std::make_error_condition(std::errc::timed_out);
      case errc::cancelled:
        return std::make_error_condition(std::errc::operation_canceled);
      default:
        return {value, *this};
    }
  }
};

// Constant-initialized: taking the category costs no guard check, which an
// open breaker would pay on every rejection.
inline constinit const keel_category the_keel_category{};

}  // namespace detail

/// The category of keel::errc ("keel"). One object per program.
inline const std::error_category& error_category() noexcept { return detail::the_keel_category; }

/// Makes `keel::errc` usable wherever a std::error_code is expected.
inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// What a failure means, whoever produced it: keel's codes compare equal to
/// these (`code == keel::condition::rejected`), and so can another library's
/// codes (see condition_category()). Policies test these, never a list of codes.
enum class condition : int {
  /// A policy refused the call before it ran: a circuit breaker (open or
  /// isolated), a bulkhead, a rate limiter, a retry budget, a replica pool
  /// with no endpoint available. Retry does not
  /// retry these unless retry_rejections is set.
  rejected = 1,
  /// A circuit breaker refused the call: errc::circuit_open or circuit_isolated.
  circuit_rejected,
  /// A deadline passed: errc::timeout, and any code equal to std::errc::timed_out.
  timeout,
  /// The caller asked to stop: errc::cancelled, and any code equal to
  /// std::errc::operation_canceled.
  cancelled,
};

/// The enumerator's name ("rejected"); "unknown" otherwise.
constexpr std::string_view to_string_view(condition c) noexcept {
  switch (c) {
    case condition::rejected:
      return "rejected";
    case condition::circuit_rejected:
      return "circuit_rejected";
    case condition::timeout:
      return "timeout";
    case condition::cancelled:
      return "cancelled";
  }
  return "unknown";
}

namespace detail {

/// True when keel's code `e` falls under condition `c`.
constexpr bool keel_code_means(errc e, condition c) noexcept {
  switch (c) {
    case condition::rejected:
      return e == errc::circuit_open || e == errc::circuit_isolated || e == errc::bulkhead_full ||
             e == errc::rate_limited || e == errc::retry_budget_exhausted ||
             e == errc::no_endpoint_available || e == errc::throttled;
    case condition::circuit_rejected:
      return e == errc::circuit_open || e == errc::circuit_isolated;
    case condition::timeout:
      return e == errc::timeout;
    case condition::cancelled:
      return e == errc::cancelled;
  }
  return false;
}

class condition_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "keel.condition"; }

  std::string message(int value) const override {
    switch (static_cast<condition>(value)) {
      case condition::rejected:
        return "call rejected by a policy";
      case condition::circuit_rejected:
        return "call rejected by a circuit breaker";
      case condition::timeout:
        return "deadline passed";
      case condition::cancelled:
        return "cancelled";
    }
    return "unknown keel condition";
  }

  // Another category joins a condition by returning it from its
  // default_error_condition() (or by overriding its own equivalent()); one
  // that maps a code to circuit_rejected is also rejected.
  bool equivalent(const std::error_code& code, int value) const noexcept override {
    const auto wanted = static_cast<condition>(value);
    if (code.category() == the_keel_category) {
      return keel_code_means(static_cast<errc>(code.value()), wanted);
    }
    const std::error_condition mapped = code.default_error_condition();
    if (mapped.category() == *this) {
      return mapped.value() == value ||
             (wanted == condition::rejected &&
              mapped.value() == static_cast<int>(condition::circuit_rejected));
    }
    if (wanted == condition::timeout) return code == std::errc::timed_out;
    if (wanted == condition::cancelled) return code == std::errc::operation_canceled;
    return false;
  }
};

inline constinit const condition_category_impl the_condition_category{};

}  // namespace detail

/// The category of keel::condition ("keel.condition"). One object per program.
inline const std::error_category& condition_category() noexcept {
  return detail::the_condition_category;
}

/// Makes `keel::condition` usable wherever a std::error_condition is expected.
inline std::error_condition make_error_condition(condition c) noexcept {
  return {static_cast<int>(c), condition_category()};
}

/// A keel failure as an outcome holds it: the code and, where known, when
/// trying again makes sense. Kept small (the failure paths move it); a thrown
/// keel::error carries a whole keel::hint.
struct error_info {
  std::error_code code;                   ///< a keel::errc code
  std::optional<duration> retry_after{};  ///< hint: wait this long before trying again
};

/// How an attempt failed.
enum class failure_kind : unsigned char {
  exception,    ///< the callable threw
  error_value,  ///< the callable returned an expected-like result holding an error
  result,       ///< the callable returned a value that a predicate judged a failure
  keel,         ///< keel refused or stopped the call (see keel::errc)
};

/// The enumerator's name ("exception"); "unknown" otherwise.
constexpr std::string_view to_string_view(failure_kind k) noexcept {
  switch (k) {
    case failure_kind::exception:
      return "exception";
    case failure_kind::error_value:
      return "error_value";
    case failure_kind::result:
      return "result";
    case failure_kind::keel:
      return "keel";
  }
  return "unknown";
}

/// One failure described without its result type: what events carry, and what
/// keel::error::causes() lists when every alternative of a fallback failed.
struct failure {
  failure_kind kind{};
  std::error_code code{};          ///< keel code, or the error value where it is an error code
  std::exception_ptr exception{};  ///< set when kind == exception
  keel::hint hint{};               ///< a keel failure's hint; empty for the other kinds
};

/// What `execute` throws for failures keel produced itself (open circuit,
/// timeout, cancellation, ...). Carries the code, a hint (retry-after and
/// more) and, for all_fallbacks_failed, every failure of the chain in order.
/// A user may throw one too, with a code of any category and a hint.
class error : public std::system_error, public hint_source {
 public:
  explicit error(errc code, std::optional<duration> retry_after = std::nullopt)
      : error(error_info{make_error_code(code), retry_after}) {}

  explicit error(const error_info& info, std::vector<failure> causes = {})
      : error(info.code, keel::hint{info.retry_after, {}, {}}, std::move(causes)) {}

  /// A failure with code `code` of any category and hint `h`: how a callable
  /// reports, say, "not the leader" with the leader's id, or a quota.
  error(std::error_code code, const keel::hint& h, std::vector<failure> causes = {})
      : std::system_error(code), hint_(h) {
    if (!causes.empty()) causes_ = std::make_shared<const std::vector<failure>>(std::move(causes));
  }

  /// Everything the failure advises (retry-after, leader, quota).
  keel::hint hint() const noexcept override { return hint_; }

  /// How long to wait before trying again, if known: hint().retry_after.
  std::optional<duration> retry_after() const noexcept { return hint_.retry_after; }

  /// The code and retry-after as data.
  error_info info() const { return {code(), hint_.retry_after}; }

  /// For all_fallbacks_failed: the failure of the primary and of each alternative, in order.
  std::span<const failure> causes() const noexcept {
    return causes_ ? std::span<const failure>(*causes_) : std::span<const failure>();
  }

 private:
  keel::hint hint_;
  std::shared_ptr<const std::vector<failure>> causes_;  // shared: exceptions are copied
};

}  // namespace keel

template <>
struct std::is_error_code_enum<keel::errc> : std::true_type {};
template <>
struct std::is_error_condition_enum<keel::condition> : std::true_type {};

#endif  // KEEL_CORE_ERROR_HPP_INCLUDED

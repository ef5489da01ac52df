// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_CONFIG_ERROR_HPP_INCLUDED
#define KEEL_CORE_CONFIG_ERROR_HPP_INCLUDED

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "keel/detail/config.hpp"

namespace keel {

/// One problem in a set of options: which field, and what is wrong with it.
/// Returned by each options type's constexpr `validate()`; empty optional = valid.
struct config_problem {
  std::string_view field;   ///< e.g. "retry_options.max_attempts"
  std::string_view reason;  ///< e.g. "must be >= 1"
};

/// The result of every `validate()`: nullopt when the options are valid.
using validation_result = std::optional<config_problem>;

/// Thrown by a policy's constructor when its options are invalid.
/// what() reads "keel: <field>: <reason>"; field() names the field alone.
class config_error : public std::invalid_argument {
 public:
  explicit config_error(const config_problem& p)
      : std::invalid_argument("keel: " + std::string(p.field) + ": " + std::string(p.reason)),
        field_(p.field) {}

  /// The offending field, e.g. "retry_options.max_attempts".
  const std::string& field() const noexcept { return field_; }

 private:
  std::string field_;
};

/// Throws config_error for a problem (aborts without exceptions): what a
/// policy's constructor calls with its options' `validate()`.
inline void require_valid(const validation_result& problem) {
  if (problem) detail::throw_or_abort(config_error(*problem));
}

namespace detail {
using keel::require_valid;

/// The type of `{}` given as a policy's only argument, so that `keel::retry({})`
/// means the default options: an exact match, better than building the
/// options from `{}` or a temporary policy to copy, which GCC finds ambiguous.
enum class empty_braces : unsigned char {};
}  // namespace detail
}  // namespace keel

#endif  // KEEL_CORE_CONFIG_ERROR_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_RETRY_RETRY_BUDGET_HPP_INCLUDED
#define KEEL_RETRY_RETRY_BUDGET_HPP_INCLUDED

#include <atomic>
#include <cmath>
#include <cstdint>

#include "keel/core/config_error.hpp"

namespace keel {

/// The token bucket of a retry_budget. One model covers gRPC retry throttling
/// (A6) and the AWS SDK retry quota:
///
/// - the bucket starts full, holds [0, max_tokens] tokens;
/// - each failed attempt takes `failure_cost` (gRPC: 1; AWS: 0);
/// - a retry is granted only while tokens > max_tokens·retry_threshold
///   (gRPC: 0.5) and tokens >= its cost, which it then takes: `retry_cost`,
///   or `timeout_retry_cost` after a timeout (gRPC: 0; AWS: 5 and 10);
/// - each success adds `token_ratio` (gRPC: tokenRatio; AWS: 1), except that with
///   `refund_on_success` a success after retries gives back the cost of the
///   retry that led to it instead (AWS).
///
/// Tokens are counted in thousandths (gRPC allows 3 decimals), so every amount
/// is exact; amounts are rounded to the nearest thousandth.
/// Defaults: gRPC with userver's values (100 tokens, ratio 0.1).
struct retry_budget_options {
  double max_tokens = 100.0;        ///< capacity, > 0 and <= 1e9. Default 100.
  double token_ratio = 0.1;         ///< added per success, >= 0. Default 0.1.
  double failure_cost = 1.0;        ///< taken per failed attempt, >= 0. Default 1.
  double retry_cost = 0.0;          ///< taken per granted retry, >= 0. Default 0.
  double timeout_retry_cost = 0.0;  ///< taken per granted retry after a timeout; 0 means retry_cost
  double retry_threshold = 0.5;     ///< retries only while tokens > max_tokens × this, in [0, 1)
  bool refund_on_success =
      false;  ///< a success after a retry refunds its cost instead of token_ratio

  /// gRPC A6 retry throttling: `maxTokens` in (0, 1000], `tokenRatio` > 0.
  static constexpr retry_budget_options grpc(double max_tokens, double token_ratio) noexcept {
    return {.max_tokens = max_tokens, .token_ratio = token_ratio};
  }

  /// The AWS SDK standard retry quota: 500 tokens, a retry costs 5 (10 after a
  /// timeout), a first-try success adds 1, a success after a retry refunds it.
  static constexpr retry_budget_options aws_standard() noexcept {
    return {.max_tokens = 500.0,
            .token_ratio = 1.0,
            .failure_cost = 0.0,
            .retry_cost = 5.0,
            .timeout_retry_cost = 10.0,
            .retry_threshold = 0.0,
            .refund_on_success = true};
  }
};

/// Checks every field; problems are named "retry_budget_options.<field>".
constexpr validation_result validate(const retry_budget_options& o) noexcept {
  const auto amount_ok = [&](double x) { return x >= 0.0 && x <= o.max_tokens; };
  if (!(o.max_tokens > 0.0 && o.max_tokens <= 1e9))
    return config_problem{"retry_budget_options.max_tokens", "must be > 0 and <= 1e9"};
  if (!amount_ok(o.token_ratio))
    return config_problem{"retry_budget_options.token_ratio", "must be within [0, max_tokens]"};
  if (!amount_ok(o.failure_cost))
    return config_problem{"retry_budget_options.failure_cost", "must be within [0, max_tokens]"};
  if (!amount_ok(o.retry_cost))
    return config_problem{"retry_budget_options.retry_cost", "must be within [0, max_tokens]"};
  if (!amount_ok(o.timeout_retry_cost))
    return config_problem{"retry_budget_options.timeout_retry_cost",
                          "must be within [0, max_tokens]"};
  if (!(o.retry_threshold >= 0.0 && o.retry_threshold < 1.0))
    return config_problem{"retry_budget_options.retry_threshold", "must be within [0, 1)"};
  return std::nullopt;
}

/// A retry budget shared by many retry policies across threads, so that under a
/// wide outage retries add at most a bounded fraction of extra load (see
/// retry_budget_options for the model). Lock-free: one atomic counter, updated
/// by compare-and-swap so that it never leaves [0, max_tokens]. Non-copyable:
/// share it by reference (`retry.with_budget(budget)`) and keep it alive longer
/// than every policy that uses it.
///
/// Memory order: relaxed throughout. The tokens are one atomic, changed only
/// by compare-exchange, each computing the new value (clamped, or refused)
/// from the very value it replaces: the changes are totally ordered, none is
/// lost, and since each starts inside [0, max_tokens] it ends there. Nothing
/// else is published through the tokens, so no thread needs another's writes
/// ordered: a reader sees one of those values, within [0, max_tokens], and
/// once the calls are done (threads joined) the exact result of all of them.
/// The amounts are constants, fixed before the budget is shared.
class retry_budget {
 public:
  /// One thousandth of a token: the unit of every amount.
  static constexpr std::int64_t scale = 1000;

  /// A full bucket. Throws keel::config_error for invalid options.
  explicit retry_budget(retry_budget_options options = {})
      : options_(checked(options)),
        max_(milli(options.max_tokens)),
        ratio_(milli(options.token_ratio)),
        failure_cost_(milli(options.failure_cost)),
        retry_cost_(milli(options.retry_cost)),
        timeout_cost_(options.timeout_retry_cost > 0.0 ? milli(options.timeout_retry_cost)
                                                       : milli(options.retry_cost)),
        threshold_(milli(options.max_tokens * options.retry_threshold)),
        tokens_(max_) {}
  /// `keel::retry_budget({})`: the default options.
  explicit retry_budget(detail::empty_braces) : retry_budget(retry_budget_options()) {}

  retry_budget(const retry_budget&) = delete;
  retry_budget& operator=(const retry_budget&) = delete;

  /// Asks for one retry (the first attempt never asks). Granted, and its cost
  /// taken, only while tokens > max_tokens·retry_threshold and tokens >= cost.
  bool try_acquire(bool after_timeout = false) noexcept {
    const std::int64_t cost = after_timeout ? timeout_cost_ : retry_cost_;
    std::int64_t current = tokens_.load(std::memory_order_relaxed);
    do {
      if (current <= threshold_ || current < cost) return false;
    } while (!tokens_.compare_exchange_weak(current, current - cost, std::memory_order_relaxed));
    return true;
  }

  /// A failed attempt: takes failure_cost (never below zero).
  void record_failure() noexcept { add(-failure_cost_); }

  /// record_failure() then try_acquire(after_timeout), as one atomic step:
  /// a failure that asks to be retried. One write to the shared count, not two.
  bool record_failure_and_acquire(bool after_timeout = false) noexcept {
    const std::int64_t cost = after_timeout ? timeout_cost_ : retry_cost_;
    std::int64_t current = tokens_.load(std::memory_order_relaxed);
    for (;;) {
      const std::int64_t after_failure = clamped(current - failure_cost_);
      const bool granted = after_failure > threshold_ && after_failure >= cost;
      const std::int64_t next = granted ? after_failure - cost : after_failure;
      if (next == current) return granted;  // no change to write
      if (tokens_.compare_exchange_weak(current, next, std::memory_order_relaxed)) return granted;
    }
  }

  /// A successful attempt. `after_retry`: it was a retry, and `after_timeout`:
  /// that retry followed a timeout (which picks the refund with refund_on_success).
  void record_success(bool after_retry = false, bool after_timeout = false) noexcept {
    if (after_retry && options_.refund_on_success) {
      add(after_timeout ? timeout_cost_ : retry_cost_);
    } else {
      add(ratio_);
    }
  }

  /// Tokens now, in thousandths (exact).
  std::int64_t milli_tokens() const noexcept { return tokens_.load(std::memory_order_relaxed); }
  /// Tokens now.
  double tokens() const noexcept { return static_cast<double>(milli_tokens()) / scale; }
  /// True while a retry costing `retry_cost` would be granted.
  bool retries_allowed() const noexcept {
    const std::int64_t t = milli_tokens();
    return t > threshold_ && t >= retry_cost_;
  }
  const retry_budget_options& options() const noexcept { return options_; }

 private:
  static retry_budget_options checked(const retry_budget_options& o) {
    detail::require_valid(validate(o));
    return o;
  }
  static std::int64_t milli(double tokens) noexcept {
    return static_cast<std::int64_t>(std::llround(tokens * static_cast<double>(scale)));
  }

  // Adds `delta` clamped to [0, max]. Skips the write when nothing changes, so a
  // full bucket on the success path costs one shared load, not a contended store.
  void add(std::int64_t delta) noexcept {
    if (delta == 0) return;
    std::int64_t current = tokens_.load(std::memory_order_relaxed);
    std::int64_t next = 0;
    do {
      next = clamped(current + delta);
      if (next == current) return;
    } while (!tokens_.compare_exchange_weak(current, next, std::memory_order_relaxed));
  }

  std::int64_t clamped(std::int64_t t) const noexcept { return t > max_ ? max_ : t < 0 ? 0 : t; }

  retry_budget_options options_;
  // Thousandths, each within [0, 1e12] (max_tokens <= 1e9): a sum of two,
  // as add() makes before clamping, is far from overflowing.
  std::int64_t max_, ratio_, failure_cost_, retry_cost_, timeout_cost_, threshold_;
  std::atomic<std::int64_t> tokens_;
};

}  // namespace keel

#endif  // KEEL_RETRY_RETRY_BUDGET_HPP_INCLUDED

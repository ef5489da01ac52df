// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_HINT_HPP_INCLUDED
#define KEEL_CORE_HINT_HPP_INCLUDED

#include <cstdint>
#include <optional>

#include "keel/core/time.hpp"

namespace keel {

/// "Not the leader; the leader is `id`", as a replica of a leader-based
/// cluster answers (etcd, a Raft store, Redis MOVED).
struct leader_hint {
  /// The leader as the pool that reads the hint identifies its endpoints: by
  /// default the endpoint's index in the pool.
  std::uint64_t id = 0;
  /// Term or epoch of that leadership; 0 when unknown. A pool ignores a hint
  /// whose term is older than the one it already follows.
  std::uint64_t term = 0;

  friend constexpr bool operator==(const leader_hint&, const leader_hint&) = default;
};

/// What is left of a dependency's rate limit, as it reported it
/// (x-ratelimit-remaining and its reset time).
struct quota_hint {
  std::uint64_t remaining = 0;  ///< requests or tokens left in the current window
  duration reset_after{};       ///< until the window resets, from when the hint was read

  friend constexpr bool operator==(const quota_hint&, const quota_hint&) = default;
};

/// A failure's advice to the policies that read it; every part is optional
/// and each policy reads the parts it understands: retry and the circuit
/// breaker `retry_after`, a replica pool `leader`, a rate limiter `quota`.
struct hint {
  std::optional<duration> retry_after{};  ///< wait at least this long before trying again
  std::optional<leader_hint> leader{};    ///< send the next attempt to this leader
  std::optional<quota_hint> quota{};      ///< what the dependency says is left

  /// True when no part is set.
  constexpr bool empty() const noexcept { return !retry_after && !leader && !quota; }

  /// This hint with the parts it lacks taken from `other`.
  constexpr hint or_else(const hint& other) const noexcept {
    return {retry_after ? retry_after : other.retry_after, leader ? leader : other.leader,
            quota ? quota : other.quota};
  }

  friend constexpr bool operator==(const hint&, const hint&) = default;
};

/// A base for a user's exception type that carries a hint: keel finds it
/// through outcome::hint() (one rethrow, only when a policy asks). Derive
/// publicly and once; keel::error is one.
class hint_source {
 public:
  /// The hint this failure carries. Must not throw.
  virtual keel::hint hint() const noexcept = 0;

 protected:
  hint_source() = default;
  hint_source(const hint_source&) = default;
  hint_source& operator=(const hint_source&) = default;
  ~hint_source() = default;
};

}  // namespace keel

#endif  // KEEL_CORE_HINT_HPP_INCLUDED

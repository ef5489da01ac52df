// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_ADMISSION_LIMIT_ALGORITHMS_HPP_INCLUDED
#define KEEL_ADMISSION_LIMIT_ALGORITHMS_HPP_INCLUDED

// The limit algorithms of keel::adaptive_limiter: plain objects fed one
// summary per window (RTT, calls in flight, drops) that answer the new limit.
// Not thread-safe: the limiter calls one from one thread at a time.

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>

#include "keel/core/config_error.hpp"
#include "keel/core/time.hpp"

namespace keel {

/// One closed window, as a limit algorithm sees it.
struct limit_sample {
  duration rtt{};               ///< mean RTT of the window's measured calls; 0 when none
  duration min_rtt{};           ///< the lowest of them; 0 when none
  std::uint32_t in_flight = 0;  ///< the most calls in flight seen at an admission in the window
  std::uint32_t samples = 0;    ///< measured calls (drops excluded)
  std::uint32_t drops = 0;      ///< drops: timeouts and overload answers
  double draw = 0.5;            ///< a uniform draw in [0, 1] from the limiter's environment
  constexpr bool dropped() const noexcept { return drops > 0; }
};

/// Keeps a limit algorithm's baseline RTT (Gradient2's long RTT, Vegas's
/// no-load RTT) under `cap` times the lowest window RTT seen in the last one
/// to two periods of `memory` windows, so a long incident cannot make its
/// slow latency the new normal. `cap` 0 turns it off (the anchors' behaviour).
struct baseline_guard_options {
  double cap = 0.0;            ///< >= 1, or 0 for off. Default 0 (off); 2 is a sensible cap.
  std::uint32_t memory = 600;  ///< windows per period (600 = 10 min of 1 s windows); >= 1
  constexpr validation_result validate(const char* cap_field, const char* memory_field) const {
    if (!(cap == 0.0 || (cap >= 1.0 && cap <= 1e6)))
      return config_problem{cap_field, "must be 0 (off) or in [1, 1e6]"};
    if (memory == 0) return config_problem{memory_field, "must be >= 1"};
    return std::nullopt;
  }
};

namespace detail {

// The lowest RTT over the current and the previous period of `memory` windows.
class baseline_guard {
 public:
  explicit constexpr baseline_guard(baseline_guard_options o) noexcept : options_(o) {}
  void observe(double rtt_ns) noexcept {
    if (options_.cap == 0.0) return;
    if (rtt_ns < current_) current_ = rtt_ns;
    if (++windows_ >= options_.memory) {
      previous_ = current_;
      current_ = inf;
      windows_ = 0;
    }
  }
  double cap(double baseline_ns) const noexcept {
    if (options_.cap == 0.0) return baseline_ns;
    const double floor = current_ < previous_ ? current_ : previous_;
    if (floor == inf) return baseline_ns;
    const double most = options_.cap * floor;
    return baseline_ns < most ? baseline_ns : most;
  }

 private:
  static constexpr double inf = std::numeric_limits<double>::infinity();
  baseline_guard_options options_;
  double current_ = inf;
  double previous_ = inf;
  std::uint32_t windows_ = 0;
};

constexpr double clamp_limit(double v, double lo, double hi) noexcept {
  return v < lo ? lo : (v > hi ? hi : v);
}

constexpr double rtt_ns(duration d) noexcept { return static_cast<double>(d.count()); }

}  // namespace detail

/// Netflix concurrency-limits' AIMD, with its defaults. Aggregate.
struct aimd_limit_options {
  std::uint32_t initial_limit = 20;  ///< Default 20.
  std::uint32_t min_limit = 20;      ///< Default 20 (Netflix's); >= 1.
  std::uint32_t max_limit = 200;     ///< Default 200; at most 1 << 24.
  double backoff_ratio = 0.9;        ///< the cut on a drop, in [0.5, 1). Default 0.9.
  /// A window whose mean RTT is longer counts as a drop. Default 5 s.
  duration timeout = std::chrono::seconds(5);
  constexpr validation_result validate() const {
    if (min_limit < 1) return config_problem{"aimd_limit_options.min_limit", "must be >= 1"};
    if (max_limit > (1U << 24))
      return config_problem{"aimd_limit_options.max_limit", "must be at most 1 << 24"};
    if (max_limit < min_limit)
      return config_problem{"aimd_limit_options.max_limit", "must be >= min_limit"};
    if (initial_limit < min_limit || initial_limit > max_limit)
      return config_problem{"aimd_limit_options.initial_limit",
                            "must be in [min_limit, max_limit]"};
    if (!(backoff_ratio >= 0.5 && backoff_ratio < 1.0))
      return config_problem{"aimd_limit_options.backoff_ratio", "must be in [0.5, 1)"};
    if (timeout <= duration::zero())
      return config_problem{"aimd_limit_options.timeout", "must be > 0"};
    return std::nullopt;
  }
};

/// Additive increase, multiplicative decrease: a drop (or a window slower than
/// `timeout`) cuts the limit to floor(L * backoff_ratio); a window that used
/// at least half the limit raises it by one.
class aimd_limit {
 public:
  using options_type = aimd_limit_options;
  explicit aimd_limit(aimd_limit_options o = {})
      : options_((require_valid(o.validate()), o)), limit_(o.initial_limit) {}

  double limit() const noexcept { return limit_; }
  const aimd_limit_options& options() const noexcept { return options_; }

  double update(const limit_sample& s) noexcept {
    if (s.dropped() || (s.samples > 0 && s.rtt > options_.timeout)) {
      limit_ = std::floor(limit_ * options_.backoff_ratio);
    } else if (2.0 * s.in_flight >= limit_) {
      limit_ += 1.0;
    }
    limit_ = detail::clamp_limit(limit_, options_.min_limit, options_.max_limit);
    return limit_;
  }

 private:
  aimd_limit_options options_;
  double limit_;
};

/// Netflix concurrency-limits' Gradient2, with its defaults. Aggregate.
struct gradient2_limit_options {
  std::uint32_t initial_limit = 20;   ///< Default 20.
  std::uint32_t min_limit = 20;       ///< Default 20; >= 1.
  std::uint32_t max_limit = 200;      ///< Default 200; at most 1 << 24.
  double smoothing = 0.2;             ///< weight of the new limit, in (0, 1]. Default 0.2.
  double queue_size = 4;              ///< headroom added each window, >= 0. Default 4.
  std::uint32_t long_window = 600;    ///< windows in the long RTT's average, >= 1. Default 600.
  std::uint32_t warmup_windows = 10;  ///< plain mean over the first windows. Default 10.
  double tolerance = 1.5;             ///< short/long RTT ratio tolerated, >= 1. Default 1.5.
  baseline_guard_options baseline_guard{};  ///< caps the long RTT. Default off.
  constexpr validation_result validate() const {
    if (min_limit < 1) return config_problem{"gradient2_limit_options.min_limit", "must be >= 1"};
    if (max_limit > (1U << 24))
      return config_problem{"gradient2_limit_options.max_limit", "must be at most 1 << 24"};
    if (max_limit < min_limit)
      return config_problem{"gradient2_limit_options.max_limit", "must be >= min_limit"};
    if (initial_limit < min_limit || initial_limit > max_limit)
      return config_problem{"gradient2_limit_options.initial_limit",
                            "must be in [min_limit, max_limit]"};
    if (!(smoothing > 0.0 && smoothing <= 1.0))
      return config_problem{"gradient2_limit_options.smoothing", "must be in (0, 1]"};
    if (!(queue_size >= 0.0 && queue_size <= 1e6))
      return config_problem{"gradient2_limit_options.queue_size", "must be in [0, 1e6]"};
    if (long_window < 1)
      return config_problem{"gradient2_limit_options.long_window", "must be >= 1"};
    if (!(tolerance >= 1.0 && tolerance <= 1e6))
      return config_problem{"gradient2_limit_options.tolerance", "must be in [1, 1e6]"};
    return baseline_guard.validate("gradient2_limit_options.baseline_guard.cap",
                                   "gradient2_limit_options.baseline_guard.memory");
  }
};

/// Gradient2: compares the window's RTT with a long average of RTTs.
/// gradient = clamp(tolerance * long / short, 0.5, 1); new = L * gradient +
/// queue_size, smoothed: L * (1 - s) + new * s. The long RTT decays by 0.95
/// when it is more than twice the short one. A window that used less than half
/// the limit holds it. Unlike Netflix's, a drop counts: it takes gradient 0.5
/// (a cut of about 10 % at the default smoothing), used half the limit or not.
class gradient2_limit {
 public:
  using options_type = gradient2_limit_options;
  explicit gradient2_limit(gradient2_limit_options o = {})
      : options_((require_valid(o.validate()), o)),
        limit_(o.initial_limit),
        guard_(o.baseline_guard) {}

  double limit() const noexcept { return limit_; }
  /// The long RTT average (0 before the first measured window).
  duration long_rtt() const noexcept { return duration(static_cast<std::int64_t>(long_rtt_)); }
  const gradient2_limit_options& options() const noexcept { return options_; }

  double update(const limit_sample& s) noexcept {
    double gradient = 0.5;
    if (s.samples > 0) {
      const double short_rtt = detail::rtt_ns(s.rtt) > 1.0 ? detail::rtt_ns(s.rtt) : 1.0;
      guard_.observe(short_rtt);
      add_long(short_rtt);
      if (long_rtt_ / short_rtt > 2.0) long_rtt_ *= 0.95;
      if (!s.dropped()) {
        if (s.in_flight < limit_ / 2.0) return limit_;
        const double g = options_.tolerance * long_rtt_ / short_rtt;
        gradient = detail::clamp_limit(g, 0.5, 1.0);
      }
    } else if (!s.dropped()) {
      return limit_;
    }
    const double target = limit_ * gradient + options_.queue_size;
    const double smoothed = limit_ * (1.0 - options_.smoothing) + target * options_.smoothing;
    limit_ = detail::clamp_limit(smoothed, options_.min_limit, options_.max_limit);
    return limit_;
  }

 private:
  // Netflix's ExpAvgMeasurement: a plain mean while warming up, then an EMA
  // with factor 2 / (window + 1); the guard caps what it keeps.
  void add_long(double rtt) noexcept {
    if (warm_ < options_.warmup_windows) {
      ++warm_;
      warm_sum_ += rtt;
      long_rtt_ = warm_sum_ / warm_;
    } else {
      const double f = 2.0 / (static_cast<double>(options_.long_window) + 1.0);
      long_rtt_ = rtt * f + long_rtt_ * (1.0 - f);
    }
    long_rtt_ = guard_.cap(long_rtt_);
  }

  gradient2_limit_options options_;
  double limit_;
  double long_rtt_ = 0.0;
  double warm_sum_ = 0.0;
  std::uint32_t warm_ = 0;
  detail::baseline_guard guard_;
};

/// Netflix concurrency-limits' Vegas, with its defaults. Aggregate.
struct vegas_limit_options {
  std::uint32_t initial_limit = 20;  ///< Default 20.
  std::uint32_t min_limit = 1;       ///< Default 1; >= 1.
  std::uint32_t max_limit = 1000;    ///< Default 1000; at most 1 << 24.
  double smoothing = 1.0;            ///< weight of the new limit, in (0, 1]. Default 1.
  std::uint32_t probe_multiplier =
      30;  ///< re-probe every multiplier * L * U(0.5, 1) windows. Default 30.
  baseline_guard_options baseline_guard{};  ///< caps a re-probed no-load RTT. Default off.
  constexpr validation_result validate() const {
    if (min_limit < 1) return config_problem{"vegas_limit_options.min_limit", "must be >= 1"};
    if (max_limit > (1U << 24))
      return config_problem{"vegas_limit_options.max_limit", "must be at most 1 << 24"};
    if (max_limit < min_limit)
      return config_problem{"vegas_limit_options.max_limit", "must be >= min_limit"};
    if (initial_limit < min_limit || initial_limit > max_limit)
      return config_problem{"vegas_limit_options.initial_limit",
                            "must be in [min_limit, max_limit]"};
    if (!(smoothing > 0.0 && smoothing <= 1.0))
      return config_problem{"vegas_limit_options.smoothing", "must be in (0, 1]"};
    if (probe_multiplier < 1)
      return config_problem{"vegas_limit_options.probe_multiplier", "must be >= 1"};
    return baseline_guard.validate("vegas_limit_options.baseline_guard.cap",
                                   "vegas_limit_options.baseline_guard.memory");
  }
};

/// Vegas: estimates the queue at the dependency as L * (1 - no_load_rtt / rtt)
/// and, with lg = max(1, floor(log10 L)): raises the limit by 6 lg when the
/// queue is at most lg, by lg when it is under 3 lg, lowers it by lg when it is
/// over 6 lg or on a drop. The no-load RTT is the lowest seen, re-probed (reset
/// to the current RTT) every probe_multiplier * L * U(0.5, 1) windows.
/// Unlike Netflix's, a drop is looked at before a new lowest RTT.
class vegas_limit {
 public:
  using options_type = vegas_limit_options;
  explicit vegas_limit(vegas_limit_options o = {})
      : options_((require_valid(o.validate()), o)),
        limit_(o.initial_limit),
        guard_(o.baseline_guard) {}

  double limit() const noexcept { return limit_; }
  /// The no-load RTT (0 before the first measured window).
  duration no_load_rtt() const noexcept {
    return duration(static_cast<std::int64_t>(no_load_rtt_));
  }
  const vegas_limit_options& options() const noexcept { return options_; }

  double update(const limit_sample& s) noexcept {
    if (jitter_ < 0.0) jitter_ = 0.5 + 0.5 * s.draw;
    const double lg = log10_root(limit_);
    if (s.samples == 0) {
      return s.dropped() ? apply(limit_ - lg) : limit_;
    }
    const double rtt = detail::rtt_ns(s.rtt) > 1.0 ? detail::rtt_ns(s.rtt) : 1.0;
    guard_.observe(rtt);
    if (s.dropped()) return apply(limit_ - lg);
    if (no_load_rtt_ == 0.0 || rtt < no_load_rtt_) {
      no_load_rtt_ = rtt;
      return limit_;
    }
    probe_count_ += 1.0;
    if (jitter_ * options_.probe_multiplier * limit_ <= probe_count_) {
      probe_count_ = 0.0;
      jitter_ = 0.5 + 0.5 * s.draw;
      no_load_rtt_ = guard_.cap(rtt);
      return limit_;
    }
    if (2.0 * s.in_flight < limit_) return limit_;
    const double queue = std::ceil(limit_ * (1.0 - no_load_rtt_ / rtt));
    if (queue <= lg) return apply(limit_ + 6.0 * lg);
    if (queue < 3.0 * lg) return apply(limit_ + lg);
    if (queue > 6.0 * lg) return apply(limit_ - lg);
    return limit_;
  }

 private:
  static double log10_root(double limit) noexcept {
    const double l = std::floor(std::log10(limit > 1.0 ? limit : 1.0));
    return l > 1.0 ? l : 1.0;
  }
  double apply(double target) noexcept {
    const double clamped = detail::clamp_limit(target, options_.min_limit, options_.max_limit);
    limit_ = (1.0 - options_.smoothing) * limit_ + options_.smoothing * clamped;
    return limit_;
  }

  vegas_limit_options options_;
  double limit_;
  double no_load_rtt_ = 0.0;
  double probe_count_ = 0.0;
  double jitter_ = -1.0;
  detail::baseline_guard guard_;
};

}  // namespace keel

#endif  // KEEL_ADMISSION_LIMIT_ALGORITHMS_HPP_INCLUDED

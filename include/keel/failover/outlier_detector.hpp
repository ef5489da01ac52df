// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_FAILOVER_OUTLIER_DETECTOR_HPP_INCLUDED
#define KEEL_FAILOVER_OUTLIER_DETECTOR_HPP_INCLUDED

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>

#include "keel/core/config_error.hpp"
#include "keel/core/time.hpp"
#include "keel/detail/algorithm.hpp"
#include "keel/detail/config.hpp"

namespace keel {

/// Why an endpoint was ejected.
enum class ejection_reason : unsigned char {
  consecutive_failures,  ///< `consecutive_failures` failures in a row
  success_rate,          ///< success rate below mean - stdev_factor * stdev of its peers
  failure_percentage,    ///< failure percentage at or above the threshold
};

/// The enumerator's name ("success_rate"); "unknown" otherwise.
constexpr std::string_view to_string_view(ejection_reason r) noexcept {
  switch (r) {
    case ejection_reason::consecutive_failures:
      return "consecutive_failures";
    case ejection_reason::success_rate:
      return "success_rate";
    case ejection_reason::failure_percentage:
      return "failure_percentage";
  }
  return "unknown";
}

/// The success-rate detector (Envoy, gRPC A50): among endpoints with at least
/// `request_volume` calls in the last interval, when there are at least
/// `minimum_hosts` of them, eject those whose success rate is below
/// mean - stdev_factor * stdev, and one with no success at all always.
struct success_rate_ejection {
  double stdev_factor = 1.9;           ///< Default 1.9 (Envoy's 1900 / 1000).
  std::uint32_t minimum_hosts = 5;     ///< Default 5.
  std::uint32_t request_volume = 100;  ///< Calls in the interval to take part. Default 100.
};

/// The failure-percentage detector (Envoy, gRPC A50): among endpoints with at
/// least `request_volume` calls in the last interval, when there are at least
/// `minimum_hosts` of them, eject those whose failures are >= threshold percent.
struct failure_percentage_ejection {
  std::uint32_t threshold = 85;       ///< Percent, 0..100. Default 85.
  std::uint32_t minimum_hosts = 5;    ///< Default 5.
  std::uint32_t request_volume = 50;  ///< Calls in the interval to take part. Default 50.
};

/// Passive outlier detection, with Envoy's defaults. Aggregate.
struct outlier_detection_options {
  /// Failures in a row that eject an endpoint at once; 0 turns it off. Default 5.
  std::uint32_t consecutive_failures = 5;
  /// Time between sweeps (the rate detectors and the multipliers' decay). Default 10 s.
  duration interval = std::chrono::seconds(10);
  /// The k-th ejection in a row lasts base * k, at most max(base, max). Default 30 s.
  duration base_ejection_time = std::chrono::seconds(30);
  /// The longest ejection. Default 300 s.
  duration max_ejection_time = std::chrono::seconds(300);
  /// At most this percent of the endpoints ejected at once, 0..100. Default 10.
  std::uint32_t max_ejection_percent = 10;
  /// Allow one ejection when the percentage allows none (10 % of 2..9
  /// endpoints rounds to 0). Default false (Envoy's always_eject_one_host).
  bool always_eject_one = false;
  /// Default on, with Envoy's defaults; nullopt turns it off.
  std::optional<success_rate_ejection> success_rate = success_rate_ejection{};
  /// Default off (as in Envoy).
  std::optional<failure_percentage_ejection> failure_percentage = std::nullopt;

  /// The first invalid field, or nullopt.
  constexpr validation_result validate() const noexcept {
    if (interval <= duration::zero())
      return config_problem{"outlier_detection_options.interval", "must be > 0"};
    if (base_ejection_time <= duration::zero())
      return config_problem{"outlier_detection_options.base_ejection_time", "must be > 0"};
    if (max_ejection_time <= duration::zero())
      return config_problem{"outlier_detection_options.max_ejection_time", "must be > 0"};
    if (max_ejection_percent > 100)
      return config_problem{"outlier_detection_options.max_ejection_percent", "must be <= 100"};
    if (success_rate && !(success_rate->stdev_factor >= 0.0 && success_rate->stdev_factor <= 1e6))
      return config_problem{"outlier_detection_options.success_rate.stdev_factor",
                            "must be in [0, 1e6]"};
    if (failure_percentage && failure_percentage->threshold > 100)
      return config_problem{"outlier_detection_options.failure_percentage.threshold",
                            "must be <= 100"};
    return std::nullopt;
  }
};

/// An endpoint ejected or returned: what an outlier_detector tells its sink.
struct outlier_change {
  std::size_t endpoint = 0;  ///< its index
  bool ejected = false;      ///< true: ejected until `until`; false: returned at `until`
  ejection_reason reason{};  ///< why it was (or had been) ejected
  time_point until{};        ///< an ejection's end, or the time of a return
};

/// Passive outlier detection over a fixed number of endpoints, driven by the
/// calls' results and the caller's clock: no thread, no timer. What is due runs
/// at the first record() or sweep() at or after its time, so it is exact in
/// virtual time. Thread-safe: a result is two relaxed atomic adds; an
/// ejection, a return or a sweep takes a mutex.
class outlier_detector {
 public:
  /// `endpoints` endpoints, none ejected; the first sweep is due at start + interval.
  /// Throws config_error for invalid options.
  explicit outlier_detector(std::size_t endpoints, outlier_detection_options options = {},
                            time_point start = time_point{})
      : options_((require_valid(options.validate()), options)),
        n_(endpoints),
        population_(endpoints),
        hosts_(std::make_unique<host[]>(endpoints)),
        swept_(std::make_unique<counts[]>(endpoints)),
        next_sweep_(saturating_add(start, options.interval).time_since_epoch().count()) {}

  outlier_detector(const outlier_detector&) = delete;
  outlier_detector& operator=(const outlier_detector&) = delete;

  /// Number of endpoints.
  std::size_t size() const noexcept { return n_; }
  /// The options it was built with.
  const outlier_detection_options& options() const noexcept { return options_; }

  /// Whether endpoint i is ejected (one relaxed load). An ejection whose time
  /// has passed holds until the next record() or sweep() returns it.
  bool ejected(std::size_t i) const noexcept {
    return hosts_[i].until.load(std::memory_order_relaxed) != not_ejected;
  }
  /// When endpoint i's ejection ends; nullopt when it is not ejected.
  std::optional<time_point> ejected_until(std::size_t i) const noexcept {
    const std::int64_t u = hosts_[i].until.load(std::memory_order_relaxed);
    if (u == not_ejected) return std::nullopt;
    return time_point(duration(u));
  }
  /// Endpoints ejected now.
  std::size_t ejected_count() const noexcept {
    return ejected_count_.load(std::memory_order_relaxed);
  }
  /// Why endpoint i was last ejected (consecutive_failures if never).
  ejection_reason last_reason(std::size_t i) const {
    std::lock_guard lock(mutex_);
    return hosts_[i].reason;
  }
  /// The k of endpoint i's next ejection, less one: one more per ejection, one
  /// less per interval swept while it is not ejected.
  std::uint32_t multiplier(std::size_t i) const {
    std::lock_guard lock(mutex_);
    return hosts_[i].multiplier;
  }
  /// Whether the cap allows one more ejection now: (ejected + 1) * 100 <=
  /// max_ejection_percent * population(), or always_eject_one with none ejected.
  bool may_eject() const noexcept { return may_eject(ejected_count()); }

  /// Records a call's result on endpoint i < size() at `now`: may eject it
  /// (failures in a row) and runs what is due. `sink(const outlier_change&)`
  /// hears each change under the detector's lock, so it must not call
  /// record(), sweep(), restore() or multiplier(); an exception from it is ignored.
  template <class Sink>
  void record(std::size_t i, bool failed, time_point now, Sink&& sink) {
    host& h = hosts_[i];
    if (h.retired.load(std::memory_order_relaxed)) return;  // a late result of one that left
    if (failed) {
      h.failures.fetch_add(1, std::memory_order_relaxed);
      const std::uint32_t run = h.run.fetch_add(1, std::memory_order_relaxed) + 1;
      if (options_.consecutive_failures != 0 && run >= options_.consecutive_failures)
        on_failure_run(i, now, sink);
    } else {
      h.successes.fetch_add(1, std::memory_order_relaxed);
      if (h.run.load(std::memory_order_relaxed) != 0) h.run.store(0, std::memory_order_relaxed);
    }
    sweep(now, sink);
  }
  /// record() with no sink.
  void record(std::size_t i, bool failed, time_point now) { record(i, failed, now, ignore); }

  /// Runs what is due at `now`: at the first call at or after each
  /// start + k * interval a sweep (the rate detectors; each multiplier not
  /// ejected decays by the intervals passed), then returns the endpoints whose
  /// ejection has ended. Two relaxed loads when nothing is due.
  template <class Sink>
  void sweep(time_point now, Sink&& sink) {
    const std::int64_t t = now.time_since_epoch().count();
    if (t < next_sweep_.load(std::memory_order_relaxed) &&
        t < earliest_return_.load(std::memory_order_relaxed))
      return;
    std::lock_guard lock(mutex_);
    const std::int64_t next = next_sweep_.load(std::memory_order_relaxed);
    if (t >= next) {
      // A quiet stretch counts as the sweeps it spans (for the multipliers'
      // decay); the sweeps stay on the grid start + k * interval.
      const std::uint64_t due = sweeps_due(t, next);
      next_sweep_.store(sweep_after(next, due), std::memory_order_relaxed);
      sweep_locked(now, next, due, sink);
    }
    // After the sweep, as in A50: an endpoint that returns now was ejected
    // during it, so its multiplier did not decay.
    return_due_locked(t, sink);
  }
  /// sweep() with no sink.
  void sweep(time_point now) { sweep(now, ignore); }

  /// Returns endpoint i now, if ejected (what a passed active health check does).
  template <class Sink>
  void restore(std::size_t i, time_point now, Sink&& sink) {
    std::lock_guard lock(mutex_);
    if (ejected(i)) return_locked(i, now.time_since_epoch().count(), sink);
  }
  /// restore() with no sink.
  void restore(std::size_t i, time_point now) { restore(i, now, ignore); }

  /// The number of endpoints the cap counts; size() unless set. A pool whose
  /// slots are not all in use sets it to the endpoints it holds.
  std::size_t population() const noexcept { return population_.load(std::memory_order_relaxed); }
  /// Sets population() to `count` <= size().
  void set_population(std::size_t count) noexcept {
    population_.store(detail::min(count, n_), std::memory_order_relaxed);
  }

  /// Forgets endpoint i < size(): its counts, run and multiplier, and its
  /// ejection if any, without telling a sink (its slot now holds another endpoint).
  void forget(std::size_t i) { clear(i, false); }
  /// forget(), and ignores endpoint i's results from now until the next
  /// forget(i): its endpoint left, and a call still running on it must not
  /// eject it or count among its peers.
  void retire(std::size_t i) { clear(i, true); }
  /// Whether endpoint i was retired and not forgotten since.
  bool retired(std::size_t i) const noexcept {
    return hosts_[i].retired.load(std::memory_order_relaxed);
  }

 private:
  static constexpr std::int64_t not_ejected = INT64_MIN;
  static constexpr std::int64_t never = INT64_MAX;
  static constexpr auto ignore = [](const outlier_change&) noexcept {};

  struct host {
    std::atomic<std::uint64_t> successes{0};  // in this interval
    std::atomic<std::uint64_t> failures{0};   // in this interval
    std::atomic<std::uint32_t> run{0};        // failures in a row
    std::atomic<std::int64_t> until{not_ejected};
    std::atomic<bool> retired{false};  // written under mutex_
    std::uint32_t multiplier = 0;      // under mutex_
    ejection_reason reason{};          // under mutex_
  };

  void clear(std::size_t i, bool retire_it) {
    std::lock_guard lock(mutex_);
    host& h = hosts_[i];
    if (ejected(i))
      ejected_count_.store(ejected_count_.load(std::memory_order_relaxed) - 1,
                           std::memory_order_relaxed);
    h.until.store(not_ejected, std::memory_order_relaxed);
    h.successes.store(0, std::memory_order_relaxed);
    h.failures.store(0, std::memory_order_relaxed);
    h.run.store(0, std::memory_order_relaxed);
    h.multiplier = 0;
    h.retired.store(retire_it, std::memory_order_relaxed);
  }

  bool may_eject(std::size_t ejected_now) const noexcept {
    // In integers, so that the cap is exact at every size (10 % of 9 is 0).
    const std::uint64_t after = std::uint64_t{ejected_now} + 1;
    const std::uint64_t n = population();
    if (after * 100 <= std::uint64_t{options_.max_ejection_percent} * n) return true;
    return options_.always_eject_one && ejected_now == 0 && n > 0;
  }

  // In unsigned arithmetic, which wraps on purpose: t - next and the grid can
  // span more than int64 when a clock starts below zero.
  KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP std::uint64_t sweeps_due(std::int64_t t,
                                                                 std::int64_t next) const noexcept {
    const auto every = static_cast<std::uint64_t>(options_.interval.count());
    return (static_cast<std::uint64_t>(t) - static_cast<std::uint64_t>(next)) / every + 1;
  }
  KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP std::int64_t sweep_after(std::int64_t next,
                                                                 std::uint64_t due) const noexcept {
    const auto every = static_cast<std::uint64_t>(options_.interval.count());
    const std::uint64_t room = static_cast<std::uint64_t>(never) - static_cast<std::uint64_t>(next);
    if (due > room / every) return never;
    return static_cast<std::int64_t>(static_cast<std::uint64_t>(next) + due * every);
  }

  template <class Sink>
  KEEL_DETAIL_NOINLINE void on_failure_run(std::size_t i, time_point now, Sink& sink) {
    std::lock_guard lock(mutex_);
    host& h = hosts_[i];
    // Re-read under the lock: a concurrent failure may have ejected it already.
    if (h.run.load(std::memory_order_relaxed) < options_.consecutive_failures || ejected(i)) return;
    // Refused by the cap, the run goes on and ejects at the next failure that
    // finds room; the return resets it (envoy #40697: no drift).
    eject_locked(i, ejection_reason::consecutive_failures, now, sink);
  }

  template <class Sink>
  bool eject_locked(std::size_t i, ejection_reason why, time_point now, Sink& sink) {
    host& h = hosts_[i];
    // A result that passed record()'s test as retire() ran ejects nothing.
    if (h.retired.load(std::memory_order_relaxed)) return false;
    const std::size_t count = ejected_count_.load(std::memory_order_relaxed);
    if (!may_eject(count)) return false;
    if (h.multiplier < UINT32_MAX) ++h.multiplier;
    h.reason = why;
    const duration cap = detail::max(options_.base_ejection_time, options_.max_ejection_time);
    const duration length = detail::min(
        saturating_mul(options_.base_ejection_time, static_cast<double>(h.multiplier)), cap);
    const std::int64_t until = saturating_add(now, length).time_since_epoch().count();
    h.until.store(until, std::memory_order_relaxed);
    ejected_count_.store(count + 1, std::memory_order_relaxed);
    if (until < earliest_return_.load(std::memory_order_relaxed))
      earliest_return_.store(until, std::memory_order_relaxed);
    tell(sink, outlier_change{i, true, why, time_point(duration(until))});
    return true;
  }

  template <class Sink>
  void return_locked(std::size_t i, std::int64_t t, Sink& sink) {
    host& h = hosts_[i];
    h.until.store(not_ejected, std::memory_order_relaxed);
    h.run.store(0, std::memory_order_relaxed);
    ejected_count_.store(ejected_count_.load(std::memory_order_relaxed) - 1,
                         std::memory_order_relaxed);
    tell(sink, outlier_change{i, false, h.reason, time_point(duration(t))});
  }

  template <class Sink>
  void return_due_locked(std::int64_t t, Sink& sink) {
    if (t < earliest_return_.load(std::memory_order_relaxed)) return;
    std::int64_t earliest = never;
    for (std::size_t i = 0; i < n_; ++i) {
      const std::int64_t u = hosts_[i].until.load(std::memory_order_relaxed);
      if (u == not_ejected) continue;
      if (t >= u) {
        return_locked(i, t, sink);
      } else {
        earliest = detail::min(earliest, u);
      }
    }
    earliest_return_.store(earliest, std::memory_order_relaxed);
  }

  template <class Sink>
  void sweep_locked(time_point now, std::int64_t first, std::uint64_t sweeps, Sink& sink) {
    // This interval's counts: a result added during the exchange lands in the next.
    for (std::size_t i = 0; i < n_; ++i) {
      swept_[i].ok = hosts_[i].successes.exchange(0, std::memory_order_relaxed);
      swept_[i].bad = hosts_[i].failures.exchange(0, std::memory_order_relaxed);
      if (hosts_[i].retired.load(std::memory_order_relaxed)) swept_[i] = counts{};
    }
    if (options_.success_rate) success_rate_locked(*options_.success_rate, now, sink);
    if (options_.failure_percentage)
      failure_percentage_locked(*options_.failure_percentage, now, sink);
    const std::int64_t t = now.time_since_epoch().count();
    for (std::size_t i = 0; i < n_; ++i) {
      host& h = hosts_[i];
      const std::uint64_t off =
          ejected(i) ? ended_sweeps(h.until.load(std::memory_order_relaxed), t, first, sweeps)
                     : sweeps;
      h.multiplier -= static_cast<std::uint32_t>(detail::min(std::uint64_t{h.multiplier}, off));
    }
  }
  // Of `sweeps` sweeps due from `first`, those after the one that returns an
  // ejection ending at `until` (it returns after this look): a quiet stretch
  // decays k as a look at every interval would have.
  KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP std::uint64_t ended_sweeps(
      std::int64_t until, std::int64_t t, std::int64_t first, std::uint64_t sweeps) const noexcept {
    if (until > t) return 0;  // still ejected after this look
    std::uint64_t j = 0;      // the sweep that returns it: the first at or after `until`
    if (until > first) {
      const auto every = static_cast<std::uint64_t>(options_.interval.count());
      const std::uint64_t d = static_cast<std::uint64_t>(until) - static_cast<std::uint64_t>(first);
      j = d / every + (d % every != 0 ? 1 : 0);
    }
    return j + 1 < sweeps ? sweeps - 1 - j : 0;
  }

  struct counts {
    std::uint64_t ok = 0;
    std::uint64_t bad = 0;
    std::uint64_t volume() const noexcept { return ok + bad; }
    double rate() const noexcept { return static_cast<double>(ok) / static_cast<double>(volume()); }
  };

  static bool takes_part(const counts& c, std::uint32_t request_volume) noexcept {
    return c.volume() > 0 && c.volume() >= request_volume;
  }

  template <class Sink>
  void success_rate_locked(const success_rate_ejection& d, time_point now, Sink& sink) {
    std::size_t hosts = 0;
    double sum = 0.0;
    for (std::size_t i = 0; i < n_; ++i) {
      if (!takes_part(swept_[i], d.request_volume)) continue;
      ++hosts;
      sum += swept_[i].rate();
    }
    if (hosts == 0 || hosts < d.minimum_hosts) return;
    const double mean = sum / static_cast<double>(hosts);
    double squares = 0.0;
    for (std::size_t i = 0; i < n_; ++i) {
      if (!takes_part(swept_[i], d.request_volume)) continue;
      const double r = swept_[i].rate();
      squares += (r - mean) * (r - mean);
    }
    const double threshold =
        mean - d.stdev_factor * std::sqrt(squares / static_cast<double>(hosts));
    for (std::size_t i = 0; i < n_; ++i) {
      const counts& c = swept_[i];
      if (!takes_part(c, d.request_volume) || ejected(i)) continue;
      // A large stdev can put the threshold at or below 0, where no rate is:
      // an endpoint with no success among peers with some is ejected anyway.
      if (c.rate() < threshold || (c.ok == 0 && mean > 0.0))
        eject_locked(i, ejection_reason::success_rate, now, sink);
    }
  }

  template <class Sink>
  void failure_percentage_locked(const failure_percentage_ejection& d, time_point now, Sink& sink) {
    std::size_t hosts = 0;
    for (std::size_t i = 0; i < n_; ++i) hosts += takes_part(swept_[i], d.request_volume) ? 1 : 0;
    if (hosts == 0 || hosts < d.minimum_hosts) return;
    for (std::size_t i = 0; i < n_; ++i) {
      const counts& c = swept_[i];
      if (!takes_part(c, d.request_volume) || ejected(i)) continue;
      // failures / volume >= threshold %, in integers (volumes stay far below 2^57).
      if (c.bad * 100 >= std::uint64_t{d.threshold} * c.volume())
        eject_locked(i, ejection_reason::failure_percentage, now, sink);
    }
  }

  template <class Sink>
  static void tell(Sink& sink, const outlier_change& change) noexcept {
#if KEEL_HAS_EXCEPTIONS
    try {
      sink(change);
    } catch (...) {  // a listener's failure must not leave the detector half-updated
    }
#else
    sink(change);
#endif
  }

  outlier_detection_options options_;
  std::size_t n_;
  std::atomic<std::size_t> population_;
  std::unique_ptr<host[]> hosts_;
  std::unique_ptr<counts[]> swept_;  // the last sweep's counts, under mutex_
  mutable std::mutex mutex_;
  std::atomic<std::size_t> ejected_count_{0};
  std::atomic<std::int64_t> next_sweep_;
  std::atomic<std::int64_t> earliest_return_{never};
};

}  // namespace keel

#endif  // KEEL_FAILOVER_OUTLIER_DETECTOR_HPP_INCLUDED

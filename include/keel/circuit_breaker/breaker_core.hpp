// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CIRCUIT_BREAKER_BREAKER_CORE_HPP_INCLUDED
#define KEEL_CIRCUIT_BREAKER_BREAKER_CORE_HPP_INCLUDED

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <variant>

#include "keel/circuit_breaker/circuit_breaker_events.hpp"
#include "keel/circuit_breaker/circuit_breaker_options.hpp"
#include "keel/circuit_breaker/detail/windows.hpp"
#include "keel/core/config_error.hpp"
#include "keel/core/environment.hpp"
#include "keel/core/error.hpp"
#include "keel/core/time.hpp"
#include "keel/detail/config.hpp"

namespace keel {

template <class Handles, class Listener, environment Env, class Ignores>
class circuit_breaker;

/// How a call that was let through ended, as the breaker counts it.
enum class call_result : unsigned char {
  success,  ///< the dependency answered well
  failure,  ///< the dependency failed (counts toward the trip rule)
  ignored,  ///< says nothing about the dependency (cancelled, a 404, ...): counts as neither
};

/// One change of state, as reported by circuit_breaker_core (the execution
/// shell turns it into events). `reason`, `failure_ratio` and `open_for` are
/// set when `to` is open.
struct circuit_transition {
  circuit_state from{};
  circuit_state to{};
  time_point at{};
  open_reason reason{};
  double failure_ratio = 0.0;
  duration open_for{};
};

/// The answer of try_acquire: whether the call may go and, if it may, the
/// generation (epoch) it was admitted in. Results are recorded against it:
/// once the breaker has changed state, a result of an earlier generation is
/// ignored. Small and flat on purpose: it is built on every call.
struct circuit_admission {
  bool admitted = false;
  circuit_state state = circuit_state::closed;  ///< admitted in, or rejected by
  /// True when this call began a half-open round (from `previous`, at `at`):
  /// the open time was over, or the last round waited too long.
  bool began_round = false;
  circuit_state previous = circuit_state::closed;  ///< the state before, when began_round
  std::uint32_t generation = 0;
  time_point at{};                        ///< when began_round: the time of the transition
  std::optional<duration> retry_after{};  ///< rejections: time until a probe may go

  explicit operator bool() const noexcept { return admitted; }
  /// True when the call is a half-open probe.
  bool is_probe() const noexcept { return admitted && state == circuit_state::half_open; }
  /// circuit_isolated when isolated by hand, circuit_open otherwise.
  errc rejection_code() const noexcept {
    return state == circuit_state::isolated ? errc::circuit_isolated : errc::circuit_open;
  }
  /// The transition this call made, if it began a half-open round.
  std::optional<circuit_transition> transition() const noexcept {
    if (!began_round) return std::nullopt;
    return circuit_transition{previous, circuit_state::half_open, at, {}, 0.0, {}};
  }
};

/// A snapshot of a breaker, readable at any time without a listener.
struct circuit_metrics {
  circuit_state state = circuit_state::closed;
  std::uint64_t failures = 0;    ///< failures recorded since construction (late ones included)
  std::uint64_t slow_calls = 0;  ///< slow calls recorded since construction
  std::uint64_t rejections = 0;  ///< calls rejected since construction
  /// Calls in the trip rule's window: exact for the ratio rules; for
  /// consecutive_failures and failures_in_period it is the failures the rule
  /// holds, since those rules keep no per-success count (that would be a
  /// shared store per call).
  std::uint32_t calls = 0;
  std::uint32_t window_failures = 0;  ///< failures in the rule's window
  std::uint32_t window_slow_calls = 0;
  double failure_ratio = 0.0;             ///< window_failures / calls, 0 without calls
  double slow_call_ratio = 0.0;           ///< window_slow_calls / calls, 0 without calls
  std::uint32_t probes_admitted = 0;      ///< half-open: probes out or decided in this round
  time_point last_transition{};           ///< time of the last change of state (time zero if none)
  std::optional<duration> retry_after{};  ///< open: time until a probe may go
};

/// The circuit breaker's state machine without any execution: `try_acquire(now)`
/// says whether a call may go, `record(admission, result, now)` reports how it
/// ended. Thread-safe; the closed path is lock-free (transitions take a mutex).
/// circuit_breaker drives it; drive it by hand when you cannot hand over a
/// callable (an async driver, a callback API).
class circuit_breaker_core {
 public:
  /// Throws keel::config_error (aborts without exceptions) when `options` are invalid.
  explicit circuit_breaker_core(circuit_breaker_options options = {})
      : cold_(std::make_unique<cold_state>(checked(std::move(options)))) {
    cold_state& c = *cold_;
    c.rejections.configure();
    const circuit_breaker_options& o = c.options;
    probes_ = static_cast<std::uint32_t>(o.permitted_probes);
    c.successes_needed = static_cast<std::uint32_t>(o.success_threshold == 0 ? o.permitted_probes
                                                                             : o.success_threshold);
    c.growth = o.open_duration;
    if (o.slow_calls) {
      slow_enabled_ = true;
      c.slow_threshold = o.slow_calls->threshold;
      c.slow_ratio = o.slow_calls->ratio;
    }
    if (const auto* r = std::get_if<consecutive_failures>(&o.trip)) {
      rule_ = rule::consecutive;
      threshold_ = static_cast<std::uint32_t>(r->threshold);
      run_limit_ = std::uint64_t{threshold_} << payload_shift;
    } else if (const auto* p = std::get_if<failures_in_period>(&o.trip)) {
      rule_ = rule::in_period;
      c.stamps.configure(p->threshold, p->period);
    } else if (const auto* n = std::get_if<failure_ratio_count>(&o.trip)) {
      rule_ = rule::ratio_count;
      c.minimum_calls = static_cast<std::uint32_t>(n->minimum_calls);
      c.ratio = n->ratio;
      c.count.configure(n->window_size, slow_enabled_);
    } else if (const auto* t = std::get_if<failure_ratio_time>(&o.trip)) {
      rule_ = rule::ratio_time;
      c.minimum_calls = static_cast<std::uint32_t>(t->minimum_calls);
      c.ratio = t->ratio;
      c.time.configure(t->period, t->buckets);
    }
    // Only consecutive_failures and failures_in_period without a slow-call
    // rule let a success pass without recording it.
    const bool free_success =
        !slow_enabled_ && (rule_ == rule::consecutive || rule_ == rule::in_period);
    flags_ = (free_success ? 0 : records_bit) | (slow_enabled_ ? timed_bit : 0);
    word_.store(make(circuit_state::closed, 0, 0), std::memory_order_relaxed);
  }

  circuit_breaker_core(const circuit_breaker_core&) = delete;
  circuit_breaker_core& operator=(const circuit_breaker_core&) = delete;

  const circuit_breaker_options& options() const noexcept { return cold_->options; }

  /// True when record() wants the call's duration (a slow-call rule is set):
  /// only then does the execution shell read the clock around the call.
  bool measures_duration() const noexcept { return slow_enabled_; }

  /// True when a success of a call admitted in `generation` has nothing to
  /// change: the rule keeps no per-success count (consecutive_failures with no
  /// run of failures, failures_in_period), no slow-call rule, and the circuit
  /// is still closed in that generation. One load and one compare: the
  /// execution shell inlines it and skips record() altogether.
  bool success_changes_nothing(std::uint32_t generation) const noexcept {
    return flags_ == 0 &&
           word_.load(std::memory_order_acquire) == make(circuit_state::closed, generation, 0);
  }

  /// May a call go at `now`? See circuit_admission.
  circuit_admission try_acquire(time_point now) {
    return try_acquire_with([now] { return now; });
  }

  /// As try_acquire(now), reading the time from `now()` only when it is needed
  /// (never on the closed path, once when open).
  template <class NowFn>
  circuit_admission try_acquire_with(NowFn&& now_fn) {
    lazy_time<NowFn&> now{now_fn};
    for (;;) {
      const std::uint64_t w = word_.load(std::memory_order_acquire);
      const circuit_state st = state_of(w);
      if (st == circuit_state::closed || st == circuit_state::disabled) {
        return admit(st, gen_of(w));
      }
      if (st == circuit_state::isolated) {
        cold_->rejections.add();
        return reject(st, gen_of(w), std::nullopt);
      }
      if (st == circuit_state::open) {
        const time_point t = now();
        const time_point until{duration(cold_->open_until.load(std::memory_order_acquire))};
        if (t < until) {
          cold_->rejections.add();
          return reject(st, gen_of(w), until - t);
        }
        if (auto a = enter_half_open(w, t)) return std::move(*a);
        continue;  // someone else moved the state: look again
      }
      // half-open: a free probe slot, or a round that waited too long, or a rejection
      const std::uint32_t admitted = ho_admitted(w);
      if (admitted < probes_) {
        std::uint64_t expected = w;
        if (word_.compare_exchange_weak(expected, w + (std::uint64_t{1} << payload_shift),
                                        std::memory_order_acq_rel)) {
          return admit(st, gen_of(w));
        }
        continue;
      }
      const time_point t = now();
      const time_point since{duration(cold_->half_open_since.load(std::memory_order_acquire))};
      const time_point give_up =
          detail::saturating_add(since, cold_->options.max_wait_in_half_open);
      if (t >= give_up) {
        if (auto a = enter_half_open(w, t)) return std::move(*a);
        continue;
      }
      cold_->rejections.add();
      return reject(st, gen_of(w), give_up - t);
    }
  }

  /// Reports how an admitted call ended. `elapsed` is its duration (for slow
  /// calls), `retry_after` a hint the failure carried. Results of an earlier
  /// generation, and of rejected admissions, are ignored. Returns the
  /// transition this result caused, if any.
  std::optional<circuit_transition> record(const circuit_admission& a, call_result result,
                                           time_point now, duration elapsed = {},
                                           std::optional<duration> retry_after = std::nullopt) {
    if (!a.admitted) return std::nullopt;
    return record_with(
        a.generation, result, elapsed, [now] { return now; },
        [retry_after] { return retry_after; });
  }

  /// As record(), reading the time and the hint lazily: `now()` only when the
  /// rule or a transition needs it, `hint()` only when the circuit opens.
  template <class NowFn, class HintFn>
  std::optional<circuit_transition> record_with(std::uint32_t generation, call_result result,
                                                duration elapsed, NowFn&& now_fn,
                                                HintFn&& hint_fn) {
    if (result == call_result::ignored) {
      release(generation);
      return std::nullopt;
    }
    lazy_time<NowFn&> now{now_fn};
    const bool failed = result == call_result::failure;
    const bool slow = slow_enabled_ && elapsed > cold_->slow_threshold;
    if (slow) cold_->slow_calls.fetch_add(1, std::memory_order_relaxed);
    const std::uint64_t w = word_.load(std::memory_order_acquire);
    const circuit_state st = state_of(w);
    const bool closed = st == circuit_state::closed || st == circuit_state::disabled;
    // A closed consecutive_failures breaker keeps its failures in the run of
    // the state word until the run ends (see failures_held): one atomic
    // operation per failure. Every other failure is counted here.
    if (failed && !(closed && rule_ == rule::consecutive && gen_of(w) == generation)) {
      count_failure();
    }
    if (gen_of(w) != generation)
      return std::nullopt;  // a late result: it belongs to an earlier state
    // Only a failure's hint counts: a slow success (or an outcome the breaker
    // does not handle) opens for the configured time.
    auto hint = [&]() -> std::optional<duration> {
      if (failed) return hint_fn();
      return std::nullopt;
    };
    if (closed) return record_closed(w, failed, slow, now, hint);
    if (st == circuit_state::half_open) return record_probe(generation, failed || slow, now, hint);
    return std::nullopt;
  }

  /// Gives back an admission without a result (the caller gave up, or the
  /// outcome says nothing about health): counts as neither success nor
  /// failure, and frees the probe slot of a half-open probe.
  void release(std::uint32_t generation) noexcept {
    std::uint64_t w = word_.load(std::memory_order_acquire);
    while (gen_of(w) == generation && state_of(w) == circuit_state::half_open &&
           ho_admitted(w) > 0) {
      if (word_.compare_exchange_weak(w, w - (std::uint64_t{1} << payload_shift),
                                      std::memory_order_acq_rel)) {
        return;
      }
    }
  }

  /// Forces the circuit open until reset(): calls get errc::circuit_isolated.
  std::optional<circuit_transition> isolate(time_point now) {
    return force(circuit_state::isolated, now);
  }
  /// Forces the circuit closed and keeps it so (outcomes are still counted).
  std::optional<circuit_transition> disable(time_point now) {
    return force(circuit_state::disabled, now);
  }
  /// Closes the circuit with empty windows and forgets any open-time growth.
  std::optional<circuit_transition> reset(time_point now) {
    return force(circuit_state::closed, now);
  }

  circuit_state state() const noexcept { return state_of(word_.load(std::memory_order_acquire)); }

  /// A snapshot of the counters and of the window as of `now`.
  circuit_metrics metrics(time_point now) const {
    circuit_metrics m;
    const cold_state& cold = *cold_;
    // The counter first (acquire), then the word: see "Memory orders" at the
    // state word. The sum can miss a run in transit, never count one twice:
    // it is never above the true count, and the largest sum reported so far
    // is a floor that never falls.
    const std::uint64_t counted = cold.failures.load(std::memory_order_acquire);
    const std::uint64_t w = word_.load(std::memory_order_acquire);
    m.state = state_of(w);
    const std::uint64_t seen = counted + failures_held(w);
    std::atomic<std::uint64_t>& floor = cold_->failures_reported;
    std::uint64_t reported = floor.load(std::memory_order_relaxed);
    while (reported < seen &&
           !floor.compare_exchange_weak(reported, seen, std::memory_order_relaxed)) {
    }
    m.failures = std::max(reported, seen);
    m.slow_calls = cold.slow_calls.load(std::memory_order_relaxed);
    m.rejections = cold.rejections.total();
    m.last_transition = time_point(duration(cold.last_transition.load(std::memory_order_relaxed)));
    detail::window_counts c;
    switch (rule_) {
      case rule::consecutive: {
        const std::uint32_t run =
            m.state == circuit_state::closed || m.state == circuit_state::disabled ? payload_of(w)
                                                                                   : 0;
        c = {run, run, 0};
        break;
      }
      case rule::in_period: {
        const std::uint32_t n = cold.stamps.count(now);
        c = {n, n, 0};
        break;
      }
      case rule::ratio_count:
        c = cold.count.counts();
        break;
      case rule::ratio_time:
        c = cold.time.counts(now);
        break;
    }
    m.calls = c.calls;
    m.window_failures = c.failures;
    m.window_slow_calls = c.slow;
    m.failure_ratio = ratio(c.failures, c.calls);
    m.slow_call_ratio = ratio(c.slow, c.calls);
    if (m.state == circuit_state::half_open) m.probes_admitted = ho_admitted(w);
    if (m.state == circuit_state::open) {
      m.retry_after = detail::time_until(
          now, time_point(duration(cold_->open_until.load(std::memory_order_acquire))));
    }
    return m;
  }

 private:
  template <class, class, environment, class>
  friend class circuit_breaker;

  // The execution shell's closed path, on the state word itself: one load to
  // admit, one load and one compare after a success. Not for other callers.

  /// The state word, for fast_admits / unchanged_since / generation_of.
  std::uint64_t snapshot() const noexcept { return word_.load(std::memory_order_acquire); }
  /// The state word, unordered: enough to admit a closed call, which reads
  /// nothing the word guards. Whatever is read after it (a failure's CAS,
  /// unchanged_since, a window, the open time) is ordered by an acquire of
  /// its own. Relaxed also leaves the caller's values in registers.
  std::uint64_t admission_word() const noexcept { return word_.load(std::memory_order_relaxed); }
  /// True when `w` is closed and no clock read is wanted around the call.
  static bool fast_admits(std::uint64_t w) noexcept { return (w & (state_mask | timed_bit)) == 0; }
  /// True when a success admitted on fast_admits(w) has nothing to record,
  /// decided from `w` alone: the rule keeps no per-success count and no run of
  /// failures was under way at admission. Such a success is ordered at its
  /// admission, where it changes nothing: a run that began while the call was
  /// in flight is left to the calls admitted after its first failure.
  static bool success_is_free(std::uint64_t w) noexcept {
    return (w & (records_bit | payload_mask)) == 0;
  }
  /// True when a success admitted on fast_admits(w) has nothing to record:
  /// the word is still closed in the same generation with no run of failures,
  /// and the rule keeps no per-success count or its window would not change.
  /// Else call record_closed_success.
  bool unchanged_since(std::uint64_t w) const noexcept {
    const std::uint64_t now = word_.load(std::memory_order_acquire);
    if (now != (w & low_mask)) return false;  // the state moved on, or a run is under way
    if ((now & records_bit) == 0) return true;
    // failure_ratio_count records successes, but one into a full window of
    // successes changes nothing (see count_window).
    return rule_ == rule::ratio_count && cold_->count.full_of_successes();
  }
  /// Records a success admitted closed in `generation` (a success in closed
  /// never causes a transition). `now()` is read only by failure_ratio_time.
  template <class NowFn>
  void record_closed_success(std::uint32_t generation, NowFn&& now_fn) {
    std::uint64_t w = word_.load(std::memory_order_acquire);
    if (gen_of(w) != generation) return;  // late: it belongs to an earlier state
    const circuit_state st = state_of(w);
    if (st != circuit_state::closed && st != circuit_state::disabled) return;
    switch (rule_) {
      case rule::consecutive:
        while (const std::uint32_t run = payload_of(w)) {
          if (word_.compare_exchange_weak(w, make(st, generation, 0), std::memory_order_acq_rel)) {
            // After the CAS, with release: see metrics().
            cold_->failures.fetch_add(run, std::memory_order_release);
            return;
          }
          if (gen_of(w) != generation) return;
        }
        return;
      case rule::in_period:
        return;
      case rule::ratio_count:
        cold_->count.record(false, false);
        return;
      case rule::ratio_time:
        cold_->time.record(static_cast<time_point>(now_fn()), false, false);
        return;
    }
  }
  /// The shell's failure path under consecutive_failures: extends the run of
  /// a circuit still closed as in `w` with one CAS, when that does not trip.
  /// False: nothing done, call record_with.
  bool extend_run(std::uint64_t w) noexcept {
    // While the low half is `w`'s (closed, same generation), the run plus one
    // is below the threshold exactly when the word plus one is below
    // run_limit_ (zero for the other rules: never). A closed run stays below
    // threshold_ <= INT_MAX, so the sum cannot wrap. `w` is most often still
    // current: the first CAS goes without a reload.
    std::uint64_t cur = w;
    do {
      const std::uint64_t next = cur + run_step;
      if (next >= run_limit_) return false;
      if (word_.compare_exchange_weak(cur, next, std::memory_order_acq_rel)) return true;
    } while ((cur & low_mask) == (w & low_mask));
    return false;
  }
  /// The shell's rejection path: when `w` is open and `now` is before the end
  /// of the open time, counts the rejection and returns the time left (>= 1
  /// ns); returns -1 when try_acquire must decide (a probe may go, or `w` is
  /// not open). Same reads, in the same order, as try_acquire_with.
  std::int64_t reject_open(std::uint64_t w, time_point now) const noexcept {
    if (state_of(w) != circuit_state::open) return -1;
    const std::int64_t until = cold_->open_until.load(std::memory_order_acquire);
    const std::int64_t t = now.time_since_epoch().count();
    if (t >= until) return -1;
    cold_->rejections.add();
    return until - t;
  }
  /// True when state word `w` is open.
  static bool is_open(std::uint64_t w) noexcept { return state_of(w) == circuit_state::open; }
  /// The generation of state word `w`.
  static std::uint32_t generation_of(std::uint64_t w) noexcept { return gen_of(w); }

  /// The closed path of try_acquire, for the execution shell to inline: admits
  /// the call and sets `generation` when the circuit is closed or disabled
  /// (one load, no clock read); false means "ask try_acquire_with".
  bool try_admit_closed(std::uint32_t& generation, circuit_state& state) const noexcept {
    const std::uint64_t w = word_.load(std::memory_order_acquire);
    state = state_of(w);
    generation = gen_of(w);
    return state == circuit_state::closed || state == circuit_state::disabled;
  }

  enum class rule : unsigned char { consecutive, in_period, ratio_count, ratio_time };

  // The state word: state (3 bits) | records (1 bit) | timed (1 bit) |
  // generation (27 bits) | payload (32 bits). Payload: closed/disabled =
  // consecutive failures; half-open = probes admitted, successes and failures,
  // 10 bits each. Packing them with the generation makes every count a CAS
  // that fails when the state moved on. The two flag bits are constant: set
  // when a success must be recorded (a ratio rule, slow calls) and when the
  // call must be timed (slow calls), so that one compare decides the fast path.
  //
  // Memory orders. Transitions hold the mutex and publish with release;
  // counts in a state are CASes on the word (acq_rel); readers load with
  // acquire (the closed admission relaxed: it reads nothing the word guards).
  // - Exact half-open probes: each admission is one CAS that checks
  //   admitted < permitted_probes in the word: one modification order, so
  //   never more than k in a round (stress_test.cpp: probes in flight per
  //   generation, under contention).
  // - Late results ignored: a result checks its generation and counts in the
  //   same CAS on the word, or under the mutex (trips, probes)
  //   (half_open_test.cpp [generation]).
  // - metrics().failures never above the truth: a run of failures is added to
  //   the counter (release) after the word change that ended it; metrics()
  //   loads the counter (acquire), then the word. If that load read the add
  //   (or a later one: a release sequence), the word change happened before
  //   the word load, which by coherence no longer holds the run; if not, the
  //   run is counted at most once, from the word (metrics_stress_test.cpp).
  static constexpr std::uint64_t state_mask = 0x7;
  static constexpr std::uint64_t records_bit = 0x8;
  static constexpr std::uint64_t timed_bit = 0x10;
  static constexpr int gen_shift = 5;
  static constexpr std::uint64_t gen_mask = (std::uint64_t{1} << 27) - 1;
  static constexpr int payload_shift = 32;
  static constexpr std::uint64_t low_mask = 0xffffffffu;
  static constexpr std::uint64_t run_step = std::uint64_t{1} << payload_shift;  // one more failure
  static constexpr std::uint64_t payload_mask = ~low_mask;

  static circuit_state state_of(std::uint64_t w) noexcept {
    return static_cast<circuit_state>(w & state_mask);
  }
  static std::uint32_t gen_of(std::uint64_t w) noexcept {
    return static_cast<std::uint32_t>((w >> gen_shift) & gen_mask);
  }
  static std::uint32_t payload_of(std::uint64_t w) noexcept {
    return static_cast<std::uint32_t>(w >> payload_shift);
  }
  static std::uint32_t ho_admitted(std::uint64_t w) noexcept { return payload_of(w) & 0x3ff; }
  static std::uint32_t ho_successes(std::uint64_t w) noexcept {
    return (payload_of(w) >> 10) & 0x3ff;
  }
  static std::uint32_t ho_failures(std::uint64_t w) noexcept {
    return (payload_of(w) >> 20) & 0x3ff;
  }
  std::uint64_t make(circuit_state s, std::uint32_t gen, std::uint32_t payload) const noexcept {
    return static_cast<std::uint64_t>(s) | flags_ | ((std::uint64_t{gen} & gen_mask) << gen_shift) |
           (std::uint64_t{payload} << payload_shift);
  }
  static std::uint32_t ho_payload(std::uint32_t admitted, std::uint32_t successes,
                                  std::uint32_t failures) noexcept {
    return admitted | (successes << 10) | (failures << 20);
  }
  static double ratio(std::uint32_t part, std::uint32_t whole) noexcept {
    return whole == 0 ? 0.0 : static_cast<double>(part) / static_cast<double>(whole);
  }

  static circuit_breaker_options checked(circuit_breaker_options o) {
    detail::require_valid(validate(o));
    return o;
  }

  static circuit_admission admit(circuit_state st, std::uint32_t generation) noexcept {
    return {true, st, false, st, generation, {}, std::nullopt};
  }
  static circuit_admission reject(circuit_state st, std::uint32_t generation,
                                  std::optional<duration> retry_after) noexcept {
    return {false, st, false, st, generation, {}, retry_after};
  }

  /// Reads the time at most once, and only if asked.
  template <class F>
  struct lazy_time {
    F fn;
    time_point value{};  // not std::optional: GCC 12 -O1 warns maybe-uninitialized through it
    bool read = false;
    time_point operator()() {
      if (!read) {
        value = static_cast<time_point>(fn());
        read = true;
      }
      return value;
    }
  };

  void count_failure() noexcept { cold_->failures.fetch_add(1, std::memory_order_relaxed); }

  // The failures a closed consecutive_failures breaker holds in state word `w`
  // and has not yet added to the failure counter: the current run. A run is
  // added when it ends (a success, a trip, a forced transition), by the one
  // thread whose CAS ended it.
  std::uint32_t failures_held(std::uint64_t w) const noexcept {
    const circuit_state st = state_of(w);
    if (rule_ != rule::consecutive ||
        (st != circuit_state::closed && st != circuit_state::disabled)) {
      return 0;
    }
    return payload_of(w);
  }

  template <class Now, class HintFn>
  std::optional<circuit_transition> record_closed(std::uint64_t w, bool failed, bool slow, Now& now,
                                                  HintFn& hint_fn) {
    const bool disabled = state_of(w) == circuit_state::disabled;
    cold_state& cold = *cold_;
    switch (rule_) {
      case rule::consecutive: {
        const std::uint32_t generation = gen_of(w);
        for (;;) {
          const std::uint32_t run = payload_of(w);
          std::uint64_t next = 0;
          if (!failed) {
            if (run == 0) return std::nullopt;  // the hot path: load, compare, no store
            next = make(state_of(w), generation, 0);
          } else {
            if (!disabled && run + 1 >= threshold_) {
              return trip(generation, open_reason::consecutive_failures, 1.0, now, hint_fn);
            }
            if (run == 0xffffffffu) {  // a saturated run (disabled): count this one apart
              count_failure();
              return std::nullopt;
            }
            next = w + (std::uint64_t{1} << payload_shift);
          }
          if (word_.compare_exchange_weak(w, next, std::memory_order_acq_rel)) {
            if (!failed) cold.failures.fetch_add(run, std::memory_order_release);  // see metrics
            return std::nullopt;
          }
          if (gen_of(w) != generation) {
            if (failed) count_failure();  // late after all
            return std::nullopt;
          }
        }
      }
      case rule::in_period: {
        if (!failed) return std::nullopt;
        if (cold.stamps.record(now()) && !disabled) {
          return trip(gen_of(w), open_reason::failures_in_period, 1.0, now, hint_fn);
        }
        return std::nullopt;
      }
      case rule::ratio_count: {
        cold.count.record(failed, slow);
        if (!(failed || slow) || disabled) return std::nullopt;
        return judge(gen_of(w), cold.count.counts(), failed, slow, now, hint_fn);
      }
      case rule::ratio_time: {
        const time_point t = now();
        cold.time.record(t, failed, slow);
        if (!(failed || slow) || disabled) return std::nullopt;
        return judge(gen_of(w), cold.time.counts(t), failed, slow, now, hint_fn);
      }
    }
    return std::nullopt;
  }

  // A ratio rule decides only on a failure or a slow call: a success never opens.
  template <class Now, class HintFn>
  std::optional<circuit_transition> judge(std::uint32_t generation, detail::window_counts c,
                                          bool failed, bool slow, Now& now, HintFn& hint_fn) {
    const cold_state& cold = *cold_;
    if (c.calls < cold.minimum_calls) return std::nullopt;
    const double fr = ratio(c.failures, c.calls);
    if (failed && fr >= cold.ratio)
      return trip(generation, open_reason::failure_ratio, fr, now, hint_fn);
    if (slow && ratio(c.slow, c.calls) >= cold.slow_ratio) {
      return trip(generation, open_reason::slow_call_ratio, fr, now, hint_fn);
    }
    return std::nullopt;
  }

  // closed -> open, if the circuit is still closed in `generation`. For
  // consecutive_failures the failure that trips is not counted yet: the CAS
  // that opens adds it with the run it ends.
  template <class Now, class HintFn>
  std::optional<circuit_transition> trip(std::uint32_t generation, open_reason reason,
                                         double failure_ratio, Now& now, HintFn& hint_fn) {
    cold_state& cold = *cold_;
    const bool consecutive = reason == open_reason::consecutive_failures;
    std::lock_guard lock(cold.mutex);
    std::uint64_t w = word_.load(std::memory_order_acquire);
    for (;;) {
      if (gen_of(w) != generation || state_of(w) != circuit_state::closed) {
        if (consecutive) count_failure();  // the state moved on: a late failure
        return std::nullopt;
      }
      if (consecutive && payload_of(w) + 1 < threshold_) {
        // A success reset the run meanwhile: this failure only counts.
        if (word_.compare_exchange_weak(w, w + (std::uint64_t{1} << payload_shift),
                                        std::memory_order_acq_rel)) {
          return std::nullopt;
        }
        continue;
      }
      const time_point t = now();
      duration growth = cold.growth;
      if (detail::time_until(time_point(duration(cold.last_closed.load(std::memory_order_relaxed))),
                             t) >= cold.options.growth_reset_after) {
        growth = cold.options.open_duration;  // the last close was stable
      }
      const duration open_for = open_time(growth, hint_fn);
      cold.open_until.store(detail::saturating_add(t, open_for).time_since_epoch().count(),
                            std::memory_order_relaxed);
      // A CAS, not a store: a lock-free failure or success may have changed the run.
      if (!word_.compare_exchange_strong(w, make(circuit_state::open, generation + 1, 0),
                                         std::memory_order_acq_rel)) {
        continue;
      }
      if (consecutive) cold.failures.fetch_add(payload_of(w) + 1, std::memory_order_release);
      cold.growth = grown(growth);
      cold.last_transition.store(t.time_since_epoch().count(), std::memory_order_relaxed);
      return circuit_transition{
          circuit_state::closed, circuit_state::open, t, reason, failure_ratio, open_for};
    }
  }

  duration grown(duration growth) const noexcept {
    const circuit_breaker_options& o = cold_->options;
    return std::min(detail::saturating_mul(growth, o.open_duration_factor), o.max_open_duration);
  }

  // How long to open for: `growth`, or the failure's retry-after hint.
  template <class HintFn>
  duration open_time(duration growth, HintFn& hint_fn) const {
    const circuit_breaker_options& o = cold_->options;
    if (o.honor_retry_after) {
      if (const std::optional<duration> hint = hint_fn()) {
        return std::clamp(*hint, duration::zero(), o.max_open_duration);
      }
    }
    return growth;
  }

  // half-open -> open (a probe failed); the caller holds the mutex.
  template <class HintFn>
  circuit_transition reopen_locked(std::uint32_t generation, double failure_ratio, time_point t,
                                   HintFn& hint_fn) {
    cold_state& cold = *cold_;
    const duration open_for = open_time(cold.growth, hint_fn);
    cold.growth = grown(cold.growth);
    cold.open_until.store(detail::saturating_add(t, open_for).time_since_epoch().count(),
                          std::memory_order_relaxed);
    cold.last_transition.store(t.time_since_epoch().count(), std::memory_order_relaxed);
    word_.store(make(circuit_state::open, generation + 1, 0), std::memory_order_release);
    return {circuit_state::half_open,  circuit_state::open, t,
            open_reason::probe_failed, failure_ratio,       open_for};
  }

  // open -> half-open (the open time is over), or a new half-open round (the
  // last one waited too long): the caller becomes the round's first probe.
  std::optional<circuit_admission> enter_half_open(std::uint64_t seen, time_point t) {
    cold_state& cold = *cold_;
    std::lock_guard lock(cold.mutex);
    const std::uint64_t w = word_.load(std::memory_order_acquire);
    if (state_of(w) != state_of(seen) || gen_of(w) != gen_of(seen)) return std::nullopt;
    if (state_of(w) == circuit_state::half_open && ho_admitted(w) < probes_) return std::nullopt;
    const std::uint32_t generation = (gen_of(w) + 1) & static_cast<std::uint32_t>(gen_mask);
    cold.half_open_since.store(t.time_since_epoch().count(), std::memory_order_relaxed);
    cold.last_transition.store(t.time_since_epoch().count(), std::memory_order_relaxed);
    word_.store(make(circuit_state::half_open, generation, ho_payload(1, 0, 0)),
                std::memory_order_release);
    return circuit_admission{
        true, circuit_state::half_open, true, state_of(w), generation, t, std::nullopt};
  }

  template <class Now, class HintFn>
  std::optional<circuit_transition> record_probe(std::uint32_t generation, bool failed, Now& now,
                                                 HintFn& hint_fn) {
    cold_state& cold = *cold_;
    std::lock_guard lock(cold.mutex);
    std::uint64_t w = word_.load(std::memory_order_acquire);
    for (;;) {
      if (gen_of(w) != generation || state_of(w) != circuit_state::half_open) return std::nullopt;
      const std::uint32_t admitted = ho_admitted(w);
      std::uint32_t s = ho_successes(w);
      std::uint32_t f = ho_failures(w);
      (failed ? f : s) += 1;
      if (s >= cold.successes_needed) {
        const time_point t = now();
        cold.last_transition.store(t.time_since_epoch().count(), std::memory_order_relaxed);
        cold.last_closed.store(t.time_since_epoch().count(), std::memory_order_relaxed);
        clear_windows();
        word_.store(make(circuit_state::closed, generation + 1, 0), std::memory_order_release);
        return circuit_transition{
            circuit_state::half_open, circuit_state::closed, t, {}, ratio(f, s + f), {}};
      }
      if (f > probes_ - cold.successes_needed) {
        return reopen_locked(generation, ratio(f, s + f), now(), hint_fn);
      }
      // Probe admissions race with us (lock-free CAS on the same word): retry on change.
      if (word_.compare_exchange_weak(
              w, make(circuit_state::half_open, generation, ho_payload(admitted, s, f)),
              std::memory_order_acq_rel)) {
        return std::nullopt;
      }
    }
  }

  std::optional<circuit_transition> force(circuit_state to, time_point t) {
    cold_state& cold = *cold_;
    std::lock_guard lock(cold.mutex);
    const std::uint64_t seen = word_.load(std::memory_order_acquire);
    if (to != circuit_state::isolated) clear_windows();
    if (to == circuit_state::closed) {
      cold.growth = cold.options.open_duration;
      cold.last_closed.store(t.time_since_epoch().count(), std::memory_order_relaxed);
    }
    cold.last_transition.store(t.time_since_epoch().count(), std::memory_order_relaxed);
    // An exchange: the run of failures it ends is added exactly once.
    const std::uint64_t w =
        word_.exchange(make(to, gen_of(seen) + 1, 0), std::memory_order_acq_rel);
    if (const std::uint32_t held = failures_held(w)) {
      cold.failures.fetch_add(held, std::memory_order_release);  // after the exchange: see metrics
    }
    const circuit_state from = state_of(w);
    if (from == to && to != circuit_state::closed) return std::nullopt;
    return circuit_transition{from, to, t, {}, 0.0, {}};
  }

  void clear_windows() noexcept {
    cold_state& cold = *cold_;
    switch (rule_) {
      case rule::consecutive:
        break;
      case rule::in_period:
        cold.stamps.reset();
        break;
      case rule::ratio_count:
        cold.count.reset();
        break;
      case rule::ratio_time:
        cold.time.reset();
        break;
    }
  }

  // What the closed path never touches, allocated once at construction: the
  // options, the mutex of transitions, the counters and the rule's window.
  struct cold_state {
    explicit cold_state(circuit_breaker_options o) : options(std::move(o)) {}
    // Read by every rejection, written on transitions only.
    std::atomic<std::int64_t> open_until{0};
    std::atomic<std::int64_t> half_open_since{0};
    std::atomic<std::int64_t> last_transition{0};
    std::atomic<std::int64_t> last_closed{detail::min_ns};
    duration growth{};  // open time of the next trip; guarded by mutex
    std::uint32_t successes_needed = 1;
    std::uint32_t minimum_calls = 1;
    double ratio = 1.0;
    double slow_ratio = 1.0;
    duration slow_threshold{};
    std::mutex mutex;  // transitions only
    // Added to by every rejection, from many threads at once in an outage:
    // striped by owner, apart from the open time they all read.
    detail::owned_counter rejections;
    // Written on failures.
    alignas(64) std::atomic<std::uint64_t> failures{0};
    std::atomic<std::uint64_t> failures_reported{0};  // by metrics(): it never goes back
    std::atomic<std::uint64_t> slow_calls{0};
    detail::failure_stamps stamps;
    detail::count_window count;
    detail::time_window time;
    circuit_breaker_options options;
  };

  // The whole object is one cache line: the state word every call reads, and
  // the few constants the closed path needs next to it.
  alignas(64) std::atomic<std::uint64_t> word_{0};
  std::unique_ptr<cold_state> cold_;
  std::uint64_t flags_ = 0;      // records_bit, timed_bit: or'ed into every state word
  std::uint64_t run_limit_ = 0;  // consecutive_failures: threshold_ in the payload, else 0
  std::uint32_t threshold_ = 5;
  std::uint32_t probes_ = 1;
  rule rule_ = rule::consecutive;
  bool slow_enabled_ = false;
};

}  // namespace keel

#endif  // KEEL_CIRCUIT_BREAKER_BREAKER_CORE_HPP_INCLUDED

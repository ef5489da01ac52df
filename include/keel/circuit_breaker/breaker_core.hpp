// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CIRCUIT_BREAKER_BREAKER_CORE_HPP_INCLUDED
#define KEEL_CIRCUIT_BREAKER_BREAKER_CORE_HPP_INCLUDED

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
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

namespace detail {
struct breaker_core_test_access;
}  // namespace detail

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
  /// The epoch: 0 at construction, +1 at every transition and every
  /// isolate(), disable() or reset(); 64 bits, so it never comes back.
  std::uint64_t generation = 0;
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
  std::uint64_t calls = 0;
  std::uint64_t window_failures = 0;  ///< failures in the rule's window
  std::uint64_t window_slow_calls = 0;
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
      run_limit_ = static_cast<std::uint64_t>(r->threshold) << payload_shift;
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
    first_.word.store(make(circuit_state::closed, 0, 0), std::memory_order_relaxed);
    first_.next.store(&c.second, std::memory_order_relaxed);
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
  bool success_changes_nothing(std::uint64_t generation) const noexcept {
    if (flags_ != 0) return false;
    if (generation > gen_mask) [[unlikely]]
      return later_success_changes_nothing(generation);
    // The first cell's generation: while that cell is valid, the low bits
    // decide; once it is retired, it matches nothing.
    return first_.word.load(std::memory_order_acquire) ==
           make(circuit_state::closed, low_bits(generation), 0);
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
      const auto [c, w] = current();
      const circuit_state st = state_of(w);
      if (st == circuit_state::closed || st == circuit_state::disabled) {
        return admit(st, epoch_of(*c, w));
      }
      if (st == circuit_state::isolated) {
        cold_->rejections.add();
        return reject(st, epoch_of(*c, w), std::nullopt);
      }
      if (st == circuit_state::open) {
        const time_point t = now();
        const time_point until{duration(cold_->open_until.load(std::memory_order_acquire))};
        if (t < until) {
          cold_->rejections.add();
          return reject(st, epoch_of(*c, w), until - t);
        }
        if (auto a = enter_half_open(*c, w, t)) return std::move(*a);
        continue;  // someone else moved the state: look again
      }
      // half-open: a free probe slot, or a round that waited too long, or a rejection
      const std::uint32_t admitted = ho_admitted(w);
      if (admitted < probes_) {
        std::uint64_t expected = w;
        if (c->word.compare_exchange_weak(expected, w + (std::uint64_t{1} << payload_shift),
                                          std::memory_order_acq_rel)) {
          return admit(st, epoch_of(*c, w));
        }
        continue;
      }
      const time_point t = now();
      const time_point since{duration(cold_->half_open_since.load(std::memory_order_acquire))};
      const time_point give_up =
          detail::saturating_add(since, cold_->options.max_wait_in_half_open);
      if (t >= give_up) {
        if (auto a = enter_half_open(*c, w, t)) return std::move(*a);
        continue;
      }
      cold_->rejections.add();
      return reject(st, epoch_of(*c, w), give_up - t);
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
  std::optional<circuit_transition> record_with(std::uint64_t generation, call_result result,
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
    const auto [c, w] = current();
    const circuit_state st = state_of(w);
    const bool closed = st == circuit_state::closed || st == circuit_state::disabled;
    const bool current_generation = epoch_of(*c, w) == generation;
    // A closed consecutive_failures breaker keeps its failures in the run of
    // the state word until the run ends (see failures_held): one atomic
    // operation per failure. Every other failure is counted here.
    if (failed && !(closed && rule_ == rule::consecutive && current_generation)) {
      count_failure();
    }
    if (!current_generation) return std::nullopt;  // a late result: it belongs to an earlier state
    // Only a failure's hint counts: a slow success (or an outcome the breaker
    // does not handle) opens for the configured time.
    auto hint = [&]() -> std::optional<duration> {
      if (failed) return hint_fn();
      return std::nullopt;
    };
    if (closed) return record_closed(*c, w, failed, slow, now, hint);
    if (st == circuit_state::half_open)
      return record_probe(*c, gen_of(w), failed || slow, now, hint);
    return std::nullopt;
  }

  /// Gives back an admission without a result (the caller gave up, or the
  /// outcome says nothing about health): counts as neither success nor
  /// failure, and frees the probe slot of a half-open probe.
  // Out of line: a rare path, kept from growing the callers a permit is built in.
  KEEL_DETAIL_NOINLINE void release(std::uint64_t generation) noexcept {
    auto [c, w] = current();
    if (c->base != generation - low_bits(generation)) return;  // late: an earlier cell's
    // A failed CAS reloads `w` from the same cell: retired, it is no longer half-open.
    while (gen_of(w) == low_bits(generation) && state_of(w) == circuit_state::half_open &&
           ho_admitted(w) > 0) {
      if (c->word.compare_exchange_weak(w, w - (std::uint64_t{1} << payload_shift),
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

  circuit_state state() const noexcept { return state_of(current().w); }

  /// A snapshot of the counters and of the window as of `now`.
  circuit_metrics metrics(time_point now) const {
    circuit_metrics m;
    const cold_state& cold = *cold_;
    // The counter first (acquire), then the word: see "Memory orders" at the
    // state word. The sum can miss a run in transit, never count one twice:
    // it is never above the true count, and the largest sum reported so far
    // is a floor that never falls.
    const std::uint64_t counted = cold.failures.load(std::memory_order_acquire);
    const std::uint64_t w = current().w;
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
  friend struct detail::window_test_access;  // keel's tests only (see windows.hpp)
  friend struct detail::breaker_core_test_access;

  /// Where the state word lives (see "The state word" below): the breaker's
  /// own first cell, then one cell per 2^27 transitions.
  struct cell {
    std::atomic<std::uint64_t> word{0};
    std::atomic<cell*> next{nullptr};  // the successor, set before this cell retires
    std::uint64_t base = 0;            // the public generation of this cell's generation 0
  };
  /// A cell allocated for a wrap, on a line of its own.
  struct alignas(64) heap_cell : cell {};

  /// A cell and a word it held that is not the retired marker.
  struct located {
    cell* c;
    std::uint64_t w;
  };
  /// The current cell and its word: a retired word leads to its successor,
  /// set before the retirement (so lock-free: no waiting for the install).
  located current() const noexcept {
    cell* c = cell_.load(std::memory_order_acquire);
    std::uint64_t w = c->word.load(std::memory_order_acquire);
    while (w == retired) {
      c = c->next.load(std::memory_order_relaxed);
      w = c->word.load(std::memory_order_acquire);
    }
    return {c, w};
  }

  // The execution shell's closed path, on the state word of a cell: one load
  // to admit, one load and one compare after a success. Not for other
  // callers. For its first 2^27 transitions the breaker's word is in its own
  // first cell: run() admits from it with no pointer to follow and none to
  // hold across the call. Once that cell is retired, its word is no state
  // (fast_admits and is_open fail, is_retired holds): the shell then takes
  // the same closed path on the cell current() finds.

  /// The first cell's state word, for fast_admits / is_open / is_retired.
  std::uint64_t snapshot() const noexcept { return first_.word.load(std::memory_order_acquire); }
  /// The first cell's state word, unordered: enough to admit a closed call,
  /// which reads nothing the word guards. Whatever is read after it (a
  /// failure's CAS, unchanged_since, a window, the open time) is ordered by an
  /// acquire of its own. Relaxed also leaves the caller's values in registers.
  std::uint64_t admission_word() const noexcept {
    return first_.word.load(std::memory_order_relaxed);
  }
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
  bool unchanged_since(const cell& c, std::uint64_t w) const noexcept {
    const std::uint64_t now = c.word.load(std::memory_order_acquire);
    if (now != (w & low_mask)) return false;  // the state moved on, or a run is under way
    if ((now & records_bit) == 0) return true;
    // failure_ratio_count records successes, but one into a full window of
    // successes changes nothing (see count_window).
    return rule_ == rule::ratio_count && cold_->count.full_of_successes();
  }
  /// Records a success admitted closed in generation `generation` of cell `c`
  /// (a success in closed never causes a transition). `now()` is read only by
  /// failure_ratio_time.
  template <class NowFn>
  void record_closed_success(cell& c, std::uint32_t generation, NowFn&& now_fn) {
    std::uint64_t w = c.word.load(std::memory_order_acquire);
    if (gen_of(w) != generation) return;   // late: it belongs to an earlier state
    const circuit_state st = state_of(w);  // a retired word's 7 is neither
    if (st != circuit_state::closed && st != circuit_state::disabled) return;
    switch (rule_) {
      case rule::consecutive: {
        const std::uint64_t admitted = w & low_mask;
        while (const std::uint32_t run = payload_of(w)) {
          if (c.word.compare_exchange_weak(w, admitted, std::memory_order_acq_rel)) {
            // After the CAS, with release: see metrics().
            cold_->failures.fetch_add(run, std::memory_order_release);
            return;
          }
          if ((w & low_mask) != admitted) return;  // the state moved on (or the cell retired)
        }
        return;
      }
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
  bool extend_run(cell& c, std::uint64_t w) noexcept {
    // While the low half is `w`'s (closed, same generation), the run plus one
    // is below the threshold exactly when the word plus one is below
    // run_limit_ (zero for the other rules: never). A closed run stays below
    // threshold <= INT_MAX, so the sum cannot wrap. `w` is most often still
    // current: the first CAS goes without a reload.
    std::uint64_t cur = w;
    do {
      const std::uint64_t next = cur + run_step;
      if (next >= run_limit_) return false;
      if (c.word.compare_exchange_weak(cur, next, std::memory_order_acq_rel)) return true;
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
  /// True when `w` is a retired cell's word: the breaker has moved on to a later cell.
  static bool is_retired(std::uint64_t w) noexcept { return w == retired; }
  /// The generation of state word `w` within its cell.
  static std::uint32_t generation_of(std::uint64_t w) noexcept { return gen_of(w); }
  /// The public generation (a 64-bit count) of state word `w` of cell `c`.
  static std::uint64_t epoch_of(const cell& c, std::uint64_t w) noexcept {
    return c.base + gen_of(w);
  }
  /// The first cell: the one admission_word() and snapshot() read.
  cell& first_cell() noexcept { return first_; }

  /// The closed path of try_acquire, for the execution shell to inline: admits
  /// the call and sets `generation` when the circuit is closed or disabled in
  /// the first cell (one load, no clock read); false means "ask
  /// try_acquire_with" (which also follows a retired first cell).
  bool try_admit_closed(std::uint64_t& generation, circuit_state& state) const noexcept {
    const std::uint64_t w = first_.word.load(std::memory_order_acquire);
    if (w == retired) [[unlikely]]
      return later_admit_closed(generation, state);
    state = state_of(w);
    generation = gen_of(w);  // the first cell's base is 0
    return state == circuit_state::closed || state == circuit_state::disabled;
  }
  // try_admit_closed and success_changes_nothing once the first cell is
  // retired: out of line, so that their callers stay small.
  KEEL_DETAIL_NOINLINE bool later_admit_closed(std::uint64_t& generation,
                                               circuit_state& state) const noexcept {
    const auto [c, w] = current();
    state = state_of(w);
    generation = epoch_of(*c, w);
    return state == circuit_state::closed || state == circuit_state::disabled;
  }
  KEEL_DETAIL_NOINLINE bool later_success_changes_nothing(std::uint64_t generation) const noexcept {
    const auto [c, w] = current();
    return w == make(circuit_state::closed, low_bits(generation), 0) &&
           c->base == generation - low_bits(generation);
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
  // Cells: 27 bits would wrap, so the word lives in a cell (cell_: first_,
  // then one per 2^27 transitions) and a cell never reuses a generation. The
  // transition that would wrap (under the mutex) readies the successor
  // (generation 0, the new state; linked from the old cell's `next`), writes
  // `retired` into the old word (a CAS, store or exchange like any
  // transition, with release), then installs the successor in cell_; a
  // reader that meets the retired word (acquire) follows `next` (current()).
  // No state has value 7, so no compare, CAS or fast_admits ever matches a
  // retired word, and cells (64 bytes each) are freed only with the breaker:
  // a call that holds an old cell (the shell's closed path holds the one it
  // was admitted from), or the public generation base + gen of one (a 64-bit
  // count of transitions), finds it retired. So a (cell, generation) pair is
  // current during one stretch of time only, and a late result never counts,
  // whatever the number of transitions.
  //
  // Memory orders. Transitions hold the mutex and publish with release;
  // counts in a state are CASes on the word (acq_rel); readers load with
  // acquire (the closed admission relaxed: it reads nothing the word guards).
  // - Exact half-open probes: each admission is one CAS that checks
  //   admitted < permitted_probes in the word: one modification order, so
  //   never more than k in a round (stress_test.cpp: probes in flight per
  //   generation, under contention; epoch_test.cpp: across wraps).
  // - Late results ignored: a result checks its generation and counts in the
  //   same CAS on its cell's word, or under the mutex (trips, probes); see
  //   Cells (half_open_test.cpp [generation], epoch_test.cpp).
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
  static constexpr std::uint64_t retired = ~std::uint64_t{0};  // state 7: no state

  static circuit_state state_of(std::uint64_t w) noexcept {
    return static_cast<circuit_state>(w & state_mask);
  }
  static std::uint32_t gen_of(std::uint64_t w) noexcept {
    return static_cast<std::uint32_t>((w >> gen_shift) & gen_mask);
  }
  static std::uint32_t payload_of(std::uint64_t w) noexcept {
    return static_cast<std::uint32_t>(w >> payload_shift);
  }
  /// True when `w` is a word of generation `gen` (a retired word's bits are no generation).
  static bool of_generation(std::uint64_t w, std::uint32_t gen) noexcept {
    return w != retired && gen_of(w) == gen;
  }
  /// The generation within its cell of public generation `g`.
  static std::uint32_t low_bits(std::uint64_t g) noexcept {
    return static_cast<std::uint32_t>(g & gen_mask);
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
  static double ratio(std::uint64_t part, std::uint64_t whole) noexcept {
    return whole == 0 ? 0.0 : static_cast<double>(part) / static_cast<double>(whole);
  }

  static circuit_breaker_options checked(circuit_breaker_options o) {
    detail::require_valid(validate(o));
    return o;
  }

  static circuit_admission admit(circuit_state st, std::uint64_t generation) noexcept {
    return {true, st, false, st, generation, {}, std::nullopt};
  }
  static circuit_admission reject(circuit_state st, std::uint64_t generation,
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
  std::optional<circuit_transition> record_closed(cell& c, std::uint64_t w, bool failed, bool slow,
                                                  Now& now, HintFn& hint_fn) {
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
            if (!disabled && run + 1 >= threshold()) {
              return trip(epoch_of(c, w), open_reason::consecutive_failures, 1.0, now, hint_fn);
            }
            if (run == 0xffffffffu) {  // a saturated run (disabled): count this one apart
              count_failure();
              return std::nullopt;
            }
            next = w + (std::uint64_t{1} << payload_shift);
          }
          if (c.word.compare_exchange_weak(w, next, std::memory_order_acq_rel)) {
            if (!failed) cold.failures.fetch_add(run, std::memory_order_release);  // see metrics
            return std::nullopt;
          }
          if (!of_generation(w, generation)) {  // the state moved on (or the cell retired)
            if (failed) count_failure();        // late after all
            return std::nullopt;
          }
        }
      }
      case rule::in_period: {
        if (!failed) return std::nullopt;
        if (cold.stamps.record(now()) && !disabled) {
          return trip(epoch_of(c, w), open_reason::failures_in_period, 1.0, now, hint_fn);
        }
        return std::nullopt;
      }
      case rule::ratio_count: {
        cold.count.record(failed, slow);
        if (!(failed || slow) || disabled) return std::nullopt;
        return judge(epoch_of(c, w), cold.count.counts(), failed, slow, now, hint_fn);
      }
      case rule::ratio_time: {
        const time_point t = now();
        cold.time.record(t, failed, slow);
        if (!(failed || slow) || disabled) return std::nullopt;
        return judge(epoch_of(c, w), cold.time.counts(t), failed, slow, now, hint_fn);
      }
    }
    return std::nullopt;
  }

  // A ratio rule decides only on a failure or a slow call: a success never opens.
  template <class Now, class HintFn>
  std::optional<circuit_transition> judge(std::uint64_t generation, detail::window_counts c,
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

  // closed -> open, if the circuit is still closed in public generation
  // `generation` (the current cell is never retired under the mutex). For
  // consecutive_failures the failure that trips is not counted yet: the CAS
  // that opens adds it with the run it ends. (No cell parameter: a seventh
  // integer argument goes on the stack, and GCC then gives every caller a
  // frame pointer, the closed path included.)
  template <class Now, class HintFn>
  std::optional<circuit_transition> trip(std::uint64_t generation, open_reason reason,
                                         double failure_ratio, Now& now, HintFn& hint_fn) {
    cold_state& cold = *cold_;
    const bool consecutive = reason == open_reason::consecutive_failures;
    std::lock_guard lock(cold.mutex);
    cell& c = *cell_.load(std::memory_order_relaxed);
    std::uint64_t w = c.word.load(std::memory_order_acquire);
    for (;;) {
      if (epoch_of(c, w) != generation || state_of(w) != circuit_state::closed) {
        if (consecutive) count_failure();  // the state moved on: a late failure
        return std::nullopt;
      }
      if (consecutive && payload_of(w) + 1 < threshold()) {
        // A success reset the run meanwhile: this failure only counts.
        if (c.word.compare_exchange_weak(w, w + (std::uint64_t{1} << payload_shift),
                                         std::memory_order_acq_rel)) {
          return std::nullopt;
        }
        continue;
      }
      const std::uint64_t next = following(c, gen_of(w), circuit_state::open, 0);
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
      if (!c.word.compare_exchange_strong(w, next, std::memory_order_acq_rel)) continue;
      install_successor(c, next);
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

  // half-open -> open (a probe failed); the caller holds the mutex and `c`
  // is current, in `generation`.
  template <class HintFn>
  circuit_transition reopen_locked(cell& c, std::uint32_t generation, double failure_ratio,
                                   time_point t, HintFn& hint_fn) {
    cold_state& cold = *cold_;
    const std::uint64_t next = following(c, generation, circuit_state::open, 0);
    const duration open_for = open_time(cold.growth, hint_fn);
    cold.growth = grown(cold.growth);
    cold.open_until.store(detail::saturating_add(t, open_for).time_since_epoch().count(),
                          std::memory_order_relaxed);
    cold.last_transition.store(t.time_since_epoch().count(), std::memory_order_relaxed);
    c.word.store(next, std::memory_order_release);
    install_successor(c, next);
    return {circuit_state::half_open,  circuit_state::open, t,
            open_reason::probe_failed, failure_ratio,       open_for};
  }

  // open -> half-open (the open time is over), or a new half-open round (the
  // last one waited too long): the caller becomes the round's first probe.
  // `seen` was read from cell `c`: a retired `c` no longer holds its state.
  std::optional<circuit_admission> enter_half_open(cell& c, std::uint64_t seen, time_point t) {
    cold_state& cold = *cold_;
    std::lock_guard lock(cold.mutex);
    const std::uint64_t w = c.word.load(std::memory_order_acquire);
    if (state_of(w) != state_of(seen) || !of_generation(w, gen_of(seen))) return std::nullopt;
    if (state_of(w) == circuit_state::half_open && ho_admitted(w) < probes_) return std::nullopt;
    const std::uint64_t next =
        following(c, gen_of(w), circuit_state::half_open, ho_payload(1, 0, 0));
    cold.half_open_since.store(t.time_since_epoch().count(), std::memory_order_relaxed);
    cold.last_transition.store(t.time_since_epoch().count(), std::memory_order_relaxed);
    c.word.store(next, std::memory_order_release);
    install_successor(c, next);
    return circuit_admission{
        true, circuit_state::half_open, true, state_of(w), epoch_of(c, w) + 1, t, std::nullopt};
  }

  template <class Now, class HintFn>
  std::optional<circuit_transition> record_probe(cell& c, std::uint32_t generation, bool failed,
                                                 Now& now, HintFn& hint_fn) {
    cold_state& cold = *cold_;
    std::lock_guard lock(cold.mutex);
    std::uint64_t w = c.word.load(std::memory_order_acquire);
    for (;;) {
      if (!of_generation(w, generation) || state_of(w) != circuit_state::half_open) {
        return std::nullopt;
      }
      const std::uint32_t admitted = ho_admitted(w);
      std::uint32_t s = ho_successes(w);
      std::uint32_t f = ho_failures(w);
      (failed ? f : s) += 1;
      if (s >= cold.successes_needed) {
        const std::uint64_t next = following(c, generation, circuit_state::closed, 0);
        const time_point t = now();
        cold.last_transition.store(t.time_since_epoch().count(), std::memory_order_relaxed);
        cold.last_closed.store(t.time_since_epoch().count(), std::memory_order_relaxed);
        clear_windows();
        c.word.store(next, std::memory_order_release);
        install_successor(c, next);
        return circuit_transition{
            circuit_state::half_open, circuit_state::closed, t, {}, ratio(f, s + f), {}};
      }
      if (f > probes_ - cold.successes_needed) {
        return reopen_locked(c, generation, ratio(f, s + f), now(), hint_fn);
      }
      // Probe admissions race with us (lock-free CAS on the same word): retry on change.
      if (c.word.compare_exchange_weak(
              w, make(circuit_state::half_open, generation, ho_payload(admitted, s, f)),
              std::memory_order_acq_rel)) {
        return std::nullopt;
      }
    }
  }

  std::optional<circuit_transition> force(circuit_state to, time_point t) {
    cold_state& cold = *cold_;
    std::lock_guard lock(cold.mutex);
    cell& c = *cell_.load(std::memory_order_relaxed);  // under the mutex: current, not retired
    // Its generation changes under the mutex only: the exchange below sees the same.
    const std::uint32_t generation = gen_of(c.word.load(std::memory_order_acquire));
    const std::uint64_t next = following(c, generation, to, 0);
    if (to != circuit_state::isolated) clear_windows();
    if (to == circuit_state::closed) {
      cold.growth = cold.options.open_duration;
      cold.last_closed.store(t.time_since_epoch().count(), std::memory_order_relaxed);
    }
    cold.last_transition.store(t.time_since_epoch().count(), std::memory_order_relaxed);
    // An exchange: the run of failures it ends is added exactly once.
    const std::uint64_t w = c.word.exchange(next, std::memory_order_acq_rel);
    install_successor(c, next);
    if (const std::uint32_t held = failures_held(w)) {
      cold.failures.fetch_add(held, std::memory_order_release);  // after the exchange: see metrics
    }
    const circuit_state from = state_of(w);
    if (from == to && to != circuit_state::closed) return std::nullopt;
    return circuit_transition{from, to, t, {}, 0.0, {}};
  }

  // Under the mutex, before a transition from generation `generation` of
  // current cell `c` to state `to` with `payload`: returns the word to write
  // into `c`. That is the next generation, or, from the cell's last one, the
  // retired marker: then the successor is made ready first (install_successor
  // must follow the write). Changes nothing readable, so a transition that
  // then does not happen (a failed CAS) leaves no trace. Allocates only when
  // the allocation after the last wrap failed; std::bad_alloc then leaves
  // the breaker unchanged.
  std::uint64_t following(cell& c, std::uint32_t generation, circuit_state to,
                          std::uint32_t payload) {
    if (generation != gen_mask) [[likely]]
      return make(to, generation + 1, payload);
    return ready_successor(c, make(to, 0, payload));
  }
  // Out of line, as below: once per 2^27 transitions, kept from the callers' size.
  KEEL_DETAIL_NOINLINE std::uint64_t ready_successor(cell& c, std::uint64_t word) {
    cell* successor = c.next.load(std::memory_order_relaxed);
    if (successor == nullptr) {
      successor = new heap_cell;
      c.next.store(successor, std::memory_order_relaxed);
    }
    // 2^64 transitions (585 years at one per nanosecond) would wrap the base.
    successor->base = c.base + gen_mask + 1;
    successor->word.store(word, std::memory_order_relaxed);
    return retired;
  }

  // After a transition wrote `written` (from following) into current cell `c`:
  // when that retired `c`, the successor becomes current, and gets a
  // successor of its own for the next wrap (if this allocation fails, that
  // wrap allocates).
  void install_successor(cell& c, std::uint64_t written) noexcept {
    if (written == retired) [[unlikely]]
      make_successor_current(c);
  }
  KEEL_DETAIL_NOINLINE void make_successor_current(cell& c) noexcept {
    cell* successor = c.next.load(std::memory_order_relaxed);
    cell_.store(successor, std::memory_order_release);
    successor->next.store(new (std::nothrow) heap_cell, std::memory_order_relaxed);
  }

  std::uint32_t threshold() const noexcept {
    return static_cast<std::uint32_t>(run_limit_ >> payload_shift);
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
    cold_state(const cold_state&) = delete;
    cold_state& operator=(const cold_state&) = delete;
    ~cold_state() {
      cell* c = second.next.load(std::memory_order_relaxed);
      while (c != nullptr) {
        cell* older_successor = c->next.load(std::memory_order_relaxed);
        delete static_cast<heap_cell*>(c);
        c = older_successor;
      }
    }
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
    // The first wrap's cell, allocated with the rest; the cells of later
    // wraps follow it (next), each allocated one wrap ahead, freed here.
    alignas(64) cell second;
  };

  // The whole object is one cache line: the first cell (the state word every
  // call reads), the current cell (the first one for 2^27 transitions) and
  // the few constants the closed path needs next to them.
  alignas(64) cell first_;
  std::atomic<cell*> cell_{&first_};
  std::unique_ptr<cold_state> cold_;
  std::uint64_t flags_ = 0;      // records_bit, timed_bit: or'ed into every state word
  std::uint64_t run_limit_ = 0;  // consecutive_failures: the threshold in the payload, else 0
  std::uint32_t probes_ = 1;
  rule rule_ = rule::consecutive;
  bool slow_enabled_ = false;
};

namespace detail {

/// A test seam, not an API: reaching a cell's wrap takes 2^27 transitions.
struct breaker_core_test_access {
  /// Generations per cell: after this many transitions the word moves to a new cell.
  static constexpr std::uint64_t generations_per_cell = circuit_breaker_core::gen_mask + 1;

  /// Moves the current cell of `core` to `generation` (< generations_per_cell,
  /// above its own), as if that many transitions had passed in its state: a
  /// wrap is then a few transitions away. State, payload and counters are kept.
  static void set_generation(circuit_breaker_core& core, std::uint32_t generation) {
    using c = circuit_breaker_core;
    std::lock_guard lock(core.cold_->mutex);
    c::cell& current = *core.cell_.load(std::memory_order_relaxed);
    std::uint64_t w = current.word.load(std::memory_order_relaxed);
    while (!current.word.compare_exchange_weak(
        w,
        (w & ~(c::gen_mask << c::gen_shift)) |
            ((std::uint64_t{generation} & c::gen_mask) << c::gen_shift),
        std::memory_order_acq_rel)) {
    }
  }
};

}  // namespace detail

}  // namespace keel

#endif  // KEEL_CIRCUIT_BREAKER_BREAKER_CORE_HPP_INCLUDED

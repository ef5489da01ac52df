// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CIRCUIT_BREAKER_BREAKER_STATE_MACHINE_HPP_INCLUDED
#define KEEL_CIRCUIT_BREAKER_BREAKER_STATE_MACHINE_HPP_INCLUDED

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "keel/circuit_breaker/breaker_types.hpp"
#include "keel/circuit_breaker/circuit_breaker_events.hpp"
#include "keel/circuit_breaker/circuit_breaker_options.hpp"
#include "keel/circuit_breaker/detail/state_word.hpp"
#include "keel/circuit_breaker/detail/trip_rules.hpp"
#include "keel/circuit_breaker/detail/windows.hpp"
#include "keel/core/config_error.hpp"
#include "keel/core/error.hpp"
#include "keel/core/events.hpp"
#include "keel/core/observe.hpp"
#include "keel/core/time.hpp"
#include "keel/detail/algorithm.hpp"
#include "keel/detail/config.hpp"

namespace keel {

namespace detail {
struct breaker_core_test_access;
}  // namespace detail

/// The circuit breaker's rules without any execution or events: it says
/// whether a call may go and takes how it ended; the caller makes the call,
/// reads the clock and emits the events (emit_for). Thread-safe; the closed
/// path is lock-free (transitions take a mutex). circuit_breaker is one
/// driver of it; an async driver or a callback API is another, with the same
/// public calls:
///
/// - general path: try_acquire / try_acquire_with, then record / record_with
///   or release, for every call in every state;
/// - closed path (what circuit_breaker::run takes, optional): admit_closed
///   (then admit_closed_current and reject_open when it did not admit),
///   record_closed_success, record_closed_failure; see closed_admission.
/// The events are the caller's to emit, with keel::emit_for (below).
class breaker_state_machine {
  using word = detail::state_word;
  template <class R>
  using rule_t = std::remove_cvref_t<R>;

  // `f(rule)` with the trip rule (see detail/trip_rules.hpp). Defined first:
  // its return type is deduced.
  template <class F>
  decltype(auto) with_rule(F&& f) {
    const auto rules = [this]() -> detail::trip_rules& { return cold_->rules; };
    return detail::visit_rule(rule_, rules, f);
  }
  template <class F>
  decltype(auto) with_rule(F&& f) const {
    return detail::visit_rule(
        rule_, [this]() -> const detail::trip_rules& { return cold_->rules; }, f);
  }

 public:
  // A constant copied in, never a string measured and copied at run time: a
  // heavier constructor changes how GCC inlines the code around a static breaker.
  static constexpr policy_name default_name{"circuit_breaker"};

  /// Throws keel::config_error (aborts without exceptions) when `options` are
  /// invalid. `name`: the source of its events (cut at policy_name::capacity bytes).
  explicit breaker_state_machine(circuit_breaker_options options = {},
                                 const policy_name& name = default_name)
      : cold_(std::make_unique<cold_state>(checked(std::move(options)), name)) {
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
    }
    rule_ = detail::kind_of(o.trip);
    if (const auto* r = std::get_if<consecutive_failures>(&o.trip)) {
      run_limit_ = static_cast<std::uint64_t>(r->threshold) << word::payload_shift;
    }
    // Only a rule that keeps no per-success count, without a slow-call rule,
    // lets a success pass without recording it.
    const bool records = slow_enabled_ || with_rule([](const auto& rule) {
                           return rule_t<decltype(rule)>::records_successes;
                         });
    cells_.start((records ? word::records_bit : 0) | (slow_enabled_ ? word::timed_bit : 0),
                 &c.second);
  }

  breaker_state_machine(const breaker_state_machine&) = delete;
  breaker_state_machine& operator=(const breaker_state_machine&) = delete;

  const circuit_breaker_options& options() const noexcept { return cold_->options; }
  /// Its name, kept with the cold state (so it costs the hot cache line nothing).
  std::string_view name() const noexcept { return cold_->name; }
  /// The source of the events of a call in `ctx`: this name and the call's pipeline.
  event_source source(const context& ctx) const noexcept { return source_of(name(), ctx); }
  /// The source of events with no call at hand (transitions): this name.
  event_source source() const noexcept { return source_of(name()); }

  /// True when record() wants the call's duration (a slow-call rule is set):
  /// only then does a driver need to read the clock around the call.
  bool measures_duration() const noexcept { return slow_enabled_; }

  // ---- The general path ----------------------------------------------------

  /// May a call go at `now`? See circuit_admission. Never blocks.
  circuit_admission try_acquire(time_point now) {
    return try_acquire_with([now] { return now; });
  }

  /// As try_acquire(now), reading the time from `now()` only when it is needed
  /// (never when closed or disabled, once when open or half-open).
  template <class NowFn>
  circuit_admission try_acquire_with(NowFn&& now_fn) {
    // Closed in the first cell (base 0): one load, no clock read.
    const std::uint64_t w = cells_.first().word.load(std::memory_order_acquire);
    if (word::lets_through(w)) [[likely]]
      return admit(word::state_of(w), word::gen_of(w));
    return acquire_not_closed(now_fn);
  }

  /// True when a success of a call admitted in `generation` has nothing to
  /// change: the rule keeps no per-success count (consecutive_failures with no
  /// run of failures, failures_in_period), no slow-call rule, and the circuit
  /// is still closed in that generation. One load and one compare: a driver
  /// may skip record() for a success when it holds.
  bool success_changes_nothing(std::uint64_t generation) const noexcept {
    if (cells_.flags() != 0) return false;
    if (generation > word::gen_mask) [[unlikely]]
      return later_success_changes_nothing(generation);
    // The first cell's generation: while that cell is valid, the low bits
    // decide; once it is retired, it matches nothing.
    return cells_.first().word.load(std::memory_order_acquire) ==
           cells_.make(circuit_state::closed, word::low_bits(generation), 0);
  }

  /// As success_changes_nothing, for a success that took `elapsed`, when a
  /// slow-call rule may be set: true when the call was not slow and its
  /// success changes nothing (the circuit still closed in `generation` with
  /// no run of failures under way, and the rule keeps no per-success count or
  /// its count window is full of successes). A driver may then skip record().
  bool success_changes_nothing(std::uint64_t generation, duration elapsed) const noexcept {
    if (!slow_enabled_) return success_changes_nothing(generation);
    if (elapsed > cold_->slow_threshold || generation > word::gen_mask) return false;
    if (cells_.first().word.load(std::memory_order_acquire) !=
        cells_.make(circuit_state::closed, word::low_bits(generation), 0)) {
      return false;
    }
    switch (rule_) {
      case detail::trip_rule_kind::ratio_count:
        return cold_->rules.ratio_count.success_changes_nothing();
      case detail::trip_rule_kind::ratio_time:
        return false;  // every success is counted
      default:
        return true;  // no per-success count, and no run (the word's payload is 0)
    }
  }

  /// Reports how an admitted call ended. `elapsed` is its duration (for slow
  /// calls), `retry_after` a hint the failure carried. Results of an earlier
  /// generation, and of rejected admissions, are ignored. Uses `a` up: a
  /// second record() or release() of it changes nothing. Returns the
  /// transition this result caused, if any.
  std::optional<circuit_transition> record(circuit_admission& a, call_result result, time_point now,
                                           duration elapsed = {},
                                           std::optional<duration> retry_after = std::nullopt) {
    if (!a.admitted) return std::nullopt;
    a.admitted = false;
    return record_with(
        a.generation, result, elapsed, [now] { return now; },
        [retry_after] { return retry_after; });
  }
  /// As above, for an admission no one keeps.
  std::optional<circuit_transition> record(circuit_admission&& a, call_result result,
                                           time_point now, duration elapsed = {},
                                           std::optional<duration> retry_after = std::nullopt) {
    return record(a, result, now, elapsed, retry_after);
  }

  /// As record(), for a call admitted in `generation` (any admission's, the
  /// closed path's included), reading the time and the hint lazily: `now()`
  /// only when the rule or a transition needs it, `hint()` only when the
  /// circuit opens. An ignored result is release(generation).
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
    const auto [c, w] = cells_.current();
    const circuit_state st = word::state_of(w);
    const bool closed = word::lets_through(w);
    const bool current_generation = word::epoch_of(*c, w) == generation;
    // A closed consecutive_failures breaker keeps its failures in the run of
    // the state word until the run ends (see failures_held): one atomic
    // operation per failure. Every other failure is counted here.
    if (failed && !(closed && run_in_word() && current_generation)) count_failure();
    if (!current_generation) return std::nullopt;  // a late result: it belongs to an earlier state
    // Only a failure's hint counts: a slow success (or an outcome the breaker
    // does not handle) opens for the configured time.
    auto hint = [&]() -> std::optional<duration> {
      if (failed) return hint_fn();
      return std::nullopt;
    };
    if (closed) {
      return record_closed(*c, w,
                           closed_result<decltype(now), decltype(hint)>{failed, slow, now, hint});
    }
    if (st == circuit_state::half_open)
      return record_probe(*c, word::gen_of(w), failed || slow, now, hint);
    return std::nullopt;
  }

  /// Gives back admission `a` without a result (the caller gave up, or the
  /// outcome says nothing about health); a rejection has nothing to give back.
  /// Uses `a` up, as record() does.
  void release(circuit_admission& a) noexcept {
    if (!a.admitted) return;
    a.admitted = false;
    release(a.generation);
  }

  /// Gives back an admission without a result (the caller gave up, or the
  /// outcome says nothing about health): counts as neither success nor
  /// failure, and frees the probe slot of a half-open probe. Only for the
  /// generation of an admitted call: a rejection's would free a slot it never
  /// took (release(admission) checks).
  // Out of line: a rare path, kept from growing the callers a permit is built in.
  KEEL_DETAIL_NOINLINE void release(std::uint64_t generation) noexcept {
    auto [c, w] = cells_.current();
    if (c->base != generation - word::low_bits(generation)) return;  // late: an earlier cell's
    // A failed CAS reloads `w` from the same cell: retired, it is no longer half-open.
    while (word::gen_of(w) == word::low_bits(generation) &&
           word::state_of(w) == circuit_state::half_open && word::ho_admitted(w) > 0) {
      if (c->word.compare_exchange_weak(w, w - (std::uint64_t{1} << word::payload_shift),
                                        std::memory_order_acq_rel)) {
        return;
      }
    }
  }

  // ---- The closed path -----------------------------------------------------
  //
  // What circuit_breaker::run() takes: one relaxed load to admit, nothing
  // after a success when no run of failures was under way, no clock read.
  // Optional for a driver; its results are those of the general path.

  /// A call admitted on the closed path, or a look at the state word that did
  /// not admit one: the cell and the word that admit_closed read. Two words;
  /// keep it until the call's result is recorded.
  class closed_admission {
   public:
    /// True when the call may go: closed (not disabled), no slow-call rule.
    explicit operator bool() const noexcept { return admitted(); }
    bool admitted() const noexcept { return (word_ & (word::state_mask | word::timed_bit)) == 0; }
    /// The generation the call was admitted in, as circuit_admission::generation.
    std::uint64_t generation() const noexcept { return word::epoch_of(*cell_, word_); }

   private:
    friend class breaker_state_machine;
    closed_admission(detail::state_cell& c, std::uint64_t w) noexcept : cell_(&c), word_(w) {}

    detail::state_cell* cell_;
    std::uint64_t word_;
  };

  /// The closed path's admission: one relaxed load of the first cell's word
  /// (reads nothing else: every later step has an acquire of its own), no
  /// clock read, no write. Not admitted when not closed, when a slow-call rule
  /// times calls, or after 2^27 transitions: then call admit_closed_current().
  closed_admission admit_closed() noexcept {
    detail::state_cell& first = cells_.first();
    return {first, first.word.load(std::memory_order_relaxed)};
  }

  /// As admit_closed(), reloaded with acquire and following the cells to the
  /// current one. When it does not admit either, try reject_open(), then
  /// try_acquire_with().
  closed_admission admit_closed_current() noexcept {
    detail::state_cell& first = cells_.first();
    const std::uint64_t w = first.word.load(std::memory_order_acquire);
    if (w == word::retired) [[unlikely]]
      return later_closed_admission();
    return {first, w};
  }

  /// When `seen` (a look that did not admit) saw the circuit open and the
  /// time `now()` is before the end of the open time: counts the rejection
  /// and returns it, with the time left; the call is rejected with
  /// errc::circuit_open (events: emit_for(listener, rejection)). Otherwise a
  /// false open_rejection: ask try_acquire_with, which decides (a probe may
  /// go). Reads the time only when `seen` is open, as try_acquire does.
  template <class NowFn>
  open_rejection reject_open(const closed_admission& seen, NowFn&& now) const {
    if (word::state_of(seen.word_) != circuit_state::open) return {};
    return reject_open_at(static_cast<time_point>(now()));
  }

  /// Records a success of call `a` (admitted by admit_closed*): a register
  /// test when no run of failures was under way and the rule keeps no
  /// per-success count; one load when nothing changed since. `now()` is read
  /// only by failure_ratio_time. A success in closed never changes the state.
  template <class NowFn>
  void record_closed_success(const closed_admission& a, NowFn&& now_fn) {
    // The success is ordered at its admission, where it changes nothing: a
    // run that began while the call was in flight is left to the calls
    // admitted after its first failure.
    if ((a.word_ & (word::records_bit | word::payload_mask)) == 0) [[likely]]
      return;
    if (unchanged_since(*a.cell_, a.word_)) return;
    record_success_in(*a.cell_, word::gen_of(a.word_), now_fn);
  }

  /// Counts a failure of call `a` (admitted by admit_closed*) with one CAS
  /// when that cannot trip: consecutive_failures, the circuit still closed as
  /// admitted. False: nothing done; record it with record_with(a.generation(),
  /// call_result::failure, ...), which may trip.
  bool record_closed_failure(const closed_admission& a) noexcept {
    // While the low half is `a`'s word's (closed, same generation), the run
    // plus one is below the threshold exactly when the word plus one is
    // below run_limit_ (zero for the other rules: never). A closed run stays
    // below threshold <= INT_MAX, so the sum cannot wrap. The word is most
    // often still current: the first CAS goes without a reload.
    std::uint64_t cur = a.word_;
    do {
      const std::uint64_t next = cur + word::run_step;
      if (next >= run_limit_) return false;
      if (a.cell_->word.compare_exchange_weak(cur, next, std::memory_order_acq_rel)) return true;
    } while ((cur & word::low_mask) == (a.word_ & word::low_mask));
    return false;
  }

  // ---- Manual control and introspection ------------------------------------

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

  circuit_state state() const noexcept { return word::state_of(cells_.current().word); }

  /// A snapshot of the counters and of the window as of `now`.
  circuit_metrics metrics(time_point now) const {
    circuit_metrics m;
    const cold_state& cold = *cold_;
    // The counter first (acquire), then the word: see "Memory orders" in
    // detail/state_word.hpp. The sum can miss a run in transit, never count
    // one twice: it is never above the true count, and the largest sum
    // reported so far is a floor that never falls.
    const std::uint64_t counted = cold.failures.load(std::memory_order_acquire);
    const std::uint64_t w = cells_.current().word;
    m.state = word::state_of(w);
    const std::uint64_t seen = counted + failures_held(w);
    std::atomic<std::uint64_t>& floor = cold_->failures_reported;
    std::uint64_t reported = floor.load(std::memory_order_relaxed);
    while (reported < seen &&
           !floor.compare_exchange_weak(reported, seen, std::memory_order_relaxed)) {
    }
    m.failures = detail::max(reported, seen);
    m.slow_calls = cold.slow_calls.load(std::memory_order_relaxed);
    m.rejections = cold.rejections.total();
    m.last_transition = time_point(duration(cold.last_transition.load(std::memory_order_relaxed)));
    const std::uint32_t run = word::lets_through(w) ? word::payload_of(w) : 0;
    const detail::window_counts c =
        with_rule([&](const auto& rule) { return rule.counts(run, now); });
    m.window_calls = c.calls;
    m.window_failures = c.failures;
    m.window_slow_calls = c.slow;
    m.failure_ratio = detail::ratio_of(c.failures, c.calls);
    m.slow_call_ratio = detail::ratio_of(c.slow, c.calls);
    if (m.state == circuit_state::half_open) m.probes_admitted = word::ho_admitted(w);
    if (m.state == circuit_state::open) {
      m.retry_after = detail::time_until(
          now, time_point(duration(cold_->open_until.load(std::memory_order_acquire))));
    }
    return m;
  }

 private:
  friend struct detail::window_test_access;  // keel's tests only (see windows.hpp)
  friend struct detail::breaker_core_test_access;

  // reject_open once the word said open (not a template: it inlines as one
  // piece wherever the shell lands).
  open_rejection reject_open_at(time_point now) const noexcept {
    const std::int64_t t = now.time_since_epoch().count();
    const std::int64_t until = cold_->open_until.load(std::memory_order_acquire);
    if (t >= until) [[unlikely]]
      return {};  // a probe may go: try_acquire decides
    const open_rejection rejected(duration(until - t));
    cold_->rejections.add();
    return rejected;
  }

  // A look at a later cell than the first (after 2^27 transitions).
  closed_admission later_closed_admission() noexcept {
    const auto [c, w] = cells_.current();
    return {*c, w};
  }
  // success_changes_nothing once the first cell is retired: out of line, so
  // that its callers stay small.
  KEEL_DETAIL_NOINLINE bool later_success_changes_nothing(std::uint64_t generation) const noexcept {
    const auto [c, w] = cells_.current();
    return w == cells_.make(circuit_state::closed, word::low_bits(generation), 0) &&
           c->base == generation - word::low_bits(generation);
  }

  /// True when a success admitted on word `w` of cell `c` has nothing to
  /// record: the word is still closed in the same generation with no run of
  /// failures, and the rule keeps no per-success count or its window would
  /// not change.
  bool unchanged_since(const detail::state_cell& c, std::uint64_t w) const noexcept {
    const std::uint64_t now = c.word.load(std::memory_order_acquire);
    if (now != (w & word::low_mask)) return false;  // the state moved on, or a run is under way
    if ((now & word::records_bit) == 0) return true;
    // Asked after every success into a count window: one compare, not a visit.
    return rule_ == detail::trip_rule_kind::ratio_count &&
           cold_->rules.ratio_count.success_changes_nothing();
  }

  /// Records a success admitted closed in generation `generation` of cell `c`.
  template <class NowFn>
  void record_success_in(detail::state_cell& c, std::uint32_t generation, NowFn& now_fn) {
    std::uint64_t w = c.word.load(std::memory_order_acquire);
    if (word::gen_of(w) != generation) return;  // late: it belongs to an earlier state
    if (!word::lets_through(w)) return;         // a retired word's 7 is neither
    with_rule([&](auto& rule) {
      if constexpr (rule_t<decltype(rule)>::run_in_word) {
        end_run(c, w);
      } else {
        rule.record_success(now_fn);
      }
    });
  }

  /// Ends the run of failures held in word `w` of cell `c`, if any, and adds
  /// it to the failure counter.
  void end_run(detail::state_cell& c, std::uint64_t w) noexcept {
    const std::uint64_t admitted = w & word::low_mask;
    while (const std::uint32_t run = word::payload_of(w)) {
      if (c.word.compare_exchange_weak(w, admitted, std::memory_order_acq_rel)) {
        // After the CAS, with release: see metrics().
        cold_->failures.fetch_add(run, std::memory_order_release);
        return;
      }
      if ((w & word::low_mask) != admitted) return;  // the state moved on (or the cell retired)
    }
  }

  /// The general path when the first cell's word is not closed: open,
  /// half-open, isolated, or a later cell.
  template <class NowFn>
  circuit_admission acquire_not_closed(NowFn& now_fn) {
    lazy_time<NowFn&> now{now_fn};
    for (;;) {
      const auto [c, w] = cells_.current();
      const circuit_state st = word::state_of(w);
      if (word::lets_through(w)) return admit(st, word::epoch_of(*c, w));
      if (st == circuit_state::isolated) {
        cold_->rejections.add();
        return reject(st, word::epoch_of(*c, w), std::nullopt);
      }
      if (st == circuit_state::open) {
        const time_point t = now();
        const time_point until{duration(cold_->open_until.load(std::memory_order_acquire))};
        if (t < until) {
          cold_->rejections.add();
          return reject(st, word::epoch_of(*c, w), until - t);
        }
        if (auto a = enter_half_open(*c, w, t)) return std::move(*a);
        continue;  // someone else moved the state: look again
      }
      // half-open: a free probe slot, or a round that waited too long, or a rejection
      const std::uint32_t admitted = word::ho_admitted(w);
      if (admitted < probes_) {
        std::uint64_t expected = w;
        if (c->word.compare_exchange_weak(expected, w + (std::uint64_t{1} << word::payload_shift),
                                          std::memory_order_acq_rel)) {
          return admit(st, word::epoch_of(*c, w));
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
      return reject(st, word::epoch_of(*c, w), give_up - t);
    }
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
    if (!run_in_word() || !word::lets_through(w)) return 0;
    return word::payload_of(w);
  }

  // How a call admitted closed ended, with its lazy time and hint: one
  // argument, so that record_closed takes none on the stack (a stack argument
  // gives every caller a frame pointer, the closed path included).
  template <class Now, class HintFn>
  struct closed_result {
    bool failed;
    bool slow;
    Now& now;
    HintFn& hint;
  };

  // A result in closed (or disabled): the rule's, behind its one dispatch.
  // Out of line, as it may trip: kept from growing record_with's callers.
  template <class Now, class HintFn>
  KEEL_DETAIL_NOINLINE std::optional<circuit_transition> record_closed(
      detail::state_cell& c, std::uint64_t w, const closed_result<Now, HintFn>& r) {
    const bool disabled = word::state_of(w) == circuit_state::disabled;
    return with_rule([&](auto& rule) -> std::optional<circuit_transition> {
      if constexpr (rule_t<decltype(rule)>::run_in_word) {
        return record_run(c, w, r.failed, disabled, r.now, r.hint);
      } else {
        const detail::trip_verdict v = rule.record(r.failed, r.slow, !disabled, r.now);
        if (!v.trips) [[likely]]
          return std::nullopt;
        return trip(word::epoch_of(c, w), v.reason, v.failure_ratio, r.now, r.hint);
      }
    });
  }

  // consecutive_failures in closed (or disabled): the run is the word's payload.
  template <class Now, class HintFn>
  std::optional<circuit_transition> record_run(detail::state_cell& c, std::uint64_t w, bool failed,
                                               bool disabled, Now& now, HintFn& hint_fn) {
    const std::uint32_t generation = word::gen_of(w);
    for (;;) {
      const std::uint32_t run = word::payload_of(w);
      std::uint64_t next = 0;
      if (!failed) {
        if (run == 0) return std::nullopt;  // the hot path: load, compare, no store
        next = cells_.make(word::state_of(w), generation, 0);
      } else {
        if (!disabled && run + 1 >= threshold()) {
          return trip(word::epoch_of(c, w), open_reason::consecutive_failures, 1.0, now, hint_fn);
        }
        if (run == 0xffffffffu) {  // a saturated run (disabled): count this one apart
          count_failure();
          return std::nullopt;
        }
        next = w + word::run_step;
      }
      if (c.word.compare_exchange_weak(w, next, std::memory_order_acq_rel)) {
        if (!failed) cold_->failures.fetch_add(run, std::memory_order_release);  // see metrics
        return std::nullopt;
      }
      if (!word::of_generation(w, generation)) {  // the state moved on (or the cell retired)
        if (failed) count_failure();              // late after all
        return std::nullopt;
      }
    }
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
    detail::state_cell& c = cells_.current_locked();
    std::uint64_t w = c.word.load(std::memory_order_acquire);
    for (;;) {
      if (word::epoch_of(c, w) != generation || word::state_of(w) != circuit_state::closed) {
        if (consecutive) count_failure();  // the state moved on: a late failure
        return std::nullopt;
      }
      if (consecutive && word::payload_of(w) + 1 < threshold()) {
        // A success reset the run meanwhile: this failure only counts.
        if (c.word.compare_exchange_weak(w, w + word::run_step, std::memory_order_acq_rel)) {
          return std::nullopt;
        }
        continue;
      }
      const std::uint64_t next = cells_.following(c, word::gen_of(w), circuit_state::open, 0);
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
      cells_.install(c, next);
      if (consecutive) cold.failures.fetch_add(word::payload_of(w) + 1, std::memory_order_release);
      cold.growth = grown(growth);
      cold.last_transition.store(t.time_since_epoch().count(), std::memory_order_relaxed);
      return circuit_transition{
          circuit_state::closed, circuit_state::open, t, reason, failure_ratio, open_for};
    }
  }

  duration grown(duration growth) const noexcept {
    const circuit_breaker_options& o = cold_->options;
    return detail::min(detail::saturating_mul(growth, o.open_duration_factor), o.max_open_duration);
  }

  // How long to open for: `growth`, or the failure's retry-after hint.
  template <class HintFn>
  duration open_time(duration growth, HintFn& hint_fn) const {
    const circuit_breaker_options& o = cold_->options;
    if (o.honor_retry_after) {
      if (const std::optional<duration> hint = hint_fn()) {
        return detail::clamp(*hint, duration::zero(), o.max_open_duration);
      }
    }
    return growth;
  }

  // half-open -> open (a probe failed); the caller holds the mutex and `c`
  // is current, in `generation`.
  template <class HintFn>
  circuit_transition reopen_locked(detail::state_cell& c, std::uint32_t generation,
                                   double failure_ratio, time_point t, HintFn& hint_fn) {
    cold_state& cold = *cold_;
    const std::uint64_t next = cells_.following(c, generation, circuit_state::open, 0);
    const duration open_for = open_time(cold.growth, hint_fn);
    cold.growth = grown(cold.growth);
    cold.open_until.store(detail::saturating_add(t, open_for).time_since_epoch().count(),
                          std::memory_order_relaxed);
    cold.last_transition.store(t.time_since_epoch().count(), std::memory_order_relaxed);
    c.word.store(next, std::memory_order_release);
    cells_.install(c, next);
    return {circuit_state::half_open,  circuit_state::open, t,
            open_reason::probe_failed, failure_ratio,       open_for};
  }

  // open -> half-open (the open time is over), or a new half-open round (the
  // last one waited too long): the caller becomes the round's first probe.
  // `seen` was read from cell `c`: a retired `c` no longer holds its state.
  std::optional<circuit_admission> enter_half_open(detail::state_cell& c, std::uint64_t seen,
                                                   time_point t) {
    cold_state& cold = *cold_;
    std::lock_guard lock(cold.mutex);
    const std::uint64_t w = c.word.load(std::memory_order_acquire);
    if (word::state_of(w) != word::state_of(seen) || !word::of_generation(w, word::gen_of(seen))) {
      return std::nullopt;
    }
    if (word::state_of(w) == circuit_state::half_open && word::ho_admitted(w) < probes_) {
      return std::nullopt;
    }
    const std::uint64_t next =
        cells_.following(c, word::gen_of(w), circuit_state::half_open, word::ho_payload(1, 0, 0));
    cold.half_open_since.store(t.time_since_epoch().count(), std::memory_order_relaxed);
    cold.last_transition.store(t.time_since_epoch().count(), std::memory_order_relaxed);
    c.word.store(next, std::memory_order_release);
    cells_.install(c, next);
    return circuit_admission{
        true,        circuit_state::half_open, true, word::state_of(w), word::epoch_of(c, w) + 1, t,
        std::nullopt};
  }

  template <class Now, class HintFn>
  std::optional<circuit_transition> record_probe(detail::state_cell& c, std::uint32_t generation,
                                                 bool failed, Now& now, HintFn& hint_fn) {
    cold_state& cold = *cold_;
    std::lock_guard lock(cold.mutex);
    std::uint64_t w = c.word.load(std::memory_order_acquire);
    for (;;) {
      if (!word::of_generation(w, generation) || word::state_of(w) != circuit_state::half_open) {
        return std::nullopt;
      }
      const std::uint32_t admitted = word::ho_admitted(w);
      std::uint32_t s = word::ho_successes(w);
      std::uint32_t f = word::ho_failures(w);
      (failed ? f : s) += 1;
      if (s >= cold.successes_needed) {
        const std::uint64_t next = cells_.following(c, generation, circuit_state::closed, 0);
        const time_point t = now();
        cold.last_transition.store(t.time_since_epoch().count(), std::memory_order_relaxed);
        cold.last_closed.store(t.time_since_epoch().count(), std::memory_order_relaxed);
        clear_windows();
        c.word.store(next, std::memory_order_release);
        cells_.install(c, next);
        return circuit_transition{
            circuit_state::half_open, circuit_state::closed, t, {}, detail::ratio_of(f, s + f), {}};
      }
      if (f > probes_ - cold.successes_needed) {
        return reopen_locked(c, generation, detail::ratio_of(f, s + f), now(), hint_fn);
      }
      // Probe admissions race with us (lock-free CAS on the same word): retry on change.
      if (c.word.compare_exchange_weak(
              w,
              cells_.make(circuit_state::half_open, generation, word::ho_payload(admitted, s, f)),
              std::memory_order_acq_rel)) {
        return std::nullopt;
      }
    }
  }

  std::optional<circuit_transition> force(circuit_state to, time_point t) {
    cold_state& cold = *cold_;
    std::lock_guard lock(cold.mutex);
    detail::state_cell& c = cells_.current_locked();  // under the mutex: current, not retired
    // Its generation changes under the mutex only: the exchange below sees the same.
    const std::uint32_t generation = word::gen_of(c.word.load(std::memory_order_acquire));
    const std::uint64_t next = cells_.following(c, generation, to, 0);
    if (to != circuit_state::isolated) clear_windows();
    if (to == circuit_state::closed) {
      cold.growth = cold.options.open_duration;
      cold.last_closed.store(t.time_since_epoch().count(), std::memory_order_relaxed);
    }
    cold.last_transition.store(t.time_since_epoch().count(), std::memory_order_relaxed);
    // An exchange: the run of failures it ends is added exactly once.
    const std::uint64_t w = c.word.exchange(next, std::memory_order_acq_rel);
    cells_.install(c, next);
    if (const std::uint32_t held = failures_held(w)) {
      cold.failures.fetch_add(held, std::memory_order_release);  // after the exchange: see metrics
    }
    const circuit_state from = word::state_of(w);
    if (from == to && to != circuit_state::closed) return std::nullopt;
    return circuit_transition{from, to, t, {}, 0.0, {}};
  }

  // consecutive_failures keeps its run of failures in the state word (the
  // only rule with a run_limit_).
  bool run_in_word() const noexcept { return run_limit_ != 0; }

  std::uint32_t threshold() const noexcept {
    return static_cast<std::uint32_t>(run_limit_ >> word::payload_shift);
  }

  void clear_windows() noexcept {
    with_rule([](auto& rule) { rule.reset(); });
  }

  // What the closed path never touches, allocated once at construction: the
  // options, the mutex of transitions, the counters and the rule's window.
  struct cold_state {
    cold_state(circuit_breaker_options o, const policy_name& n)
        : rules(o), options(std::move(o)), name(n) {}
    cold_state(const cold_state&) = delete;
    cold_state& operator=(const cold_state&) = delete;
    ~cold_state() { detail::state_cells::free_after(second); }
    // Read by every rejection, written on transitions only.
    std::atomic<std::int64_t> open_until{0};
    std::atomic<std::int64_t> half_open_since{0};
    std::atomic<std::int64_t> last_transition{0};
    std::atomic<std::int64_t> last_closed{detail::min_ns};
    duration growth{};  // open time of the next trip; guarded by mutex
    std::uint32_t successes_needed = 1;
    duration slow_threshold{};
    std::mutex mutex;  // transitions only
    // Added to by every rejection, from many threads at once in an outage:
    // striped by owner, apart from the open time they all read.
    detail::owned_counter rejections;
    // Written on failures.
    alignas(64) std::atomic<std::uint64_t> failures{0};
    std::atomic<std::uint64_t> failures_reported{0};  // by metrics(): it never goes back
    std::atomic<std::uint64_t> slow_calls{0};
    detail::trip_rules rules;
    circuit_breaker_options options;
    policy_name name;
    // The first wrap's cell, allocated with the rest; the cells of later
    // wraps follow it (next), each allocated one wrap ahead, freed here.
    alignas(64) detail::state_cell second;
  };

  // The whole object is one cache line: the first cell (the state word every
  // call reads), the current cell (the first one for 2^27 transitions) and
  // the few constants the closed path needs next to them.
  alignas(64) detail::state_cells cells_;
  std::unique_ptr<cold_state> cold_;
  std::uint64_t run_limit_ = 0;  // consecutive_failures: the threshold in the payload, else 0
  std::uint32_t probes_ = 1;
  detail::trip_rule_kind rule_ = detail::trip_rule_kind::consecutive;
  bool slow_enabled_ = false;
};

/// The former name of breaker_state_machine.
using circuit_breaker_core = breaker_state_machine;

/// Delivers to `listener` the events of transition `t`, as circuit_breaker
/// does: circuit_state_changed (when the state changed), then circuit_opened,
/// circuit_half_opened or circuit_closed, each with `source` (the state
/// machine's source(): events name their breaker). Events are
/// built only for a listener that listens to them, and counted when counters
/// are attached (keel::report); a listener that throws is ignored.
template <class Listener>
void emit_for(const Listener& listener, const circuit_transition& t,
              const event_source& source) noexcept {
  if (t.from != t.to) {
    const auto changed = [&] { return circuit_state_changed{t.from, t.to, t.at, source}; };
    report<circuit_state_changed>(listener, changed);
  }
  switch (t.to) {
    case circuit_state::open:
      report<circuit_opened>(listener, [&] {
        return circuit_opened{t.reason, t.failure_ratio, t.open_for, t.at, source};
      });
      break;
    case circuit_state::half_open:
      report<circuit_half_opened>(listener, [&] { return circuit_half_opened{t.at, source}; });
      break;
    case circuit_state::closed:
      report<circuit_closed>(listener, [&] { return circuit_closed{t.at, source}; });
      break;
    default:
      break;
  }
}

/// As emit_for(listener, *t, source) when a transition happened (record, isolate, ...).
template <class Listener>
void emit_for(const Listener& listener, const std::optional<circuit_transition>& t,
              const event_source& source) noexcept {
  if (t) emit_for(listener, *t, source);
}

/// Delivers the events of admission `a`: the half-open round it began, if
/// any (with `source`), then call_rejected (with `rejected_source`) when it
/// was rejected.
template <class Listener>
void emit_for(const Listener& listener, const circuit_admission& a, const event_source& source,
              const event_source& rejected_source) noexcept {
  if (a.began_round) {
    emit_for(listener, circuit_transition{a.previous, circuit_state::half_open, a.at, {}, 0.0, {}},
             source);
  }
  if (!a.admitted) {
    report<call_rejected>(listener, [&] {
      return call_rejected{a.rejection_code(), a.state, a.retry_after, rejected_source};
    });
  }
}

/// As above, with one source for both (a call's: machine.source(ctx)).
template <class Listener>
void emit_for(const Listener& listener, const circuit_admission& a,
              const event_source& source) noexcept {
  emit_for(listener, a, source, source);
}

/// Delivers call_rejected, with `source`, when `r` rejected the call (see reject_open).
template <class Listener>
void emit_for(const Listener& listener, const open_rejection& r,
              const event_source& source) noexcept {
  if (r) {
    report<call_rejected>(listener, [&] {
      call_rejected e = r.event();
      e.source = source;
      return e;
    });
  }
}

namespace detail {

/// A test seam, not an API: reaching a cell's wrap takes 2^27 transitions.
struct breaker_core_test_access {
  /// Generations per cell: after this many transitions the word moves to a new cell.
  static constexpr std::uint64_t generations_per_cell = state_word::gen_mask + 1;

  /// Moves the current cell of `core` to `generation` (< generations_per_cell,
  /// above its own), as if that many transitions had passed in its state: a
  /// wrap is then a few transitions away. State, payload and counters are kept.
  static void set_generation(breaker_state_machine& core, std::uint32_t generation) {
    using w = state_word;
    std::lock_guard lock(core.cold_->mutex);
    state_cell& current = core.cells_.current_locked();
    std::uint64_t v = current.word.load(std::memory_order_relaxed);
    while (!current.word.compare_exchange_weak(
        v,
        (v & ~(w::gen_mask << w::gen_shift)) |
            ((std::uint64_t{generation} & w::gen_mask) << w::gen_shift),
        std::memory_order_acq_rel)) {
    }
  }
};

}  // namespace detail

}  // namespace keel

#endif  // KEEL_CIRCUIT_BREAKER_BREAKER_STATE_MACHINE_HPP_INCLUDED

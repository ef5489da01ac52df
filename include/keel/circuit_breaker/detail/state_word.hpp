// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CIRCUIT_BREAKER_DETAIL_STATE_WORD_HPP_INCLUDED
#define KEEL_CIRCUIT_BREAKER_DETAIL_STATE_WORD_HPP_INCLUDED

// A circuit breaker's state word and the cells it lives in.
//
// The word: state (3 bits) | records (1 bit) | timed (1 bit) | generation
// (27 bits) | payload (32 bits). Payload: closed/disabled = consecutive
// failures; half-open = probes admitted, successes and failures, 10 bits
// each. Packing them with the generation makes every count a CAS that fails
// when the state moved on. The two flag bits are constant: set when a success
// must be recorded (a ratio rule, slow calls) and when the call must be timed
// (slow calls), so that one compare decides the closed path.
//
// Cells: 27 bits would wrap, so the word lives in a cell (the breaker's first
// cell, then one per 2^27 transitions) and a cell never reuses a generation.
// The transition that would wrap (under the mutex) readies the successor
// (generation 0, the new state; linked from the old cell's `next`), writes
// `retired` into the old word (a CAS, store or exchange like any transition,
// with release), then installs the successor as current; a reader that meets
// the retired word (acquire) follows `next` (state_cells::current). No state
// has value 7, so no compare, CAS or closed-path test ever matches a retired
// word, and cells (64 bytes each) are freed only with the breaker: a call that
// holds an old cell (the closed path holds the one it was admitted from), or
// the public generation base + gen of one (a 64-bit count of transitions),
// finds it retired. So a (cell, generation) pair is current during one
// stretch of time only, and a late result never counts, whatever the number
// of transitions.
//
// Memory orders. Transitions hold the mutex and publish with release; counts
// in a state are CASes on the word (acq_rel); readers load with acquire (the
// closed admission relaxed: it reads nothing the word guards).
// - Exact half-open probes: each admission is one CAS that checks admitted <
//   permitted_probes in the word: one modification order, so never more than
//   k in a round (stress_test.cpp: probes in flight per generation, under
//   contention; epoch_test.cpp: across wraps).
// - Late results ignored: a result checks its generation and counts in the
//   same CAS on its cell's word, or under the mutex (trips, probes); see
//   Cells (half_open_test.cpp [generation], epoch_test.cpp).
// - metrics().failures never above the truth: a run of failures is added to
//   the counter (release) after the word change that ended it; metrics()
//   loads the counter (acquire), then the word. If that load read the add (or
//   a later one: a release sequence), the word change happened before the
//   word load, which by coherence no longer holds the run; if not, the run is
//   counted at most once, from the word (metrics_stress_test.cpp).

#include <atomic>
#include <cstdint>
#include <new>

#include "keel/circuit_breaker/circuit_breaker_options.hpp"
#include "keel/detail/config.hpp"

namespace keel::detail {

/// Where a state word lives: the breaker's own first cell, then one cell per
/// 2^27 transitions.
struct state_cell {
  std::atomic<std::uint64_t> word{0};
  std::atomic<state_cell*> next{nullptr};  // the successor, set before this cell retires
  std::uint64_t base = 0;                  // the public generation of this cell's generation 0
};

/// A cell allocated for a wrap, on a line of its own.
struct alignas(64) heap_state_cell : state_cell {};

/// The layout of the state word: constants and pure functions of a word.
struct state_word {
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
  /// True when `w` is closed or disabled: calls go and are counted.
  static bool lets_through(std::uint64_t w) noexcept {
    const circuit_state s = state_of(w);
    return s == circuit_state::closed || s == circuit_state::disabled;
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
  /// The public generation (a 64-bit count) of word `w` of cell `c`.
  static std::uint64_t epoch_of(const state_cell& c, std::uint64_t w) noexcept {
    return c.base + gen_of(w);
  }
  static std::uint32_t ho_admitted(std::uint64_t w) noexcept { return payload_of(w) & 0x3ff; }
  static std::uint32_t ho_successes(std::uint64_t w) noexcept {
    return (payload_of(w) >> 10) & 0x3ff;
  }
  static std::uint32_t ho_failures(std::uint64_t w) noexcept {
    return (payload_of(w) >> 20) & 0x3ff;
  }
  static std::uint32_t ho_payload(std::uint32_t admitted, std::uint32_t successes,
                                  std::uint32_t failures) noexcept {
    return admitted | (successes << 10) | (failures << 20);
  }
};

/// A cell and a word it held that is not the retired marker.
struct located_word {
  state_cell* cell;
  std::uint64_t word;
};

/// The cells of one breaker: its first cell (in place, so that the closed
/// path admits with no pointer to follow), the current one, and the flag
/// bits or'ed into every word. Transitions (wrap included) run under the
/// owner's mutex; reading is lock-free.
class state_cells {
 public:
  state_cells() = default;
  state_cells(const state_cells&) = delete;
  state_cells& operator=(const state_cells&) = delete;

  /// Closed in generation 0 with `flags`; the first wrap moves to `second`.
  void start(std::uint64_t flags, state_cell* second) noexcept {
    flags_ = flags;
    first_.word.store(make(circuit_state::closed, 0, 0), std::memory_order_relaxed);
    first_.next.store(second, std::memory_order_relaxed);
  }

  std::uint64_t flags() const noexcept { return flags_; }

  /// A word of this breaker: state `s`, generation `gen` in its cell, `payload`.
  std::uint64_t make(circuit_state s, std::uint32_t gen, std::uint32_t payload) const noexcept {
    return static_cast<std::uint64_t>(s) | flags_ |
           ((std::uint64_t{gen} & state_word::gen_mask) << state_word::gen_shift) |
           (std::uint64_t{payload} << state_word::payload_shift);
  }

  /// The first cell (its base is 0): valid for the first 2^27 transitions.
  state_cell& first() noexcept { return first_; }
  const state_cell& first() const noexcept { return first_; }

  /// The current cell and its word: a retired word leads to its successor,
  /// set before the retirement (so lock-free: no waiting for the install).
  located_word current() const noexcept {
    state_cell* c = current_.load(std::memory_order_acquire);
    std::uint64_t w = c->word.load(std::memory_order_acquire);
    while (w == state_word::retired) {
      c = c->next.load(std::memory_order_relaxed);
      w = c->word.load(std::memory_order_acquire);
    }
    return {c, w};
  }
  /// The current cell, for a caller that holds the transition mutex: never retired then.
  state_cell& current_locked() noexcept { return *current_.load(std::memory_order_relaxed); }

  /// Under the mutex, before a transition from generation `generation` of
  /// current cell `c` to state `to` with `payload`: returns the word to write
  /// into `c`. That is the next generation, or, from the cell's last one, the
  /// retired marker: then the successor is made ready first (install must
  /// follow the write). Changes nothing readable, so a transition that then
  /// does not happen (a failed CAS) leaves no trace. Allocates only when the
  /// allocation after the last wrap failed; std::bad_alloc then leaves the
  /// breaker unchanged.
  std::uint64_t following(state_cell& c, std::uint32_t generation, circuit_state to,
                          std::uint32_t payload) {
    if (generation != state_word::gen_mask) [[likely]]
      return make(to, generation + 1, payload);
    return ready_successor(c, make(to, 0, payload));
  }

  /// After a transition wrote `written` (from following) into current cell
  /// `c`: when that retired `c`, the successor becomes current, and gets a
  /// successor of its own for the next wrap (if this allocation fails, that
  /// wrap allocates).
  void install(state_cell& c, std::uint64_t written) noexcept {
    if (written == state_word::retired) [[unlikely]]
      make_successor_current(c);
  }

  /// Frees the cells allocated after `second` (the owner's, freed with it).
  static void free_after(state_cell& second) noexcept {
    state_cell* c = second.next.load(std::memory_order_relaxed);
    while (c != nullptr) {
      state_cell* older_successor = c->next.load(std::memory_order_relaxed);
      delete static_cast<heap_state_cell*>(c);
      c = older_successor;
    }
  }

 private:
  // Out of line: once per 2^27 transitions, kept from the callers' size.
  KEEL_DETAIL_NOINLINE std::uint64_t ready_successor(state_cell& c, std::uint64_t word) {
    state_cell* successor = c.next.load(std::memory_order_relaxed);
    if (successor == nullptr) {
      successor = new heap_state_cell;
      c.next.store(successor, std::memory_order_relaxed);
    }
    // 2^64 transitions (585 years at one per nanosecond) would wrap the base.
    successor->base = c.base + state_word::gen_mask + 1;
    successor->word.store(word, std::memory_order_relaxed);
    return state_word::retired;
  }
  KEEL_DETAIL_NOINLINE void make_successor_current(state_cell& c) noexcept {
    state_cell* successor = c.next.load(std::memory_order_relaxed);
    current_.store(successor, std::memory_order_release);
    successor->next.store(new (std::nothrow) heap_state_cell, std::memory_order_relaxed);
  }

  state_cell first_;
  std::atomic<state_cell*> current_{&first_};
  std::uint64_t flags_ = 0;  // state_word::records_bit, timed_bit
};

}  // namespace keel::detail

#endif  // KEEL_CIRCUIT_BREAKER_DETAIL_STATE_WORD_HPP_INCLUDED

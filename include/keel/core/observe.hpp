// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_OBSERVE_HPP_INCLUDED
#define KEEL_CORE_OBSERVE_HPP_INCLUDED

#include <array>
#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <type_traits>
#include <utility>

#include "keel/core/call_slots.hpp"
#include "keel/core/context.hpp"
#include "keel/core/events.hpp"
#include "keel/core/inspect.hpp"

namespace keel {

// ---- Names -------------------------------------------------------------------

/// A policy's name: a keel::short_name (at most 31 bytes, cut back to a
/// UTF-8 character boundary, held inline, trivially copyable), so that a
/// copy of a policy never refers to the caller's string. Also made from a
/// literal, and read wherever a std::string_view is asked for.
class policy_name : public short_name {
 public:
  using short_name::short_name;
  /// The empty name.
  constexpr policy_name() noexcept = default;
  /// From a C string (a literal; not null).
  constexpr policy_name(const char* name) noexcept : short_name(std::string_view(name)) {}
  /// view(), so that a policy_name goes where a std::string_view is asked for.
  constexpr operator std::string_view() const noexcept { return view(); }
};

/// Where an event comes from. Views, valid while the handler runs: a
/// handler that keeps them longer copies them into strings.
struct event_source {
  /// The call's operation (context::operation()): the name of the named
  /// pipeline it runs in (keel::pipeline(...).named("payments")), or what
  /// the caller set; empty otherwise, and for events with no call at hand
  /// (a circuit's state transitions).
  std::string_view pipeline;
  /// The emitting policy's name: set with `.named(...)`, by default its kind
  /// ("retry", "circuit_breaker", "timeout", "fallback").
  std::string_view policy;
};

/// The source of an event that a policy named `name` emits during the call
/// whose context is `ctx`.
inline event_source source_of(std::string_view name, const context& ctx) noexcept {
  return {ctx.operation(), name};
}

/// The source of an event with no call at hand: the policy's name alone.
inline event_source source_of(std::string_view name) noexcept { return {{}, name}; }

// ---- Counters ----------------------------------------------------------------

/// Every kind of event keel's policies emit; an event type names its kind as
/// `static constexpr keel::event_kind kind`.
enum class event_kind : unsigned char {
  retry_scheduled,         ///< retry: a retry was scheduled (a wait began)
  retry_succeeded,         ///< retry: a call succeeded after at least one retry
  retries_exhausted,       ///< retry: attempts, time or the delay function ran out
  retry_aborted,           ///< retry: a failure that must not be retried
  retry_budget_exhausted,  ///< retry: the shared budget refused a retry
  circuit_opened,          ///< circuit_breaker
  circuit_half_opened,     ///< circuit_breaker
  circuit_closed,          ///< circuit_breaker
  circuit_state_changed,   ///< circuit_breaker: every transition, by hand too
  call_rejected,           ///< circuit_breaker: a call refused without being made
  timed_out,               ///< timeout: a call gave errc::timeout
  late_result_kept,        ///< timeout: a late call's outcome was kept
  fallback_used,           ///< fallback: an alternative produced the result
  fallback_skipped,        ///< fallback: an alternative did not handle the failure
  all_fallbacks_failed,    ///< fallback: every alternative tried failed
  fallback_cancelled,      ///< fallback: a stop request ended the chain
  bulkhead_rejected,       ///< bulkhead: a call refused (full, queue full, or its wait ran out)
  bulkhead_queued,         ///< bulkhead: a call began to wait for a permit
  bulkhead_granted,        ///< bulkhead: a waiting call was given a permit
  rate_limit_rejected,     ///< rate_limiter: a call refused (no slot within its wait)
  rate_limit_paused,       ///< rate_limiter: a Retry-After hint paused a limit
  limit_changed,           ///< adaptive_limiter: a closed window changed the limit
  limiter_rejected,        ///< adaptive_limiter: a call refused at the limit
  throttle_rejected,       ///< adaptive_throttle: a call shed locally
};

/// Number of event kinds.
inline constexpr std::size_t event_kind_count = 24;
static_assert(static_cast<std::size_t>(event_kind::throttle_rejected) + 1 == event_kind_count,
              "keel::event_kind_count must follow keel::event_kind");

/// Every event kind, in order: `for (keel::event_kind k : keel::event_kinds)`.
inline constexpr std::array<event_kind, event_kind_count> event_kinds = [] {
  std::array<event_kind, event_kind_count> all{};
  for (std::size_t i = 0; i < event_kind_count; ++i) all[i] = static_cast<event_kind>(i);
  return all;
}();

/// The enumerator's name ("retry_scheduled"); "unknown" otherwise.
constexpr std::string_view to_string_view(event_kind k) noexcept {
  constexpr std::array<std::string_view, event_kind_count> names = {"retry_scheduled",
                                                                    "retry_succeeded",
                                                                    "retries_exhausted",
                                                                    "retry_aborted",
                                                                    "retry_budget_exhausted",
                                                                    "circuit_opened",
                                                                    "circuit_half_opened",
                                                                    "circuit_closed",
                                                                    "circuit_state_changed",
                                                                    "call_rejected",
                                                                    "timed_out",
                                                                    "late_result_kept",
                                                                    "fallback_used",
                                                                    "fallback_skipped",
                                                                    "all_fallbacks_failed",
                                                                    "fallback_cancelled",
                                                                    "bulkhead_rejected",
                                                                    "bulkhead_queued",
                                                                    "bulkhead_granted",
                                                                    "rate_limit_rejected",
                                                                    "rate_limit_paused",
                                                                    "limit_changed",
                                                                    "limiter_rejected",
                                                                    "throttle_rejected"};
  const auto i = static_cast<std::size_t>(k);
  return i < event_kind_count ? names[i] : "unknown";
}

/// An event type keel counts: it names its kind.
template <class E>
concept counted_event = requires {
  { E::kind } -> std::convertible_to<event_kind>;
};

/// Counts events, one relaxed atomic per event kind: the one counter model
/// of every policy. Attach it with `policy.with_counters(c)`; every copy of
/// the policy (the one inside a pipeline too) counts into this object, which
/// must outlive them. Several policies may share one. Also a listener
/// (`on(const E&)` for every counted event). Thread-safe; neither copyable
/// nor movable.
class counters {
 public:
  counters() noexcept = default;
  counters(const counters&) = delete;
  counters& operator=(const counters&) = delete;

  /// Counts one event of kind `k` (a value outside event_kind: nothing).
  void add(event_kind k) const noexcept {
    const auto i = static_cast<std::size_t>(k);
    if (i < event_kind_count) slots_[i].fetch_add(1, std::memory_order_relaxed);
  }
  /// As a listener: counts `e`.
  template <counted_event E>
  void on(const E&) const noexcept {
    add(E::kind);
  }

  /// Events of kind `k` counted so far (a relaxed read; 0 outside event_kind).
  std::uint64_t count(event_kind k) const noexcept {
    const auto i = static_cast<std::size_t>(k);
    return i < event_kind_count ? slots_[i].load(std::memory_order_relaxed) : 0;
  }
  /// Events of type E counted so far: `c.count<keel::retry_scheduled>()`.
  template <counted_event E>
  std::uint64_t count() const noexcept {
    return count(E::kind);
  }

  /// Sets every count to zero (not atomically as a whole).
  void reset() noexcept {
    for (auto& s : slots_) s.store(0, std::memory_order_relaxed);
  }

 private:
  mutable std::array<std::atomic<std::uint64_t>, event_kind_count> slots_{};
};

/// An event that keel::counters counts or that listener L hears.
template <class E, class L>
concept heard_or_counted = counted_event<E> || listens_to<L, E>;

/// A policy's listener with counters attached (what `with_counters` makes of
/// the listener slot): events go to `listener` as before, and counted events
/// are also counted into `*sink`.
template <class L>
struct counted_listener {
  [[no_unique_address]] L listener;  ///< the listener set by with_listener (no_listener at first)
  counters* sink;                    ///< the counters set by with_counters; never null

  template <heard_or_counted<L> E>
  void on(const E& e) const noexcept {
    if constexpr (counted_event<E>) sink->add(E::kind);
    emit(listener, e);
  }
};

namespace detail {
template <class L>
inline constexpr bool is_counted_listener = false;
template <class L>
inline constexpr bool is_counted_listener<counted_listener<L>> = true;

template <class L>
inline constexpr bool is_smart_pointer = false;
template <class T>
inline constexpr bool is_smart_pointer<std::shared_ptr<T>> = true;
template <class T, class D>
inline constexpr bool is_smart_pointer<std::unique_ptr<T, D>> = true;

// Every with_listener names its new slot through this: the one place to
// refuse a listener that would compile and hear nothing, or not copy.
template <class L>
struct checked_listener {
  static_assert(!std::is_pointer_v<L> && !is_smart_pointer<L>,
                "keel: a listener is held by value and a pointer has no on(): pass the "
                "listener itself, or std::ref(listener) / std::cref(listener) to share one");
  static_assert(std::is_copy_constructible_v<L>,
                "keel: a listener is copied into every copy of the policy and this one cannot "
                "be copied: pass std::ref(listener) or std::cref(listener)");
  using type = L;
};

template <class Slot, class L>
struct with_listener {
  using type = typename checked_listener<L>::type;
};
template <class Old, class L>
struct with_listener<counted_listener<Old>, L> {
  using type = counted_listener<typename checked_listener<L>::type>;
};
template <class Slot>
struct with_counters {
  using type = counted_listener<Slot>;
};
template <class L>
struct with_counters<counted_listener<L>> {
  using type = counted_listener<L>;
};
}  // namespace detail

/// The listener slot `Slot` after `with_listener(L)`: L, still counted when
/// counters were attached.
template <class Slot, class L>
using with_listener_t = typename detail::with_listener<Slot, std::decay_t<L>>::type;
/// The listener slot `Slot` after `with_counters(c)`.
template <class Slot>
using with_counters_t = typename detail::with_counters<Slot>::type;

/// The listener slot `slot` with its listener replaced by `l`; counters
/// attached to it stay attached (with_listener and with_counters commute).
template <class Slot, class L>
with_listener_t<Slot, L> replace_listener(Slot slot, L&& l) {
  if constexpr (detail::is_counted_listener<Slot>) {
    return {std::forward<L>(l), slot.sink};
  } else {
    return std::forward<L>(l);
  }
}

/// The listener slot `slot`, its events also counted into `c` (replacing
/// counters attached before).
template <class Slot>
with_counters_t<Slot> attach_counters(Slot slot, counters& c) noexcept(
    std::is_nothrow_move_constructible_v<Slot>) {
  if constexpr (detail::is_counted_listener<Slot>) {
    return {std::move(slot.listener), &c};
  } else {
    return {std::move(slot), &c};
  }
}

/// True when a policy whose listener slot is L does anything with an event
/// E: hears it, or counts it. Test it around report() on a hot path: then
/// not even report's closure is compiled for a policy that nobody observes.
template <class L, class E>
inline constexpr bool observes = [] {
  if constexpr (detail::is_counted_listener<L>) {
    return counted_event<E> || listens_to<decltype(std::declval<L>().listener), E>;
  } else {
    return listens_to<L, E>;
  }
}();

/// Reports an event of type E to a policy's listener slot: counts it when
/// counters are attached, and builds it (`make()`) and delivers it only when
/// the listener hears E. Costs nothing for keel::no_listener. An exception
/// from `make` or the handler is swallowed.
template <class E, class L, class Make>
void report(const L& listener, Make&& make) noexcept {
  if constexpr (detail::is_counted_listener<L>) {
    if constexpr (counted_event<E>) listener.sink->add(E::kind);
    report<E>(listener.listener, make);
  } else if constexpr (listens_to<L, E>) {
    call_ignoring_exceptions([&] { detail::deliver(listener, make()); });
  }
}

}  // namespace keel

#endif  // KEEL_CORE_OBSERVE_HPP_INCLUDED

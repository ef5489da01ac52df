// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_CONTEXT_HPP_INCLUDED
#define KEEL_CORE_CONTEXT_HPP_INCLUDED

#include <atomic>
#include <chrono>
#include <memory>
#include <new>
#include <optional>
#include <stop_token>
#include <string_view>
#include <type_traits>
#include <utility>

#include "keel/core/call_slots.hpp"
#include "keel/core/environment.hpp"
#include "keel/core/inspect.hpp"
#include "keel/core/time.hpp"

namespace keel {

namespace testing {
template <random_source Random>
class basic_virtual_environment;
}  // namespace testing

namespace detail {

/// Where an environment keeps the clock its now() reads, for the environments
/// keel knows: the context then keeps a copy of that clock alone. Any other
/// environment is kept whole.
template <class E>
struct environment_clock {};

template <clock Clock, sleeper Sleeper, random_source Random>
struct environment_clock<basic_environment<Clock, Sleeper, Random>> {
  static const Clock& of(const basic_environment<Clock, Sleeper, Random>& e) noexcept {
    return e.clock;
  }
};

template <random_source Random>
struct environment_clock<testing::basic_virtual_environment<Random>> {
  static decltype(auto) of(const testing::basic_virtual_environment<Random>& e) noexcept {
    return e.clock();
  }
};

/// A clock with state, copied once onto the heap and shared by a context and
/// its copies (reference-counted), so that none of them refers to the policy.
struct kept_clock {
  std::atomic<long> refs{1};
  void (*destroy)(kept_clock*) noexcept;
};

template <class C>
struct kept_clock_of final : kept_clock {
  C clock;
  explicit kept_clock_of(const C& c) : kept_clock{{1}, &free}, clock(c) {}

  /// A new copy of `c`, or null when it cannot be made (out of memory, or the
  /// clock's copy threw).
  static kept_clock_of* make(const C& c) noexcept {
    return call_or<kept_clock_of*>(nullptr, [&] { return new (std::nothrow) kept_clock_of(c); });
  }
  static time_point read(const void* k) {
    return time_point(
        static_cast<const kept_clock_of*>(static_cast<const kept_clock*>(k))->clock.now());
  }
  static void free(kept_clock* k) noexcept { delete static_cast<kept_clock_of*>(k); }
};

/// The clock through which context::now() reads the time: the clock that set
/// the deadline, owned by the context, so that a context may outlive the
/// policy (and the pipeline) that set it. An empty clock (keel::steady_clock,
/// the default environment) is made afresh at each read and costs nothing; a
/// clock with state is copied once onto the heap and shared by the copies.
class clock_ref {
 public:
  clock_ref() noexcept = default;
  clock_ref(const clock_ref& other) noexcept : read_(other.read_), kept_(other.kept_) {
    if (kept_ != nullptr) kept_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  clock_ref& operator=(const clock_ref& other) noexcept {
    clock_ref copy(other);  // first: `other` may be *this
    release();
    read_ = copy.read_;
    kept_ = std::exchange(copy.kept_, nullptr);
    return *this;
  }
  ~clock_ref() { release(); }

  clock_ref(clock_ref&& other) noexcept
      : read_(std::exchange(other.read_, nullptr)), kept_(std::exchange(other.kept_, nullptr)) {}
  clock_ref& operator=(clock_ref&& other) noexcept {
    if (this != &other) {
      release();
      read_ = std::exchange(other.read_, nullptr);
      kept_ = std::exchange(other.kept_, nullptr);
    }
    return *this;
  }

  /// Reads the clock of environment (or clock) `e`: the clock member of a
  /// keel::basic_environment or keel::testing::virtual_environment, otherwise
  /// `e` itself.
  template <class E>
  static clock_ref to(const E& e) noexcept {
    clock_ref r;
    if constexpr (std::is_empty_v<E> && std::is_default_constructible_v<E>) {
      r.read_ = [](const void*) { return time_point(E{}.now()); };
    } else if constexpr (requires { environment_clock<E>::of(e); }) {
      return to(environment_clock<E>::of(e));
    } else {
      static_assert(std::is_copy_constructible_v<E>, "a clock must be copyable");
      if (kept_clock_of<E>* kept = kept_clock_of<E>::make(e)) {
        r.read_ = &kept_clock_of<E>::read;
        r.kept_ = kept;
      } else {
        // No copy: no clock to read, so the deadline counts as passed. The
        // call learns it at once, and nothing refers to the policy.
        r.read_ = [](const void*) { return time_point::max(); };
      }
    }
    return r;
  }

  time_point now() const {
    if (read_ != nullptr) return read_(kept_);
    return std::chrono::time_point_cast<duration>(std::chrono::steady_clock::now());
  }

 private:
  // Out of line, and given the block rather than `this`: the destructor stays
  // small enough to inline everywhere, and a context that keeps no clock never
  // has its address taken, so the optimizer can still drop it entirely.
  KEEL_DETAIL_NOINLINE static void drop(kept_clock* kept) noexcept {
    if (kept->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) kept->destroy(kept);
  }
  void release() noexcept {
    if (kept_ != nullptr) drop(kept_);
    kept_ = nullptr;
  }

  time_point (*read_)(const void*) = nullptr;  // reads kept_; null: std::chrono::steady_clock
  kept_clock* kept_ = nullptr;                 // the shared copy of a clock with state, if any
};

}  // namespace detail

/// What a guarded call knows about itself. A callable receives it when it takes
/// `const keel::context&` as its first parameter. Policies refine it on the way
/// in: retry sets the attempt, timeout tightens the deadline and the stop token,
/// a replica pool sets the target. Per-call slots (target, tried set,
/// operation name, a user value) live inside it: no allocation, and a copy
/// refers to nothing the call owns.
class context {
 public:
  /// A context with no deadline and a stop token that can never be triggered.
  context() = default;
  // Inlined even on exception paths: an out-of-line call would take the
  // context's address, and every call would then build it in memory.
  [[gnu::always_inline]] ~context() = default;
  context(const context& other)
      : deadline_(other.deadline_),
        attempt_(other.attempt_),
        clock_(other.clock_),
        stop_token_(other.stop_token_) {
    if (other.used_ != 0) [[unlikely]]
      copy_slots(other);
  }
  context(context&& other) noexcept
      : deadline_(other.deadline_),
        attempt_(other.attempt_),
        clock_(std::move(other.clock_)),
        stop_token_(std::move(other.stop_token_)) {
    if (other.used_ != 0) [[unlikely]]
      copy_slots(other);
  }
  context& operator=(const context& other) {
    if (this != &other) {
      attempt_ = other.attempt_;
      deadline_ = other.deadline_;
      clock_ = other.clock_;
      stop_token_ = other.stop_token_;
      used_ = 0;
      if (other.used_ != 0) [[unlikely]]
        copy_slots(other);
    }
    return *this;
  }
  context& operator=(context&& other) noexcept {
    if (this != &other) {
      attempt_ = other.attempt_;
      deadline_ = other.deadline_;
      clock_ = std::move(other.clock_);
      stop_token_ = std::move(other.stop_token_);
      used_ = 0;
      if (other.used_ != 0) [[unlikely]]
        copy_slots(other);
    }
    return *this;
  }

  /// A context whose stop token is the caller's.
  explicit context(std::stop_token token) noexcept : stop_token_(std::move(token)) {}

  /// 1-based number of this attempt in the innermost retry (1 without retry).
  int attempt() const noexcept { return attempt_; }

  /// When the call must be done; keel::no_deadline when there is none.
  time_point deadline() const noexcept { return deadline_; }
  bool has_deadline() const noexcept { return deadline_ != no_deadline; }

  /// The current time on the clock of the policy that set the deadline
  /// (std::chrono::steady_clock when none did).
  time_point now() const { return clock_.now(); }

  /// Time left until the deadline: zero once it has passed, duration::max()
  /// without one. Pass it to a socket or HTTP client timeout.
  duration remaining() const {
    if (!has_deadline()) return duration::max();
    return detail::time_until(now(), deadline_);
  }

  /// True when the deadline has passed.
  bool expired() const { return has_deadline() && now() >= deadline_; }

  /// The endpoint a replica pool chose for this attempt; empty outside a pool.
  /// The callable reads it as `ctx.target().get<Endpoint>()`.
  keel::target target() const noexcept {
    return (used_ & target_bit) != 0 ? target_.value : keel::target();
  }

  /// The endpoints this call has tried so far, across its retries (indexes).
  tried_set tried() const noexcept {
    // First, one test: a pool's tried().empty() then costs that much even
    // where the compiler cannot see that the context is fresh.
    if ((used_ & (tried_bit | target_tried_bit)) == 0) return tried_set();
    tried_set t = (used_ & tried_bit) != 0 ? tried_.value : tried_set();
    if ((used_ & target_tried_bit) != 0) t.insert(target_.value.index());
    return t;
  }
  /// True when endpoint `index` is in tried(): one test when nothing was tried.
  bool was_tried(std::size_t index) const noexcept {
    if ((used_ & (tried_bit | target_tried_bit)) == 0) return false;
    return ((used_ & tried_bit) != 0 && tried_.value.contains(index)) ||
           ((used_ & target_tried_bit) != 0 &&
            detail::same_tried_bit(target_.value.index(), index));
  }

  /// The operation's name, for metrics and logs ("" unless set): at most
  /// short_name::capacity bytes (cut at a UTF-8 boundary), kept inside the context.
  std::string_view operation() const noexcept {
    return (used_ & operation_bit) != 0 ? operation_.value.view() : std::string_view();
  }

  /// The caller's own small value, when it is a T (see set_user_value).
  template <small_value T>
  std::optional<T> user_value() const noexcept {
    if ((used_ & user_bit) == 0) return std::nullopt;
    return user_.value.template get<T>();
  }

  /// Triggered when the caller or a timeout asks the call to stop.
  const std::stop_token& stop_token() const noexcept { return stop_token_; }
  bool stop_requested() const noexcept { return stop_token_.stop_requested(); }

  // --- for policies ---------------------------------------------------------

  /// Sets the attempt number (retry).
  void set_attempt(int attempt) noexcept { attempt_ = attempt; }

  /// Moves the deadline earlier (never later), read with `clock` (a clock or
  /// an environment) from now on. The context keeps that clock (the clock
  /// member of a keel::basic_environment or virtual_environment), so it and its
  /// copies may outlive the policy that set the deadline: an empty clock costs
  /// nothing, one with state (a manual_clock) is copied once onto the heap. If
  /// that copy fails (out of memory), the deadline counts as passed: now() is
  /// time_point::max(), expired() true.
  template <class Clock>
  void tighten_deadline(time_point deadline, const Clock& clock) noexcept {
    if (deadline < deadline_) {
      deadline_ = deadline;
      clock_ = detail::clock_ref::to(clock);
    }
  }

  /// Replaces the stop token (a timeout hands its own, linked to the caller's).
  void set_stop_token(std::stop_token token) noexcept { stop_token_ = std::move(token); }

  /// Sets the endpoint of this attempt (a replica pool) and marks it tried.
  void set_target(const keel::target& t) noexcept {
    // A replica pool does this on every call: the target counts as tried
    // through a bit (the set is written only when a later target replaces
    // it), built straight from t, and one store of used_.
    if ((used_ & target_tried_bit) != 0) [[unlikely]]
      keep_target_tried();
    std::construct_at(&target_.value, t);
    used_ |= t.has_value() ? target_bit | target_tried_bit : target_bit;
  }
  /// Empties the target; the tried set keeps it.
  void clear_target() noexcept {
    if ((used_ & target_tried_bit) != 0) keep_target_tried();
    used_ &= ~target_bit;
  }
  /// Marks endpoint `index` as tried without choosing it.
  void mark_tried(std::size_t index) noexcept { slot(tried_, tried_bit).insert(index); }
  /// Forgets every endpoint tried (a new call reusing this context).
  void clear_tried() noexcept { used_ &= ~(tried_bit | target_tried_bit); }

  /// Takes the per-call slots of `inner`, a copy of this context that a
  /// policy handed to the layers inside it (a timeout does, to tighten the
  /// deadline): what they set there (a target, tried endpoints) reaches the
  /// layers outside. Deadline, stop token and attempt stay as they are.
  void take_slots(const context& inner) noexcept {
    if (&inner == this) return;
    used_ = 0;
    if (inner.used_ != 0) [[unlikely]]
      copy_slots(inner);
  }

  /// Names the operation (cut to short_name::capacity bytes at a UTF-8 boundary).
  void set_operation(std::string_view name) noexcept { slot(operation_, operation_bit) = name; }

  /// Keeps a caller's small value (trivially copyable, at most
  /// user_slot::capacity bytes) for the callable and the policies to read.
  template <small_value T>
  void set_user_value(const T& value) noexcept {
    slot(user_, user_bit).set(value);
  }

 private:
  // The per-call slots are built on first use, and each is read only when
  // its bit is set: a context that never uses them costs one byte store to
  // make and one test to copy.
  template <class T>
  union lazy {
    static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>);
    lazy() noexcept {}  // NOLINT: left unbuilt on purpose
    T value;
  };
  // target_tried_bit: the target's index is in tried() too, without being in
  // tried_ (set only with target_bit).
  static constexpr unsigned target_bit = 1, tried_bit = 2, operation_bit = 4, user_bit = 8,
                            target_tried_bit = 16;

  template <class T>
  T& slot(lazy<T>& l, unsigned bit) noexcept {
    if ((used_ & bit) == 0) {
      std::construct_at(&l.value);
      used_ |= bit;
    }
    return l.value;
  }
  // Writes the target's index into the tried set, before the target changes.
  void keep_target_tried() noexcept {
    const std::size_t index = target_.value.index();
    slot(tried_, tried_bit).insert(index);
    used_ &= ~target_tried_bit;
  }
  void copy_slots(const context& other) noexcept {
    if ((other.used_ & target_bit) != 0) std::construct_at(&target_.value, other.target_.value);
    if ((other.used_ & tried_bit) != 0) std::construct_at(&tried_.value, other.tried_.value);
    if ((other.used_ & operation_bit) != 0)
      std::construct_at(&operation_.value, other.operation_.value);
    if ((other.used_ & user_bit) != 0) std::construct_at(&user_.value, other.user_.value);
    used_ = other.used_;
  }

  time_point deadline_ = no_deadline;
  int attempt_ = 1;
  unsigned used_ = 0;  // which slots are built; with attempt_, one 8-byte store
  detail::clock_ref clock_{};
  std::stop_token stop_token_{};
  lazy<keel::target> target_;
  lazy<tried_set> tried_;
  lazy<short_name> operation_;
  lazy<user_slot> user_;
};

}  // namespace keel

#endif  // KEEL_CORE_CONTEXT_HPP_INCLUDED

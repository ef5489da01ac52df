// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_DETAIL_THREAD_IDENTITY_HPP_INCLUDED
#define KEEL_DETAIL_THREAD_IDENTITY_HPP_INCLUDED

// Who the calling thread is, for the structures striped per thread (a
// breaker's windows, the throttle's rings, a pool's pins): a unique id that
// decides who may write a stripe, numbers that pick one, and the hand-back
// of what a thread owned when it ends.

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "keel/detail/algorithm.hpp"
#include "keel/detail/config.hpp"

namespace keel::detail {

/// The most stripes a striped structure gets.
inline constexpr unsigned max_stripes = 8;

/// How many stripes a striped structure gets: one per hardware thread, at
/// most max_stripes, a power of two.
inline std::size_t stripe_count() noexcept {
  return std::bit_ceil(detail::clamp(std::thread::hardware_concurrency(), 1u, max_stripes));
}

/// Who the calling thread is, set on its first call. `id` is the address of
/// a thread_local object: never zero, and no two live threads share it, even
/// where each shared library has its own copy of this inline function and of
/// its statics (built with -fvisibility=hidden). `spread` numbers the threads
/// 1, 2, 3... to spread them over stripes; each such copy counts on its own,
/// so it only picks a stripe, never decides who writes one. `stripe` is the
/// thread's stripe hint (see this_thread_stripe), kept here so that a time
/// window finds both with one thread-local access. `small` is the lowest
/// number no live thread held when it was given (number_this_thread; 0:
/// none yet), given back when the thread ends: threads that come and go keep
/// reusing the first stripes.
struct thread_identity {
  std::uint64_t id = 0;
  unsigned spread = 0;
  unsigned stripe = 0;
  unsigned small = 0;
};

/// Numbers for live threads, lowest first, from 1: 1024 of them, then
/// 1025 + spread % 1024 (a thread's number only picks a stripe, so a shared
/// one costs speed only).
class small_numbers {
 public:
  static constexpr unsigned count = 1024;

  unsigned take(unsigned spread) noexcept {
    for (unsigned w = 0; w < words; ++w) {
      std::uint64_t used = used_[w].load(std::memory_order_relaxed);
      while (used != ~std::uint64_t{0}) {
        const unsigned bit = static_cast<unsigned>(std::countr_one(used));
        if (used_[w].compare_exchange_weak(used, used | (std::uint64_t{1} << bit),
                                           std::memory_order_relaxed))
          return w * 64 + bit + 1;
      }
    }
    return count + 1 + spread % count;
  }
  void give_back(unsigned n) noexcept {
    if (n == 0 || n > count) return;  // none, or past the range: not taken
    --n;
    used_[n / 64].fetch_and(~(std::uint64_t{1} << (n % 64)), std::memory_order_relaxed);
  }

 private:
  static constexpr unsigned words = count / 64;
  std::atomic<std::uint64_t> used_[words] = {};
};

inline small_numbers& thread_numbers() noexcept {
  static small_numbers numbers;  // constant-initialized: no guard
  return numbers;
}

/// What a thread gives back when it ends: its small number, and the stripes
/// it claimed through claim_stripe() (those whose holder still lives).
class thread_exit {
 public:
  thread_exit() = default;
  thread_exit(const thread_exit&) = delete;
  thread_exit& operator=(const thread_exit&) = delete;
  ~thread_exit();

  /// Keeps `owner` to give back: in place while a few are held (no
  /// allocation), else in `more` (which may throw std::bad_alloc).
  void keep(const std::shared_ptr<std::atomic<std::uint64_t>>& owner) {
    for (auto& l : leases)
      if (l.expired()) {
        l = owner;
        return;
      }
    std::erase_if(more, [](const auto& l) { return l.expired(); });
    more.emplace_back(owner);
  }

  unsigned small = 0;  // none yet
  std::weak_ptr<std::atomic<std::uint64_t>> leases[8];
  std::vector<std::weak_ptr<std::atomic<std::uint64_t>>> more;
};

/// Whether the calling thread's thread_exit has run (trivial: readable to the end).
inline bool& thread_exit_done() noexcept {
  thread_local bool done = false;
  return done;
}

/// The calling thread's thread_exit, built on first use; null once it ran
/// (a thread_local destructor of the user's may still call keel).
inline thread_exit* this_thread_exit() noexcept {
  if (thread_exit_done()) return nullptr;
  thread_local thread_exit hooks;
  return &hooks;
}

inline thread_exit::~thread_exit() {
  // A stripe's last writes (release stores, or this store's release) come
  // before its next owner's claim (an acquire CAS): its counts pass whole.
  const auto give_back = [](const std::weak_ptr<std::atomic<std::uint64_t>>& lease) {
    if (const auto owner = lease.lock()) owner->store(0, std::memory_order_release);
  };
  for (const auto& lease : leases) give_back(lease);
  for (const auto& lease : more) give_back(lease);
  thread_numbers().give_back(small);
  thread_exit_done() = true;
}

/// this_thread_identity(), writable: only this_thread_stripe() writes (its
/// hint), and number_this_thread() (its small number).
inline thread_identity& this_thread_record() noexcept {
  static std::atomic<unsigned> next{1};
  thread_local thread_identity mine;  // constant-initialized: no TLS guard per call
  if (mine.id == 0) [[unlikely]] {
    mine.id = reinterpret_cast<std::uintptr_t>(&mine);
    mine.spread = next.fetch_add(1, std::memory_order_relaxed);
    // The stripe hint's range (see next_stripe_hint).
    mine.stripe = (mine.spread & 0xffu) | 0x100u;
  }
  return mine;
}

/// Gives the calling thread its small number, if it has none yet (its
/// thread_exit gives it back). Out of line: once per thread, off the paths
/// that only read the number.
KEEL_DETAIL_NOINLINE inline unsigned number_this_thread() noexcept {
  thread_identity& mine = this_thread_record();
  if (mine.small != 0) return mine.small;
  thread_exit* hooks = this_thread_exit();
  mine.small = hooks != nullptr ? thread_numbers().take(mine.spread)
                                : small_numbers::count + 1 + mine.spread % small_numbers::count;
  if (hooks != nullptr) hooks->small = mine.small;
  return mine.small;
}

inline const thread_identity& this_thread_identity() noexcept { return this_thread_record(); }

/// Whether thread `me` (a thread_identity id) owns the stripe whose owner is
/// `owner`, claiming it when nobody does yet. An owner is never replaced.
inline bool owns(std::atomic<std::uint64_t>& owner, std::uint64_t me) noexcept {
  std::uint64_t o = owner.load(std::memory_order_relaxed);
  return o == me || (o == 0 && owner.compare_exchange_strong(o, me, std::memory_order_relaxed));
}

/// Claims the stripe whose owner is `*owner` for thread `me` when nobody
/// owns it, until the thread ends (then it is free again, unless what holds
/// it, `owner`'s owner, ended first). False when another thread owns it, or
/// when the calling thread is ending. The claim (acquire) sees every write
/// of the stripe's previous owners.
inline bool claim_stripe(const std::shared_ptr<std::atomic<std::uint64_t>>& owner,
                         std::uint64_t me) noexcept {
  std::uint64_t o = owner->load(std::memory_order_acquire);
  if (o == me) return true;
  if (o != 0) return false;
  thread_exit* hooks = this_thread_exit();
  if (hooks == nullptr) return false;
  if (!owner->compare_exchange_strong(o, me, std::memory_order_acquire, std::memory_order_relaxed))
    return o == me;
#if KEEL_HAS_EXCEPTIONS
  try {
#endif
    hooks->keep(owner);
#if KEEL_HAS_EXCEPTIONS
  } catch (...) {
    owner->store(0, std::memory_order_release);  // not kept: not claimed
    return false;
  }
#endif
  return true;
}

/// Adds one to a count only its owner writes: a plain load and store.
inline void add_as_owner(std::atomic<std::uint64_t>& c) noexcept {
  c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

/// Stripe hints live in [0x100, 0x1ff]: never zero (zero means "not set
/// yet"), and moving on never wraps (-fsanitize=integer would report it),
/// while their low bits still cycle through every stripe (at most 8 of them).
constexpr unsigned next_stripe_hint(unsigned hint) noexcept {
  return ((hint + 1) & 0xffu) | 0x100u;
}

/// The calling thread's stripe, as a hint the window reduces modulo its
/// stripe count: the thread's spread at first, and moved on when the thread
/// finds another one writing the same stripe (Java's LongAdder does the
/// same), so that threads running together settle on different stripes.
inline unsigned& this_thread_stripe() noexcept { return this_thread_record().stripe; }

}  // namespace keel::detail

#endif  // KEEL_DETAIL_THREAD_IDENTITY_HPP_INCLUDED

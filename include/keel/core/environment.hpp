// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_ENVIRONMENT_HPP_INCLUDED
#define KEEL_CORE_ENVIRONMENT_HPP_INCLUDED

#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <stop_token>
#include <thread>
#include <type_traits>

#include "keel/core/time.hpp"
#include "keel/detail/algorithm.hpp"
#include "keel/detail/config.hpp"

namespace keel {

/// Something that tells the time: `now()` returns a keel::time_point.
template <class C>
concept clock = requires(const C& c) {
  { c.now() } -> std::convertible_to<time_point>;
};

/// Something that waits: `sleep_for(d, token)` returns true after sleeping d,
/// false as soon as the stop token is triggered (it must wake up at once).
template <class S>
concept sleeper = requires(const S& s, duration d, std::stop_token token) {
  { s.sleep_for(d, token) } -> std::same_as<bool>;
};

/// A source of uniform random numbers: `uniform()` returns a double in [0, 1).
/// Must be safe to call from several threads at once.
template <class R>
concept random_source = requires(const R& r) {
  { r.uniform() } -> std::same_as<double>;
};

/// The one object through which a policy reads time, sleeps and draws random
/// numbers; inject keel::testing::virtual_environment for deterministic tests.
template <class E>
concept environment = clock<E> && sleeper<E> && random_source<E>;

/// std::chrono::steady_clock as a keel clock.
struct steady_clock {
  time_point now() const noexcept {
    return std::chrono::time_point_cast<duration>(std::chrono::steady_clock::now());
  }
};

namespace detail {

/// `now + d` (d >= 0) on the clock's own time line, clamped to its last time
/// point: a delay of duration::max() means "until stopped", never an overflow.
template <class Clock>
constexpr typename Clock::time_point wake_time(typename Clock::time_point now,
                                               duration d) noexcept {
  static_assert(std::is_same_v<typename Clock::duration, duration>,
                "keel assumes a nanosecond steady clock");
  return typename Clock::time_point{saturating_add(now.time_since_epoch(), d)};
}

/// The longest single wait of thread_sleeper: a far wake time is waited for in
/// steps, so no standard library converts a huge time point to another clock.
inline constexpr duration longest_sleep_step = std::chrono::hours(1);

}  // namespace detail

/// Sleeps the calling thread; a stop request wakes it at once. Any delay up to
/// duration::max() is honoured (the wake time saturates).
struct thread_sleeper {
  bool sleep_for(duration d, const std::stop_token& token) const {
    using std::chrono::steady_clock;
    if (token.stop_requested()) return false;
    if (d <= duration::zero()) return true;
    const steady_clock::time_point wake = detail::wake_time<steady_clock>(steady_clock::now(), d);
    if (!token.stop_possible()) {
      for (auto now = steady_clock::now(); now < wake; now = steady_clock::now()) {
        std::this_thread::sleep_for(detail::min<duration>(wake - now, detail::longest_sleep_step));
      }
      return true;
    }
    std::mutex mutex;
    std::condition_variable_any wake_up;
    std::unique_lock lock(mutex);
    for (auto now = steady_clock::now(); now < wake; now = steady_clock::now()) {
      // now + step <= wake: never overflows.
      const auto step_end = now + detail::min<duration>(wake - now, detail::longest_sleep_step);
      wake_up.wait_until(lock, token, step_end, [] { return false; });
      if (token.stop_requested()) return false;
    }
    return !token.stop_requested();
  }
};

namespace detail {

// The generators below wrap around modulo 2^64 on purpose.

KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP inline std::uint64_t splitmix64(
    std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// The top 53 bits of x as a double in [0, 1).
inline double unit_interval(std::uint64_t x) noexcept {
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}

/// A random source's draw clamped into [0, 1]: a broken source (NaN, out of
/// range) cannot push a policy's arithmetic out of its bounds.
inline double clamp_draw(double u) noexcept { return u > 0.0 ? (u < 1.0 ? u : 1.0) : 0.0; }

/// xoshiro256+ (Blackman and Vigna): small, fast, and good in its high bits,
/// which are the only ones unit_interval() uses.
class xoshiro256plus {
 public:
  explicit xoshiro256plus(std::uint64_t seed) noexcept {
    for (auto& word : s_) word = splitmix64(seed);
  }
  KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP std::uint64_t next() noexcept {
    const std::uint64_t result = s_[0] + s_[3];
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = (s_[3] << 45) | (s_[3] >> 19);
    return result;
  }

 private:
  std::uint64_t s_[4];
};

/// One generator per thread, seeded once from the time, the thread's address
/// space and a process-wide counter: never a std::random_device per call.
KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP inline xoshiro256plus& thread_generator() noexcept {
  static std::atomic<std::uint64_t> threads{0};
  thread_local const char marker = 0;
  thread_local xoshiro256plus generator(
      static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
      (static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(&marker)) << 1) ^
      (threads.fetch_add(1, std::memory_order_relaxed) * 0x9e3779b97f4a7c15ULL));
  return generator;
}

}  // namespace detail

/// Uniform doubles from a per-thread xoshiro256+ generator, seeded once per thread.
struct thread_local_random {
  double uniform() const noexcept {
    return detail::unit_interval(detail::thread_generator().next());
  }
};

/// A clock, a sleeper and a random source bundled as one environment.
/// Empty members take no space, so the default environment costs nothing.
template <clock Clock = steady_clock, sleeper Sleeper = thread_sleeper,
          random_source Random = thread_local_random>
struct basic_environment {
  [[no_unique_address]] Clock clock{};
  [[no_unique_address]] Sleeper sleeper{};
  [[no_unique_address]] Random random{};

  time_point now() const { return clock.now(); }
  bool sleep_for(duration d, const std::stop_token& token) const {
    return sleeper.sleep_for(d, token);
  }
  double uniform() const { return random.uniform(); }
};

/// The real thing: steady_clock, a thread sleep that honours stop tokens, and
/// per-thread random numbers.
using default_environment = basic_environment<>;

}  // namespace keel

#endif  // KEEL_CORE_ENVIRONMENT_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_TIMEOUT_WATCHDOG_HPP_INCLUDED
#define KEEL_TIMEOUT_WATCHDOG_HPP_INCLUDED

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <stop_token>
#include <thread>
#include <utility>

#include "keel/core/environment.hpp"
#include "keel/core/time.hpp"

namespace keel {

/// Whether a watchdog runs its own thread or is polled by hand.
enum class watchdog_thread : unsigned char {
  start,   ///< start the thread in the constructor (the default)
  manual,  ///< no thread until start(); call poll() yourself (tests, virtual time)
};

/// Requests stop on the stop tokens of calls whose deadline has passed, so
/// that a callable blocked in a stop-token-aware wait (condition_variable_any,
/// a sleep through keel's environment, your own I/O loop) wakes up. Owned by
/// the user: one thread, started by the constructor (or start()) and joined by
/// stop() or the destructor; never a global. Attach it to timeouts with
/// `timeout.with_watchdog(w)`; it must outlive them. keel never kills or
/// abandons a thread: a callable that ignores its stop token runs to the end.
template <environment Env = default_environment>
class basic_watchdog {
 public:
  /// A watchdog reading time from `env`; its thread starts now unless `mode` is manual.
  explicit basic_watchdog(Env env = Env(), watchdog_thread mode = watchdog_thread::start)
      : env_(std::move(env)) {
    if (mode == watchdog_thread::start) start();
  }

  basic_watchdog(const basic_watchdog&) = delete;
  basic_watchdog& operator=(const basic_watchdog&) = delete;

  /// Stops and joins the thread.
  ~basic_watchdog() { stop(); }

  /// Starts the thread (no effect if it runs).
  void start() {
    std::lock_guard lock(control_);
    if (thread_.joinable()) return;
    thread_ = std::jthread([this](std::stop_token st) { loop(st); });
  }

  /// Stops and joins the thread (no effect if it does not run). Registered
  /// deadlines stay; poll() still fires them.
  void stop() noexcept {
    std::lock_guard lock(control_);
    if (!thread_.joinable()) return;
    thread_.request_stop();
    thread_.join();
  }

  /// True while the thread runs.
  bool running() const noexcept {
    std::lock_guard lock(control_);
    return thread_.joinable();
  }

  /// A registration: while it lives, `source` is asked to stop once the
  /// watchdog's clock reaches the deadline. Its destructor unregisters it.
  class ticket {
   public:
    ticket(const ticket&) = delete;
    ticket& operator=(const ticket&) = delete;
    ~ticket() { owner_->disarm(deadline_, id_); }

   private:
    friend class basic_watchdog;
    ticket(basic_watchdog* owner, time_point deadline, std::uint64_t id) noexcept
        : owner_(owner), deadline_(deadline), id_(id) {}
    basic_watchdog* owner_;
    time_point deadline_;
    std::uint64_t id_;
  };

  /// Registers `source` to be stopped at `deadline`. Allocates (may throw std::bad_alloc).
  [[nodiscard]] ticket arm(time_point deadline, std::stop_source source) {
    std::uint64_t id = 0;
    {
      std::lock_guard lock(mutex_);
      id = ++last_id_;
      const bool earliest = due_.empty() || deadline < due_.begin()->first;
      due_.emplace(deadline, armed{id, std::move(source)});
      if (earliest) changed_ = true;
    }
    wake_.notify_one();
    return ticket(this, deadline, id);
  }

  /// Requests stop for every registration whose deadline has been reached
  /// (clock >= deadline); returns how many. The thread calls it; tests call
  /// it directly with a virtual environment.
  std::size_t poll() {
    std::size_t fired = 0;
    for (;;) {
      std::stop_source source(std::nostopstate);  // empty: allocates nothing
      {
        std::lock_guard lock(mutex_);
        if (due_.empty() || due_.begin()->first > env_.now()) break;
        source = std::move(due_.begin()->second.source);
        due_.erase(due_.begin());
      }
      // Counted before the stop is requested: a call woken by this stop
      // (request_stop synchronizes with the stop_requested() that sees it)
      // then finds itself in fired().
      fired_.fetch_add(1, std::memory_order_relaxed);
      // Outside the lock: request_stop runs the callbacks of whoever waits on the token.
      source.request_stop();
      ++fired;
    }
    return fired;
  }

  /// Registrations waiting for their deadline.
  std::size_t pending() const {
    std::lock_guard lock(mutex_);
    return due_.size();
  }

  /// Stop requests made so far. A call woken by one of them already sees it
  /// counted here.
  std::uint64_t fired() const noexcept { return fired_.load(std::memory_order_relaxed); }

  /// The environment whose clock decides when a deadline has passed.
  const Env& env() const noexcept { return env_; }

 private:
  struct armed {
    std::uint64_t id;
    std::stop_source source;
  };

  void disarm(time_point deadline, std::uint64_t id) noexcept {
    std::lock_guard lock(mutex_);
    auto [first, last] = due_.equal_range(deadline);
    for (auto it = first; it != last; ++it) {
      if (it->second.id == id) {
        due_.erase(it);
        return;
      }
    }
  }

  // The thread sleeps until the earliest deadline (as read on the environment's
  // clock, waited in real time) or until a new earliest one is registered.
  void loop(const std::stop_token& st) {
    // Bounds one wait, so that a huge gap never overflows the condition
    // variable's clock arithmetic, and a non-steady environment is re-read.
    constexpr duration longest_wait = std::chrono::seconds(1);
    while (!st.stop_requested()) {
      poll();
      std::unique_lock lock(mutex_);
      duration gap = longest_wait;
      if (!due_.empty()) {
        const duration left = detail::time_until(env_.now(), due_.begin()->first);
        if (left < gap) gap = left;
      }
      if (gap > duration::zero()) wake_.wait_for(lock, st, gap, [this] { return changed_; });
      changed_ = false;
    }
  }

  [[no_unique_address]] Env env_;
  mutable std::mutex mutex_;  // guards due_, last_id_, changed_
  std::condition_variable_any wake_;
  std::multimap<time_point, armed> due_;
  std::uint64_t last_id_ = 0;
  bool changed_ = false;
  std::atomic<std::uint64_t> fired_{0};
  mutable std::mutex control_;  // guards thread_ (start/stop)
  std::jthread thread_;         // last: joined before the members it uses are destroyed
};

/// The usual watchdog: steady_clock time, its own thread.
using watchdog = basic_watchdog<>;

}  // namespace keel

#endif  // KEEL_TIMEOUT_WATCHDOG_HPP_INCLUDED

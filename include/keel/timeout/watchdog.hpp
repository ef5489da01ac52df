// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_TIMEOUT_WATCHDOG_HPP_INCLUDED
#define KEEL_TIMEOUT_WATCHDOG_HPP_INCLUDED

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
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
/// A stop callback that the thread runs may call stop() or destroy the watchdog.
template <environment Env = default_environment>
class basic_watchdog {
  struct shared;

 public:
  /// A watchdog reading time from `env`; its thread starts now unless `mode` is manual.
  explicit basic_watchdog(Env env = Env(), watchdog_thread mode = watchdog_thread::start)
      : state_(std::make_shared<shared>(std::move(env))) {
    if (mode == watchdog_thread::start) start();
  }

  basic_watchdog(const basic_watchdog&) = delete;
  basic_watchdog& operator=(const basic_watchdog&) = delete;

  /// Stops and joins the thread, as stop() does.
  ~basic_watchdog() { stop(); }

  /// Starts the thread (no effect if it runs).
  void start() {
    std::lock_guard lock(control_);
    if (thread_.joinable()) return;
    std::stop_source stop;
    // The thread holds the shared state, not `this`: it may outlive the object
    // when the object is destroyed from a stop callback on that very thread.
    thread_ = std::thread([state = state_, token = stop.get_token()] { state->loop(token); });
    stop_ = std::move(stop);
  }

  /// Stops and joins the thread (no effect if it does not run). Registered
  /// deadlines stay; poll() still fires them. Called from a stop callback that
  /// the watchdog's own thread runs, it cannot wait for itself: the thread
  /// then ends on its own as soon as the callback returns.
  void stop() noexcept {
    std::thread finished;
    {
      std::lock_guard lock(control_);
      if (!thread_.joinable()) return;
      stop_.request_stop();
      finished = std::move(thread_);
    }
    // Joined outside the lock, so that a callback on the thread may call start(),
    // stop() or running() meanwhile without waiting for this join.
    if (finished.get_id() == std::this_thread::get_id()) {
      finished.detach();  // it holds the shared state, which outlives this object if need be
    } else {
      finished.join();
    }
  }

  /// True while the thread runs (false as soon as stop() was called).
  bool running() const noexcept {
    std::lock_guard lock(control_);
    return thread_.joinable();
  }

  /// A registration: while it lives, `source` is asked to stop once the
  /// watchdog's clock reaches the deadline. Its destructor unregisters it; it
  /// keeps the registrations alive, so it may outlive the watchdog.
  class ticket {
   public:
    ticket(const ticket&) = delete;
    ticket& operator=(const ticket&) = delete;
    ~ticket() { state_->disarm(deadline_, id_); }

   private:
    friend class basic_watchdog;
    ticket(std::shared_ptr<shared> state, time_point deadline, std::uint64_t id) noexcept
        : state_(std::move(state)), deadline_(deadline), id_(id) {}
    std::shared_ptr<shared> state_;
    time_point deadline_;
    std::uint64_t id_;
  };

  /// Registers `source` to be stopped at `deadline`. Allocates (may throw std::bad_alloc).
  [[nodiscard]] ticket arm(time_point deadline, std::stop_source source) {
    const std::uint64_t id = state_->arm(deadline, std::move(source));
    return ticket(state_, deadline, id);
  }

  /// Requests stop for every registration whose deadline has been reached
  /// (clock >= deadline); returns how many. The thread calls it; tests call
  /// it directly with a virtual environment.
  std::size_t poll() {
    // A stop callback may destroy this watchdog: the state must outlive the loop.
    const std::shared_ptr<shared> state = state_;
    return state->poll();
  }

  /// Registrations waiting for their deadline.
  std::size_t pending() const {
    std::lock_guard lock(state_->mutex);
    return state_->due.size();
  }

  /// Stop requests made so far. A call woken by one of them already sees it
  /// counted here.
  std::uint64_t fired() const noexcept { return state_->fired.load(std::memory_order_relaxed); }

  /// The environment whose clock decides when a deadline has passed.
  const Env& env() const noexcept { return state_->env; }

 private:
  struct armed {
    std::uint64_t id;
    std::stop_source source;
  };

  // What the thread and the tickets use, shared with them: neither touches the
  // watchdog object itself.
  struct shared {
    explicit shared(Env e) : env(std::move(e)) {}

    std::uint64_t arm(time_point deadline, std::stop_source source) {
      std::uint64_t id = 0;
      {
        std::lock_guard lock(mutex);
        id = ++last_id;
        const bool earliest = due.empty() || deadline < due.begin()->first;
        due.emplace(deadline, armed{id, std::move(source)});
        if (earliest) changed = true;
      }
      wake.notify_one();
      return id;
    }

    void disarm(time_point deadline, std::uint64_t id) noexcept {
      std::lock_guard lock(mutex);
      auto [first, last] = due.equal_range(deadline);
      for (auto it = first; it != last; ++it) {
        if (it->second.id == id) {
          due.erase(it);
          return;
        }
      }
    }

    std::size_t poll() {
      std::size_t count = 0;
      for (;;) {
        std::stop_source source(std::nostopstate);  // empty: allocates nothing
        {
          std::lock_guard lock(mutex);
          if (due.empty() || due.begin()->first > env.now()) break;
          source = std::move(due.begin()->second.source);
          due.erase(due.begin());
        }
        // Counted before the stop is requested: a call woken by this stop
        // (request_stop synchronizes with the stop_requested() that sees it)
        // then finds itself in fired().
        fired.fetch_add(1, std::memory_order_relaxed);
        // Outside the lock: request_stop runs the callbacks of whoever waits on the token.
        source.request_stop();
        ++count;
      }
      return count;
    }

    // The thread sleeps until the earliest deadline (as read on the environment's
    // clock, waited in real time) or until a new earliest one is registered.
    void loop(const std::stop_token& st) {
      // Bounds one wait, so that a huge gap never overflows the condition
      // variable's clock arithmetic, and a non-steady environment is re-read.
      constexpr duration longest_wait = std::chrono::seconds(1);
      while (!st.stop_requested()) {
        poll();
        std::unique_lock lock(mutex);
        duration gap = longest_wait;
        if (!due.empty()) {
          const duration left = detail::time_until(env.now(), due.begin()->first);
          if (left < gap) gap = left;
        }
        if (gap > duration::zero()) wake.wait_for(lock, st, gap, [this] { return changed; });
        changed = false;
      }
    }

    [[no_unique_address]] Env env;
    mutable std::mutex mutex;  // guards due, last_id, changed
    std::condition_variable_any wake;
    std::multimap<time_point, armed> due;
    std::uint64_t last_id = 0;
    bool changed = false;
    std::atomic<std::uint64_t> fired{0};
  };

  std::shared_ptr<shared> state_;
  mutable std::mutex control_;               // guards thread_ and stop_ (start/stop)
  std::stop_source stop_{std::nostopstate};  // the running thread's
  std::thread thread_;
};

/// The usual watchdog: steady_clock time, its own thread.
using watchdog = basic_watchdog<>;

}  // namespace keel

#endif  // KEEL_TIMEOUT_WATCHDOG_HPP_INCLUDED

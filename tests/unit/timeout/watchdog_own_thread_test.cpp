// SPDX-License-Identifier: BSL-1.0
// A stop callback runs on the thread that requests the stop: for a deadline,
// the watchdog's own thread. These cases stop or destroy the watchdog from
// there. They need that thread, so they wait for it in real time, each wait
// bounded (10 s) and none depending on how long it takes.
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stop_token>
#include <thread>

#include <keel/testing/virtual_environment.hpp>
#include <keel/timeout.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

namespace {

using keel::errc;
using venv = keel::testing::virtual_environment;
using venv_watchdog = keel::basic_watchdog<venv>;

keel::time_point at(keel::duration d) { return keel::time_point{} + d; }

/// Set once by one thread, awaited (at most 10 s) by another.
class signal {
 public:
  void set() {
    {
      std::lock_guard lock(mutex_);
      set_ = true;
    }
    cv_.notify_all();
  }
  bool wait() {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, 10s, [this] { return set_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool set_ = false;
};

}  // namespace

// Regression: stop() joined the watchdog's thread from that very thread inside
// a noexcept function: std::terminate.
TEST_CASE("watchdog: a stop callback on its own thread may stop it",
          "[watchdog][thread][regression]") {
  venv env;
  venv_watchdog w(env);  // its own thread, virtual time
  REQUIRE(w.running());
  std::stop_source source;
  signal done;
  std::thread::id callback_thread;
  bool running_in_callback = true;
  std::stop_callback on_stop(source.get_token(), [&] {
    callback_thread = std::this_thread::get_id();
    w.stop();
    running_in_callback = w.running();
    done.set();
  });
  auto ticket = w.arm(at(0ms), source);  // already due: the thread fires it at once
  REQUIRE(done.wait());
  CHECK(callback_thread != std::this_thread::get_id());  // it ran on the watchdog's thread
  CHECK_FALSE(running_in_callback);
  CHECK_FALSE(w.running());
  CHECK(w.fired() == 1);
  CHECK(w.pending() == 0);
  w.start();  // a new thread
  CHECK(w.running());
  w.stop();
  CHECK_FALSE(w.running());
}

// Regression: the destructor joined the thread from itself (std::terminate),
// and the thread went on using the freed watchdog after the callback.
TEST_CASE("watchdog: a stop callback on its own thread may destroy it, during a timed call",
          "[watchdog][thread][regression]") {
  venv env;
  auto w = std::make_unique<venv_watchdog>(env);
  auto t = keel::timeout{{.timeout = 10ms}}.with_environment(env).with_watchdog(*w);
  signal done;
  std::thread::id callback_thread;
  auto o = t.try_execute([&](const keel::context& ctx) {
    std::stop_callback on_stop(ctx.stop_token(), [&] {
      callback_thread = std::this_thread::get_id();
      w.reset();  // the watchdog's destructor, on the watchdog's thread
      done.set();
    });
    // From here on only the watchdog's thread touches `w`: it sees the
    // deadline passed when it next reads the clock (within 10 ms).
    env.advance(10ms);
    return done.wait() ? 1 : 2;
  });                          // the call's registration ends after the watchdog is gone
  CHECK(o.is(errc::timeout));  // it ended at its deadline
  CHECK(callback_thread != std::this_thread::get_id());
  CHECK(w == nullptr);
}

TEST_CASE("watchdog: a stop callback on its own thread may destroy it, outside any call",
          "[watchdog][thread][regression]") {
  venv env;
  auto w = std::make_unique<venv_watchdog>(env);
  std::stop_source first, second;
  signal done;
  int callbacks = 0;
  std::stop_callback on_first(first.get_token(), [&] {
    ++callbacks;
    w.reset();
  });
  std::stop_callback on_second(second.get_token(), [&] {
    ++callbacks;
    done.set();
  });
  {
    auto t1 = w->arm(at(10ms), first);
    auto t2 = w->arm(at(20ms), second);
    // Both due at once: the thread fires the first, whose callback destroys the
    // watchdog, then fires the second from the state it keeps.
    env.advance(20ms);
    REQUIRE(done.wait());
  }  // the tickets outlive the watchdog
  CHECK(callbacks == 2);
  CHECK(w == nullptr);
}

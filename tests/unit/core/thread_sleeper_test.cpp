// SPDX-License-Identifier: BSL-1.0
#include <atomic>
#include <chrono>
#include <stop_token>
#include <thread>

#include <keel/core/environment.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;
using keel::duration;
using std::chrono::steady_clock;

// Regression: the wake time was computed as now + d, which overflows near
// duration::max() (UBSan), so the longest sleep returned at once.
TEST_CASE("thread_sleeper: the wake time saturates at the clock's last time point",
          "[core][sleeper][regression]") {
  const steady_clock::time_point now{duration{1'000'000'000}};
  CHECK(keel::detail::wake_time<steady_clock>(now, 250ms) == now + 250ms);
  CHECK(keel::detail::wake_time<steady_clock>(now, duration::max()) ==
        steady_clock::time_point::max());
  CHECK(keel::detail::wake_time<steady_clock>(steady_clock::time_point::max() - 1ns, 2ns) ==
        steady_clock::time_point::max());
  CHECK(keel::detail::wake_time<steady_clock>(steady_clock::time_point{}, duration::max()) ==
        steady_clock::time_point::max());
}

// The one real-time sleep of the unit tests, bounded by the 20 ms the test
// thread waits before it asks to stop: the outcome does not depend on timing.
TEST_CASE("thread_sleeper: sleeps for duration::max() until stopped",
          "[core][sleeper][thread][regression]") {
  std::stop_source source;
  std::atomic<bool> stop_sent{false};
  bool slept = true;
  bool returned_before_stop = true;
  std::thread sleeper([&] {
    slept = keel::thread_sleeper{}.sleep_for(duration::max(), source.get_token());
    returned_before_stop = !stop_sent.load();
  });
  std::this_thread::sleep_for(20ms);
  stop_sent.store(true);
  source.request_stop();
  sleeper.join();
  CHECK_FALSE(slept);                 // woken by the stop...
  CHECK_FALSE(returned_before_stop);  // ...and not a moment earlier
}

TEST_CASE("thread_sleeper: a stop already requested or a zero delay returns at once",
          "[core][sleeper]") {
  std::stop_source source;
  CHECK(keel::thread_sleeper{}.sleep_for(0ns, source.get_token()));
  CHECK(keel::thread_sleeper{}.sleep_for(-1s, std::stop_token{}));
  source.request_stop();
  CHECK_FALSE(keel::thread_sleeper{}.sleep_for(duration::max(), source.get_token()));
}

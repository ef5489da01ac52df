// SPDX-License-Identifier: BSL-1.0
// A virtual environment whose clock throws once it has been read `reads`
// times more: for the seams where a policy reads the clock mid-call.
#ifndef KEEL_TEST_SUPPORT_THROWING_CLOCK_ENV_HPP_INCLUDED
#define KEEL_TEST_SUPPORT_THROWING_CLOCK_ENV_HPP_INCLUDED

#include <atomic>
#include <memory>
#include <stdexcept>
#include <stop_token>

#include <keel/testing/virtual_environment.hpp>

namespace keel_test {

struct throwing_clock_env {
  keel::testing::virtual_environment v;
  /// Reads left before the clock throws; copies share it.
  std::shared_ptr<std::atomic<int>> reads = std::make_shared<std::atomic<int>>(1000);
  keel::time_point now() const {
    if (reads->fetch_sub(1) <= 0) throw std::runtime_error("clock");
    return v.now();
  }
  bool sleep_for(keel::duration d, const std::stop_token& t) const { return v.sleep_for(d, t); }
  double uniform() const { return v.uniform(); }
};

}  // namespace keel_test

#endif  // KEEL_TEST_SUPPORT_THROWING_CLOCK_ENV_HPP_INCLUDED

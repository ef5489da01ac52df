// SPDX-License-Identifier: BSL-1.0
// Shared pieces of the endpoint_pool tests: a scripted random source, an
// event log, and a way to reach the pool's cursor.
#ifndef KEEL_TESTS_POOL_TEST_SUPPORT_HPP
#define KEEL_TESTS_POOL_TEST_SUPPORT_HPP

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <keel/failover/endpoint_pool.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/pool_event_log.hpp"

namespace keel::detail {
struct pool_test_access {
  template <class Pool>
  static void set_cursor(const Pool& p, std::uint32_t v) {
    p.cursor_.store(v);
  }
  template <class Pool>
  static std::uint32_t cursor(const Pool& p) {
    return p.cursor_.load();
  }
  template <class Pool>
  static std::size_t degraded(const Pool& p) {
    return p.degraded_.load();
  }
  // review14: one half of enter()/leave() on slot s, to replay an interleaving.
  template <class Pool>
  static void in_flight_up(const Pool& p, std::size_t s) {
    p.slots_[s].in_flight.fetch_add(1, std::memory_order_seq_cst);
  }
  template <class Pool>
  static void in_flight_down(const Pool& p, std::size_t s) {
    p.slots_[s].in_flight.fetch_sub(1, std::memory_order_release);
  }
  // Round robin's per-thread pins.
  template <class Pool>
  static bool striped(const Pool& p) {
    return p.striped();
  }
  static constexpr std::size_t pin_stripes = keel::detail::max_stripes;
  template <class Pool>
  static std::atomic<std::uint64_t>& stripe_owner(const Pool& p, std::size_t i) {
    return p.stripes_.get()[i].owner;
  }
  template <class Pool>
  static std::atomic<std::uint32_t>& stripe_picking(const Pool& p, std::size_t i) {
    return p.stripes_.get()[i].picking;
  }
  template <class Pool>
  static std::uint32_t striped_count(const Pool& p, std::size_t i, std::size_t s) {
    return p.striped_count(i, s).load();
  }
  template <class Pool>
  static std::uint32_t shared_count(const Pool& p, std::size_t s) {
    return p.slots_[s].in_flight.load();
  }
  // The stripe the calling thread picks in any pool (after its first call).
  static std::size_t my_stripe() {
    return keel::detail::this_thread_identity().small % pin_stripes;
  }
  template <class Pool>
  static void set_state(const Pool& p, std::size_t s, std::uint32_t state) {
    p.slots_[s].state.store(state);
  }
};
}  // namespace keel::detail

namespace pool_test {

/// Draws the values queued, in order, then `fallback` forever. Copies share the queue.
class script_random {
 public:
  explicit script_random(double fallback = 0.0) : state_(std::make_shared<state>()) {
    state_->fallback = fallback;
  }
  double uniform() const {
    std::lock_guard lock(state_->mutex);
    ++state_->draws;
    if (state_->queue.empty()) return state_->fallback;
    const double v = state_->queue.front();
    state_->queue.pop_front();
    return v;
  }
  void push(std::initializer_list<double> values) const {
    std::lock_guard lock(state_->mutex);
    for (double v : values) state_->queue.push_back(v);
  }
  void set_fallback(double v) const {
    std::lock_guard lock(state_->mutex);
    state_->fallback = v;
  }
  std::size_t draws() const {
    std::lock_guard lock(state_->mutex);
    return state_->draws;
  }

 private:
  struct state {
    std::mutex mutex;
    std::deque<double> queue;
    double fallback = 0.0;
    std::size_t draws = 0;
  };
  std::shared_ptr<state> state_;
};

using env_t = keel::testing::basic_virtual_environment<script_random>;

using event_log = keel_test::event_log;

/// The std::string endpoint a pool chose for this call.
inline const std::string& name_of(const keel::context& ctx) {
  return *ctx.target().get<std::string>();
}

/// Outlier detection by failures in a row only, with no ejection cap.
inline keel::outlier_detection_options eject_after(std::uint32_t failures) {
  keel::outlier_detection_options o;
  o.consecutive_failures = failures;
  o.success_rate = std::nullopt;
  o.max_ejection_percent = 100;
  return o;
}

}  // namespace pool_test

#endif  // KEEL_TESTS_POOL_TEST_SUPPORT_HPP

// SPDX-License-Identifier: BSL-1.0
// A listener for keel::endpoint_pool's events, shared by the pool's unit
// tests and its real-parts test: each event as a line of text, in order, and
// the ejections' ends. Copies share the record; thread-safe.
#ifndef KEEL_TESTS_SUPPORT_POOL_EVENT_LOG_HPP
#define KEEL_TESTS_SUPPORT_POOL_EVENT_LOG_HPP

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <keel/failover/endpoint_pool.hpp>

namespace keel_test {

/// Every pool event as a line of text, and the ejections' ends.
struct event_log {
  struct state {
    std::mutex mutex;
    std::vector<std::string> lines;
    std::vector<keel::time_point> ejected_until;
  };
  std::shared_ptr<state> s = std::make_shared<state>();

  void add(std::string line) const {
    std::lock_guard lock(s->mutex);
    s->lines.push_back(std::move(line));
  }
  std::vector<std::string> take() const {
    std::lock_guard lock(s->mutex);
    return std::exchange(s->lines, {});
  }
  keel::time_point last_until() const {
    std::lock_guard lock(s->mutex);
    return s->ejected_until.empty() ? keel::time_point{} : s->ejected_until.back();
  }
  void on(const keel::endpoint_ejected& e) const {
    {
      std::lock_guard lock(s->mutex);
      s->ejected_until.push_back(e.until);
    }
    add("ejected " + std::to_string(e.endpoint) + " " +
        std::string(keel::to_string_view(e.reason)));
  }
  void on(const keel::endpoint_restored& e) const { add("restored " + std::to_string(e.endpoint)); }
  void on(const keel::endpoint_health_changed& e) const {
    add(std::string(e.healthy ? "healthy " : "unhealthy ") + std::to_string(e.endpoint));
  }
  void on(const keel::pool_failover& e) const {
    add("failover " + std::to_string(e.from_priority) + "->" + std::to_string(e.to_priority));
  }
  void on(const keel::pool_failback& e) const {
    add("failback " + std::to_string(e.from_priority) + "->" + std::to_string(e.to_priority));
  }
  void on(const keel::pool_panic_entered&) const { add("panic entered"); }
  void on(const keel::pool_panic_left&) const { add("panic left"); }
};

}  // namespace keel_test

#endif  // KEEL_TESTS_SUPPORT_POOL_EVENT_LOG_HPP

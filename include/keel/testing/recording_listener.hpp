// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_TESTING_RECORDING_LISTENER_HPP_INCLUDED
#define KEEL_TESTING_RECORDING_LISTENER_HPP_INCLUDED

#include <cstddef>
#include <memory>
#include <mutex>
#include <variant>
#include <vector>

namespace keel::testing {

/// A listener that records the events of the listed types, in order. Copies
/// share the record. Thread-safe.
///
///     recording_listener<keel::retry_scheduled, keel::retries_exhausted> log;
///     ... CHECK(log.count<keel::retry_scheduled>() == 2);
template <class... Events>
class recording_listener {
 public:
  using event = std::variant<Events...>;

  recording_listener() : state_(std::make_shared<state>()) {}

  template <class E>
    requires(std::is_same_v<E, Events> || ...)
  void on(const E& e) const {
    std::lock_guard lock(state_->mutex);
    state_->events.emplace_back(e);
  }

  /// Every recorded event, in order.
  std::vector<event> events() const {
    std::lock_guard lock(state_->mutex);
    return state_->events;
  }

  /// The recorded events of type E, in order.
  template <class E>
  std::vector<E> all() const {
    std::vector<E> out;
    for (const event& e : events()) {
      if (const E* p = std::get_if<E>(&e)) out.push_back(*p);
    }
    return out;
  }

  /// How many events of type E were recorded.
  template <class E>
  std::size_t count() const {
    return all<E>().size();
  }

 private:
  struct state {
    std::mutex mutex;
    std::vector<event> events;
  };
  std::shared_ptr<state> state_;
};

}  // namespace keel::testing

#endif  // KEEL_TESTING_RECORDING_LISTENER_HPP_INCLUDED

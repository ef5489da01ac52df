// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_TESTING_RECORDING_LISTENER_HPP_INCLUDED
#define KEEL_TESTING_RECORDING_LISTENER_HPP_INCLUDED

#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

namespace keel::testing {

/// E is one of Ts.
template <class E, class... Ts>
concept one_of = (std::is_same_v<E, Ts> || ...);

/// A listener that records the events of the listed types, in order. Copies
/// share the record. Thread-safe. An event's source (views into the policy
/// and the call's context) is copied, so a recorded event outlives the call.
///
///     recording_listener<keel::retry_scheduled, keel::retries_exhausted> log;
///     ... CHECK(log.count<keel::retry_scheduled>() == 2);
template <class... Events>
class recording_listener {
 public:
  using event = std::variant<Events...>;

  recording_listener() : state_(std::make_shared<state>()) {}

  template <one_of<Events...> E>
  void on(const E& e) const {
    std::lock_guard lock(state_->mutex);
    E kept = e;
    if constexpr (requires {
                    e.source.pipeline;
                    e.source.policy;
                  }) {
      kept.source.pipeline = state_->keep(e.source.pipeline);
      kept.source.policy = state_->keep(e.source.policy);
    }
    state_->events.emplace_back(std::move(kept));
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
    std::deque<std::string> names;  // a deque: a new name moves none of the kept ones

    std::string_view keep(std::string_view name) {
      if (name.empty()) return {};
      return names.emplace_back(name);
    }
  };
  std::shared_ptr<state> state_;
};

}  // namespace keel::testing

#endif  // KEEL_TESTING_RECORDING_LISTENER_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
// The example policy of docs/extending.md, built only from keel's public kit.
#ifndef KEEL_EXAMPLE_CONCURRENCY_LIMIT_HPP
#define KEEL_EXAMPLE_CONCURRENCY_LIMIT_HPP

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include <keel/keel.hpp>

namespace example {

struct concurrency_limit_options {
  std::uint32_t max_in_flight = 10;  ///< calls allowed at once; >= 1
  constexpr keel::validation_result validate() const {
    if (max_in_flight > 0) return std::nullopt;
    return keel::config_problem{"concurrency_limit_options.max_in_flight", "must be >= 1"};
  }
};

/// Event: a call was refused; `in_flight` calls were running.
struct limit_rejected {
  std::uint32_t in_flight;
  keel::event_source source;  ///< this limit's name, and the call's pipeline
};

/// At most `max_in_flight` calls at once; the others get keel::errc::bulkhead_full.
template <class Listener = keel::no_listener>
class concurrency_limit : public keel::executable<concurrency_limit<Listener>> {
 public:
  explicit concurrency_limit(concurrency_limit_options o = {}, Listener l = Listener(),
                             std::shared_ptr<std::atomic<std::uint32_t>> s =
                                 std::make_shared<std::atomic<std::uint32_t>>(0U),
                             std::string_view n = "concurrency_limit")
      : options_((keel::require_valid(o.validate()), o)), listener_(l), state_(s), name_(n) {}

  /// The same limit (sharing its count), reporting to `l`.
  template <class L>
  auto with_listener(L l) const {
    return keel::rebuild<concurrency_limit<L>, &concurrency_limit::listener_>(*this, l, parts{});
  }
  /// The same limit, named `name` in its events.
  concurrency_limit named(std::string_view name) const {
    return keel::rebuild<concurrency_limit, &concurrency_limit::name_>(*this, name, parts{});
  }

  template <class R, class Next>
  keel::outcome<R> run(Next&& next, keel::context& ctx) const {
    std::atomic<std::uint32_t>& n = *state_;
    std::uint32_t running = n.load(std::memory_order_relaxed);
    do {  // a refused call never counts, so it cannot crowd out the next one
      if (running >= options_.max_in_flight) {
        if constexpr (keel::observes<Listener, limit_rejected>) {  // else no code at all
          const auto refused = [&] { return limit_rejected{running, keel::source_of(name_, ctx)}; };
          keel::report<limit_rejected>(listener_, refused);
        }
        return keel::outcome<R>::from_keel(keel::errc::bulkhead_full);
      }
    } while (!n.compare_exchange_weak(running, running + 1, std::memory_order_relaxed));
    struct leave {
      std::atomic<std::uint32_t>& n;
      ~leave() { n.fetch_sub(1, std::memory_order_relaxed); }
    } guard{n};
    return next(ctx);
  }

  std::uint32_t in_flight() const noexcept { return state_->load(); }

 private:
  concurrency_limit_options options_;
  [[no_unique_address]] Listener listener_;
  std::shared_ptr<std::atomic<std::uint32_t>> state_;  // copies share one count
  keel::policy_name name_;
  using parts = keel::parts<&concurrency_limit::options_, &concurrency_limit::listener_,
                            &concurrency_limit::state_, &concurrency_limit::name_>;
};

}  // namespace example

#endif  // KEEL_EXAMPLE_CONCURRENCY_LIMIT_HPP

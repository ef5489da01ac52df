// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_PIPELINE_HPP_INCLUDED
#define KEEL_PIPELINE_HPP_INCLUDED

#include <cstddef>
#include <tuple>
#include <utility>

#include "keel/core/context.hpp"
#include "keel/core/outcome.hpp"
#include "keel/core/policy.hpp"

namespace keel {

/// Policies composed outermost first: `pipeline(fallback, retry, breaker)` runs
/// a call as fallback(retry(breaker(call))). Composed at compile time: no
/// allocation, no virtual call. Each policy is held by value, by std::ref (to
/// share a stateful breaker), or by std::shared_ptr. A pipeline is a policy,
/// so pipelines nest.
template <policy_holder... Policies>
class pipeline : public executable<pipeline<Policies...>> {
 public:
  explicit pipeline(Policies... policies) : policies_(std::move(policies)...) {}

  /// Runs `next` under every policy, the first one outermost.
  template <class R, class Next>
  outcome<R> run(Next&& next, context& ctx) const {
    return run_from<0, R>(next, ctx);
  }

  /// The policies, in order.
  const std::tuple<Policies...>& policies() const noexcept { return policies_; }

 private:
  template <std::size_t I, class R, class Next>
  outcome<R> run_from(Next& next, context& ctx) const {
    if constexpr (I == sizeof...(Policies)) {
      return next(ctx);
    } else {
      const auto& p = detail::policy_of(std::get<I>(policies_));
      // The rest of the pipeline, holding `next` by value (a few pointers):
      // one indirection less for the call to reach its callable, at every layer.
      const auto rest = detail::make_next(
          [this, n = detail::pass_next(next)](context& c) { return run_from<I + 1, R>(n, c); });
      return p.template run<R>(rest, ctx);
    }
  }

  std::tuple<Policies...> policies_;
};

template <class... Policies>
pipeline(Policies...) -> pipeline<Policies...>;

}  // namespace keel

#endif  // KEEL_PIPELINE_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_PIPELINE_HPP_INCLUDED
#define KEEL_PIPELINE_HPP_INCLUDED

#include <cstddef>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "keel/core/context.hpp"
#include "keel/core/observe.hpp"
#include "keel/core/outcome.hpp"
#include "keel/core/policy.hpp"

namespace keel {

namespace detail {

/// Why an argument of keel::pipeline cannot be one of its policies.
enum class refusal : unsigned char { not_a_policy, not_copyable };

/// Stands in, in the pipeline's type, for an argument the pipeline refuses,
/// so that the pipeline's own static_assert is the only error: it takes any
/// argument and runs nothing. A program that names it does not compile.
template <class P, refusal Why>
struct refused_policy {
  refused_policy(const P&) noexcept {}  // implicit: stands in for the argument
  template <class R, class Next>
  outcome<R> run(Next&& next, context& ctx) const {
    return next(ctx);
  }
};

/// What a pipeline holds for an argument of type A (as given: `T&` for an
/// lvalue): its decayed type, or refused_policy when that is not a policy
/// holder, or when a copy (a move, for an rvalue) of it cannot be made.
template <class A, class P = std::remove_cvref_t<A>>
using pipeline_slot_t =
    std::conditional_t<!policy_holder<P>, refused_policy<P, refusal::not_a_policy>,
                       std::conditional_t<!std::is_constructible_v<P, A>,
                                          refused_policy<P, refusal::not_copyable>, P>>;

template <class P>
inline constexpr bool is_policy_slot = policy_holder<P>;
template <class P>
inline constexpr bool is_policy_slot<refused_policy<P, refusal::not_a_policy>> = false;
template <class P>
inline constexpr bool is_policy_slot<refused_policy<P, refusal::not_copyable>> = true;

template <class P>
inline constexpr bool is_movable_slot = std::is_move_constructible_v<P>;
template <class P>
inline constexpr bool is_movable_slot<refused_policy<P, refusal::not_copyable>> = false;

}  // namespace detail

template <class P>
class named_pipeline;

/// Policies composed outermost first: `pipeline(fallback, retry, breaker)` runs
/// a call as fallback(retry(breaker(call))). Composed at compile time: no
/// allocation, no virtual call. Each policy is held by value, by std::ref (to
/// share a stateful breaker), or by std::shared_ptr. A pipeline is a policy,
/// so pipelines nest. Anything else is refused with one sentence.
template <class... Policies>
class pipeline : public executable<pipeline<Policies...>> {
  static_assert((detail::is_policy_slot<Policies> && ...),
                "keel::pipeline: an argument is not a policy. A policy has `template <class R, "
                "class Next> keel::outcome<R> run(Next&& next, keel::context& ctx) const` (see "
                "keel::policy); give it by value, std::ref or std::shared_ptr");
  static_assert((detail::is_movable_slot<Policies> && ...),
                "keel::pipeline: a circuit breaker (or another stateful policy) cannot be "
                "copied into a pipeline: pass std::ref(breaker), or hold it in a "
                "std::shared_ptr and pass that");

 public:
  explicit pipeline(Policies... policies) : policies_(std::move(policies)...) {}

  /// Runs `next` under every policy, the first one outermost.
  template <class R, class Next>
  outcome<R> run(Next&& next, context& ctx) const {
    return run_from<0, R>(next, ctx);
  }

  /// The policies, in order.
  const std::tuple<Policies...>& policies() const noexcept { return policies_; }

  /// This pipeline named `name` (cut at policy_name::capacity bytes): the
  /// events of its policies carry the name as their source.pipeline.
  named_pipeline<pipeline> named(std::string_view name) const& {
    return named_pipeline<pipeline>(*this, name);
  }
  /// As above, moving the policies.
  named_pipeline<pipeline> named(std::string_view name) && {
    return named_pipeline<pipeline>(std::move(*this), name);
  }

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

/// A pipeline with a name (made by pipeline::named): each call runs with the
/// name as its context's operation, unless the caller (or an outer named
/// pipeline) set one, so every event of the pipeline's policies names it in
/// source.pipeline. An unnamed pipeline pays nothing for this.
template <class P>
class named_pipeline : public executable<named_pipeline<P>> {
 public:
  named_pipeline(P pipeline, std::string_view name) : pipeline_(std::move(pipeline)), name_(name) {}

  /// Runs `next` under the pipeline, the call's operation named after it
  /// unless it has a name already; the context is left as it was.
  template <class R, class Next>
  outcome<R> run(Next&& next, context& ctx) const {
    if (!ctx.operation().empty()) return pipeline_.template run<R>(next, ctx);
    struct unname {
      context& ctx;
      ~unname() { ctx.set_operation(std::string_view()); }
    };
    ctx.set_operation(name_.view());
    const unname restore{ctx};
    return pipeline_.template run<R>(next, ctx);
  }

  /// The name, as kept (cut at policy_name::capacity bytes).
  std::string_view name() const noexcept { return name_.view(); }
  /// The policies, in order.
  decltype(auto) policies() const noexcept { return pipeline_.policies(); }

 private:
  P pipeline_;
  policy_name name_;
};

// Arguments are taken as given (lvalue or rvalue) so that one the pipeline
// cannot hold is named by the static_asserts above, not by a copy constructor.
template <class... Args>
pipeline(Args&&...) -> pipeline<detail::pipeline_slot_t<Args>...>;

}  // namespace keel

#endif  // KEEL_PIPELINE_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_ANY_PIPELINE_HPP_INCLUDED
#define KEEL_ANY_PIPELINE_HPP_INCLUDED

#include <concepts>
#include <memory>
#include <type_traits>
#include <utility>

#include "keel/core/context.hpp"
#include "keel/core/outcome.hpp"
#include "keel/core/policy.hpp"

namespace keel {

namespace detail {

/// The rest of a call (`next`) seen through two pointers, the object and a
/// function that calls it: how any_pipeline hands `next` to a policy whose
/// type it has forgotten. Built on the stack for each call, never allocated;
/// it refers to the caller's `next`, which outlives the call.
template <class R>
class next_ref {
 public:
  template <class Next>
  explicit next_ref(Next& n) noexcept
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(n)))),
        call_(&call<Next>) {}

  outcome<R> operator()(context& ctx) const { return call_(object_, ctx); }

 private:
  template <class Next>
  static outcome<R> call(void* object, context& ctx) {
    return (*static_cast<Next*>(object))(ctx);
  }

  void* object_;
  outcome<R> (*call_)(void*, context&);
};

}  // namespace detail

/// Any policy or pipeline whose calls return R, behind one type that a class
/// can hold as a member (a pipeline's own type runs to hundreds of characters):
///
///     keel::any_pipeline<response> guard_{keel::pipeline(retry, std::ref(breaker))};
///
/// Costs one allocation when built from a policy, and per call one indirect
/// call into the policy plus, each time the policy calls on, one indirect call
/// back to the callable (`next` goes as a detail::next_ref: two pointers, no
/// allocation). Holds the policy as keel::pipeline does: by value, std::ref or
/// std::shared_ptr. Copies share the held policy; default-constructed or
/// moved-from, it is the empty pipeline (calls pass straight through).
template <class R>
class any_pipeline : public executable<any_pipeline<R>> {
  using erased_next = detail::keel_next<detail::next_ref<R>>;
  using run_fn = outcome<R> (*)(const void*, erased_next, context&);

 public:
  /// The empty pipeline: no policy, no allocation.
  any_pipeline() noexcept = default;

  /// Holds `policy` (a policy, pipeline or holder of one); one allocation.
  /// Instantiates its run<R> here, so a policy that cannot run R fails now.
  template <class P>
    requires(!std::same_as<std::remove_cvref_t<P>, any_pipeline>)
  explicit any_pipeline(P&& policy) : any_pipeline() {
    using H = std::remove_cvref_t<P>;
    static_assert(policy_holder<H>,
                  "keel::any_pipeline: the argument is not a policy. A policy has `template "
                  "<class R, class Next> keel::outcome<R> run(Next&& next, keel::context& ctx) "
                  "const` (see keel::policy); give it by value, std::ref or std::shared_ptr");
    static_assert(!policy_holder<H> || std::is_constructible_v<H, P>,
                  "keel::any_pipeline: a circuit breaker (or another stateful policy) cannot be "
                  "copied into an any_pipeline: pass std::ref(breaker), or hold it in a "
                  "std::shared_ptr and pass that");
    if constexpr (policy_holder<H> && std::is_constructible_v<H, P>) {
      holder_ = std::make_shared<const H>(std::forward<P>(policy));
      run_ = &run_held<H>;
    }
  }

  any_pipeline(const any_pipeline&) = default;
  any_pipeline& operator=(const any_pipeline&) = default;
  /// Leaves `other` the empty pipeline.
  any_pipeline(any_pipeline&& other) noexcept
      : holder_(std::move(other.holder_)), run_(std::exchange(other.run_, &run_empty)) {}
  /// Leaves `other` the empty pipeline.
  any_pipeline& operator=(any_pipeline&& other) noexcept {
    if (this != &other) {
      holder_ = std::move(other.holder_);
      run_ = std::exchange(other.run_, &run_empty);
    }
    return *this;
  }

  /// Runs `next` under the held policy; never throws. `Result` must be R.
  template <class Result, class Next>
  outcome<Result> run(Next&& next, context& ctx) const {
    static_assert(std::is_same_v<Result, R>,
                  "keel::any_pipeline<R>: the callable's result type is not R; an any_pipeline "
                  "runs callables of the one result type it was declared with");
    if constexpr (std::is_same_v<Result, R>) {
      return run_(holder_.get(), erased_next{detail::next_ref<R>(next)}, ctx);
    } else {
      return next(ctx);  // not reached: keeps the errors to one
    }
  }

  /// True when a policy is held (false for the empty pipeline).
  explicit operator bool() const noexcept { return holder_ != nullptr; }

 private:
  static outcome<R> run_empty(const void*, erased_next next, context& ctx) { return next(ctx); }

  // Not [[gnu::flatten]]: it took pipeline(fallback, retry, breaker) from 119
  // to 100 instructions per call, but changed how GCC inlined the held
  // policies' shared members into the caller's other code (a closed breaker's
  // call elsewhere in the program went from 18 to 19).
  template <class H>
  static outcome<R> run_held(const void* holder, erased_next next, context& ctx) {
    return detail::policy_of(*static_cast<const H*>(holder)).template run<R>(next, ctx);
  }

  std::shared_ptr<const void> holder_;
  run_fn run_ = &run_empty;
};

}  // namespace keel

#endif  // KEEL_ANY_PIPELINE_HPP_INCLUDED

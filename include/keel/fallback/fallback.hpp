// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_FALLBACK_FALLBACK_HPP_INCLUDED
#define KEEL_FALLBACK_FALLBACK_HPP_INCLUDED

#include <array>
#include <concepts>
#include <cstddef>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "keel/core/classify.hpp"
#include "keel/core/context.hpp"
#include "keel/core/error.hpp"
#include "keel/core/events.hpp"
#include "keel/core/outcome.hpp"
#include "keel/core/policy.hpp"
#include "keel/fallback/alternative.hpp"
#include "keel/fallback/fallback_events.hpp"

namespace keel {

namespace detail {

/// Tag of fallback's member-wise constructor (used by its fluent setters).
struct fallback_parts {};

template <class Chain, class... Ts>
struct builds_chain_t : std::false_type {};
template <class... Alternatives, class... Ts>
struct builds_chain_t<std::tuple<Alternatives...>, Ts...> {
  static constexpr bool value = [] {
    if constexpr (sizeof...(Alternatives) == sizeof...(Ts)) {
      return (std::same_as<as_alternative_t<Ts>, Alternatives> && ...);
    } else {
      return false;
    }
  }();
};

/// True when the arguments Ts make exactly the alternatives of Chain (a tuple),
/// so that the constructor never hijacks a copy.
template <class Chain, class... Ts>
concept builds_chain = builds_chain_t<Chain, Ts...>::value;

}  // namespace detail

/// An ordered chain of alternatives tried when the guarded call fails:
///
///     keel::fallback(keel::alternative(backup).through(std::ref(backup_breaker)),
///                    keel::alternative(cache.serve(key)).when(keel::on::keel_error),
///                    simplified_answer, "service unavailable")
///
/// The call itself (the primary) runs first; when its outcome is a failure
/// the chain handles (`Handles`, default any failure) the alternatives are
/// tried in order. Each one that handles the current failure (its `when`,
/// default every failure the chain handles) runs and sees it; the first outcome that is not a
/// handled failure is the result. When the alternatives that were tried all
/// failed, the result is errc::all_fallbacks_failed whose causes() are the
/// primary's outcome and each tried alternative's, in order. When none was
/// tried, the primary's failure is returned unchanged. A cancellation (or a
/// stop request of the caller) stops the chain: it is not a failure to
/// degrade from. The success path costs one test of the outcome.
template <class Handles, class Listener, class... Alternatives>
class fallback : public executable<fallback<Handles, Listener, Alternatives...>> {
  static_assert(sizeof...(Alternatives) > 0, "keel::fallback needs at least one alternative");

  using from_parts = detail::fallback_parts;

 public:
  /// Builds the chain from values, callables and keel::alternative objects, in order.
  // clang-format off
  template <class... Ts>
    requires detail::builds_chain<std::tuple<Alternatives...>, Ts...>
  explicit fallback(Ts&&... alternatives)
      : alternatives_(detail::make_alternative(std::forward<Ts>(alternatives))...) {}
  // clang-format on

  /// A chain that treats only the failures `h` matches as worth degrading from
  /// (a keel::on:: predicate); other failures of the primary pass through.
  template <class H>
  fallback<std::decay_t<H>, Listener, Alternatives...> handle(H&& h) const {
    return fallback<std::decay_t<H>, Listener, Alternatives...>(from_parts{}, alternatives_,
                                                                std::forward<H>(h), listener_);
  }

  /// The same chain reporting its events (fallback_used, fallback_skipped,
  /// all_fallbacks_failed, fallback_cancelled) to `l`; see keel::fallback_counters.
  template <class L>
  fallback<Handles, std::decay_t<L>, Alternatives...> with_listener(L&& l) const {
    return fallback<Handles, std::decay_t<L>, Alternatives...>(from_parts{}, alternatives_,
                                                               handles_, std::forward<L>(l));
  }

  /// Runs `next` (the primary), then the alternatives if it failed; never throws.
  template <class R, class Next>
  outcome<R> run(Next&& next, context& ctx) const {
    // One named result on every path, so the success path returns it in place.
    outcome<R> result = next(ctx);
    if (detail::ask_user_predicate(handles_, result)) [[unlikely]]
      result = degrade<R>(std::move(result), ctx);
    return result;
  }

  /// The alternatives, in order.
  const std::tuple<Alternatives...>& alternatives() const noexcept { return alternatives_; }

  /// Number of alternatives.
  static constexpr std::size_t size() noexcept { return sizeof...(Alternatives); }

 private:
  template <class, class, class...>
  friend class fallback;

  fallback(from_parts, std::tuple<Alternatives...> alternatives, Handles handles, Listener listener)
      : alternatives_(std::move(alternatives)),
        handles_(std::move(handles)),
        listener_(std::move(listener)) {}

  static constexpr std::size_t count = sizeof...(Alternatives);

  // Every outcome produced so far (primary first), kept on the stack: the
  // vector of causes is built only when the whole chain failed.
  template <class R>
  struct trail {
    std::array<std::optional<outcome<R>>, count + 1> tried;
    std::size_t size = 0;

    const outcome<R>& last() const { return *tried[size - 1]; }
    void push(outcome<R>&& o) noexcept {  // outcome's move never throws
      tried[size].emplace(std::move(o));
      ++size;
    }
  };

  template <class R>
  outcome<R> degrade(outcome<R>&& primary, const context& ctx) const {
    if (is_cancellation(primary)) return std::move(primary);
    trail<R> t;
    t.push(std::move(primary));
    return try_from<0, R>(t, ctx);
  }

  template <std::size_t I, class R>
  outcome<R> try_from(trail<R>& t, const context& ctx) const {
    if constexpr (I == count) {
      return all_failed<R>(t);
    } else {
      if (ctx.stop_requested()) {
        detail::emit(listener_, fallback_cancelled{t.size});
        return outcome<R>::from_keel(errc::cancelled);
      }
      const auto& alt = std::get<I>(alternatives_);
      const outcome<R>& why = t.last();
      if (!alt.handles(why)) {
        detail::emit(listener_, fallback_skipped{I});
        return try_from<I + 1, R>(t, ctx);
      }
      outcome<R> o = alt.template produce<R>(why, ctx);
      if (!detail::ask_user_predicate(handles_, o)) {
        if constexpr (detail::listens_to<Listener, fallback_used>) {
          detail::emit(listener_, fallback_used{I, why.describe()});
        }
        return o;
      }
      if (is_cancellation(o)) {
        detail::emit(listener_, fallback_cancelled{t.size + 1});
        return o;
      }
      t.push(std::move(o));
      return try_from<I + 1, R>(t, ctx);
    }
  }

  template <class R>
  outcome<R> all_failed(trail<R>& t) const {
    // Nothing stood in: the fallback did not act, the caller sees the failure as it was.
    if (t.size == 1) return std::move(*t.tried[0]);
    detail::emit(listener_, all_fallbacks_failed{t.size});
    std::vector<outcome<R>> causes;
#if KEEL_HAS_EXCEPTIONS
    try {
      causes.reserve(t.size);
      for (std::size_t i = 0; i < t.size; ++i) causes.push_back(std::move(*t.tried[i]));
      return outcome<R>::from_keel(error_info{make_error_code(errc::all_fallbacks_failed)},
                                   std::move(causes));
    } catch (...) {
      // Out of memory for the list of causes: still report the right code.
      return outcome<R>::from_keel(errc::all_fallbacks_failed);
    }
#else
    causes.reserve(t.size);
    for (std::size_t i = 0; i < t.size; ++i) causes.push_back(std::move(*t.tried[i]));
    return outcome<R>::from_keel(error_info{make_error_code(errc::all_fallbacks_failed)},
                                 std::move(causes));
#endif
  }

  std::tuple<Alternatives...> alternatives_;
  [[no_unique_address]] Handles handles_{};
  [[no_unique_address]] Listener listener_{};
  // Last in the class: Clang 14 drops the members declared after a failed one.
  static_assert(
      detail::may_take_outcome<Handles>(),
      "keel::fallback::handle needs a predicate on the outcome: a keel::on:: predicate, or a "
      "callable taking const keel::outcome<R>&; to test the returned value use "
      "keel::on::result(f), an error value keel::on::error(f)");
};

template <class... Ts>
fallback(Ts&&...) -> fallback<on::any_failure_t, no_listener, detail::as_alternative_t<Ts>...>;

}  // namespace keel

#endif  // KEEL_FALLBACK_FALLBACK_HPP_INCLUDED

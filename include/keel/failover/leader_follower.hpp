// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_FAILOVER_LEADER_FOLLOWER_HPP_INCLUDED
#define KEEL_FAILOVER_LEADER_FOLLOWER_HPP_INCLUDED

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "keel/core/call_slots.hpp"
#include "keel/core/classify.hpp"
#include "keel/core/config_error.hpp"
#include "keel/core/context.hpp"
#include "keel/core/environment.hpp"
#include "keel/core/error.hpp"
#include "keel/core/events.hpp"
#include "keel/core/fluent.hpp"
#include "keel/core/hint.hpp"
#include "keel/core/inspect.hpp"
#include "keel/core/observe.hpp"
#include "keel/core/outcome.hpp"
#include "keel/core/policy.hpp"
#include "keel/core/time.hpp"
#include "keel/detail/algorithm.hpp"
#include "keel/detail/config.hpp"

namespace keel {

/// What a member's failed answer says about the cluster's leader.
enum class leader_signal_kind : unsigned char {
  none,        ///< nothing: an ordinary failure (failover_on decides)
  not_leader,  ///< "not the leader" (etcd, Raft, Redis -READONLY); with a target, "it is that one"
  moved,       ///< "the leader is there, for good" (Redis Cluster MOVED): follow and remember
  ask,         ///< "ask there, this once" (Redis Cluster ASK): follow, do not remember
  no_leader,   ///< "I know of no leader" (etcd ErrNoLeader: a partitioned member)
};

/// The enumerator's name ("not_leader"); "unknown" otherwise.
constexpr std::string_view to_string_view(leader_signal_kind k) noexcept {
  switch (k) {
    case leader_signal_kind::none:
      return "none";
    case leader_signal_kind::not_leader:
      return "not_leader";
    case leader_signal_kind::moved:
      return "moved";
    case leader_signal_kind::ask:
      return "ask";
    case leader_signal_kind::no_leader:
      return "no_leader";
  }
  return "unknown";
}

/// What a leader_follower's extractor reads from a failed answer: the kind,
/// the endpoint it names (an index into the follower's endpoints; one out of
/// range is ignored) and the term or epoch of that leadership (0: unknown).
struct leader_signal {
  leader_signal_kind kind = leader_signal_kind::none;
  std::optional<std::size_t> target{};  ///< the leader's index, when the answer names it
  std::uint64_t term = 0;               ///< 0: unknown

  /// "Not the leader", naming the leader when `target` is set.
  static constexpr leader_signal not_leader(std::optional<std::size_t> target = std::nullopt,
                                            std::uint64_t term = 0) noexcept {
    return {leader_signal_kind::not_leader, target, term};
  }
  /// "The leader is `target`, for good" (MOVED).
  static constexpr leader_signal moved(std::size_t target, std::uint64_t term = 0) noexcept {
    return {leader_signal_kind::moved, target, term};
  }
  /// "Ask `target`, this once" (ASK).
  static constexpr leader_signal ask(std::size_t target, std::uint64_t term = 0) noexcept {
    return {leader_signal_kind::ask, target, term};
  }
  /// "I know of no leader".
  static constexpr leader_signal no_leader(std::uint64_t term = 0) noexcept {
    return {leader_signal_kind::no_leader, std::nullopt, term};
  }

  friend constexpr bool operator==(const leader_signal&, const leader_signal&) = default;
};

/// The default extractor: a failure whose keel::hint has a `leader`
/// (a thrown keel::error or other keel::hint_source) is not_leader with that
/// leader's id as the target and its term; anything else is no signal. A
/// result or an error value is never looked into (it has no hint).
struct leader_hint_signal {
  template <class R>
  leader_signal operator()(const outcome<R>& o, std::size_t /*from*/) const {
    if (o.has_result()) return {};
    const hint h = o.hint();  // a failure: a keel failure or an exception
    if (!h.leader) return {};
    // Saturated, not truncated: an id past size_t is out of range, never another member.
    const std::uint64_t id = h.leader->id;
    const std::uint64_t top = std::numeric_limits<std::size_t>::max();
    return leader_signal::not_leader(static_cast<std::size_t>(id < top ? id : top), h.leader->term);
  }
};

/// Options of keel::leader_follower, with etcd clientv3's and ioredis' defaults. Aggregate.
struct leader_follower_options {
  /// Moves to another member within one call (redirects and probes), after
  /// which the last failure is returned. Default 16 (ioredis maxRedirections).
  std::uint32_t max_redirects = 16;
  /// The wait after a full pass over a quorum answered without a leader.
  /// Default 25 ms (etcd clientv3's unary retry backoff); 0: no wait.
  duration probe_backoff = std::chrono::milliseconds(25);
  /// probe_backoff is drawn in [1 - jitter, 1 + jitter] times itself, in [0, 1]. Default 0.1.
  double jitter = 0.1;
  /// A member that answers no_leader is skipped by the probe order for
  /// no_leader_cooldown (etcd WithRequireLeader; etcd #7941). Default true.
  bool require_leader = true;
  /// How long a no_leader member is skipped. Default 1 s (etcd's election timeout).
  duration no_leader_cooldown = std::chrono::seconds(1);
  /// The member the first call goes to. Default 0; must be < the number of endpoints.
  std::size_t initial_leader = 0;

  /// The first invalid field, or nullopt (initial_leader is checked against
  /// the endpoints by the follower's constructor).
  constexpr validation_result validate() const noexcept {
    if (max_redirects < 1)
      return config_problem{"leader_follower_options.max_redirects", "must be >= 1"};
    if (probe_backoff < duration::zero())
      return config_problem{"leader_follower_options.probe_backoff", "must be >= 0"};
    if (!(jitter >= 0.0 && jitter <= 1.0))
      return config_problem{"leader_follower_options.jitter", "must be in [0, 1]"};
    if (no_leader_cooldown < duration::zero())
      return config_problem{"leader_follower_options.no_leader_cooldown", "must be >= 0"};
    return std::nullopt;
  }
};

/// Why the cached leader changed.
enum class leader_change_cause : unsigned char {
  hint,    ///< a member named the leader (moved, or not_leader with a target)
  probe,   ///< a probed member served the call
  manual,  ///< set_leader()
};

/// The enumerator's name ("hint"); "unknown" otherwise.
constexpr std::string_view to_string_view(leader_change_cause c) noexcept {
  switch (c) {
    case leader_change_cause::hint:
      return "hint";
    case leader_change_cause::probe:
      return "probe";
    case leader_change_cause::manual:
      return "manual";
  }
  return "unknown";
}

/// Event: the cached leader moved from endpoint `from` to endpoint `to`.
struct leader_changed {
  std::size_t from;           ///< the index it was
  std::size_t to;             ///< the index it is
  std::uint64_t term;         ///< the cached term after the change (0: never known)
  leader_change_cause cause;  ///< what moved it
  event_source source;        ///< the follower's name, and the call's pipeline
};

/// Event: a call moved on from endpoint `from` to endpoint `to` within one attempt.
struct redirected {
  std::size_t from;  ///< the member that answered
  std::size_t to;    ///< the member asked next
  leader_signal_kind
      kind;             ///< its answer: moved, ask, not_leader, no_leader, or none (failover_on)
  std::uint64_t term;   ///< the answer's term (0: unknown)
  event_source source;  ///< the follower's name, and the call's pipeline
};

/// Finds and follows a cluster's leader over a fixed, ordered set of
/// endpoints of the user's type E. A call goes to the cached leader (one
/// relaxed load); a failed answer is read by the extractor (default:
/// keel::leader_hint_signal) and the call follows it at once, within the same
/// attempt: to the named leader (moved / not_leader with a target: cached;
/// ask: this once), or, with no target, to the next member in turn, waiting
/// probe_backoff only after a quorum of members answered without a leader.
/// At most max_redirects moves per call. The callable reads its endpoint as
/// `ctx.target().get<E>()`.
///
/// Stateful and thread-safe, like keel::circuit_breaker: not copyable or
/// movable; share it with std::ref or std::shared_ptr, and use
/// `at_most_once()` for calls that must never be sent twice.
///
///     keel::leader_follower<node> lf(std::vector<node>{a, b, c});
///     auto r = keel::pipeline(keel::retry({}), std::ref(lf)).try_execute(read);
///     auto w = keel::pipeline(keel::retry({}), lf.at_most_once()).try_execute(write);
template <class E, class Extract = leader_hint_signal, class Listener = no_listener,
          environment Env = default_environment, class FailoverOn = on::nothing_t,
          class NotSent = on::nothing_t>
class leader_follower
    : public executable<leader_follower<E, Extract, Listener, Env, FailoverOn, NotSent>> {
 public:
  /// Throws keel::config_error (aborts without exceptions) for invalid
  /// options, no endpoints, or initial_leader out of range.
  explicit leader_follower(std::vector<E> endpoints, leader_follower_options options = {},
                           Extract extract = Extract(), Listener listener = Listener(),
                           Env env = Env(), FailoverOn failover_on = FailoverOn(),
                           NotSent not_sent = NotSent())
      : leader_follower(from_parts, std::move(endpoints), options, std::move(extract),
                        std::move(listener), std::move(env), std::move(failover_on),
                        std::move(not_sent), policy_name("leader_follower")) {}

  /// For keel::rebuild: every part; fresh state (leader at initial_leader).
  leader_follower(from_parts_t, std::vector<E> endpoints, leader_follower_options options,
                  Extract extract, Listener listener, Env env, FailoverOn failover_on,
                  NotSent not_sent, policy_name name)
      : endpoints_(std::move(endpoints)),
        options_(checked(options, endpoints_.size())),
        extract_(std::move(extract)),
        listener_(std::move(listener)),
        env_(std::move(env)),
        failover_on_(std::move(failover_on)),
        not_sent_(std::move(not_sent)),
        name_(name),
        leader_(options_.initial_leader),
        leaderless_until_(std::make_unique<std::atomic<std::int64_t>[]>(endpoints_.size())) {
    for (std::size_t i = 0; i < endpoints_.size(); ++i)
      leaderless_until_[i].store(never_marked, std::memory_order_relaxed);
  }

  leader_follower(const leader_follower&) = delete;
  leader_follower& operator=(const leader_follower&) = delete;

  // Fluent setters: each builds a new follower (fresh state) from this one's parts.

  /// Reads leader signals with `f(const keel::outcome<R>&, std::size_t from)`
  /// (or `f(const keel::outcome<R>&)`) returning a keel::leader_signal; called
  /// on failures only. One that throws means "no signal".
  template <class F>
  auto with_signal(F f) && {
    using to = leader_follower<E, F, Listener, Env, FailoverOn, NotSent>;
    return rebuild<to, &leader_follower::extract_>(std::move(*this), std::move(f), parts{});
  }
  /// Which failures with no leader signal (a transport error, say) move a
  /// call on to the next member (a keel::on predicate). Default: none. One
  /// that throws matches.
  template <class P>
  auto failover_on(P p) && {
    using to = leader_follower<E, Extract, Listener, Env, P, NotSent>;
    return rebuild<to, &leader_follower::failover_on_>(std::move(*this), std::move(p), parts{});
  }
  /// Which failures are known never to have reached the member (connection
  /// refused, say): those failover_on matches may move an at-most-once call
  /// on, as keel's rejections may. Default: none. One that throws does not
  /// match (the call may have been delivered).
  template <class P>
  auto not_sent(P p) && {
    using to = leader_follower<E, Extract, Listener, Env, FailoverOn, P>;
    return rebuild<to, &leader_follower::not_sent_>(std::move(*this), std::move(p), parts{});
  }
  /// Where events go (leader_changed, redirected).
  template <class L>
  auto with_listener(L listener) && {
    using slot = with_listener_t<Listener, L>;
    using to = leader_follower<E, Extract, slot, Env, FailoverOn, NotSent>;
    return rebuild<to, &leader_follower::listener_>(
        std::move(*this), replace_listener(std::move(listener_), std::move(listener)), parts{});
  }
  /// The clock, sleeper and random source of the probe backoff and the no_leader marks.
  template <environment Env2>
  auto with_environment(Env2 env) && {
    using to = leader_follower<E, Extract, Listener, Env2, FailoverOn, NotSent>;
    return rebuild<to, &leader_follower::env_>(std::move(*this), std::move(env), parts{});
  }
  /// Named `name` in its events' source (default "leader_follower").
  auto named(std::string_view name) && {
    return rebuild<leader_follower, &leader_follower::name_>(std::move(*this), policy_name(name),
                                                             parts{});
  }

  /// The same follower (the same state) for calls that must not be applied
  /// twice (etcd's at-most-once rule): a failure that may have been delivered
  /// is never sent to another member. A leader signal (not_leader, moved,
  /// ask, no_leader) proves the member did not apply it, and is followed. A
  /// policy (copyable) that refers to this follower, which must outlive it.
  class at_most_once_view : public executable<at_most_once_view> {
   public:
    /// As leader_follower::run, at most once.
    template <class R, class Next>
    outcome<R> run(Next&& next, context& ctx) const {
      return owner_->template run_as<R>(next, ctx, true);
    }
    /// The follower it refers to.
    const leader_follower& follower() const noexcept { return *owner_; }

   private:
    friend class leader_follower;
    explicit at_most_once_view(const leader_follower& owner) noexcept : owner_(&owner) {}
    const leader_follower* owner_;
  };

  /// This follower, for calls that must not be sent twice (see at_most_once_view).
  at_most_once_view at_most_once() const noexcept { return at_most_once_view(*this); }

  /// Sends the call to the cached leader and follows what the answers say;
  /// never throws.
  template <class R, class Next>
  outcome<R> run(Next&& next, context& ctx) const {
    return run_as<R>(next, ctx, false);
  }

  /// Number of endpoints.
  std::size_t size() const noexcept { return endpoints_.size(); }
  /// Endpoint i (i < size()).
  const E& endpoint(std::size_t i) const noexcept { return endpoints_[i]; }
  /// Every endpoint, in order.
  const std::vector<E>& endpoints() const noexcept { return endpoints_; }
  /// The cached leader's index (a relaxed load).
  std::size_t leader() const noexcept { return leader_.load(std::memory_order_relaxed); }
  /// The cached term: the highest term accepted so far (0: none known). Never decreases.
  std::uint64_t term() const noexcept { return term_.load(std::memory_order_relaxed); }
  /// True while endpoint i is skipped by the probe order (it answered
  /// no_leader less than no_leader_cooldown ago).
  bool leaderless(std::size_t i) const {
    return i < size() && marked(i, env_.now().time_since_epoch().count());
  }
  const leader_follower_options& options() const noexcept { return options_; }
  /// The name set by named() ("leader_follower" by default).
  std::string_view name() const noexcept { return name_; }

  /// Makes endpoint i the cached leader at `term` (from service discovery, a
  /// Sentinel): refused (false) when i >= size() or the term is older than
  /// the cached one; term 0 keeps the cached term.
  bool set_leader(std::size_t i, std::uint64_t term = 0) const {
    if (i >= size()) return false;
    std::uint64_t seen = 0;
    return update(i, term, leader_change_cause::manual, nullptr, seen);
  }

 private:
  static constexpr std::int64_t never_marked = std::numeric_limits<std::int64_t>::min();

  static leader_follower_options checked(const leader_follower_options& o, std::size_t n) {
    require_valid(o.validate());
    if (n == 0) require_valid(config_problem{"leader_follower.endpoints", "must not be empty"});
    if (o.initial_leader >= n) {
      require_valid(config_problem{"leader_follower_options.initial_leader",
                                   "must be < the number of endpoints"});
    }
    return o;
  }

  // The happy path: one relaxed load, the target, the call. Returns `o`
  // only, so the outcome is built in the caller's slot.
  template <class R, class Next>
  outcome<R> run_as(Next& next, context& ctx, bool at_most_once) const {
    const std::size_t at = leader_.load(std::memory_order_relaxed);
    ctx.set_target(keel::target(at, endpoints_[at]));
    outcome<R> o = next(ctx);
    if (!o.has_value()) [[unlikely]]
      follow<R>(detail::pass_next(next), ctx, at, o, at_most_once);
    return o;
  }

  // How a failed answer moves the call.
  struct step {
    bool go = false;        // false: the failure is the call's outcome
    bool probe = false;     // to the next member in turn (no target)
    bool remember = false;  // the target becomes the cached leader
  };

  step decide(const leader_signal& s, bool fails_over) const noexcept {
    const bool named = s.target.has_value() && s.kind != leader_signal_kind::none &&
                       s.kind != leader_signal_kind::no_leader;
    if (named) return {true, false, s.kind != leader_signal_kind::ask};
    if (s.kind == leader_signal_kind::not_leader || s.kind == leader_signal_kind::no_leader)
      return {true, true, false};
    // No signal, or moved / ask with no usable target: an ordinary failure.
    return {fails_over, true, false};
  }

  // Everything after a failed first answer: read it, move, call again, until
  // a success, a failure that does not move, or max_redirects moves.
  template <class R, class Next>
  KEEL_DETAIL_NOINLINE void follow(Next next, context& ctx, std::size_t at, outcome<R>& o,
                                   bool at_most_once) const {
    // A quorum answered, or 128 members (tried_set counts that many exactly):
    // whichever is fewer.
    const std::size_t quorum = detail::min(size() / 2 + 1, tried_set::exact_below);
    // Members that answered without a leader since the last wait, by index:
    // exact for any index (a tried_set shares bits from 128), fewer than quorum.
    std::size_t leaderless[tried_set::exact_below];
    std::size_t answered = 0;
    std::uint64_t seen = epoch_.load(std::memory_order_relaxed);
    std::size_t cur = at;
    for (std::uint32_t moves = 0;; ++moves) {
      if (ctx.stop_requested() || is_cancellation(o) || ctx.expired()) return;
      leader_signal s = signal_of(o, cur);
      // Out of range, or fenced by an older term: the target is ignored.
      if (s.target && (*s.target >= size() || stale(s.term))) s.target.reset();
      const bool plain = s.kind == leader_signal_kind::none || !s.target;
      const step m = decide(s, plain && fails_over(o, at_most_once));
      if (!m.go || moves >= options_.max_redirects) return;
      if (s.kind == leader_signal_kind::no_leader && options_.require_leader) mark(cur);
      std::size_t to = 0;
      if (m.probe) {
        std::size_t k = 0;
        while (k < answered && leaderless[k] != cur) ++k;
        if (k == answered) leaderless[answered++] = cur;
        if (answered >= quorum) {
          if (!back_off(o, ctx)) return;
          answered = 0;
        }
        to = next_member(cur);
      } else {
        to = *s.target;
        if (m.remember) update(to, s.term, leader_change_cause::hint, &ctx, seen);
      }
      if constexpr (observes<Listener, redirected>) {
        const auto moved_on = [&] {
          return redirected{cur, to, s.kind, s.term, source_of(name_, ctx)};
        };
        report<redirected>(listener_, moved_on);
      }
      cur = to;
      ctx.set_target(keel::target(cur, endpoints_[cur]));
      o = next(ctx);
      if (o.has_value()) {
        unmark(cur);
        // A probed member served the call: it leads, unless the cache moved meanwhile.
        if (m.probe && cur != leader()) update(cur, 0, leader_change_cause::probe, &ctx, seen);
        return;
      }
    }
  }

  template <class R>
  leader_signal signal_of(const outcome<R>& o, std::size_t from) const noexcept {
    static_assert(std::is_invocable_v<const Extract&, const outcome<R>&, std::size_t> ||
                      std::is_invocable_v<const Extract&, const outcome<R>&>,
                  "keel::leader_follower::with_signal needs f(const keel::outcome<R>&, "
                  "std::size_t) or f(const keel::outcome<R>&) returning a keel::leader_signal");
    return call_or(leader_signal{}, [&]() -> leader_signal {
      if constexpr (std::is_invocable_v<const Extract&, const outcome<R>&, std::size_t>) {
        return extract_(o, from);
      } else {
        return extract_(o);
      }
    });
  }

  // May a failure with no leader signal move the call to another member?
  template <class R>
  bool fails_over(const outcome<R>& o, bool at_most_once) const noexcept {
    if (!detail::ask_user_predicate(failover_on_, o)) return false;
    if (!at_most_once || is_rejection(o)) return true;
    // A not_sent that throws cannot prove the call was not delivered.
    return call_or(false, [&] { return static_cast<bool>(not_sent_(o)); });
  }

  bool stale(std::uint64_t term) const noexcept {
    return term != 0 && term < term_.load(std::memory_order_relaxed);
  }

  // The wait after a quorum answered without a leader: false when the call
  // ends instead (the deadline comes first, or a stop request: cancelled).
  template <class R>
  bool back_off(outcome<R>& o, const context& ctx) const {
    if (options_.probe_backoff <= duration::zero()) return true;
    const double u = detail::clamp_draw(env_.uniform());
    const duration d = saturating_mul(options_.probe_backoff, 1.0 + options_.jitter * (2 * u - 1));
    if (ctx.has_deadline() && d >= ctx.remaining()) return false;
    if (!env_.sleep_for(d, ctx.stop_token())) {
      o = outcome<R>::from_keel(errc::cancelled);
      return false;
    }
    return true;
  }

  bool marked(std::size_t i, std::int64_t now) const noexcept {
    return leaderless_until_[i].load(std::memory_order_relaxed) > now;
  }
  void mark(std::size_t i) const {
    const time_point until = saturating_add(env_.now(), options_.no_leader_cooldown);
    leaderless_until_[i].store(until.time_since_epoch().count(), std::memory_order_relaxed);
  }
  void unmark(std::size_t i) const noexcept {
    if (leaderless_until_[i].load(std::memory_order_relaxed) != never_marked)
      leaderless_until_[i].store(never_marked, std::memory_order_relaxed);
  }

  // The member after `cur` in turn that is not marked no_leader; the next in
  // turn when every other one is.
  std::size_t next_member(std::size_t cur) const {
    const std::size_t n = size();
    const std::int64_t now = options_.require_leader ? env_.now().time_since_epoch().count() : 0;
    for (std::size_t k = 1; k < n && options_.require_leader; ++k) {
      const std::size_t i = (cur + k) % n;
      if (!marked(i, now)) return i;
    }
    return (cur + 1) % n;
  }

  // Moves the cached leader to `to` at `term` (0: keep the cached term),
  // unless the term is older than the cached one, or, for a probe, the cache
  // changed since `seen`. `seen` becomes the state after the change.
  bool update(std::size_t to, std::uint64_t term, leader_change_cause cause, const context* ctx,
              std::uint64_t& seen) const {
    std::size_t from = 0;
    std::uint64_t now_term = 0;
    {
      std::lock_guard lock(mutex_);
      const std::uint64_t cached = term_.load(std::memory_order_relaxed);
      if (term != 0 && term < cached) return false;
      const std::uint64_t epoch = epoch_.load(std::memory_order_relaxed);
      if (cause == leader_change_cause::probe && epoch != seen) return false;
      from = leader_.load(std::memory_order_relaxed);
      if (term > cached) term_.store(term, std::memory_order_relaxed);
      now_term = term > cached ? term : cached;
      if (from == to && term <= cached) {
        seen = epoch;
        return true;
      }
      leader_.store(to, std::memory_order_relaxed);
      epoch_.store(epoch + 1, std::memory_order_relaxed);
      seen = epoch + 1;
    }
    if constexpr (observes<Listener, leader_changed>) {
      if (from != to) {
        report<leader_changed>(listener_, [&] {
          return leader_changed{from, to, now_term, cause,
                                ctx != nullptr ? source_of(name_, *ctx) : source_of(name_)};
        });
      }
    }
    return true;
  }

  std::vector<E> endpoints_;
  leader_follower_options options_;
  [[no_unique_address]] Extract extract_;
  [[no_unique_address]] Listener listener_;
  [[no_unique_address]] Env env_;
  [[no_unique_address]] FailoverOn failover_on_;
  [[no_unique_address]] NotSent not_sent_;
  policy_name name_;
  mutable std::atomic<std::size_t> leader_;
  mutable std::atomic<std::uint64_t> term_{0};
  mutable std::atomic<std::uint64_t> epoch_{0};  // changes of leader_ or term_, under mutex_
  mutable std::mutex mutex_;                     // serialises the rare updates
  std::unique_ptr<std::atomic<std::int64_t>[]> leaderless_until_;  // ns; never_marked: not

  // What the fluent setters carry over, in the order of the from_parts constructor.
  using parts = keel::parts<&leader_follower::endpoints_, &leader_follower::options_,
                            &leader_follower::extract_, &leader_follower::listener_,
                            &leader_follower::env_, &leader_follower::failover_on_,
                            &leader_follower::not_sent_, &leader_follower::name_>;

  static_assert(detail::may_take_outcome<FailoverOn>(),
                "keel::leader_follower::failover_on needs a predicate on the outcome: a keel::on:: "
                "predicate, or a callable taking const keel::outcome<R>&");
  static_assert(detail::may_take_outcome<NotSent>(),
                "keel::leader_follower::not_sent needs a predicate on the outcome: a keel::on:: "
                "predicate, or a callable taking const keel::outcome<R>&");
};

// clang-format off
template <class E>
leader_follower(std::vector<E>) -> leader_follower<E>;
template <class E>
leader_follower(std::vector<E>, leader_follower_options) -> leader_follower<E>;
// clang-format on

}  // namespace keel

#endif  // KEEL_FAILOVER_LEADER_FOLLOWER_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_FAILOVER_ENDPOINT_POOL_HPP_INCLUDED
#define KEEL_FAILOVER_ENDPOINT_POOL_HPP_INCLUDED

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stop_token>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "keel/core/classify.hpp"
#include "keel/core/config_error.hpp"
#include "keel/core/context.hpp"
#include "keel/core/environment.hpp"
#include "keel/core/error.hpp"
#include "keel/core/events.hpp"
#include "keel/core/fluent.hpp"
#include "keel/core/observe.hpp"
#include "keel/core/outcome.hpp"
#include "keel/core/policy.hpp"
#include "keel/core/time.hpp"
#include "keel/detail/algorithm.hpp"
#include "keel/detail/config.hpp"
#include "keel/detail/thread_identity.hpp"
#include "keel/failover/outlier_detector.hpp"

namespace keel {

/// How a pool spreads calls over the usable endpoints of a priority level.
enum class balance : unsigned char {
  round_robin,   ///< in turn (weights ignored)
  random,        ///< uniformly at random (weights ignored)
  least_loaded,  ///< the better of `choice_count` random picks: weight / (in flight + 1)
  peak_ewma,     ///< the better of `choice_count` random picks by Finagle's PeakEWMA cost
  weighted,      ///< at random in proportion to weight
};

/// The enumerator's name ("round_robin"); "unknown" otherwise.
constexpr std::string_view to_string_view(balance b) noexcept {
  switch (b) {
    case balance::round_robin:
      return "round_robin";
    case balance::random:
      return "random";
    case balance::least_loaded:
      return "least_loaded";
    case balance::peak_ewma:
      return "peak_ewma";
    case balance::weighted:
      return "weighted";
  }
  return "unknown";
}

/// One endpoint of a pool with its weight and priority level.
template <class E>
struct pool_member {
  E endpoint;                  ///< the user's description of the replica
  std::uint32_t weight = 1;    ///< share within its level, 1..2^20. Default 1.
  std::uint32_t priority = 0;  ///< level; 0 takes traffic first. Default 0.
};

/// Slow start (Envoy): an endpoint that (re)joins takes
/// weight * max(min_weight_percent / 100, (t / window)^(1 / aggression)).
struct slow_start_options {
  duration window{};                      ///< the ramp's length; 0 turns it off. Default 0.
  double aggression = 1.0;                ///< > 0; 1 is linear. Default 1.
  std::uint32_t min_weight_percent = 10;  ///< the ramp's floor, 1..100. Default 10.
};

/// Active health checks: each endpoint is probed every `interval` (plus up to
/// `jitter`), and turns unhealthy after `unhealthy_threshold` failed probes in
/// a row and healthy after `healthy_threshold` passed ones.
struct health_check_options {
  duration interval = std::chrono::seconds(5);  ///< > 0. Default 5 s.
  duration jitter{};                            ///< uniform extra per probe, >= 0. Default 0.
  std::uint32_t unhealthy_threshold = 3;        ///< >= 1. Default 3.
  std::uint32_t healthy_threshold = 2;          ///< >= 1. Default 2.
  /// The interval while the pool takes no calls, for an endpoint not kept out
  /// (an unhealthy one is probed every `interval`). Default 60 s (Envoy).
  duration no_traffic_interval = std::chrono::seconds(60);

  /// The first invalid field, or nullopt.
  constexpr validation_result validate() const noexcept {
    if (interval <= duration::zero())
      return config_problem{"health_check_options.interval", "must be > 0"};
    if (jitter < duration::zero())
      return config_problem{"health_check_options.jitter", "must be >= 0"};
    if (unhealthy_threshold == 0)
      return config_problem{"health_check_options.unhealthy_threshold", "must be >= 1"};
    if (healthy_threshold == 0)
      return config_problem{"health_check_options.healthy_threshold", "must be >= 1"};
    if (no_traffic_interval <= duration::zero())
      return config_problem{"health_check_options.no_traffic_interval", "must be > 0"};
    return std::nullopt;
  }
};

/// A replica pool's options. Aggregate; every field has Envoy's default where
/// Envoy has one.
struct endpoint_pool_options {
  balance strategy = balance::round_robin;  ///< Default round robin.
  std::uint32_t choice_count =
      2;  ///< picks compared by least_loaded / peak_ewma, 2..10. Default 2.
  duration ewma_decay = std::chrono::seconds(10);  ///< PeakEWMA's tau, > 0. Default 10 s (Finagle).
  /// Below this percent of usable endpoints, spread over all of them; 0 turns
  /// it off, and the pool refuses with errc::no_endpoint_available. Default 50.
  std::uint32_t panic_threshold = 50;
  /// A level takes min(100, usable % * overprovisioning / 100) of the traffic
  /// left by the levels above it, in percent, >= 100. Default 140 (1.4).
  std::uint32_t overprovisioning = 140;
  /// Passive outlier detection; default off (as in Envoy and gRPC).
  std::optional<outlier_detection_options> outlier_detection{};
  /// How long an endpoint that recovered is held back before it takes calls
  /// again (fail back); a failure during its ramp starts the wait again. Default 0.
  duration failback_delay{};
  slow_start_options slow_start{};  ///< Default off.
  /// A call avoids the endpoints its earlier attempts tried (ctx.tried()),
  /// while an untried one is usable. Default true (Envoy's previous_hosts).
  bool avoid_tried = true;
  /// Slots for endpoints, >= the endpoints given; 0: max(16, 2 * endpoints).
  std::size_t capacity = 0;

  /// The first invalid field, or nullopt.
  constexpr validation_result validate() const noexcept {
    if (choice_count < 2 || choice_count > 10)
      return config_problem{"endpoint_pool_options.choice_count", "must be in [2, 10]"};
    if (ewma_decay <= duration::zero())
      return config_problem{"endpoint_pool_options.ewma_decay", "must be > 0"};
    if (panic_threshold > 100)
      return config_problem{"endpoint_pool_options.panic_threshold", "must be <= 100"};
    if (overprovisioning < 100 || overprovisioning > 100000)
      return config_problem{"endpoint_pool_options.overprovisioning", "must be in [100, 100000]"};
    if (failback_delay < duration::zero())
      return config_problem{"endpoint_pool_options.failback_delay", "must be >= 0"};
    if (slow_start.window < duration::zero())
      return config_problem{"endpoint_pool_options.slow_start.window", "must be >= 0"};
    if (!(slow_start.aggression > 0.0 && slow_start.aggression <= 1e6))
      return config_problem{"endpoint_pool_options.slow_start.aggression", "must be in (0, 1e6]"};
    if (slow_start.min_weight_percent == 0 || slow_start.min_weight_percent > 100)
      return config_problem{"endpoint_pool_options.slow_start.min_weight_percent",
                            "must be in [1, 100]"};
    if (outlier_detection) return outlier_detection->validate();
    return std::nullopt;
  }
};

// ---- Events ------------------------------------------------------------------

/// Event: passive outlier detection ejected `endpoint` until `until`.
struct endpoint_ejected {
  std::size_t endpoint = 0;
  ejection_reason reason{};
  time_point until{};
  event_source source;
};

/// Event: `endpoint` is back from an ejection (its time ended, or a probe passed).
struct endpoint_restored {
  std::size_t endpoint = 0;
  event_source source;
};

/// Event: active health checks turned `endpoint` unhealthy or healthy.
struct endpoint_health_changed {
  std::size_t endpoint = 0;
  bool healthy = false;
  event_source source;
};

/// Event: traffic left priority level `from` for the lower level `to` (priorities, not indexes).
struct pool_failover {
  std::uint32_t from_priority = 0;
  std::uint32_t to_priority = 0;
  event_source source;
};

/// Event: traffic came back from priority `from` to the higher level `to`.
struct pool_failback {
  std::uint32_t from_priority = 0;
  std::uint32_t to_priority = 0;
  event_source source;
};

/// Event: fewer than panic_threshold percent of the endpoints were usable, so
/// calls go to all of them.
struct pool_panic_entered {
  double usable_percent = 0;
  event_source source;
};

/// Event: enough endpoints are usable again; health counts once more.
struct pool_panic_left {
  double usable_percent = 0;
  event_source source;
};

/// What a pool knows about one endpoint slot.
struct endpoint_status {
  bool present = false;       ///< the slot holds an endpoint
  bool isolated = false;      ///< taken out by hand (isolate())
  bool ejected = false;       ///< ejected by outlier detection
  bool check_failed = false;  ///< active health checks say unhealthy
  bool held = false;          ///< an inner policy refused it with a retry-after not yet over
  bool warming = false;       ///< in its failback delay or slow-start ramp
  std::uint32_t in_flight = 0;
  std::uint32_t weight = 0;
  std::uint32_t priority = 0;
  std::uint64_t ejections = 0;  ///< ejections so far
};

/// The per-endpoint layers of a pool that has none: each call goes straight
/// to the callable.
struct no_layers {
  struct pass_through {
    template <class R, class Next>
    outcome<R> run(Next&& next, context& ctx) const {
      return next(ctx);
    }
  };
  template <class E>
  pass_through operator()(const E&, std::size_t) const noexcept {
    return {};
  }
};

namespace detail {

template <class E>
struct endpoint_probe {
  virtual ~endpoint_probe() = default;
  virtual bool check(const E& e, std::size_t i) const = 0;
};

template <class E, class F>
struct endpoint_probe_of final : endpoint_probe<E> {
  explicit endpoint_probe_of(F f) : fn(std::move(f)) {}
  bool check(const E& e, std::size_t i) const override {
    if constexpr (std::is_invocable_v<const F&, const E&, std::size_t>) {
      return static_cast<bool>(fn(e, i));
    } else {
      return static_cast<bool>(fn(e));
    }
  }
  F fn;
};

/// A probe and its options, shared by a pool's rebuilt copies.
template <class E>
struct health_check_part {
  std::shared_ptr<const endpoint_probe<E>> probe;
  health_check_options options;
  std::shared_ptr<const endpoint_probe<E>> warm_up;  // check() result ignored
};

template <class Factory, class E>
using layers_t = std::remove_cvref_t<std::invoke_result_t<const Factory&, const E&, std::size_t>>;

inline constexpr std::int64_t pool_never = INT64_MAX;
inline constexpr std::int64_t pool_past = INT64_MIN;

inline std::int64_t ticks(time_point t) noexcept { return t.time_since_epoch().count(); }

/// floor(u * n) for u in [0, 1), clamped below n (a hostile random source).
/// n < 2^32 (a pool's capacity): converted through int64, neither conversion
/// needs the fix-ups of an unsigned one.
inline std::size_t index_below(double u, std::size_t n) noexcept {
  if (!(u > 0.0)) return 0;
  const double size = static_cast<double>(static_cast<std::int64_t>(n));
  const double x = u * size;
  if (!(x < size)) return n - 1;
  return static_cast<std::size_t>(static_cast<std::int64_t>(x));
}

/// The slots one call moved away from within an attempt (each refused it):
/// exact for any index, up to `room` of them.
class moved_set {
 public:
  static constexpr std::size_t room = 16;
  bool contains(std::size_t s) const noexcept {
    for (std::size_t i = 0; i < n_; ++i)
      if (items_[i] == s) return true;
    return false;
  }
  /// False when full (and `s` not already in).
  bool insert(std::size_t s) noexcept {
    if (contains(s)) return true;
    if (n_ == room) return false;
    items_[n_++] = s;
    return true;
  }

 private:
  std::size_t items_[room] = {};
  std::size_t n_ = 0;
};

}  // namespace detail

template <class E, class Factory, class Listener, environment Env, class Handles>
class endpoint_pool;

namespace detail {
struct pool_test_access;
}

/// A replica pool: each call goes to one usable endpoint of a fixed-capacity
/// set, through that endpoint's own layers (built by `Factory` from the
/// endpoint: a breaker, a timeout, a bulkhead), and the callable reads the
/// endpoint as `ctx.target().get<E>()`. Picks by `balance`, skips endpoints
/// that are isolated, ejected, failing their health checks or refused by
/// their layers, fails over within the call when a layer refuses, spreads
/// traffic over priority levels (active-passive) and fails back with a delay
/// and a slow start. Thread-safe; not copyable or movable: share it with
/// std::ref or std::shared_ptr, like a breaker.
///
///     keel::endpoint_pool pool(std::vector<replica>{a, b, c});
///     auto r = pool.try_execute([](const keel::context& ctx) {
///       return get(*ctx.target().get<replica>()); });
template <class E, class Factory = no_layers, class Listener = no_listener,
          environment Env = default_environment, class Handles = on::any_failure_t>
class endpoint_pool : public executable<endpoint_pool<E, Factory, Listener, Env, Handles>> {
  using layers = detail::layers_t<Factory, E>;
  static_assert(policy_holder<layers>,
                "keel::endpoint_pool: the factory must return a policy (or a std::ref / "
                "std::shared_ptr to one) for each endpoint");

 public:
  using endpoint_type = E;

  /// `endpoints` with weight 1 and priority 0. Throws keel::config_error for
  /// invalid options, an empty set or a weight out of range.
  explicit endpoint_pool(std::vector<E> endpoints, endpoint_pool_options options = {},
                         Factory factory = Factory(), Listener listener = Listener(),
                         Env env = Env())
      : endpoint_pool(from_parts, members_of(std::move(endpoints)), std::move(options),
                      std::move(factory), std::move(listener), std::move(env), Handles(),
                      detail::health_check_part<E>{}, policy_name("endpoint_pool")) {}

  /// `members` with their weights and priorities.
  explicit endpoint_pool(std::vector<pool_member<E>> members, endpoint_pool_options options = {},
                         Factory factory = Factory(), Listener listener = Listener(),
                         Env env = Env())
      : endpoint_pool(from_parts, std::move(members), std::move(options), std::move(factory),
                      std::move(listener), std::move(env), Handles(),
                      detail::health_check_part<E>{}, policy_name("endpoint_pool")) {}

  /// For keel::rebuild: every part.
  endpoint_pool(from_parts_t, std::vector<pool_member<E>> members, endpoint_pool_options options,
                Factory factory, Listener listener, Env env, Handles handles,
                detail::health_check_part<E> checks, policy_name name)
      : options_((require_valid(options.validate()), std::move(options))),
        factory_(std::move(factory)),
        listener_(std::move(listener)),
        env_(std::move(env)),
        handles_(std::move(handles)),
        checks_(std::move(checks)),
        name_(name),
        members_(std::move(members)),
        capacity_(capacity_for(options_, members_.size())),
        feedback_(options_.outlier_detection.has_value() ||
                  options_.strategy == balance::peak_ewma || options_.failback_delay.count() > 0 ||
                  options_.slow_start.window.count() > 0),
        probing_(checks_.probe != nullptr),
        quiet_(!feedback_ && !probing_),
        two_least_loaded_(options_.strategy == balance::least_loaded && options_.choice_count == 2),
        slots_(std::make_unique<slot[]>(capacity_)),
        order_(std::make_unique<std::atomic<std::uint32_t>[]>(capacity_)),
        prefix_(std::make_unique<std::atomic<std::uint64_t>[]>(capacity_)),
        level_end_(std::make_unique<std::atomic<std::uint32_t>[]>(capacity_)),
        level_priority_(std::make_unique<std::atomic<std::uint32_t>[]>(capacity_)) {
    if (checks_.probe) require_valid(checks_.options.validate());
    if (options_.strategy == balance::round_robin && capacity_ <= max_striped_capacity) {
      stripes_ = std::shared_ptr<pin_stripe[]>(new pin_stripe[pin_stripes]);
      // One array (a stripe's counts[s] may not step out of a smaller one),
      // a line longer, so that every stripe's counts start on a line of their own.
      const std::size_t per_stripe =
          (capacity_ + pin_line_counts - 1) / pin_line_counts * pin_line_counts;
      pins_ = std::make_unique<std::atomic<std::uint32_t>[]>(pin_stripes * per_stripe +
                                                             pin_line_counts);
      const std::size_t past = reinterpret_cast<std::uintptr_t>(pins_.get()) % 64;
      std::atomic<std::uint32_t>* const first =
          pins_.get() + (past == 0 ? 0 : (64 - past) / sizeof(std::atomic<std::uint32_t>));
      for (std::size_t i = 0; i < pin_stripes; ++i)
        stripes_.get()[i].counts = first + i * per_stripe;
    }
    check_members(members_);
    if (options_.outlier_detection)
      od_ = std::make_unique<outlier_detector>(capacity_, *options_.outlier_detection, env_.now());
    const time_point now = env_.now();
    for (std::size_t i = 0; i < members_.size(); ++i) build(i, members_[i], now);
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < members_.size(); ++i)
      slots_[i].state.store(slot::live, std::memory_order_release);
    publish_locked();
    // The active priority is a priority, not a level index, so that a later
    // layout does not change what it means; it starts at the top.
    top_priority_.store(level_priority_[0].load(std::memory_order_relaxed),
                        std::memory_order_relaxed);
  }

  endpoint_pool(const endpoint_pool&) = delete;
  endpoint_pool& operator=(const endpoint_pool&) = delete;

  ~endpoint_pool() = default;

  // ---- Fluent setters: each builds a new pool (fresh state) from the same parts.

  /// Where events go (endpoint_ejected, endpoint_restored,
  /// endpoint_health_changed, pool_failover, pool_failback, pool_panic_*).
  template <class L>
  auto with_listener(L listener) && {
    return rebuild<endpoint_pool<E, Factory, L, Env, Handles>, &endpoint_pool::listener_>(
        std::move(*this), std::move(listener), parts{});
  }
  /// The clock, sleeper and random source the pool reads.
  template <environment V>
  auto with_environment(V env) && {
    return rebuild<endpoint_pool<E, Factory, Listener, V, Handles>, &endpoint_pool::env_>(
        std::move(*this), std::move(env), parts{});
  }
  /// Which outcomes count as an endpoint's failures for outlier detection,
  /// PeakEWMA and the failback ramp (keel::on:: predicates). Default: any
  /// failure; a cancellation or a layer's rejection never counts.
  template <class H>
  auto handle(H handles) && {
    return rebuild<endpoint_pool<E, Factory, Listener, Env, H>, &endpoint_pool::handles_>(
        std::move(*this), std::move(handles), parts{});
  }
  /// Active health checks: `probe(endpoint)` or `probe(endpoint, index)`
  /// returns true when the endpoint is healthy (a throw is a failed probe),
  /// run by run_health_checks() or a keel::health_checker.
  template <class P>
  auto with_health_check(P probe, health_check_options options = {}) && {
    require_valid(options.validate());
    detail::health_check_part<E> part{
        std::make_shared<const detail::endpoint_probe_of<E, P>>(std::move(probe)), options,
        checks_.warm_up};
    return rebuild<endpoint_pool, &endpoint_pool::checks_>(std::move(*this), std::move(part),
                                                           parts{});
  }
  /// A hook run for each endpoint of a priority level when traffic fails over
  /// to that level (a cold standby's warm-up); an exception from it is ignored.
  template <class W>
  auto on_warm_up(W hook) && {
    auto wrapped = [h = std::move(hook)](const E& e, std::size_t i) {
      if constexpr (std::is_invocable_v<const W&, const E&, std::size_t>) {
        h(e, i);
      } else {
        h(e);
      }
      return true;
    };
    detail::health_check_part<E> part{
        checks_.probe, checks_.options,
        std::make_shared<const detail::endpoint_probe_of<E, decltype(wrapped)>>(
            std::move(wrapped))};
    return rebuild<endpoint_pool, &endpoint_pool::checks_>(std::move(*this), std::move(part),
                                                           parts{});
  }
  /// Named `name` in its events' source (default "endpoint_pool").
  auto named(std::string_view name) && {
    return rebuild<endpoint_pool, &endpoint_pool::name_>(std::move(*this), policy_name(name),
                                                         parts{});
  }

  // ---- The call ---------------------------------------------------------------

  /// Sends the call to one endpoint; a layer's rejection moves it to another
  /// (nothing was sent). With no usable endpoint (and no panic) the outcome is
  /// errc::no_endpoint_available with a retry-after of the earliest recovery.
  template <class R, class Next>
  outcome<R> run(Next&& next, context& ctx) const {
    // The context is read before the first atomic, after which the compiler
    // reloads it: a fresh one has tried nothing, and the picks' test folds away.
    const context* const avoid = options_.avoid_tried && !ctx.tried().empty() ? &ctx : nullptr;
    if (degraded_.load(std::memory_order_relaxed) == 0) [[likely]] {
      // One call_on for every strategy: inlined once, with its layers.
      std::size_t s = none;
      std::atomic<std::uint32_t>* own = nullptr;
      time_point start{};  // PeakEWMA's pick reads the time: the start of the call it times
      if (striped()) {
        // Round robin: pinned in the calling thread's own stripe, if it owns one.
        const turn t = pin_in_turn(avoid);
        s = t.slot;
        own = t.owned;
      } else {
        const pick p = two_least_loaded_ ? pick{less_loaded_of_two(avoid), {}} : fast_pick(avoid);
        s = p.slot;
        start = p.now;
      }
      if (s != none && (own != nullptr || enter(s))) [[likely]] {
        slot& sl = slots_[s];
        bool moved = false;  // the fast path hands a moved call to the slow one itself
        return call_on<R, true>(sl, s, held(&sl, own), next, ctx, start, moved);
      }
    }
    return run_slow<R>(pass_next(next), ctx, none, std::nullopt);
  }

  // ---- Reading ------------------------------------------------------------------

  /// Endpoints held now.
  std::size_t size() const noexcept { return live_.load(std::memory_order_relaxed); }
  /// Slots: the largest index an endpoint can have, plus one.
  std::size_t capacity() const noexcept { return capacity_; }
  const endpoint_pool_options& options() const noexcept { return options_; }
  /// The name set by named().
  std::string_view name() const noexcept { return name_.view(); }

  /// What the pool knows about slot i < capacity() (all false past it).
  endpoint_status status(std::size_t i) const {
    endpoint_status st;
    if (i >= capacity_) return st;
    const slot& sl = slots_[i];
    st.present = sl.state.load(std::memory_order_acquire) == slot::live;
    const std::uint32_t g = sl.gate.load(std::memory_order_relaxed);
    st.isolated = (g & isolated_bit) != 0;
    st.ejected = (g & ejected_bit) != 0;
    st.check_failed = (g & check_bit) != 0;
    st.held = (g & held_bit) != 0;
    st.warming = (g & warming_bit) != 0;
    st.in_flight = sl.in_flight.load(std::memory_order_relaxed) +
                   striped_in_flight(i, std::memory_order_relaxed);
    st.weight = sl.weight.load(std::memory_order_relaxed);
    st.priority = sl.priority.load(std::memory_order_relaxed);
    st.ejections = sl.ejections.load(std::memory_order_relaxed);
    return st;
  }
  /// The endpoint in slot i, or null when the slot is empty. Valid until a
  /// replace() removes it; read it only while no replace() can run.
  const E* endpoint(std::size_t i) const noexcept {
    if (i >= capacity_ || slots_[i].state.load(std::memory_order_acquire) != slot::live)
      return nullptr;
    return &slots_[i].endpoint();
  }
  /// The layers of slot i (its breaker, say), or null when the slot is empty.
  const layers* layers_of(std::size_t i) const noexcept {
    if (i >= capacity_ || slots_[i].state.load(std::memory_order_acquire) != slot::live)
      return nullptr;
    return &slots_[i].layers_ref();
  }
  /// Endpoints that take calls now (none of isolated, ejected, failing checks,
  /// held, or waiting out their failback delay).
  std::size_t usable_count() const {
    const time_point now = env_.now();
    std::size_t n = 0;
    for (std::size_t k = 0, end = live_order(); k < end; ++k) {
      const std::uint32_t s = order_[k].load(std::memory_order_relaxed);
      n += look_at(s, now).usable ? 1 : 0;
    }
    return n;
  }
  /// Endpoints ejected by outlier detection now.
  std::size_t ejected_count() const noexcept { return od_ ? od_->ejected_count() : 0; }
  /// The outlier detector, when the options turn it on.
  const outlier_detector* detector() const noexcept { return od_.get(); }
  /// True while the pool is in panic (spreading over every endpoint).
  bool in_panic() const noexcept { return panic_.load(std::memory_order_relaxed); }
  /// The priority of the highest level that takes traffic now.
  std::uint32_t active_priority() const noexcept {
    return top_priority_.load(std::memory_order_relaxed);
  }
  /// The slot of the first endpoint equal to `e`, if held.
  std::optional<std::size_t> index_of(const E& e) const {
    static_assert(std::equality_comparable<E>, "keel::endpoint_pool::index_of: E needs ==");
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < capacity_; ++i)
      if (slots_[i].state.load(std::memory_order_relaxed) == slot::live &&
          slots_[i].endpoint() == e)
        return i;
    return std::nullopt;
  }

  // ---- Changing it at run time --------------------------------------------------

  /// Takes endpoint i out of rotation until enable(i) (a drain, maintenance).
  void isolate(std::size_t i) {
    if (present(i)) set_bits(i, isolated_bit);
  }
  /// Puts an isolated endpoint i back.
  void enable(std::size_t i) {
    if (present(i)) clear_bits(i, isolated_bit);
  }
  /// Sets endpoint i's weight (1..2^20; throws config_error outside).
  void set_weight(std::size_t i, std::uint32_t weight) {
    check_weight(weight, "endpoint_pool.set_weight: weight");
    std::lock_guard lock(mutex_);
    if (!present(i)) return;
    slots_[i].weight.store(weight, std::memory_order_relaxed);
    publish_locked();
  }
  /// Replaces the endpoint set (a discovery update). An endpoint equal to one
  /// held keeps its slot and all its state (health, ejection, in-flight count,
  /// weight and priority taken from `members`); the others are removed once
  /// their calls end, and new ones take free slots. Returns false, changing
  /// nothing, when the new ones do not fit now (a removed endpoint keeps its
  /// slot while its calls run: try again). Throws config_error, changing
  /// nothing, when the set is empty, larger than capacity() or has a bad weight.
  [[nodiscard]] bool replace(std::vector<pool_member<E>> members) {
    static_assert(std::equality_comparable<E>, "keel::endpoint_pool::replace: E needs ==");
    check_members(members);
    if (members.size() > capacity_)
      require_valid(config_problem{"endpoint_pool.replace", "more endpoints than capacity"});
    std::unique_lock lock(mutex_);
    const time_point now = env_.now();
    reclaim_locked();
    std::vector<std::size_t> keep(members.size(), none);
    std::vector<bool> kept(capacity_, false);
    std::size_t fresh = 0;
    for (std::size_t m = 0; m < members.size(); ++m) {
      for (std::size_t s = 0; s < capacity_; ++s) {
        if (!kept[s] && slots_[s].state.load(std::memory_order_relaxed) == slot::live &&
            slots_[s].endpoint() == members[m].endpoint) {
          keep[m] = s;
          kept[s] = true;
          break;
        }
      }
      fresh += keep[m] == none ? 1 : 0;
    }
    std::size_t free = 0, draining = 0;
    for (std::size_t s = 0; s < capacity_; ++s) {
      const std::uint32_t st = slots_[s].state.load(std::memory_order_relaxed);
      free += st == slot::empty ? 1 : 0;
      draining += st == slot::removed ? 1 : 0;
    }
    // The new ones need slots of their own while the ones that leave drain.
    if (fresh > free + draining)
      require_valid(config_problem{"endpoint_pool.replace",
                                   "capacity must hold the endpoints that stay, those that leave "
                                   "(until their calls end) and the new ones"});
    if (fresh > free) return false;  // slots still held by calls to endpoints removed before
    // Build the new ones first: a factory or a copy that throws leaves the
    // pool as it was.
    std::vector<std::size_t> place(members.size(), none);
    struct rollback {
      endpoint_pool* pool;
      std::vector<std::size_t>& place;
      ~rollback() {
        if (pool == nullptr) return;
        for (const std::size_t s : place)
          if (s != none) pool->slots_[s].destroy();
      }
    } undo{this, place};
    for (std::size_t m = 0, s = 0; m < members.size(); ++m) {
      if (keep[m] != none) continue;
      while (slots_[s].state.load(std::memory_order_relaxed) != slot::empty ||
             slots_[s].constructed)
        ++s;
      build(s, members[m], now);
      place[m] = s;
    }
    std::vector<pool_member<E>> given = members;  // the copy may throw; nothing changed yet
    undo.pool = nullptr;
    // Remove the ones that go: no new call enters them; their storage is
    // reclaimed once their in-flight calls end.
    // The new layout first, without the ones that go, then their removal: a
    // caller reads a layout that always holds every endpoint that stays.
    std::vector<bool> leaving(capacity_, false);
    for (std::size_t s = 0; s < capacity_; ++s)
      leaving[s] = !kept[s] && slots_[s].state.load(std::memory_order_relaxed) == slot::live;
    for (std::size_t m = 0; m < members.size(); ++m) {
      const std::size_t s = keep[m] != none ? keep[m] : place[m];
      slot& sl = slots_[s];
      sl.weight.store(members[m].weight, std::memory_order_relaxed);
      sl.priority.store(members[m].priority, std::memory_order_relaxed);
      sl.rank = m;
      if (keep[m] == none) sl.state.store(slot::live, std::memory_order_release);
    }
    members_ = std::move(given);
    publish_locked(&leaving);
    bool healed = false;
    for (std::size_t s = 0; s < capacity_; ++s) {
      if (!leaving[s]) continue;
      slots_[s].state.store(slot::removed, std::memory_order_seq_cst);
      healed = drop_gate(s) || healed;
      if (od_) od_->retire(s);  // its ejection leaves with it; its late results are ignored
    }
    reclaim_locked();
    lock.unlock();
    // The sick ones left, or a healthy top level came: every call takes the
    // fast path (the top level) from now on, so the pool says so.
    if (healed || degraded_.load(std::memory_order_acquire) == 0) settle_healthy();
    return true;
  }
  /// replace() with weight 1 and priority 0 for each.
  [[nodiscard]] bool replace(std::vector<E> endpoints) {
    return replace(members_of(std::move(endpoints)));
  }

  // ---- Active health checks -----------------------------------------------------

  /// Probes every endpoint whose probe is due at `now` (the environment's
  /// clock if not given), on the calling thread, one at a time; returns the
  /// probes run. Without a probe (with_health_check), does nothing.
  std::size_t run_health_checks() const { return run_health_checks(env_.now()); }
  std::size_t run_health_checks(time_point now) const {
    if (!checks_.probe) return 0;
    // What the probes decided is told after the lock: a listener may call the pool.
    struct verdict {
      std::size_t slot;
      bool healthy;   // turned healthy (else unhealthy)
      bool restores;  // also ends an ejection
    };
    std::vector<verdict> verdicts;
    verdicts.reserve(capacity_);  // before anything changes: a bad_alloc changes nothing
    // A slot with a verdict stays pinned until the verdict is carried out, so
    // that a replace() cannot hand it to another endpoint in between.
    struct pins {
      const endpoint_pool* pool;
      std::vector<verdict>& held;
      ~pins() {
        for (const verdict& v : held) pool->leave(v.slot);
      }
    } pinned{this, verdicts};
    std::size_t ran = 0;
    {
      std::lock_guard checking(check_mutex_);
      const std::int64_t t = detail::ticks(now);
      // As in Envoy, no_traffic_interval is for a pool that takes no calls: with
      // any traffic, and for an endpoint kept out (it cannot take any), interval.
      bool busy = false;
      for (std::size_t s = 0; s < capacity_ && !busy; ++s)
        busy = slots_[s].state.load(std::memory_order_acquire) == slot::live &&
               slots_[s].traffic.load(std::memory_order_relaxed);
      for (std::size_t s = 0; s < capacity_; ++s) {
        slot& sl = slots_[s];
        if (sl.state.load(std::memory_order_acquire) != slot::live) continue;
        sync_checks_locked(sl);
        if (t < sl.next_check) continue;
        if (!enter(s)) continue;  // pinned: a replace() cannot free it during the probe
        struct pin {
          const endpoint_pool* pool;
          std::size_t s;
          ~pin() {
            if (pool != nullptr) pool->leave(s);
          }
        } probing{this, s};
        const bool passed = probe_one(s);
        ++ran;
        sl.traffic.store(false, std::memory_order_relaxed);
        const health_check_options& ho = checks_.options;
        const bool kept_out = sl.gate.load(std::memory_order_relaxed) != 0;
        const duration gap = busy || kept_out ? ho.interval : ho.no_traffic_interval;
        const duration extra = saturating_mul(ho.jitter, detail::clamp_draw(env_.uniform()));
        sl.next_check = detail::ticks(saturating_add(saturating_add(now, gap), extra));
        if (passed) {
          sl.check_fails = 0;
          if (sl.check_passes < UINT32_MAX) ++sl.check_passes;
          const bool failing = (sl.gate.load(std::memory_order_relaxed) & check_bit) != 0;
          const bool ejected = od_ && od_->ejected(s);
          if (sl.check_passes >= ho.healthy_threshold && (failing || ejected)) {
            verdicts.push_back({s, true, ejected});  // reserved: cannot throw
            probing.pool = nullptr;                  // the verdict holds the pin now
          }
        } else {
          sl.check_passes = 0;
          if (sl.check_fails < UINT32_MAX) ++sl.check_fails;
          if (sl.check_fails >= ho.unhealthy_threshold && set_bits(s, check_bit)) {
            verdicts.push_back({s, false, false});
            probing.pool = nullptr;
          }
        }
      }
    }
    for (const verdict& v : verdicts) {
      if (!v.healthy) {
        emit(listener_, endpoint_health_changed{v.slot, false, source_of(name_.view())});
        continue;
      }
      // Told only by the checker that cleared the bit: two checkers that
      // both saw it pass tell it once.
      recover(v.slot, check_bit, now, [&] {
        emit(listener_, endpoint_health_changed{v.slot, true, source_of(name_.view())});
      });
      if (v.restores && od_) {
        bool changed = false;
        od_->restore(v.slot, now, noted(changed));
        if (changed) reconcile(now);
      }
    }
    return ran;
  }
  /// When the next probe is due (time_point::max() without a probe).
  time_point next_health_check() const {
    if (!checks_.probe) return time_point::max();
    std::lock_guard checking(check_mutex_);
    std::int64_t next = detail::pool_never;
    for (std::size_t s = 0; s < capacity_; ++s) {
      if (slots_[s].state.load(std::memory_order_acquire) != slot::live) continue;
      sync_checks_locked(slots_[s]);
      next = detail::min(next, slots_[s].next_check);
    }
    return time_point(duration(next));
  }
  /// The environment's time: what run_health_checks() uses.
  time_point now() const { return env_.now(); }
  /// Sleeps through the environment (a health_checker's wait).
  bool sleep_for(duration d, const std::stop_token& token) const {
    return env_.sleep_for(d, token);
  }

 private:
  friend struct detail::pool_test_access;
  template <class, class, class, environment, class>
  friend class endpoint_pool;

  static constexpr std::size_t none = static_cast<std::size_t>(-1);
  static constexpr std::uint32_t max_weight = 1u << 20;
  static constexpr std::size_t max_levels = 64;  // the slow path's per-level arrays
  // gate bits: any set puts the slot on the slow path
  static constexpr std::uint32_t isolated_bit = 1, ejected_bit = 2, check_bit = 4, held_bit = 8,
                                 warming_bit = 16;

  // Round robin's per-thread pins: a stripe's owner is the only thread that
  // writes its flag and its counts, from its claim until it ends
  // (detail::claim_stripe); a thread picks the stripe of its small number.
  static constexpr std::size_t pin_stripes = detail::max_stripes;
  static constexpr std::size_t max_striped_capacity = 4096;  // 16 KiB of counts per stripe
  struct alignas(64) pin_stripe {
    std::atomic<std::uint64_t> owner{0};    // a detail::thread_identity id; 0: nobody yet
    std::atomic<std::uint32_t> picking{0};  // 1 from before the cursor's step until the count is up
    std::atomic<std::uint32_t>* counts = nullptr;  // per slot, on lines of this stripe's own
  };
  static constexpr std::size_t pin_line_counts = 16;  // a 64-byte line of counts

  struct alignas(64) slot {
    enum : std::uint32_t { empty = 0, live = 1, removed = 2 };
    std::atomic<std::uint32_t> state{empty};
    std::atomic<std::uint32_t> in_flight{0};
    std::atomic<std::uint32_t> gate{0};
    std::atomic<std::uint32_t> weight{1};
    std::atomic<std::uint32_t> priority{0};
    std::atomic<bool> traffic{false};
    std::atomic<bool> warmed{false};  // a standby's warm-up hook ran since the last failback
    std::atomic<std::int64_t> held_until{detail::pool_past};
    std::atomic<std::int64_t> ready_at{detail::pool_past};  // failback delay end
    std::atomic<std::int64_t> ramp_end{detail::pool_past};  // slow start end
    std::atomic<std::uint64_t> ejections{0};
    // PeakEWMA under a sequence lock: odd while written.
    std::atomic<std::uint64_t> ewma_seq{0};
    std::atomic<double> ewma_cost{0.0};
    std::atomic<std::int64_t> ewma_stamp{0};
    // Bumped by each build(): the checks' counts belong to one endpoint.
    std::atomic<std::uint32_t> generation{0};
    std::atomic<std::int64_t> built{INT64_MIN};  // when build() ran
    std::size_t rank = 0;                        // position in the members list, under mutex_
    std::uint32_t check_generation = 0;          // under check_mutex_
    std::uint32_t check_passes = 0;              // under check_mutex_
    std::uint32_t check_fails = 0;               // under check_mutex_
    std::int64_t next_check = INT64_MIN;         // under check_mutex_
    alignas(E) unsigned char e_bytes[sizeof(E)];
    alignas(layers) unsigned char l_bytes[sizeof(layers)];
    bool constructed = false;  // under mutex_

    slot() = default;
    slot(const slot&) = delete;
    slot& operator=(const slot&) = delete;
    ~slot() { destroy(); }

    const E& endpoint() const noexcept {
      return *std::launder(reinterpret_cast<const E*>(e_bytes));
    }
    const layers& layers_ref() const noexcept {
      return *std::launder(reinterpret_cast<const layers*>(l_bytes));
    }
    void destroy() noexcept {
      if (!constructed) return;
      std::launder(reinterpret_cast<layers*>(l_bytes))->~layers();
      std::launder(reinterpret_cast<E*>(e_bytes))->~E();
      constructed = false;
    }
  };

  static std::vector<pool_member<E>> members_of(std::vector<E> endpoints) {
    std::vector<pool_member<E>> m;
    m.reserve(endpoints.size());
    for (E& e : endpoints) m.push_back(pool_member<E>{std::move(e), 1, 0});
    return m;
  }
  static std::size_t capacity_for(const endpoint_pool_options& o, std::size_t n) {
    const std::size_t c = o.capacity != 0 ? o.capacity : detail::max<std::size_t>(16, 2 * n);
    if (c < n)
      require_valid(
          config_problem{"endpoint_pool_options.capacity", "must be >= the endpoints given"});
    if (c > UINT32_MAX)
      require_valid(config_problem{"endpoint_pool_options.capacity", "must be < 2^32"});
    return c;
  }
  static void check_weight(std::uint32_t w, const char* field) {
    if (w == 0 || w > max_weight) require_valid(config_problem{field, "must be in [1, 2^20]"});
  }
  static void check_members(const std::vector<pool_member<E>>& members) {
    if (members.empty())
      require_valid(config_problem{"endpoint_pool.endpoints", "must not be empty"});
    std::vector<std::uint32_t> priorities;
    for (const auto& m : members) {
      check_weight(m.weight, "pool_member.weight");
      bool seen = false;
      for (const std::uint32_t p : priorities) seen = seen || p == m.priority;
      if (!seen) priorities.push_back(m.priority);
    }
    if (priorities.size() > max_levels)
      require_valid(config_problem{"pool_member.priority", "at most 64 distinct priorities"});
  }

  // ---- Slots and layout (under mutex_) ----

  // Builds slot s for `m`, not yet live.
  void build(std::size_t s, const pool_member<E>& m, time_point now) {
    slot& sl = slots_[s];
    ::new (static_cast<void*>(sl.e_bytes)) E(m.endpoint);
    struct undo {
      slot* sl;
      ~undo() {
        if (sl) std::launder(reinterpret_cast<E*>(sl->e_bytes))->~E();
      }
    } guard{&sl};
    // The factory's prvalue is built in place: a breaker is neither copied nor moved.
    ::new (static_cast<void*>(sl.l_bytes)) layers(factory_(sl.endpoint(), s));
    guard.sl = nullptr;
    sl.constructed = true;
    // in_flight is left alone: a caller holding a stale index may be between
    // its increment and its back-out, and the two must balance.
    sl.gate.store(0, std::memory_order_relaxed);
    sl.weight.store(m.weight, std::memory_order_relaxed);
    sl.priority.store(m.priority, std::memory_order_relaxed);
    sl.traffic.store(false, std::memory_order_relaxed);
    sl.warmed.store(false, std::memory_order_relaxed);
    sl.held_until.store(detail::pool_past, std::memory_order_relaxed);
    sl.ready_at.store(detail::pool_past, std::memory_order_relaxed);
    sl.ramp_end.store(detail::pool_past, std::memory_order_relaxed);
    sl.ejections.store(0, std::memory_order_relaxed);
    sl.ewma_cost.store(0.0, std::memory_order_relaxed);
    sl.ewma_stamp.store(detail::ticks(now), std::memory_order_relaxed);
    sl.rank = s;
    // The checks' counts start again at the next round (sync_checks_locked),
    // so a round of slow probes does not hold up a replace().
    sl.built.store(detail::ticks(now), std::memory_order_relaxed);
    sl.generation.fetch_add(1, std::memory_order_relaxed);
    if (od_) od_->forget(s);
  }

  // Frees removed slots whose calls have all ended. A caller that entered
  // one increments in_flight before it reads the state (both seq_cst), so it
  // either sees `removed` and backs out, or is seen here and keeps the slot.
  // Round robin's own pins: see pin_in_turn; an owner between its flag and
  // its count is waited for (stripes_quiet).
  void reclaim_locked() {
    int quiet = -1;  // whether no stripe's flag is up: read at the first removed slot
    for (std::size_t s = 0; s < capacity_; ++s) {
      slot& sl = slots_[s];
      if (sl.state.load(std::memory_order_seq_cst) != slot::removed) continue;
      if (sl.in_flight.load(std::memory_order_seq_cst) != 0) continue;
      if (striped()) {
        if (quiet < 0) quiet = stripes_quiet() ? 1 : 0;
        if (quiet == 0 || striped_in_flight(s, std::memory_order_acquire) != 0) continue;
      }
      if (od_) od_->forget(s);  // a result its last call recorded goes too
      sl.destroy();
      sl.state.store(slot::empty, std::memory_order_seq_cst);
    }
  }

  // After the removals' stores (seq_cst, earlier under mutex_): the cursor
  // in the seq_cst order, then every stripe's flag. A flag up is waited for
  // (a pick is a few instructions): any 0 read after the cursor's load comes
  // from that pick's own drop or a later one, so its count is seen. Giving
  // up at once would keep every removed slot whenever any thread picks any
  // endpoint, and replace() would fail on a busy pool. The wait yields, then
  // sleeps, so that a picker preempted in its window gets a core back; a
  // thread stopped there for longer (a debugger) is waited for about 50 ms in
  // all, and then nothing is freed this time.
  bool stripes_quiet() const noexcept {
    static_cast<void>(cursor_.load(std::memory_order_seq_cst));
    unsigned waits = 0;
    for (std::size_t i = 0; i < pin_stripes; ++i) {
      while (stripes_.get()[i].picking.load(std::memory_order_acquire) != 0) {
        if (waits == quiet_yields + quiet_sleeps) return false;
        if (waits++ < quiet_yields) {
          std::this_thread::yield();
        } else {
          std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
      }
    }
    return true;
  }
  static constexpr unsigned quiet_yields = 64, quiet_sleeps = 1000;

  // Sorts the live slots by (priority, rank) into order_, with each level's
  // end, the weighted prefix sums, and the population the ejection cap counts.
  void publish_locked(const std::vector<bool>* leaving = nullptr) {
    std::vector<std::uint32_t> live;
    for (std::size_t s = 0; s < capacity_; ++s)
      if (slots_[s].state.load(std::memory_order_relaxed) == slot::live &&
          (leaving == nullptr || !(*leaving)[s]))
        live.push_back(static_cast<std::uint32_t>(s));
    for (std::size_t a = 1; a < live.size(); ++a) {  // insertion sort: small, stable
      const std::uint32_t x = live[a];
      std::size_t b = a;
      while (b > 0 && before(x, live[b - 1])) {
        live[b] = live[b - 1];
        --b;
      }
      live[b] = x;
    }
    std::size_t levels = 0;
    std::uint64_t sum = 0;
    for (std::size_t k = 0; k < live.size(); ++k) {
      const slot& sl = slots_[live[k]];
      const std::uint32_t p = sl.priority.load(std::memory_order_relaxed);
      if (k > 0 && p != slots_[live[k - 1]].priority.load(std::memory_order_relaxed)) {
        level_end_[levels].store(static_cast<std::uint32_t>(k), std::memory_order_relaxed);
        ++levels;
        sum = 0;
      }
      level_priority_[levels].store(p, std::memory_order_relaxed);
      sum += sl.weight.load(std::memory_order_relaxed);
      prefix_[k].store(sum, std::memory_order_relaxed);
      order_[k].store(live[k], std::memory_order_relaxed);
    }
    level_end_[levels].store(static_cast<std::uint32_t>(live.size()), std::memory_order_relaxed);
    levels_.store(static_cast<std::uint32_t>(levels + 1), std::memory_order_relaxed);
    const std::uint32_t top = level_end_[0].load(std::memory_order_relaxed);
    top_m_.store(fastmod_multiplier(top), std::memory_order_relaxed);
    top_count_.store(top, std::memory_order_release);
    live_.store(live.size(), std::memory_order_release);
    if (od_) od_->set_population(live.size());
  }
  bool before(std::uint32_t a, std::uint32_t b) const noexcept {
    const std::uint32_t pa = slots_[a].priority.load(std::memory_order_relaxed);
    const std::uint32_t pb = slots_[b].priority.load(std::memory_order_relaxed);
    return pa != pb ? pa < pb : slots_[a].rank < slots_[b].rank;
  }
  std::size_t live_order() const noexcept {
    return detail::min(live_.load(std::memory_order_acquire), capacity_);
  }
  bool present(std::size_t i) const noexcept {
    return i < capacity_ && slots_[i].state.load(std::memory_order_acquire) == slot::live;
  }

  // ---- Gate bits: degraded_ counts the live slots with any bit set ----

  // Each returns whether it changed one of `bits` (so exactly one caller tells it).
  bool set_bits(std::size_t s, std::uint32_t bits) const {
    std::lock_guard lock(gate_mutex_);
    slot& sl = slots_[s];
    if (sl.state.load(std::memory_order_relaxed) != slot::live) return false;
    return (mark_locked(sl, bits) & bits) != bits;
  }
  // Under gate_mutex_: sets `bits`; the first bit makes the slot degraded.
  // Returns the gate before.
  std::uint32_t mark_locked(slot& sl, std::uint32_t bits) const noexcept {
    const std::uint32_t old = sl.gate.fetch_or(bits, std::memory_order_relaxed);
    if (old == 0) degraded_.fetch_add(1, std::memory_order_relaxed);
    return old;
  }
  // Under gate_mutex_: takes `bits` off a gate `old` that holds some; the
  // endpoint warms first when a failback delay or a slow start is set.
  // Returns whether that leaves no slot degraded.
  bool lift_locked(slot& sl, std::uint32_t old, std::uint32_t bits, time_point now) const {
    std::uint32_t after = old & ~bits;
    if (options_.failback_delay.count() > 0 || options_.slow_start.window.count() > 0) {
      start_warming(sl, now);
      after |= warming_bit;
    }
    sl.gate.store(after, std::memory_order_relaxed);
    return after == 0 && degraded_.fetch_sub(1, std::memory_order_relaxed) == 1;
  }
  bool clear_bits(std::size_t s, std::uint32_t bits) const {
    bool healed = false;
    bool changed = false;
    {
      std::lock_guard lock(gate_mutex_);
      slot& sl = slots_[s];
      if (sl.state.load(std::memory_order_relaxed) != slot::live) return false;
      const std::uint32_t old = sl.gate.fetch_and(~bits, std::memory_order_relaxed);
      changed = (old & bits) != 0;
      if (old != 0 && (old & ~bits) == 0)
        healed = degraded_.fetch_sub(1, std::memory_order_relaxed) == 1;
    }
    if (healed) settle_healthy();
    return changed;
  }
  // A slot leaving the pool takes its bits out of degraded_; true when that
  // leaves none degraded.
  bool drop_gate(std::size_t s) const {
    std::lock_guard lock(gate_mutex_);
    const std::uint32_t old = slots_[s].gate.exchange(0, std::memory_order_relaxed);
    return old != 0 && degraded_.fetch_sub(1, std::memory_order_relaxed) == 1;
  }
  // Every endpoint healthy again: the top level takes all traffic, no panic.
  // acq_rel on panic_ and top_priority_: a slow-path caller that sets one
  // after this ran sees, through it, the heal (degraded_ at 0) and settles again.
  void settle_healthy() const {
    if (panic_.exchange(false, std::memory_order_acq_rel))
      emit(listener_, pool_panic_left{100.0, source_of(name_.view())});
    const std::uint32_t top = priority_of_level(0);
    const std::uint32_t was = top_priority_.exchange(top, std::memory_order_acq_rel);
    if (was <= top) return;  // no change, or a replace() removed the level it was on
    cool_standbys();
    emit(listener_, pool_failback{was, top, source_of(name_.view())});
  }

  // Endpoint s is usable again after `bits` kept it out: held back for the
  // failback delay, then ramped by slow start.
  // Returns whether it cleared one of `bits`; only then does it warm, and
  // tell(), before a failback that follows.
  template <class Tell>
  bool recover(std::size_t s, std::uint32_t bits, time_point now, Tell&& tell) const {
    bool healed = false;
    {
      std::lock_guard lock(gate_mutex_);
      slot& sl = slots_[s];
      if (sl.state.load(std::memory_order_relaxed) != slot::live) return false;
      const std::uint32_t old = sl.gate.load(std::memory_order_relaxed);
      if ((old & bits) == 0) return false;
      healed = lift_locked(sl, old, bits, now);
    }
    tell();
    if (healed) settle_healthy();
    return true;
  }
  // Under the gate's lock: a tidy() that saw the ramp end (its clock read
  // after this call's) must not clear the bit over the restart.
  KEEL_DETAIL_NOINLINE void restart_ramp(std::size_t s, time_point now) const {
    std::lock_guard lock(gate_mutex_);
    slot& sl = slots_[s];
    if (sl.state.load(std::memory_order_relaxed) != slot::live) return;
    start_warming(sl, now);
    mark_locked(sl, warming_bit);
  }
  void start_warming(slot& sl, time_point now) const {
    const time_point ready = saturating_add(now, options_.failback_delay);
    sl.ready_at.store(detail::ticks(ready), std::memory_order_relaxed);
    sl.ramp_end.store(detail::ticks(saturating_add(ready, options_.slow_start.window)),
                      std::memory_order_relaxed);
  }

  // ---- Outlier detection ----
  // The detector tells its changes under its lock; the pool only notes that
  // something changed there, and then brings its gate bits in line and tells
  // its listener outside every lock, so a listener may call the pool.

  static auto noted(bool& changed) noexcept {
    return [&changed](const outlier_change&) noexcept { changed = true; };
  }
  void reconcile(time_point now) const {
    for (std::size_t s = 0; s < capacity_; ++s) {
      slot& sl = slots_[s];
      if (sl.state.load(std::memory_order_acquire) != slot::live) continue;
      const bool marked = (sl.gate.load(std::memory_order_relaxed) & ejected_bit) != 0;
      if (od_->ejected(s) == marked) continue;
      const ejection_step step = follow_detector(s, now);
      if (step == ejection_step::ejected) {
        sl.ejections.fetch_add(1, std::memory_order_relaxed);
        const time_point until = od_->ejected_until(s).value_or(now);
        emit(listener_, endpoint_ejected{s, od_->last_reason(s), until, source_of(name_.view())});
      } else if (step == ejection_step::restored) {
        emit(listener_, endpoint_restored{s, source_of(name_.view())});
      }
    }
  }
  enum class ejection_step : unsigned char { none, ejected, restored };
  // Brings slot s's ejected bit in line with the detector, deciding under the
  // gate's lock on a fresh read, so that a stale reconcile never undoes a
  // newer ejection, and exactly one thread tells each change.
  ejection_step follow_detector(std::size_t s, time_point now) const {
    ejection_step step = ejection_step::none;
    bool healed = false;
    {
      std::lock_guard lock(gate_mutex_);
      slot& sl = slots_[s];
      if (sl.state.load(std::memory_order_relaxed) != slot::live) return step;
      const bool out = od_->ejected(s);
      const std::uint32_t g = sl.gate.load(std::memory_order_relaxed);
      if (out && (g & ejected_bit) == 0) {
        sl.gate.store(g | ejected_bit, std::memory_order_relaxed);
        if (g == 0) degraded_.fetch_add(1, std::memory_order_relaxed);
        step = ejection_step::ejected;
      } else if (!out && (g & ejected_bit) != 0) {
        healed = lift_locked(sl, g, ejected_bit, now);
        step = ejection_step::restored;
      }
    }
    if (healed) settle_healthy();
    return step;
  }

  // ---- Picking ----

  bool enter(std::size_t s) const noexcept { return enter(slots_[s]); }
  static bool enter(slot& sl) noexcept {
    sl.in_flight.fetch_add(1, std::memory_order_seq_cst);
    if (sl.state.load(std::memory_order_seq_cst) == slot::live) [[likely]]
      return true;
    sl.in_flight.fetch_sub(1, std::memory_order_release);
    return false;
  }
  void leave(std::size_t s) const noexcept {
    slots_[s].in_flight.fetch_sub(1, std::memory_order_release);
  }
  // Round robin's pick and pin on the fast path, with no locked instruction
  // but the cursor's step, which any round robin takes. The caller raises its
  // stripe's flag, steps the cursor (seq_cst), counts the slot in its stripe,
  // lowers the flag (release) and reads the slot's state (seq_cst).
  // reclaim_locked() stores `removed`, loads the cursor (seq_cst), then reads
  // the flags and counts (acquire). If the caller's step comes first in the
  // single order of seq_cst operations, the reclaimer's load synchronizes
  // with it (the cursor takes only read-modify-writes: one release sequence),
  // so it sees the flag up or, once it is down, the count; if the step comes
  // after, the caller reads the state after the store and backs out without
  // touching the slot's layers.
  struct turn {
    std::size_t slot = none;
    std::atomic<std::uint32_t>* owned = nullptr;  // null: not pinned (yet)
  };
  [[gnu::always_inline]] turn pin_in_turn(const context* avoid) const noexcept {
    const detail::thread_identity& me = detail::this_thread_identity();
    const std::size_t i = me.small & (pin_stripes - 1);
    if (stripes_.get()[i].owner.load(std::memory_order_relaxed) == me.id) [[likely]]
      return pin_owned(i, avoid);
    return pin_unowned(i, me.id, avoid);
  }
  // The first call through a free stripe claims it; a thread whose stripe
  // another owns picks as before and pins with enter().
  KEEL_DETAIL_NOINLINE turn pin_unowned(std::size_t i, std::uint64_t me,
                                        const context* avoid) const noexcept {
    if (detail::this_thread_identity().small == 0) {  // numbered now, once per thread
      i = detail::number_this_thread() & (pin_stripes - 1);
      if (stripes_.get()[i].owner.load(std::memory_order_relaxed) == me) return pin_owned(i, avoid);
    }
    if (stripes_.get()[i].owner.load(std::memory_order_relaxed) == 0 &&
        detail::claim_stripe(
            std::shared_ptr<std::atomic<std::uint64_t>>(stripes_, &stripes_.get()[i].owner), me))
      return pin_owned(i, avoid);
    return {next_in_turn(avoid), nullptr};
  }
  [[gnu::always_inline]] turn pin_owned(std::size_t i, const context* avoid) const noexcept {
    pin_stripe& st = stripes_.get()[i];
    const slot* const all = slots_.get();
    st.picking.store(1, std::memory_order_relaxed);
    const std::uint64_t m = top_m_.load(std::memory_order_relaxed);
    const std::uint32_t n = static_cast<std::uint32_t>(top_count_.load(std::memory_order_relaxed));
    const std::size_t s = order_[fastmod(step_turn(), m, n)].load(std::memory_order_relaxed);
    if (avoid != nullptr && avoid->was_tried(s)) [[unlikely]] {
      st.picking.store(0, std::memory_order_relaxed);
      return {};  // the slow path avoids it
    }
    std::atomic<std::uint32_t>& c = st.counts[s];
    const std::uint32_t was = c.load(std::memory_order_relaxed);
    c.store(was + 1, std::memory_order_relaxed);
    st.picking.store(0, std::memory_order_release);
    if (all[s].state.load(std::memory_order_seq_cst) == slot::live) [[likely]]
      return {s, &c};
    c.store(was, std::memory_order_release);
    return {};  // removed since the layout was read: the slow path picks again
  }
  // Whether round robin pins calls in the threads' stripes.
  bool striped() const noexcept { return stripes_ != nullptr; }
  // Slot s's count in stripe i: a stripe's lines lie end to end.
  std::atomic<std::uint32_t>& striped_count(std::size_t i, std::size_t s) const noexcept {
    return stripes_.get()[i].counts[s];
  }
  // Calls on slot s pinned in the stripes.
  std::uint32_t striped_in_flight(std::size_t s, std::memory_order order) const noexcept {
    std::uint32_t sum = 0;
    for (std::size_t i = 0; i < pin_stripes && striped(); ++i)
      sum += striped_count(i, s).load(order);
    return sum;
  }
  // Under check_mutex_: a slot built again since its last probe starts its
  // checks' counts over, due at once.
  void sync_checks_locked(slot& sl) const noexcept {
    const std::uint32_t g = sl.generation.load(std::memory_order_relaxed);
    if (sl.check_generation == g) return;
    sl.check_generation = g;
    sl.check_passes = sl.check_fails = 0;
    sl.next_check = sl.built.load(std::memory_order_relaxed);
  }

  // Round robin over the top level while every endpoint is healthy: the
  // cursor's turn modulo the level's size by multiplication (Lemire's fastmod),
  // not a division.
  // `avoid`: the context whose tried endpoints a pick avoids, or null.
  std::size_t next_in_turn(const context* avoid) const noexcept {
    const std::uint64_t m = top_m_.load(std::memory_order_relaxed);
    const std::uint32_t n = static_cast<std::uint32_t>(top_count_.load(std::memory_order_relaxed));
    const std::size_t k = fastmod(next_turn(), m, n);
    const std::size_t s = order_[k].load(std::memory_order_relaxed);
    if (avoid != nullptr && avoid->was_tried(s)) [[unlikely]]
      return none;  // the slow path avoids it
    return s;
  }
  // c % n for n = the divisor of m = UINT64_MAX / n + 1 (n >= 1): the high
  // half of (m * c mod 2^64) * n, one 64 x 64 -> 128-bit multiplication.
  // Always < n, even when m and n come from two different layouts during a change.
  static KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP std::size_t fastmod(std::uint32_t c, std::uint64_t m,
                                                                   std::uint32_t n) noexcept {
    __extension__ using u128 = unsigned __int128;
    const std::uint64_t low = m * c;
    return static_cast<std::size_t>((static_cast<u128>(low) * n) >> 64);
  }
  // UINT64_MAX / 1 + 1 wraps to 0 on purpose: fastmod then gives 0, the only index.
  static KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP std::uint64_t fastmod_multiplier(
      std::uint32_t n) noexcept {
    return n == 0 ? 0 : UINT64_MAX / n + 1;
  }

  struct pick {
    std::size_t slot = none;
    time_point now{};  // read by PeakEWMA's pick
  };
  pick fast_pick(const context* avoid) const {
    const std::size_t n = top_count_.load(std::memory_order_acquire);
    if (n == 0) return {};
    std::size_t k = 0;
    switch (options_.strategy) {
      case balance::round_robin:
        return {next_in_turn(avoid), {}};
      case balance::random:
        k = detail::index_below(env_.uniform(), n);
        break;
      case balance::weighted:
        k = weighted_in_level(0, n);
        break;
      case balance::least_loaded:
      case balance::peak_ewma:
        return best_of_level(avoid, n);
    }
    const std::size_t s = order_[k].load(std::memory_order_relaxed);
    if (avoid != nullptr && avoid->was_tried(s)) return {};  // the slow path avoids it
    return {s, {}};
  }
  KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP std::uint32_t next_turn() const noexcept {
    return cursor_.fetch_add(1, std::memory_order_relaxed);
  }
  // pin_owned's step: seq_cst, for reclaim_locked's side of the argument.
  KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP std::uint32_t step_turn() const noexcept {
    return cursor_.fetch_add(1, std::memory_order_seq_cst);
  }
  std::size_t weighted_in_level(std::size_t begin, std::size_t end) const {
    const std::uint64_t total = prefix_[end - 1].load(std::memory_order_relaxed);
    const double x = detail::clamp_draw(env_.uniform()) * static_cast<double>(total);
    for (std::size_t k = begin; k < end; ++k)
      if (x < static_cast<double>(prefix_[k].load(std::memory_order_relaxed))) return k;
    return end - 1;
  }
  // P2C over the top level when all endpoints are healthy.
  // Least loaded of two, the usual case, in integers:
  // (pending_b + 1) / w_b < (pending_a + 1) / w_a.
  [[gnu::always_inline]] std::size_t less_loaded_of_two(const context* avoid) const {
    const std::size_t n = top_count_.load(std::memory_order_acquire);
    if (n < 2) return fast_pick_any(avoid);
    const std::size_t a = detail::index_below(env_.uniform(), n);
    std::size_t b = detail::index_below(env_.uniform(), n - 1);
    b += b >= a ? 1 : 0;
    const std::uint32_t ia = order_[a].load(std::memory_order_relaxed);
    const std::uint32_t ib = order_[b].load(std::memory_order_relaxed);
    const slot* const all = slots_.get();
    const std::uint64_t la =
        (std::uint64_t{all[ia].in_flight.load(std::memory_order_relaxed)} + 1) *
        all[ib].weight.load(std::memory_order_relaxed);
    const std::uint64_t lb =
        (std::uint64_t{all[ib].in_flight.load(std::memory_order_relaxed)} + 1) *
        all[ia].weight.load(std::memory_order_relaxed);
    const std::size_t best = lb < la ? ib : ia;
    if (avoid != nullptr && avoid->was_tried(best)) return none;  // the slow path avoids it
    return best;
  }
  KEEL_DETAIL_NOINLINE std::size_t fast_pick_any(const context* avoid) const {
    return fast_pick(avoid).slot;
  }
  [[gnu::always_inline]] pick best_of_level(const context* avoid, std::size_t n) const {
    const time_point now = options_.strategy == balance::peak_ewma ? env_.now() : time_point{};
    std::size_t best = none;
    double best_score = 0;
    const std::size_t picks = detail::min<std::size_t>(options_.choice_count, n);
    std::size_t taken[10];
    for (std::size_t c = 0; c < picks; ++c) {
      std::size_t k = detail::index_below(env_.uniform(), n - c);
      for (std::size_t d = 0; d < c; ++d)  // distinct picks: skip the ones taken (sorted)
        if (k >= taken[d]) ++k;
      insert_sorted(taken, c, k);
      const std::size_t s = order_[k].load(std::memory_order_relaxed);
      const double score = load_of(s, 1.0, now);
      if (best == none || score < best_score) {
        best = s;
        best_score = score;
      }
    }
    if (avoid != nullptr && avoid->was_tried(best)) return {none, now};  // the slow path avoids it
    return {best, now};
  }
  static void insert_sorted(std::size_t* a, std::size_t n, std::size_t v) noexcept {
    std::size_t i = n;
    while (i > 0 && a[i - 1] > v) {
      a[i] = a[i - 1];
      --i;
    }
    a[i] = v;
  }
  // Lower is better: in flight over weight, or PeakEWMA's cost over weight.
  double load_of(std::size_t s, double factor, time_point now) const {
    const slot& sl = slots_[s];
    const double pending = sl.in_flight.load(std::memory_order_relaxed);
    const double w = static_cast<double>(sl.weight.load(std::memory_order_relaxed)) * factor;
    if (options_.strategy == balance::peak_ewma) {
      const double cost = ewma_at(sl, now);
      // Finagle: no history yet while calls are pending costs a large penalty.
      const double c = cost == 0.0 && pending != 0.0 ? penalty + pending : cost * (pending + 1.0);
      return c / w;
    }
    return (pending + 1.0) / w;
  }
  static constexpr double penalty = static_cast<double>(INT64_MAX >> 16);

  double ewma_at(const slot& sl, time_point now) const noexcept {
    double cost = 0;
    std::int64_t stamp = 0;
    for (;;) {
      const std::uint64_t seq = sl.ewma_seq.load(std::memory_order_acquire);
      if ((seq & 1) != 0) continue;
      cost = sl.ewma_cost.load(std::memory_order_relaxed);
      stamp = sl.ewma_stamp.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (sl.ewma_seq.load(std::memory_order_relaxed) == seq) break;
    }
    return cost * decay(stamp, now);
  }
  double decay(std::int64_t stamp, time_point now) const noexcept {
    const std::int64_t t = detail::ticks(now);
    if (t <= stamp) return 1.0;
    const double dt = static_cast<double>(t) - static_cast<double>(stamp);
    return std::exp(-dt / static_cast<double>(options_.ewma_decay.count()));
  }
  // Finagle's observe(rtt): a higher RTT replaces the cost at once; a lower
  // one is blended in with weight 1 - exp(-dt / tau).
  void observe_rtt(slot& sl, duration rtt, time_point now) const noexcept {
    const double r = static_cast<double>(detail::max(rtt, duration::zero()).count());
    std::uint64_t seq = sl.ewma_seq.load(std::memory_order_relaxed);
    for (;;) {
      if ((seq & 1) != 0) {
        seq = sl.ewma_seq.load(std::memory_order_relaxed);
        continue;
      }
      if (sl.ewma_seq.compare_exchange_weak(seq, seq + 1, std::memory_order_acquire,
                                            std::memory_order_relaxed))
        break;
    }
    std::atomic_thread_fence(std::memory_order_release);
    const double cost = sl.ewma_cost.load(std::memory_order_relaxed);
    const std::int64_t stamp = sl.ewma_stamp.load(std::memory_order_relaxed);
    const double w = decay(stamp, now);
    sl.ewma_cost.store(r > cost ? r : cost * w + r * (1.0 - w), std::memory_order_relaxed);
    sl.ewma_stamp.store(detail::max(stamp, detail::ticks(now)), std::memory_order_relaxed);
    sl.ewma_seq.store(seq + 2, std::memory_order_release);
  }

  // ---- The call on one endpoint ----

  // The call on endpoint s, entered. On a layer's rejection (nothing was
  // sent) the call moves: from the fast path to the slow one (Fast), or back
  // to the slow path's loop through `moved`.
  // Every return names `o`, so that it is built in the caller's slot.
  // A call's hold on its slot, let go once: the slot's in_flight, or its
  // count in the calling thread's own stripe.
  struct held {
    slot* sl;                         // null once let go
    std::atomic<std::uint32_t>* own;  // the count in the thread's stripe; null: sl's in_flight
    held(slot* s, std::atomic<std::uint32_t>* o) noexcept : sl(s), own(o) {}
    void let_go() noexcept {
      if (own != nullptr) {
        own->store(own->load(std::memory_order_relaxed) - 1, std::memory_order_release);
      } else {
        sl->in_flight.fetch_sub(1, std::memory_order_release);
      }
      sl = nullptr;
    }
    held(const held&) = delete;
    held& operator=(const held&) = delete;
    ~held() {
      if (sl != nullptr) let_go();
    }
  };

  // Every return names `o`, so that it is built in the caller's slot.
  template <class R, bool Fast, class Next>
  outcome<R> call_on(slot& sl, std::size_t s, held&& pin, Next& next, context& ctx,
                     time_point start, bool& moved) const {
    ctx.set_target(target(s, sl.endpoint()));
    outcome<R> o = detail::policy_of(sl.layers_ref()).template run<R>(next, ctx);
    if (quiet_ && o.has_value()) [[likely]] {
      pin.let_go();
      return o;
    }
    // Written once per probe interval, not per call: the line is shared by every caller.
    if (probing_ && !sl.traffic.load(std::memory_order_relaxed))
      sl.traffic.store(true, std::memory_order_relaxed);
    if (o.has_value() && !feedback_) return o;
    if (!o.has_value() && is_rejection(o)) {
      // A layer refused: nothing was sent. Keep the endpoint out for the
      // retry-after it gave, and move the call to another.
      if (const std::optional<duration> ra =
              call_or(std::optional<duration>(), [&] { return o.retry_after(); });
          ra && *ra > duration::zero()) {
        hold(s, saturating_add(env_.now(), *ra));  // while the slot is still ours
      }
      pin.let_go();
      if constexpr (Fast) {
        o = run_slow<R>(pass_next(next), ctx, s, std::optional<outcome<R>>(std::move(o)));
      } else {
        moved = true;
      }
      return o;
    }
    if (feedback_) learn(s, o, start);
    return o;
  }

  // What a result tells the pool: outlier detection, PeakEWMA, the failback ramp.
  template <class R>
  void learn(std::size_t s, const outcome<R>& o, time_point start) const {
    if (!o.has_value() && is_cancellation(o)) return;
    slot& sl = slots_[s];
    // A removed endpoint's last calls say nothing about the pool any more.
    if (sl.state.load(std::memory_order_acquire) != slot::live) return;
    const bool failed = detail::ask_user_predicate(handles_, o);
    const auto ramping = [&] {
      return (sl.gate.load(std::memory_order_relaxed) & warming_bit) != 0;
    };
    // With only a failback ramp to feed, a call reads no clock unless its
    // failure restarts one.
    if (options_.strategy != balance::peak_ewma && !od_ && !(failed && ramping())) return;
    const time_point now = env_.now();
    if (options_.strategy == balance::peak_ewma) observe_rtt(sl, time_until(start, now), now);
    if (od_) {
      bool changed = false;
      od_->record(s, failed, now, noted(changed));
      if (changed) reconcile(now);
    }
    if (failed && ramping() && detail::ticks(now) < sl.ramp_end.load(std::memory_order_relaxed))
      restart_ramp(s, now);  // a failure during the ramp starts the wait again
  }

  void hold(std::size_t s, time_point until) const {
    slot& sl = slots_[s];
    std::int64_t cur = sl.held_until.load(std::memory_order_relaxed);
    const std::int64_t u = detail::ticks(until);
    while (cur < u && !sl.held_until.compare_exchange_weak(cur, u, std::memory_order_relaxed)) {
    }
    set_bits(s, held_bit);
  }

  // ---- The slow path: a scan of every level ----

  struct look {
    bool counts = false;  // part of its level's population (present, not isolated)
    bool usable = false;
    double factor = 1.0;                        // slow-start share
    std::int64_t back_at = detail::pool_never;  // when an unusable one may return
  };

  look look_at(std::size_t s, time_point now) const {
    look l;
    const slot& sl = slots_[s];
    if (sl.state.load(std::memory_order_acquire) != slot::live) return l;
    const std::uint32_t g = sl.gate.load(std::memory_order_relaxed);
    if ((g & isolated_bit) != 0) return l;
    l.counts = true;
    const std::int64_t t = detail::ticks(now);
    if ((g & ejected_bit) != 0) {
      if (od_) {
        if (const auto until = od_->ejected_until(s)) l.back_at = detail::ticks(*until);
      }
      return l;
    }
    if ((g & check_bit) != 0) return l;  // back after passed probes: no time to promise
    if ((g & held_bit) != 0) {
      const std::int64_t u = sl.held_until.load(std::memory_order_relaxed);
      if (t < u) {
        l.back_at = u;
        return l;
      }
    }
    if ((g & warming_bit) != 0) {
      const std::int64_t ready = sl.ready_at.load(std::memory_order_relaxed);
      if (t < ready) {
        l.back_at = ready;
        return l;
      }
      const std::int64_t end = sl.ramp_end.load(std::memory_order_relaxed);
      if (t < end) l.factor = ramp(t, ready, end);
    }
    l.usable = true;
    return l;
  }
  double ramp(std::int64_t t, std::int64_t ready, std::int64_t end) const noexcept {
    const double progress = (static_cast<double>(t) - static_cast<double>(ready)) /
                            (static_cast<double>(end) - static_cast<double>(ready));
    const double floor = options_.slow_start.min_weight_percent / 100.0;
    const double f = std::pow(progress, 1.0 / options_.slow_start.aggression);
    return f > floor ? f : floor;
  }
  // Clears the time-bound bits whose time has passed.
  void tidy(std::size_t s, time_point now) const {
    slot& sl = slots_[s];
    if ((sl.gate.load(std::memory_order_relaxed) & (held_bit | warming_bit)) == 0) return;
    const std::int64_t t = detail::ticks(now);
    bool healed = false;
    {
      // Decided under the gate's lock: a hold() or a restarted ramp that
      // lands meanwhile moves the time first, and is not cleared here.
      std::lock_guard lock(gate_mutex_);
      if (sl.state.load(std::memory_order_relaxed) != slot::live) return;
      const std::uint32_t g = sl.gate.load(std::memory_order_relaxed);
      std::uint32_t done = 0;
      if ((g & held_bit) != 0 && t >= sl.held_until.load(std::memory_order_relaxed))
        done |= held_bit;
      if ((g & warming_bit) != 0 && t >= sl.ramp_end.load(std::memory_order_relaxed))
        done |= warming_bit;
      if (done == 0) return;
      sl.gate.fetch_and(~done, std::memory_order_relaxed);
      if ((g & ~done) == 0) healed = degraded_.fetch_sub(1, std::memory_order_relaxed) == 1;
    }
    if (healed) settle_healthy();
  }

  struct choice {
    std::size_t slot = none;
    std::int64_t back_at = detail::pool_never;
  };

  choice choose(const context& ctx, const detail::moved_set& local, time_point now) const {
    if (od_) {
      bool changed = false;
      od_->sweep(now, noted(changed));
      if (changed) reconcile(now);
    }
    const std::size_t end = live_order();
    const std::size_t levels =
        detail::min<std::size_t>(levels_.load(std::memory_order_relaxed), capacity_);
    choice out;
    for (std::size_t k = 0; k < end; ++k) tidy(order_[k].load(std::memory_order_relaxed), now);
    // Each level's health: the usable share of its population, slow start counting partly.
    // Per level: its health with slow start counting partly (for the
    // shares), and its availability by count (for panic, as in Envoy).
    double total = 0, total_available = 0;
    std::size_t usable_all = 0, counted_all = 0;
    double load[max_levels];       // traffic share per level, percent
    bool level_panic[max_levels];  // fewer than panic_threshold % of the level usable
    std::size_t counted_in[max_levels];
    const std::size_t nl = detail::min<std::size_t>(levels, max_levels);
    std::size_t begin = 0;
    for (std::size_t l = 0; l < nl; ++l) {
      const std::size_t stop =
          l + 1 == nl
              ? end
              : detail::min<std::size_t>(level_end_[l].load(std::memory_order_relaxed), end);
      double healthy = 0;
      std::size_t counted = 0, usable = 0;
      for (std::size_t k = begin; k < stop; ++k) {
        const look lk = look_at(order_[k].load(std::memory_order_relaxed), now);
        counted += lk.counts ? 1 : 0;
        usable += lk.usable ? 1 : 0;
        if (lk.usable) healthy += lk.factor;
        if (lk.counts && !lk.usable) out.back_at = detail::min(out.back_at, lk.back_at);
      }
      const double n = static_cast<double>(counted);
      const double op = options_.overprovisioning / 100.0;
      load[l] = counted > 0 ? detail::min(100.0, 100.0 * healthy / n * op) : 0.0;
      total += load[l];
      total_available +=
          counted > 0 ? detail::min(100.0, 100.0 * static_cast<double>(usable) / n * op) : 0.0;
      level_panic[l] =
          counted > 0 && usable * 100 < options_.panic_threshold * std::uint64_t{counted};
      counted_in[l] = counted;
      usable_all += usable;
      counted_all += counted;
      begin = stop;
    }
    const double usable_percent =
        counted_all > 0 ? 100.0 * static_cast<double>(usable_all) / static_cast<double>(counted_all)
                        : 0.0;
    // Envoy: while the levels together can take all traffic, panic is off;
    // below that, a level with too few usable endpoints spreads over all of its own.
    const bool may_panic = options_.panic_threshold > 0 && total_available < 100.0;
    if (total <= 0.0) {
      // Nothing usable anywhere: in panic, the first level with endpoints takes it all.
      std::size_t first = 0;
      while (first < nl && counted_in[first] == 0) ++first;
      note_panic(may_panic && first < nl, usable_percent);
      settle_if_healed();
      if (!may_panic || first == nl) return out;
      const auto [pb, pe] = level_range(first, nl, end);
      out.slot = pick_among(ctx, local, pb, pe, now, /*any_health=*/true);
      return out;
    }
    // Shares: in order while the total reaches 100 %, else normalised (Envoy).
    double left = 100.0;
    for (std::size_t l = 0; l < nl; ++l) {
      if (total >= 100.0) {
        const double take = detail::min(load[l], left);
        left -= take;
        load[l] = take;
      } else {
        load[l] = load[l] * 100.0 / total;
      }
    }
    std::size_t top = 0;
    while (top + 1 < nl && load[top] <= 0.0) ++top;
    note_top(top, now);
    std::size_t level = top;
    if (top + 1 < nl && load[top] < 100.0) {
      const double x = detail::clamp_draw(env_.uniform()) * 100.0;
      double acc = 0;
      level = nl - 1;
      for (std::size_t l = 0; l < nl; ++l) {
        acc += load[l];
        if (load[l] > 0.0 && x < acc) {
          level = l;
          break;
        }
      }
      while (level > 0 && load[level] <= 0.0) --level;
    }
    bool panic = false;
    for (std::size_t l = 0; l < nl; ++l) panic = panic || (load[l] > 0.0 && level_panic[l]);
    note_panic(may_panic && panic, usable_percent);
    settle_if_healed();
    // The chosen level first, then the others in order, avoiding tried ones
    // while an untried one is usable; a tried one only when none is left.
    const auto [lb, le] = level_range(level, nl, end);
    out.slot = pick_among(ctx, local, lb, le, now, may_panic && level_panic[level]);
    if (out.slot != none) return out;
    for (std::size_t l = 0; l < nl && out.slot == none; ++l) {
      if (l == level) continue;
      const auto [b, e] = level_range(l, nl, end);
      out.slot = pick_among(ctx, local, b, e, now, false);
    }
    return out;
  }
  std::pair<std::size_t, std::size_t> level_range(std::size_t l, std::size_t nl,
                                                  std::size_t end) const {
    const std::size_t b =
        l == 0 ? 0
               : detail::min<std::size_t>(level_end_[l - 1].load(std::memory_order_relaxed), end);
    const std::size_t e =
        l + 1 == nl ? end
                    : detail::min<std::size_t>(level_end_[l].load(std::memory_order_relaxed), end);
    return {b, detail::max(b, e)};
  }

  // One endpoint of order_[begin, end) by the strategy: usable ones (or, in
  // panic, any present and not isolated), untried ones first.
  std::size_t pick_among(const context& ctx, const detail::moved_set& local, std::size_t begin,
                         std::size_t end, time_point now, bool any_health) const {
    const tried_set earlier = options_.avoid_tried ? ctx.tried() : tried_set();
    for (int pass = 0; pass < 2; ++pass) {
      // pass 0: untried only; pass 1: tried by earlier attempts allowed
      // (never one this run() already moved away from).
      std::size_t n = 0;
      double weight_sum = 0;
      bool ramped = false;
      for (std::size_t k = begin; k < end; ++k) {
        const std::size_t s = order_[k].load(std::memory_order_relaxed);
        const look lk = look_at(s, now);
        if (!eligible(lk, s, local, earlier, pass, any_health)) continue;
        ++n;
        const double f = any_health ? 1.0 : lk.factor;
        ramped = ramped || f < 1.0;
        weight_sum += f * slots_[s].weight.load(std::memory_order_relaxed);
      }
      if (n == 0) continue;
      balance how = options_.strategy;
      if (ramped && (how == balance::round_robin || how == balance::random))
        how = balance::weighted;               // slow start needs weights
      if (n == 1) how = balance::round_robin;  // no draw, no turn: the only one
      if (how == balance::least_loaded || how == balance::peak_ewma) {
        return best_among(local, earlier, pass, any_health, begin, end, n, now);
      }
      std::size_t nth = 0;
      double x = 0;
      if (how == balance::round_robin && n > 1) nth = static_cast<std::size_t>(next_turn() % n);
      if (how == balance::random) nth = detail::index_below(env_.uniform(), n);
      if (how == balance::weighted) x = detail::clamp_draw(env_.uniform()) * weight_sum;
      std::size_t seen = 0;
      double acc = 0;
      std::size_t last = none;
      for (std::size_t k = begin; k < end; ++k) {
        const std::size_t s = order_[k].load(std::memory_order_relaxed);
        const look lk = look_at(s, now);
        if (!eligible(lk, s, local, earlier, pass, any_health)) continue;
        last = s;
        if (how == balance::weighted) {
          acc += (any_health ? 1.0 : lk.factor) * slots_[s].weight.load(std::memory_order_relaxed);
          if (x < acc) return s;
        } else if (seen++ == nth) {
          return s;
        }
      }
      return last;  // the state moved under the scan: the last eligible one
    }
    return none;
  }
  static bool eligible(const look& lk, std::size_t s, const detail::moved_set& local,
                       const tried_set& earlier, int pass, bool any_health) noexcept {
    if (!(any_health ? lk.counts : lk.usable)) return false;
    if (local.contains(s)) return false;
    return pass == 1 || !earlier.contains(s);
  }
  std::size_t best_among(const detail::moved_set& local, const tried_set& earlier, int pass,
                         bool any_health, std::size_t begin, std::size_t end, std::size_t n,
                         time_point now) const {
    const std::size_t picks = detail::min<std::size_t>(options_.choice_count, n);
    std::size_t taken[10];
    std::size_t best = none;
    double best_score = 0;
    for (std::size_t c = 0; c < picks; ++c) {
      std::size_t nth = detail::index_below(env_.uniform(), n - c);
      for (std::size_t d = 0; d < c; ++d)
        if (nth >= taken[d]) ++nth;
      insert_sorted(taken, c, nth);
      std::size_t seen = 0;
      for (std::size_t k = begin; k < end; ++k) {
        const std::size_t s = order_[k].load(std::memory_order_relaxed);
        const look lk = look_at(s, now);
        if (!eligible(lk, s, local, earlier, pass, any_health)) continue;
        if (seen++ != nth) continue;
        const double score = load_of(s, any_health ? 1.0 : lk.factor, now);
        if (best == none || score < best_score) {
          best = s;
          best_score = score;
        }
        break;
      }
    }
    return best;
  }

  std::uint32_t priority_of_level(std::size_t level) const noexcept {
    return level_priority_[detail::min(level, capacity_ - 1)].load(std::memory_order_relaxed);
  }
  // The scan behind a note may predate a heal that settled already: settle
  // again, or the fast path would keep the note for good.
  void settle_if_healed() const {
    if (degraded_.load(std::memory_order_acquire) == 0) settle_healthy();
  }
  void note_panic(bool panic, double usable_percent) const {
    if (panic_.load(std::memory_order_relaxed) == panic) return;
    if (panic_.exchange(panic, std::memory_order_acq_rel) == panic) return;
    if (panic) {
      emit(listener_, pool_panic_entered{usable_percent, source_of(name_.view())});
    } else {
      emit(listener_, pool_panic_left{usable_percent, source_of(name_.view())});
    }
  }
  void note_top(std::size_t top, time_point now) const {
    const std::uint32_t t = priority_of_level(top);
    if (top_priority_.load(std::memory_order_relaxed) == t) return;
    const std::uint32_t was = top_priority_.exchange(t, std::memory_order_acq_rel);
    if (was == t) return;
    if (t > was) {
      emit(listener_, pool_failover{was, t, source_of(name_.view())});
      warm_up_level(top, now);
    } else {
      if (top == 0) cool_standbys();
      emit(listener_, pool_failback{was, t, source_of(name_.view())});
    }
  }
  bool probe_one(std::size_t s) const {
    const E& e = slots_[s].endpoint();
    return call_or(false, [&] { return checks_.probe->check(e, s); });
  }

  // A standby's first call since the last failback runs the warm-up hook
  // first (a cold standby); the caller has entered the slot.
  void warm_up_once(std::size_t s) const {
    if (!checks_.warm_up) return;
    slot& sl = slots_[s];
    if (sl.priority.load(std::memory_order_relaxed) == priority_of_level(0)) return;
    if (sl.warmed.load(std::memory_order_relaxed) ||
        sl.warmed.exchange(true, std::memory_order_relaxed))
      return;
    const E& ep = sl.endpoint();
    call_ignoring_exceptions([&] { static_cast<void>(checks_.warm_up->check(ep, s)); });
  }
  // Back on the top level: standbys are cold again.
  void cool_standbys() const {
    if (!checks_.warm_up) return;
    for (std::size_t s = 0; s < capacity_; ++s)
      slots_[s].warmed.store(false, std::memory_order_relaxed);
  }

  // A level that starts taking traffic: its slow start.
  void warm_up_level(std::size_t level, time_point now) const {
    const std::size_t end = live_order();
    const std::size_t nl =
        detail::min<std::size_t>(levels_.load(std::memory_order_relaxed), capacity_);
    const auto [b, e] = level_range(detail::min(level, nl - 1), nl, end);
    for (std::size_t k = b; k < e; ++k) {
      const std::size_t s = order_[k].load(std::memory_order_relaxed);
      if (!present(s)) continue;
      if (options_.slow_start.window.count() > 0) {
        slot& sl = slots_[s];
        sl.ready_at.store(detail::ticks(now), std::memory_order_relaxed);
        sl.ramp_end.store(detail::ticks(saturating_add(now, options_.slow_start.window)),
                          std::memory_order_relaxed);
        set_bits(s, warming_bit);
      }
    }
  }

  template <class R, class Next>
  KEEL_DETAIL_NOINLINE outcome<R> run_slow(Next next, context& ctx, std::size_t moved_from,
                                           std::optional<outcome<R>> last) const {
    detail::moved_set local;
    if (moved_from != none) local.insert(moved_from);
    for (;;) {
      const time_point now = env_.now();
      const choice c = choose(ctx, local, now);
      if (c.slot == none) {
        ctx.clear_target();  // no endpoint is held for what the call returns
        std::optional<duration> after;
        if (c.back_at != detail::pool_never)
          after = detail::max(time_until(now, time_point(duration(c.back_at))), duration::zero());
        return outcome<R>::from_keel(errc::no_endpoint_available, after);
      }
      if (!enter(c.slot)) {
        if (local.insert(c.slot)) continue;
        break;
      }
      warm_up_once(c.slot);
      bool moved = false;
      outcome<R> o = call_on<R, false>(slots_[c.slot], c.slot, held(&slots_[c.slot], nullptr), next,
                                       ctx, now, moved);
      if (!moved) return o;
      last.reset();
      last.emplace(std::move(o));
      if (!local.insert(c.slot)) break;  // moved moved_set::room times: the last refusal
    }
    ctx.clear_target();
    if (last) return std::move(*last);
    return outcome<R>::from_keel(errc::no_endpoint_available);
  }

  endpoint_pool_options options_;
  [[no_unique_address]] Factory factory_;
  [[no_unique_address]] Listener listener_;
  [[no_unique_address]] Env env_;
  [[no_unique_address]] Handles handles_;
  detail::health_check_part<E> checks_;
  policy_name name_;
  std::vector<pool_member<E>> members_;  // as last given, under mutex_
  std::size_t capacity_;
  bool feedback_;  // whether a result feeds outlier detection, PeakEWMA or the failback ramp
  bool probing_;   // whether active health checks run (they want to know of traffic)
  bool quiet_;     // neither: a success needs nothing more
  bool two_least_loaded_;  // least_loaded with choice_count 2: the integer fast path
  std::unique_ptr<slot[]> slots_;
  std::unique_ptr<std::atomic<std::uint32_t>[]> order_;      // live slots by (priority, rank)
  std::unique_ptr<std::atomic<std::uint64_t>[]> prefix_;     // weight sums within each level
  std::unique_ptr<std::atomic<std::uint32_t>[]> level_end_;  // end of level l in order_
  std::unique_ptr<std::atomic<std::uint32_t>[]> level_priority_;
  std::unique_ptr<outlier_detector> od_;
  // Round robin's pins (pin_in_turn): stripe i's counts start at its
  // counts pointer into pins_, on lines of their own. None (null) for other
  // strategies or above max_striped_capacity.
  std::shared_ptr<pin_stripe[]> stripes_;  // shared with the owners' leases (claim_stripe)
  std::unique_ptr<std::atomic<std::uint32_t>[]> pins_;
  alignas(64) mutable std::atomic<std::uint32_t> cursor_{0};
  alignas(64) mutable std::atomic<std::size_t> degraded_{0};
  std::atomic<std::size_t> top_count_{0};
  std::atomic<std::uint64_t> top_m_{0};  // fastmod_multiplier(top_count_)
  std::atomic<std::size_t> live_{0};
  std::atomic<std::uint32_t> levels_{1};
  mutable std::atomic<std::uint32_t> top_priority_{0};  // the active priority (a value)
  mutable std::atomic<bool> panic_{false};
  mutable std::mutex mutex_;        // layout changes (replace, set_weight)
  mutable std::mutex check_mutex_;  // health checks
  mutable std::mutex gate_mutex_;   // gate bits and degraded_

  using parts =
      keel::parts<&endpoint_pool::members_, &endpoint_pool::options_, &endpoint_pool::factory_,
                  &endpoint_pool::listener_, &endpoint_pool::env_, &endpoint_pool::handles_,
                  &endpoint_pool::checks_, &endpoint_pool::name_>;
};

template <class E, class... Rest>
endpoint_pool(std::vector<pool_member<E>>, Rest...) -> endpoint_pool<E>;

/// Runs a pool's active health checks on a thread of its own until destroyed:
/// each round probes what is due, then sleeps (through the pool's
/// environment) until the next probe is due, at most `max_wait`.
template <class Pool>
class health_checker {
 public:
  explicit health_checker(const Pool& pool, duration max_wait = std::chrono::seconds(1))
      : thread_([&pool, max_wait](std::stop_token stop) {
          while (!stop.stop_requested()) {
            pool.run_health_checks();
            const duration wait = detail::min(
                detail::max(time_until(pool.now(), pool.next_health_check()), duration(1)),
                max_wait);
            if (!pool.sleep_for(wait, stop)) break;
          }
        }) {}
  health_checker(const health_checker&) = delete;
  health_checker& operator=(const health_checker&) = delete;
  ~health_checker() = default;  // std::jthread requests stop and joins

 private:
  std::jthread thread_;
};

}  // namespace keel

#endif  // KEEL_FAILOVER_ENDPOINT_POOL_HPP_INCLUDED

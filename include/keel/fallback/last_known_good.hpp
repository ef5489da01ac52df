// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_FALLBACK_LAST_KNOWN_GOOD_HPP_INCLUDED
#define KEEL_FALLBACK_LAST_KNOWN_GOOD_HPP_INCLUDED

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>

#include "keel/core/config_error.hpp"
#include "keel/core/context.hpp"
#include "keel/core/environment.hpp"
#include "keel/core/error.hpp"
#include "keel/core/outcome.hpp"
#include "keel/core/policy.hpp"
#include "keel/core/time.hpp"
#include "keel/detail/config.hpp"

namespace keel {

/// Options of keel::last_known_good.
struct last_known_good_options {
  /// Oldest value still served: a value recorded at t is served up to and
  /// including t + max_age, never after. Default 5 minutes; must be > 0.
  duration max_age = std::chrono::minutes(5);
  /// Most keys remembered; recording a new key beyond it evicts the least
  /// recently used one (recorded or served). Default 1024; must be >= 1.
  std::size_t capacity = 1024;
};

/// Checks last_known_good_options; the one source of truth, usable in static_assert.
constexpr validation_result validate(const last_known_good_options& o) noexcept {
  if (o.max_age <= duration::zero()) {
    return config_problem{"last_known_good_options.max_age", "must be > 0"};
  }
  if (o.capacity < 1) return config_problem{"last_known_good_options.capacity", "must be >= 1"};
  return std::nullopt;
}

/// Why a last_known_good alternative could not stand in; these codes appear
/// among the causes of errc::all_fallbacks_failed.
enum class last_known_good_errc : int {
  no_value = 1,  ///< nothing was recorded for the key (or it was evicted)
  too_old,       ///< the value recorded for the key is older than max_age
};

}  // namespace keel

template <>
struct std::is_error_code_enum<keel::last_known_good_errc> : std::true_type {};

namespace keel {

namespace detail {

class last_known_good_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "keel.last_known_good"; }
  std::string message(int value) const override {
    switch (static_cast<last_known_good_errc>(value)) {
      case last_known_good_errc::no_value:
        return "no last known good value for this key";
      case last_known_good_errc::too_old:
        return "last known good value is older than max_age";
    }
    return "unknown last_known_good error";
  }
};

}  // namespace detail

/// The category of keel::last_known_good_errc ("keel.last_known_good").
inline const std::error_category& last_known_good_category() noexcept {
  static const detail::last_known_good_category_impl category;
  return category;
}

/// Makes last_known_good_errc usable as a std::error_code.
inline std::error_code make_error_code(last_known_good_errc e) noexcept {
  return {static_cast<int>(e), last_known_good_category()};
}

/// Filled by a serving alternative when the cache stood in, so that the
/// caller can tell a stale result from a fresh one (pass one per call).
struct staleness {
  bool stale = false;     ///< true when the result came from the cache
  duration age{};         ///< how old the served value was
  time_point recorded{};  ///< when it was recorded (environment time)
};

/// Counters of a last_known_good cache, read under its lock.
struct last_known_good_stats {
  std::uint64_t recorded = 0;  ///< successful results recorded (new keys and updates)
  std::uint64_t served = 0;    ///< values served as an alternative (or by get())
  std::uint64_t missed = 0;    ///< lookups of a key with no value
  std::uint64_t expired = 0;   ///< lookups that found a value older than max_age (then dropped)
  std::uint64_t evicted = 0;   ///< least recently used keys dropped to stay within capacity
  std::size_t size = 0;        ///< keys held now
};

/// Remembers the last successful result per key and serves it, marked stale,
/// when the call fails:
///
///     keel::last_known_good<quote, std::string> cache({.max_age = 10min});
///     keel::staleness s;
///     auto p = keel::pipeline(keel::fallback(cache.serve(symbol, s)), cache.record(symbol), ...);
///
/// `record(key)` is a policy that stores every successful result passing
/// through it (place it inside the fallback so served values are not
/// re-recorded); `serve(key)` is an alternative that yields the value while
/// it is at most max_age old. Values are copied; to share them instead, make
/// the callable return (and Value be) std::shared_ptr<const T>. Thread-safe:
/// one mutex, taken once per record and once per serve. Not copyable; share
/// it by reference. Key needs std::hash<Key> (non-throwing) and ==; the default
/// std::monostate keeps a single value. The environment (time) is the third
/// template parameter, a constructor argument or with_environment(e).
template <class Value, class Key = std::monostate, environment Env = default_environment>
class last_known_good {
  static_assert(std::is_copy_constructible_v<Value>,
                "keel::last_known_good: Value must be copy-constructible (served values are "
                "copies; use std::shared_ptr<const T> to share instead)");

 public:
  using value_type = Value;
  using key_type = Key;

  /// A cache with the given options (validated: throws keel::config_error) and environment.
  explicit last_known_good(last_known_good_options options = {}, Env env = Env())
      : options_(options), env_(std::move(env)) {
    detail::require_valid(validate(options_));
  }
  /// `keel::last_known_good<V>({})`: the default options.
  explicit last_known_good(detail::empty_braces) : last_known_good(last_known_good_options()) {}

  last_known_good(const last_known_good&) = delete;
  last_known_good& operator=(const last_known_good&) = delete;

  /// The clock the cache reads (keel::testing::virtual_environment in tests),
  /// as every policy takes it: a new, empty cache with the same options. On
  /// an rvalue only, like the breaker's setters: the cache is not copyable.
  template <environment E>
  last_known_good<Value, Key, E> with_environment(E e) && {
    return last_known_good<Value, Key, E>(options_, std::move(e));
  }

  /// The alternative that serves the value recorded for `key` (no_value or
  /// too_old failures otherwise). Holds a reference to this cache.
  class server {
   public:
    /// Called by the fallback chain with the failure it stands in for.
    template <class R>
    outcome<R> operator()(const outcome<R>&) const {
      static_assert(std::convertible_to<const Value&, R>,
                    "keel::last_known_good::serve: the cache's Value does not convert to the "
                    "primary's result type R");
      return cache_->template serve_as<R>(key_, out_);
    }

   private:
    friend class last_known_good;
    server(last_known_good* cache, Key key, staleness* out)
        : cache_(cache), key_(std::move(key)), out_(out) {}
    last_known_good* cache_;
    Key key_;
    staleness* out_;
  };

  /// The policy that records every successful result of the call under `key`.
  class recorder : public executable<recorder> {
   public:
    /// Passes the call through and remembers its result when it has a value.
    /// An allocation failure while recording is swallowed: the cache keeps
    /// its previous state and the caller still gets the result.
    template <class R, class Next>
    outcome<R> run(Next&& next, context& ctx) const {
      static_assert(!std::is_void_v<R> && std::constructible_from<Value, const R&>,
                    "keel::last_known_good::record: the call's result type R does not convert "
                    "to the cache's Value");
      outcome<R> o = next(ctx);
      if (o.has_value()) cache_->record_quietly(key_, o.value());
      return o;
    }

   private:
    friend class last_known_good;
    recorder(last_known_good* cache, Key key) : cache_(cache), key_(std::move(key)) {}
    last_known_good* cache_;
    Key key_;
  };

  /// An alternative serving the value recorded for `key`.
  server serve(Key key = Key{}) { return server(this, std::move(key), nullptr); }
  /// As above, and sets `out` (stale = true, age) when it serves: the caller
  /// learns that the result is not fresh. `out` must outlive the call.
  server serve(Key key, staleness& out) { return server(this, std::move(key), &out); }
  /// A policy recording the successful results of the call under `key`.
  recorder record(Key key = Key{}) { return recorder(this, std::move(key)); }

  /// Records `value` for `key` now. Strong guarantee: if an allocation (or
  /// Value's copy) throws, the cache is as it was and the exception propagates.
  void put(const Key& key, Value value) { store(key, std::move(value), env_.now()); }

  /// The value for `key` if it is at most max_age old (a lookup that counts
  /// as a use for the LRU order and in stats()).
  std::optional<Value> get(const Key& key, staleness* out = nullptr) {
    outcome<Value> o = serve_as<Value>(key, out);
    if (!o.has_value()) return std::nullopt;
    return std::optional<Value>(std::move(o).value());
  }

  /// Forgets `key`; true when it was there.
  bool erase(const Key& key) {
    std::lock_guard lock(mutex_);
    auto found = index_.find(key);
    if (found == index_.end()) return false;
    remove(found);
    return true;
  }

  /// Forgets every key (the counters stay).
  void clear() noexcept {
    std::lock_guard lock(mutex_);
    index_.clear();
    lru_.clear();
  }

  /// Number of keys held.
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return lru_.size();
  }

  /// A snapshot of the counters.
  last_known_good_stats stats() const {
    std::lock_guard lock(mutex_);
    last_known_good_stats s = stats_;
    s.size = lru_.size();
    return s;
  }

  /// The options, as validated.
  const last_known_good_options& options() const noexcept { return options_; }

 private:
  struct entry {
    const Key* key;  // the key inside index_ (unordered_map nodes do not move)
    Value value;
    time_point recorded;
  };
  using list_type = std::list<entry>;
  using index_type = std::unordered_map<Key, typename list_type::iterator>;

  void record_quietly(const Key& key, const Value& value) noexcept {
#if KEEL_HAS_EXCEPTIONS
    try {
      store(key, Value(value), env_.now());
    } catch (...) {  // out of memory: keep the previous state, still return the result
    }
#else
    store(key, Value(value), env_.now());
#endif
  }

  // Strong guarantee: every step that may throw comes before the first change,
  // or is undone by `undo` below.
  void store(const Key& key, Value&& value, time_point now) {
    std::lock_guard lock(mutex_);
    auto found = index_.find(key);
    if (found != index_.end()) {
      entry& e = *found->second;
      // The time is read before the lock: a record that lost the race to a
      // newer one arrives late, and the newer value stays.
      if (now < e.recorded) {
        lru_.splice(lru_.begin(), lru_, found->second);
        ++stats_.recorded;
        return;
      }
      if constexpr (std::is_nothrow_move_assignable_v<Value>) {
        e.value = std::move(value);
      } else {
        // A throwing assignment may leave the old value half-changed: drop the key then.
        struct drop_on_throw {
          last_known_good* self;
          typename index_type::iterator at;
          bool armed = true;
          ~drop_on_throw() {
            if (armed) self->remove(at);
          }
        } guard{this, found};
        e.value = std::move(value);
        guard.armed = false;
      }
      e.recorded = now;
      lru_.splice(lru_.begin(), lru_, found->second);
      ++stats_.recorded;
      return;
    }
    // Everything that can throw comes before the first change: the victim's
    // lookup runs its key's hash (user code), and a reserved index does not
    // rehash on the insertion (which would invalidate `victim`).
    auto victim = index_.end();
    if (lru_.size() >= options_.capacity) victim = index_.find(*lru_.back().key);
    index_.reserve(index_.size() + 1);
    auto [slot, inserted] = index_.try_emplace(key, lru_.end());  // may throw: nothing changed
    struct undo_on_throw {
      index_type& index;
      typename index_type::iterator at;
      bool armed = true;
      ~undo_on_throw() {
        if (armed) index.erase(at);
      }
    } undo{index_, slot};
    lru_.push_front(entry{&slot->first, std::move(value), now});  // may throw
    undo.armed = false;
    slot->second = lru_.begin();
    ++stats_.recorded;
    if (victim != index_.end()) {
      remove(victim);
      ++stats_.evicted;
    }
  }

  template <class R>
  outcome<R> serve_as(const Key& key, staleness* out) {
    const time_point now = env_.now();
    std::lock_guard lock(mutex_);
    auto found = index_.find(key);
    if (found == index_.end()) {
      ++stats_.missed;
      return outcome<R>::from_keel(error_info{make_error_code(last_known_good_errc::no_value)});
    }
    const entry& e = *found->second;
    const duration age = detail::time_until(e.recorded, now);
    if (age > options_.max_age) {
      ++stats_.expired;
      remove(found);
      return outcome<R>::from_keel(error_info{make_error_code(last_known_good_errc::too_old)});
    }
    lru_.splice(lru_.begin(), lru_, found->second);
    outcome<R> o(std::in_place, e.value);  // a throwing copy leaves the cache consistent
    ++stats_.served;
    if (out != nullptr) *out = staleness{true, age, e.recorded};
    return o;
  }

  void remove(typename index_type::iterator at) noexcept {
    lru_.erase(at->second);
    index_.erase(at);
  }

  last_known_good_options options_;
  [[no_unique_address]] Env env_;
  mutable std::mutex mutex_;
  list_type lru_;  // most recently used first
  index_type index_;
  last_known_good_stats stats_{};
};

}  // namespace keel

#endif  // KEEL_FALLBACK_LAST_KNOWN_GOOD_HPP_INCLUDED

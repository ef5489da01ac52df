// SPDX-License-Identifier: BSL-1.0
#include <atomic>
#include <chrono>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <keel/fallback.hpp>
#include <keel/pipeline.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

namespace {

using keel::errc;
using keel::outcome;
using venv = keel::testing::virtual_environment;
using cache_t = keel::last_known_good<std::string, std::string, venv>;

/// A string cache on virtual time, given its environment as every policy takes it.
cache_t string_cache(keel::last_known_good_options options, const venv& env) {
  return keel::last_known_good<std::string, std::string>(options).with_environment(env);
}

std::string fail() { throw std::runtime_error("down"); }

}  // namespace

TEST_CASE("last_known_good: serves the last success, marked stale, with its exact age",
          "[fallback][last_known_good]") {
  venv env;
  auto cache = string_cache({.max_age = 10s}, env);
  keel::staleness s;
  auto p = keel::pipeline(keel::fallback(cache.serve("eur", s)), cache.record("eur"));

  CHECK(p.execute([] { return std::string("1.08"); }) == "1.08");
  CHECK_FALSE(s.stale);
  env.advance(4s);
  CHECK(p.execute([] { return std::string("1.09"); }) == "1.09");
  env.advance(3s);
  CHECK(p.execute(fail) == "1.09");
  CHECK(s.stale);
  CHECK(s.age == 3s);
  CHECK(s.recorded == keel::time_point{} + 4s);
  const auto st = cache.stats();
  CHECK(st.recorded == 2);  // the served value is not recorded again
  CHECK(st.served == 1);
  CHECK(st.size == 1);
}

TEST_CASE("last_known_good: a value expires exactly after max_age", "[fallback][last_known_good]") {
  venv env;
  auto cache = string_cache({.max_age = 10s}, env);
  auto p = keel::pipeline(keel::fallback(cache.serve("k")), cache.record("k"));
  REQUIRE(p.execute([] { return std::string("v"); }) == "v");

  env.advance(10s);  // age == max_age: still served
  CHECK(p.execute(fail) == "v");
  env.advance(1ns);  // one nanosecond older: refused, and dropped
  auto o = p.try_execute(fail);
  REQUIRE(o.is(errc::all_fallbacks_failed));
  REQUIRE(o.causes().size() == 2);
  CHECK(o.causes()[1].code() == keel::last_known_good_errc::too_old);
  CHECK(cache.stats().expired == 1);
  CHECK(cache.size() == 0);
  auto again = p.try_execute(fail);
  CHECK(again.causes()[1].code() == keel::last_known_good_errc::no_value);
  CHECK(cache.stats().missed == 1);
}

TEST_CASE("last_known_good: nothing recorded means no_value, and the chain goes on",
          "[fallback][last_known_good]") {
  venv env;
  auto cache = string_cache({}, env);
  auto p = keel::pipeline(keel::fallback(cache.serve("k"), "default"), cache.record("k"));
  CHECK(p.execute(fail) == "default");
  try {
    (void)keel::pipeline(keel::fallback(cache.serve("k")), cache.record("k")).execute(fail);
    FAIL("no exception");
  } catch (const keel::error& e) {
    REQUIRE(e.causes().size() == 2);
    CHECK(e.causes()[1].code == keel::last_known_good_errc::no_value);
    CHECK(e.causes()[1].code.category().name() == std::string("keel.last_known_good"));
  }
}

TEST_CASE("last_known_good: the least recently used key is evicted at capacity",
          "[fallback][last_known_good]") {
  venv env;
  auto cache = string_cache({.max_age = 1h, .capacity = 2}, env);
  cache.put("a", "A");
  cache.put("b", "B");
  REQUIRE(cache.get("a") == std::optional<std::string>("A"));  // a is now the most recent
  cache.put("c", "C");                                         // evicts b
  CHECK(cache.size() == 2);
  CHECK(cache.get("b") == std::nullopt);
  CHECK(cache.get("a") == std::optional<std::string>("A"));
  CHECK(cache.get("c") == std::optional<std::string>("C"));
  CHECK(cache.stats().evicted == 1);
  cache.put("a", "A2");  // an update moves a to the front without evicting
  cache.put("d", "D");   // evicts c
  CHECK(cache.get("c") == std::nullopt);
  CHECK(cache.get("a") == std::optional<std::string>("A2"));
  CHECK(cache.stats().evicted == 2);
  CHECK(cache.erase("a"));
  CHECK_FALSE(cache.erase("a"));
  cache.clear();
  CHECK(cache.size() == 0);
}

TEST_CASE("last_known_good: a single-value cache needs no key, and shared_ptr values are shared",
          "[fallback][last_known_good]") {
  venv env;
  using config = std::shared_ptr<const std::vector<int>>;
  keel::last_known_good<config, std::monostate, venv> cache({}, env);
  const config original = std::make_shared<const std::vector<int>>(std::vector<int>{1, 2, 3});
  auto p = keel::pipeline(keel::fallback(cache.serve()), cache.record());
  CHECK(p.execute([&] { return original; }) == original);
  const config served = p.execute([]() -> config { throw std::runtime_error("down"); });
  CHECK(served.get() == original.get());  // the same object, not a copy
}

namespace {

/// A value whose copy or move throws std::bad_alloc on demand.
struct fragile {
  static inline bool fail_copy = false;
  static inline bool fail_move = false;
  int v = 0;
  explicit fragile(int x) : v(x) {}
  fragile(const fragile& o) : v(o.v) {
    if (fail_copy) throw std::bad_alloc();
  }
  fragile(fragile&& o) : v(o.v) {  // NOLINT: deliberately not noexcept
    if (fail_move) throw std::bad_alloc();
  }
  fragile& operator=(const fragile&) = default;
  fragile& operator=(fragile&&) = default;
};

}  // namespace

TEST_CASE("last_known_good: a failed allocation leaves the cache as it was",
          "[fallback][last_known_good]") {
  venv env;
  keel::last_known_good<fragile, int, venv> cache({.capacity = 2}, env);
  cache.put(1, fragile(10));
  cache.put(2, fragile(20));

  SECTION("put of a new key whose node cannot be built") {
    fragile::fail_move = true;
    CHECK_THROWS_AS(cache.put(3, fragile(30)), std::bad_alloc);
    fragile::fail_move = false;
    CHECK(cache.size() == 2);
    CHECK_FALSE(cache.get(3).has_value());
    CHECK(cache.get(1)->v == 10);
    CHECK(cache.get(2)->v == 20);
    CHECK(cache.stats().evicted == 0);
    cache.put(3, fragile(30));  // and it still works afterwards
    CHECK(cache.size() == 2);
  }
  SECTION("record through a pipeline swallows the failure and still returns the result") {
    fragile::fail_copy = true;
    auto o = cache.record(3).try_execute([] { return fragile(30); });
    fragile::fail_copy = false;
    REQUIRE(o.has_value());
    CHECK(o.value().v == 30);
    CHECK(cache.size() == 2);
    CHECK_FALSE(cache.get(3).has_value());
  }
}

TEST_CASE("last_known_good: takes its environment as every policy does",
          "[fallback][last_known_good]") {
  venv env;
  // Template parameter and constructor argument, or with_environment on a fresh cache.
  keel::last_known_good<int, int, venv> by_argument({.max_age = 5s, .capacity = 3}, env);
  auto by_setter =
      keel::last_known_good<int, int>({.max_age = 5s, .capacity = 3}).with_environment(env);
  STATIC_REQUIRE(std::is_same_v<decltype(by_setter), decltype(by_argument)>);
  CHECK(by_setter.options().max_age == 5s);
  CHECK(by_setter.options().capacity == 3);

  for (auto* cache : {&by_argument, &by_setter}) {
    cache->put(1, 10);
    env.advance(5s);  // exactly max_age on the virtual clock: still served
    keel::staleness s;
    CHECK(cache->get(1, &s) == 10);
    CHECK(s.age == 5s);
    env.advance(1ns);
    CHECK_FALSE(cache->get(1).has_value());
  }
  REQUIRE_THROWS_AS(keel::last_known_good<int>({.capacity = 0}).with_environment(env),
                    keel::config_error);
}

TEST_CASE("last_known_good: options are validated", "[fallback][last_known_good]") {
  STATIC_REQUIRE_FALSE(keel::validate(keel::last_known_good_options{}).has_value());
  STATIC_REQUIRE(keel::validate(keel::last_known_good_options{.max_age = 0s}).has_value());
  using cache_int = keel::last_known_good<int>;
  REQUIRE_THROWS_AS(cache_int({.max_age = -1s}), keel::config_error);
  try {
    cache_int bad({.capacity = 0});
    FAIL("no exception");
  } catch (const keel::config_error& e) {
    CHECK(e.field() == "last_known_good_options.capacity");
    CHECK(std::string(e.what()) == "keel: last_known_good_options.capacity: must be >= 1");
  }
}

TEST_CASE("last_known_good: 8 threads record and serve consistently",
          "[fallback][last_known_good][threads]") {
  venv env;
  keel::last_known_good<int, int, venv> cache({.max_age = 1h, .capacity = 8}, env);
  constexpr int threads = 8;
  constexpr int rounds = 2000;
  constexpr int keys = 16;
  std::atomic<int> successes{0}, failures{0}, wrong{0}, served{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < rounds; ++i) {
        const int key = (i * 7 + t) % keys;
        auto p = keel::pipeline(keel::fallback(cache.serve(key), -1), cache.record(key));
        const bool ok = i % 2 == 0;
        const int r = p.execute([&]() -> int {
          if (!ok) throw std::runtime_error("down");
          return key * 1000 + t;
        });
        if (ok) {
          successes.fetch_add(1);
          if (r != key * 1000 + t) wrong.fetch_add(1);
        } else {
          failures.fetch_add(1);
          if (r != -1) {
            served.fetch_add(1);
            if (r / 1000 != key) wrong.fetch_add(1);  // a value recorded for another key
          }
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  const auto st = cache.stats();
  CHECK(wrong.load() == 0);
  CHECK(st.size <= 8);
  CHECK(st.recorded == static_cast<std::uint64_t>(successes.load()));
  CHECK(st.served == static_cast<std::uint64_t>(served.load()));
  CHECK(st.served + st.missed + st.expired == static_cast<std::uint64_t>(failures.load()));
  CHECK(st.expired == 0);
  CHECK(st.evicted > 0);                       // 16 keys through 8 slots
  CHECK(st.recorded >= st.evicted + st.size);  // each new key was recorded once at least
}

namespace {

// Hands out the times it was given, in order: a record that read the clock
// before a concurrent, newer record but took the lock after it.
struct replayed_clock {
  std::shared_ptr<std::vector<keel::time_point>> times;
  keel::time_point now() const {
    const keel::time_point t = times->front();
    times->erase(times->begin());
    return t;
  }
};

}  // namespace

// Found by the reliability stress test: the time is read before the lock, so
// a record could land after a newer one and replace it with an older value.
TEST_CASE("last_known_good: a late record of an older result keeps the newer value",
          "[fallback][last_known_good][regression]") {
  auto times = std::make_shared<std::vector<keel::time_point>>(std::vector<keel::time_point>{
      keel::time_point(10s), keel::time_point(7s), keel::time_point(12s)});
  using env_t = keel::basic_environment<replayed_clock>;
  keel::last_known_good<std::string, std::string, env_t> cache({.max_age = 1h},
                                                               env_t{replayed_clock{times}});
  cache.put("eur", "newer");  // recorded at 10 s
  cache.put("eur", "older");  // stamped 7 s, stored after: too late
  keel::staleness s;
  CHECK(cache.get("eur", &s) == "newer");  // looked up at 12 s
  CHECK(s.age == 2s);
  CHECK(cache.stats().recorded == 2);
}

namespace {
bool hash_throws_for_1 = false;
struct picky_key {
  int k = 0;
  bool operator==(const picky_key&) const = default;
};
}  // namespace

template <>
struct std::hash<picky_key> {
  std::size_t operator()(const picky_key& x) const {
    if (hash_throws_for_1 && x.k == 1) throw std::runtime_error("hash");
    return static_cast<std::size_t>(x.k);
  }
};

TEST_CASE("last_known_good: a hash that throws while evicting leaves the cache as it was",
          "[fallback][last_known_good][regression]") {
  keel::last_known_good<int, picky_key> cache({.capacity = 1});
  cache.put(picky_key{1}, 10);
  hash_throws_for_1 = true;  // key 1 is the victim: finding it throws
  CHECK_THROWS_AS(cache.put(picky_key{2}, 20), std::runtime_error);
  CHECK(cache.size() == 1);
  CHECK_FALSE(cache.get(picky_key{2}));
  // record() swallows it, keeps the cache at capacity and still returns the result.
  auto o = keel::pipeline(cache.record(picky_key{2})).try_execute([] { return 20; });
  CHECK(o.value() == 20);
  CHECK(cache.size() == 1);
  CHECK(cache.stats().evicted == 0);
  hash_throws_for_1 = false;
  for (int k = 3; k < 6; ++k) cache.put(picky_key{k}, k);
  CHECK(cache.size() == 1);  // never over capacity
  CHECK(cache.stats().evicted == 3);
  CHECK(cache.get(picky_key{5}).value_or(0) == 5);
}

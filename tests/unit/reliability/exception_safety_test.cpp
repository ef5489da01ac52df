// SPDX-License-Identifier: BSL-1.0
// Exception safety: user code that keel calls (listener handlers, outcome
// predicates, fallback alternatives, hint extractors, a result type's copy
// and move) throws, or memory runs out inside the last-known-good cache.
// For each: run()/try_execute() does not throw where the docs say it never
// does, the documented outcome reaches the caller, and the policy's state is
// intact afterwards (a breaker still admits and rejects exactly as it should:
// no probe permit leaked).
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>

#include <keel/circuit_breaker.hpp>
#include <keel/fallback.hpp>
#include <keel/pipeline.hpp>
#include <keel/retry.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"

// ---- an allocator that fails on demand (this binary only) --------------------
// TSan's runtime defines the global operator new and delete itself (not
// weakly), so under TSan they are not replaced and the bad_alloc tests skip.
#if defined(__SANITIZE_THREAD__)
#define KEEL_TEST_REPLACES_NEW 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KEEL_TEST_REPLACES_NEW 0
#endif
#endif
#ifndef KEEL_TEST_REPLACES_NEW
#define KEEL_TEST_REPLACES_NEW 1
#endif

namespace {
// -1: never fail. n >= 0: the allocation after n more succeed throws std::bad_alloc.
thread_local long fail_after = -1;
thread_local long failed_allocations = 0;
}  // namespace

#if KEEL_TEST_REPLACES_NEW
namespace {
void* counted_allocation(std::size_t n) noexcept {
  if (fail_after == 0) {
    fail_after = -1;
    ++failed_allocations;
    return nullptr;
  }
  if (fail_after > 0) --fail_after;
  return std::malloc(n == 0 ? 1 : n);
}
}  // namespace

// Every unaligned form is replaced, so that each pair allocates and frees alike.
void* operator new(std::size_t n) {
  if (void* p = counted_allocation(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = counted_allocation(n)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_allocation(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return counted_allocation(n);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
#endif

namespace {

using namespace std::chrono_literals;
using keel::circuit_state;
using keel::errc;
using keel::outcome;
using venv = keel::testing::virtual_environment;

struct boom : std::runtime_error {
  boom() : std::runtime_error("boom") {}
};

/// Hears every event and throws from each handler.
struct throwing_listener {
  std::shared_ptr<int> heard = std::make_shared<int>(0);
  template <class E>
  void on(const E&) const {
    ++*heard;
    throw boom();
  }
};

/// A result whose copy and move throw while `armed` is set.
struct fragile {
  static inline bool armed = false;
  static inline bool copy_armed = false;  // the copy only
  int v = 0;
  explicit fragile(int x) : v(x) {}
  fragile(const fragile& o) : v(o.v) {
    if (armed || copy_armed) throw boom();
  }
  fragile(fragile&& o) : v(o.v) {  // NOLINT: may throw on purpose
    if (armed) throw boom();
  }
  fragile& operator=(const fragile& o) {
    if (armed) throw boom();
    v = o.v;
    return *this;
  }
  fragile& operator=(fragile&& o) {  // NOLINT
    if (armed) throw boom();
    v = o.v;
    return *this;
  }
};

int fails() { throw std::runtime_error("down"); }

/// After a breaker with 1 probe has been opened and its open time has passed:
/// drives it through a full half-open round and checks every decision.
template <class B>
void check_breaker_still_works(const B& breaker, const venv& env) {
  // Whatever happened before, the circuit must be able to close and open again.
  breaker.reset();
  REQUIRE(breaker.state() == circuit_state::closed);
  for (int i = 0; i < 2; ++i) (void)breaker.try_execute(fails);
  REQUIRE(breaker.state() == circuit_state::open);
  auto rejected = breaker.try_execute([] { return 1; });
  REQUIRE(rejected.is(errc::circuit_open));
  REQUIRE(rejected.retry_after() == 10s);
  env.advance(10s);
  auto probe = breaker.try_execute([] { return 2; });
  REQUIRE(probe.has_value());
  REQUIRE(breaker.state() == circuit_state::closed);
}

keel::circuit_breaker_options two_failures() {
  return {.trip = keel::consecutive_failures{.threshold = 2}, .open_duration = 10s};
}

}  // namespace

// ---- listeners ---------------------------------------------------------------

TEST_CASE("exception safety: a throwing listener changes nothing in a retry",
          "[reliability][exception_safety][retry]") {
  venv env;
  throwing_listener l;
  keel::counters counters;
  auto r = keel::retry({.max_attempts = 3, .backoff = keel::constant_backoff{1s}})
               .with_environment(env)
               .with_listener(l)
               .with_counters(counters);
  int calls = 0;
  auto o = r.try_execute([&]() -> int {
    if (++calls < 3) throw std::runtime_error("flaky");
    return 7;
  });
  REQUIRE(o.has_value());
  CHECK(o.value() == 7);
  CHECK(calls == 3);
  CHECK(env.sleeps() == std::vector<keel::duration>{1s, 1s});
  CHECK(*l.heard > 0);
  CHECK(counters.count<keel::retry_scheduled>() == 2);
  CHECK(counters.count<keel::retry_succeeded>() == 1);
}

TEST_CASE("exception safety: a throwing listener changes nothing in a circuit breaker",
          "[reliability][exception_safety][circuit_breaker]") {
  venv env;
  throwing_listener l;
  auto b = keel::circuit_breaker{two_failures()}.with_environment(env).with_listener(l);
  for (int i = 0; i < 2; ++i) CHECK(b.try_execute(fails).has_exception());
  CHECK(b.state() == circuit_state::open);
  const int heard = *l.heard;
  CHECK(heard >= 2);  // circuit_opened and circuit_state_changed at least
  check_breaker_still_works(b, env);
  CHECK(*l.heard > heard);
  CHECK(b.metrics().rejections == 1);
}

TEST_CASE("exception safety: a throwing listener changes nothing in a fallback",
          "[reliability][exception_safety][fallback]") {
  throwing_listener l;
  auto f = keel::fallback(42).with_listener(l);
  auto o = f.try_execute(fails);
  REQUIRE(o.has_value());
  CHECK(o.value() == 42);
  CHECK(*l.heard == 1);  // fallback_used
}

// ---- outcome predicates ------------------------------------------------------

namespace {
auto throwing_predicate() {
  return keel::on::when([](const auto&) -> bool { throw boom(); });
}
}  // namespace

TEST_CASE("exception safety: a throwing outcome predicate counts as a match in a retry",
          "[reliability][exception_safety][retry]") {
  venv env;
  keel::counters counters;
  auto r = keel::retry({.max_attempts = 3, .backoff = keel::constant_backoff{1s}})
               .with_environment(env)
               .handle(throwing_predicate())
               .with_counters(counters);
  int calls = 0;
  outcome<int> o = outcome<int>::from_keel(errc::timeout);
  REQUIRE_NOTHROW(o = r.try_execute([&] { return ++calls; }));
  // The predicate could not answer: keel treats the outcome as handled
  // (retried), bounded by max_attempts, and returns the call's last outcome.
  CHECK(calls == 3);
  REQUIRE(o.has_value());
  CHECK(o.value() == 3);
  CHECK(counters.count<keel::retries_exhausted>() == 1);
}

TEST_CASE(
    "exception safety: a throwing outcome predicate counts as a failure in a breaker "
    "and never leaks a probe permit",
    "[reliability][exception_safety][circuit_breaker]") {
  venv env;
  auto b = keel::circuit_breaker{two_failures()}.with_environment(env).handle(throwing_predicate());
  // Closed: the answers are counted as failures, so two of them open the circuit.
  outcome<int> o = outcome<int>::from_keel(errc::timeout);
  REQUIRE_NOTHROW(o = b.try_execute([] { return 1; }));
  REQUIRE(o.has_value());  // the caller still gets the call's result
  REQUIRE_NOTHROW(o = b.try_execute([] { return 1; }));
  CHECK(b.state() == circuit_state::open);
  // Half-open: the probe's result is a failure again; the slot is not leaked.
  env.advance(10s);
  REQUIRE_NOTHROW(o = b.try_execute([] { return 2; }));
  CHECK(o.has_value());
  CHECK(b.state() == circuit_state::open);
  CHECK(b.metrics().probes_admitted == 0);
  env.advance(10s);
  auto p = b.try_acquire();
  CHECK(p.admitted());
  CHECK(p.is_probe());
}

TEST_CASE("exception safety: a throwing ignore predicate in a breaker ignores the outcome",
          "[reliability][exception_safety][circuit_breaker]") {
  venv env;
  auto b = keel::circuit_breaker{two_failures()}.with_environment(env).ignore(throwing_predicate());
  for (int i = 0; i < 5; ++i) REQUIRE_NOTHROW((void)b.try_execute(fails));
  CHECK(b.state() == circuit_state::closed);  // every outcome was ignored
  CHECK(b.metrics().failures == 0);
}

TEST_CASE(
    "exception safety: a throwing outcome predicate in a fallback judges every outcome "
    "a failure",
    "[reliability][exception_safety][fallback]") {
  auto f = keel::fallback(42).handle(throwing_predicate());
  outcome<int> o = outcome<int>::from_keel(errc::timeout);
  REQUIRE_NOTHROW(o = f.try_execute([] { return 1; }));
  // The predicate "matches" the primary's 1 and the alternative's 42 alike:
  // the chain is exhausted, and both results are among the causes, in order.
  REQUIRE(o.is(errc::all_fallbacks_failed));
  REQUIRE(o.causes().size() == 2);
  CHECK(o.causes()[0].value() == 1);
  CHECK(o.causes()[1].value() == 42);
}

// ---- alternatives ------------------------------------------------------------

TEST_CASE("exception safety: a throwing fallback alternative is one more cause, in order",
          "[reliability][exception_safety][fallback]") {
  auto f = keel::fallback([]() -> int { throw boom(); }, 5);
  auto o = f.try_execute(fails);
  REQUIRE(o.has_value());
  CHECK(o.value() == 5);

  auto only = keel::fallback([]() -> int { throw boom(); });
  auto all = only.try_execute(fails);
  REQUIRE(all.is(errc::all_fallbacks_failed));
  REQUIRE(all.causes().size() == 2);
  CHECK(keel::on::exception<boom>(all.causes()[1]));
  CHECK_THROWS_AS(only.execute(fails), keel::error);
}

// ---- hint extractor ----------------------------------------------------------

TEST_CASE("exception safety: a throwing hint extractor means no hint",
          "[reliability][exception_safety][retry]") {
  venv env;
  auto r = keel::retry({.max_attempts = 3, .backoff = keel::constant_backoff{250ms}})
               .with_environment(env)
               .handle(keel::on::result([](int v) { return v < 0; }))
               .with_hint([](int) -> std::optional<keel::duration> { throw boom(); });
  int calls = 0;
  outcome<int> o = outcome<int>::from_keel(errc::timeout);
  REQUIRE_NOTHROW(o = r.try_execute([&] { return ++calls == 3 ? 1 : -1; }));
  REQUIRE(o.has_value());
  CHECK(o.value() == 1);
  CHECK(env.sleeps() == std::vector<keel::duration>{250ms, 250ms});  // the backoff, no hint
}

// ---- a result whose copy or move throws --------------------------------------

TEST_CASE("exception safety: a result whose move throws becomes that exception, breaker intact",
          "[reliability][exception_safety][circuit_breaker]") {
  venv env;
  auto b = keel::circuit_breaker{two_failures()}.with_environment(env);
  for (int i = 0; i < 2; ++i) (void)b.try_execute(fails);
  env.advance(10s);
  // A half-open probe whose result cannot be moved into the outcome: the
  // throwing move is captured as the call's exception, which is a failed
  // probe; the permit is recorded, not leaked.
  fragile::armed = true;
  outcome<fragile> o = outcome<fragile>::from_keel(errc::timeout);
  bool escaped = false;
  try {
    o = b.try_execute([] { return fragile(1); });
  } catch (...) {
    escaped = true;
  }
  fragile::armed = false;
  REQUIRE_FALSE(escaped);
  CHECK(keel::on::exception<boom>(o));
  CHECK(b.state() == circuit_state::open);  // the probe failed: open again
  CHECK(b.metrics().probes_admitted == 0);
  check_breaker_still_works(b, env);
}

TEST_CASE("exception safety: a fallback value whose copy throws is a failed alternative",
          "[reliability][exception_safety][fallback]") {
  auto f = keel::fallback(fragile(9));
  fragile::armed = true;
  auto o = f.try_execute([]() -> fragile { throw std::runtime_error("down"); });
  fragile::armed = false;
  REQUIRE(o.is(errc::all_fallbacks_failed));
  REQUIRE(o.causes().size() == 2);
  CHECK(keel::on::exception<boom>(o.causes()[1]));
}

TEST_CASE(
    "exception safety: a last_known_good value whose copy throws is served as a failure "
    "and the cache is unchanged",
    "[reliability][exception_safety][fallback]") {
  venv env;
  keel::last_known_good<fragile, int, venv> cache({}, env);
  cache.put(1, fragile(10));
  fragile::armed = true;
  auto chain = keel::fallback(cache.serve(1));
  auto o = chain.try_execute([]() -> fragile { throw std::runtime_error("down"); });
  fragile::armed = false;
  CHECK(o.is(errc::all_fallbacks_failed));
  CHECK(cache.size() == 1);
  auto v = cache.get(1);
  REQUIRE(v);
  CHECK(v->v == 10);
  // record(): the copy into the cache throws; the caller still gets its result
  // and the cache stays as it was.
  auto p = keel::pipeline(cache.record(2));
  fragile::copy_armed = true;
  auto ok = p.try_execute([] { return fragile(20); });
  fragile::copy_armed = false;
  REQUIRE(ok.has_value());
  CHECK(ok.value().v == 20);
  CHECK(cache.size() == 1);
  CHECK_FALSE(cache.get(2));
  CHECK(cache.stats().recorded == 1);
}

// ---- out of memory in last_known_good ----------------------------------------

TEST_CASE(
    "exception safety: bad_alloc at each allocation of last_known_good::put leaves the "
    "cache exactly as it was",
    "[reliability][exception_safety][fallback]") {
  if (!KEEL_TEST_REPLACES_NEW) {
    WARN("skipped: operator new is not replaceable in this build (TSan)");
    return;
  }
  venv env;
  const std::string long_key(64, 'k');  // beyond the small-string buffer: allocates
  const std::string long_value(128, 'v');
  for (const bool full : {false, true}) {
    keel::last_known_good<std::string, std::string, venv> cache(
        {.capacity = full ? std::size_t{2} : std::size_t{16}}, env);
    cache.put(long_key + "1", long_value + "1");
    cache.put(long_key + "2", long_value + "2");
    const auto before = cache.stats();
    int failures_seen = 0;
    for (long n = 0;; ++n) {
      INFO("full " << full << ", allocation " << n);
      std::string value = long_value + "3";  // allocated before the fault is armed
      std::string key = long_key + "3";
      failed_allocations = 0;
      fail_after = n;
      bool threw = false;
      try {
        cache.put(key, std::move(value));
      } catch (const std::bad_alloc&) {
        threw = true;
      }
      fail_after = -1;
      if (!threw) {
        CHECK(failed_allocations == 0);  // every allocation point was tried
        break;
      }
      ++failures_seen;
      // Nothing changed: same size, same stats, both old values, no new key.
      CHECK(cache.size() == 2);
      CHECK(cache.stats().recorded == before.recorded);
      CHECK(cache.stats().evicted == before.evicted);
      CHECK_FALSE(cache.get(key));
      REQUIRE(cache.get(long_key + "1"));
      REQUIRE(cache.get(long_key + "2"));
      CHECK(*cache.get(long_key + "2") == long_value + "2");
      REQUIRE(n < 100);
    }
    CHECK(failures_seen >= 2);  // the key's copy and the index node, at least
    CHECK(cache.size() == (full ? 2u : 3u));
    CHECK(*cache.get(long_key + "3") == long_value + "3");
  }
}

TEST_CASE(
    "exception safety: bad_alloc while recording through record() still returns the "
    "result and keeps the cache",
    "[reliability][exception_safety][fallback]") {
  if (!KEEL_TEST_REPLACES_NEW) {
    WARN("skipped: operator new is not replaceable in this build (TSan)");
    return;
  }
  venv env;
  keel::last_known_good<std::string, std::string, venv> cache({}, env);
  const std::string key(64, 'k');
  auto p = keel::pipeline(cache.record(key));
  const std::string value(200, 'x');
  fail_after = 1;  // the call's own copy of the result succeeds; the cache's fails
  auto o = p.try_execute([&] { return value; });
  fail_after = -1;
  // Whichever allocation failed, nothing escaped and the cache is consistent.
  if (o.has_value()) CHECK(o.value() == value);
  CHECK(cache.size() <= 1);
  if (cache.size() == 1) CHECK(*cache.get(key) == value);
}

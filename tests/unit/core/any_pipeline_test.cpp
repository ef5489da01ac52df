// SPDX-License-Identifier: BSL-1.0
// keel::any_pipeline<R> behaves as the policy it holds (outcomes, events,
// breaker state through std::ref, stop token, context), allocates once when
// built and never per call, and hands `next` on without copying it.
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <keel/any_pipeline.hpp>
#include <keel/keel.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/scripted.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"
#include "support/expected.hpp"

// ---- allocations counted on this thread (this binary only) ------------------
// TSan's runtime defines operator new and delete itself (not weakly), so under
// TSan they are not replaced and the allocation checks are skipped. Every
// unaligned form is replaced, so that each pair allocates and frees alike
// (ASan checks it).
#if defined(__SANITIZE_THREAD__)
#define KEEL_TEST_COUNTS_NEW 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KEEL_TEST_COUNTS_NEW 0
#endif
#endif
#ifndef KEEL_TEST_COUNTS_NEW
#define KEEL_TEST_COUNTS_NEW 1
#endif

namespace {
thread_local long allocations = 0;
}  // namespace

#if KEEL_TEST_COUNTS_NEW
namespace {
void* counted(std::size_t n) noexcept {
  ++allocations;
  return std::malloc(n == 0 ? 1 : n);
}
}  // namespace

void* operator new(std::size_t n) {
  if (void* p = counted(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = counted(n)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
#endif

namespace {

using namespace std::chrono_literals;
using keel::errc;
using keel::testing::step;
using venv = keel::testing::virtual_environment;

struct boom : std::runtime_error {
  boom() : std::runtime_error("boom") {}
};

keel::retry_options three_attempts() {
  return {.max_attempts = 3, .backoff = keel::constant_backoff{.delay = 100ms}};
}

/// What a call did, to compare a pipeline with the any_pipeline that holds it.
struct trace {
  int value = 0;  // the result, or -1
  bool threw = false;
  std::error_code code;
  std::vector<keel::duration> starts;
  std::vector<int> attempts;
  std::vector<keel::duration> sleeps;
  bool operator==(const trace&) const = default;
};

/// Runs `script` once under the policy that `make(env)` builds, on fresh virtual time.
template <class Make>
trace run_script(Make make, const std::vector<step<int>>& script) {
  venv env;
  const auto guard = make(env);
  keel::testing::scripted<int> dep(env.clock(), script);
  const keel::outcome<int> o = guard.try_execute(dep);
  trace t;
  t.value = o.has_value() ? o.value() : -1;
  t.threw = o.has_exception();
  t.code = o.code();
  t.starts = dep.start_times();
  for (const auto& r : dep.records()) t.attempts.push_back(r.attempt);
  t.sleeps = env.sleeps();
  return t;
}

auto retry_with_fallback(venv& env) {
  return keel::pipeline(keel::fallback(7), keel::retry(three_attempts()).with_environment(env));
}

/// Fails until its third call; counts its calls in itself.
struct counting_next {
  int calls = 0;
  keel::outcome<int> operator()(keel::context&) {
    ++calls;
    if (calls < 3) return keel::outcome<int>::from_keel(errc::timeout);
    return keel::outcome<int>(calls);
  }
};

/// A policy that counts its copies, to see how often any_pipeline copies it.
struct copy_counting {
  std::shared_ptr<int> copies = std::make_shared<int>(0);
  copy_counting() = default;
  copy_counting(const copy_counting& other) : copies(other.copies) { ++*copies; }
  copy_counting& operator=(const copy_counting&) = delete;
  template <class R, class Next>
  keel::outcome<R> run(Next&& next, keel::context& ctx) const {
    return next(ctx);
  }
};

}  // namespace

static_assert(keel::policy<keel::any_pipeline<int>>);
static_assert(sizeof(keel::any_pipeline<int>) == 3 * sizeof(void*));
static_assert(std::is_nothrow_move_constructible_v<keel::any_pipeline<int>>);
static_assert(std::is_copy_constructible_v<keel::any_pipeline<int>>);
static_assert(!std::is_convertible_v<keel::retry<>, keel::any_pipeline<int>>);  // explicit

TEST_CASE("any_pipeline: the outcomes, attempts and sleeps of the pipeline it holds",
          "[core][any_pipeline]") {
  const auto direct = [](venv& env) { return retry_with_fallback(env); };
  const auto erased = [](venv& env) { return keel::any_pipeline<int>(retry_with_fallback(env)); };
  using s = step<int>;
  const std::vector<std::vector<step<int>>> scripts = {
      {s::returns(1)},
      {s::throws(boom()).after(10ms), s::returns(2)},
      {s::throws(boom()), s::throws(boom()), s::returns(3).after(5ms)},
      {s::throws(boom())},  // every attempt fails: the fallback's 7
  };
  for (std::size_t i = 0; i < scripts.size(); ++i) {
    INFO("script " << i);
    const trace want = run_script(direct, scripts[i]);
    CHECK(run_script(erased, scripts[i]) == want);
  }
  const trace last = run_script(erased, scripts.back());
  CHECK(last.value == 7);
  CHECK(last.attempts == std::vector<int>{1, 2, 3});
  CHECK(last.sleeps == std::vector<keel::duration>{100ms, 100ms});
}

TEST_CASE("any_pipeline: exceptions, keel failures and expected-like errors come out unchanged",
          "[core][any_pipeline]") {
  venv env;
  const keel::any_pipeline<int> plain(keel::retry({.max_attempts = 1}).with_environment(env));
  const keel::outcome<int> thrown = plain.try_execute([]() -> int { throw boom(); });
  REQUIRE(thrown.has_exception());
  REQUIRE_THROWS_AS(plain.execute([]() -> int { throw boom(); }), boom);

  const keel::any_pipeline<int> refusing(keel::timeout({.timeout = 50ms}).with_environment(env));
  const keel::outcome<int> late = refusing.try_execute([&] {
    env.advance(60ms);
    return 1;
  });
  CHECK(late.is(errc::timeout));

  using result = keel_test::expected<int, std::error_code>;
  const keel::any_pipeline<result> expecting{keel::pipeline<>()};
  const result r = expecting.execute([] {
    return result(
        keel_test::unexpected<std::error_code>(std::make_error_code(std::errc::io_error)));
  });
  REQUIRE(!r.has_value());
  CHECK(r.error() == std::errc::io_error);

  const keel::any_pipeline<void> nothing(keel::retry({.max_attempts = 2}).with_environment(env));
  int calls = 0;
  nothing.execute([&] { ++calls; });
  CHECK(calls == 1);
}

TEST_CASE("any_pipeline: a breaker held through std::ref is the caller's breaker",
          "[core][any_pipeline]") {
  venv env;
  auto breaker = keel::circuit_breaker(
                     {.trip = keel::consecutive_failures{.threshold = 2}, .open_duration = 10s})
                     .with_environment(env);
  const keel::any_pipeline<int> guard(keel::pipeline(std::ref(breaker)));
  const keel::any_pipeline<int> copy = guard;  // shares the reference, not a new breaker

  CHECK(guard.try_execute([]() -> int { throw boom(); }).has_exception());
  CHECK(copy.try_execute([]() -> int { throw boom(); }).has_exception());
  CHECK(breaker.state() == keel::circuit_state::open);

  int calls = 0;
  const keel::outcome<int> rejected = guard.try_execute([&] { return ++calls; });
  CHECK(rejected.is(errc::circuit_open));
  CHECK(rejected.retry_after() == 10s);
  CHECK(calls == 0);

  env.advance(10s);  // half-open: one probe closes it
  CHECK(copy.execute([&] { return ++calls; }) == 1);
  CHECK(breaker.state() == keel::circuit_state::closed);
  CHECK(breaker.metrics().failures == 2);
}

TEST_CASE("any_pipeline: a breaker held through std::shared_ptr, shared with a pipeline",
          "[core][any_pipeline]") {
  venv env;
  using breaker_t = keel::circuit_breaker<keel::on::any_failure_t, keel::no_listener, venv>;
  const auto breaker = std::make_shared<breaker_t>(
      keel::circuit_breaker_options{.trip = keel::consecutive_failures{.threshold = 1}},
      keel::on::any_failure, keel::no_listener{}, env);
  const keel::any_pipeline<int> guard(breaker);
  const auto other = keel::pipeline(breaker);
  CHECK(other.try_execute([]() -> int { throw boom(); }).has_exception());
  CHECK(guard.try_execute([] { return 1; }).is(errc::circuit_open));
}

TEST_CASE("any_pipeline: the caller's stop token reaches the policy and the callable",
          "[core][any_pipeline]") {
  venv env;
  const auto make = [&] {
    return keel::pipeline(keel::retry(three_attempts()).with_environment(env));
  };
  std::stop_source source;
  const keel::any_pipeline<int> guard(make());

  int calls = 0;
  const auto stop_after_first = [&](const keel::context& ctx) -> int {
    ++calls;
    CHECK(ctx.stop_token().stop_possible());
    source.request_stop();
    throw boom();
  };
  const keel::outcome<int> direct = make().try_execute(source.get_token(), stop_after_first);
  source = std::stop_source();
  const keel::outcome<int> erased = guard.try_execute(source.get_token(), stop_after_first);
  CHECK(calls == 2);  // one attempt each: the stop request ends the retry
  CHECK(direct.is(errc::cancelled));
  CHECK(erased.is(errc::cancelled));
  CHECK(env.sleeps().empty());
}

TEST_CASE("any_pipeline: the callable sees the context the policies set", "[core][any_pipeline]") {
  venv env;
  const keel::any_pipeline<int> inner(keel::timeout({.timeout = 200ms}).with_environment(env));
  // An any_pipeline is a policy: nested in a pipeline, under a retry.
  const auto outer = keel::pipeline(
      keel::retry({.max_attempts = 3, .backoff = keel::backoff::none()}).with_environment(env),
      inner);
  keel::testing::scripted<int> dep(env.clock(),
                                   {step<int>::throws(boom()).after(50ms), step<int>::returns(9)});
  CHECK(outer.execute(dep) == 9);
  const auto records = dep.records();
  REQUIRE(records.size() == 2);
  CHECK(records[0].attempt == 1);
  CHECK(records[1].attempt == 2);
  CHECK(records[0].deadline == records[0].started + 200ms);
  CHECK(records[1].deadline == records[1].started + 200ms);
}

TEST_CASE("any_pipeline: a `next` given to run() is the object every attempt calls",
          "[core][any_pipeline]") {
  venv env;
  const keel::any_pipeline<int> guard(
      keel::retry({.max_attempts = 5, .backoff = keel::backoff::none()}).with_environment(env));
  counting_next next;
  keel::context ctx;
  const keel::outcome<int> o = guard.run<int>(next, ctx);
  CHECK(o.value() == 3);
  CHECK(next.calls == 3);
}

TEST_CASE("any_pipeline: empty, moved-from and assigned", "[core][any_pipeline]") {
  const keel::any_pipeline<int> empty;
  CHECK(!empty);
  CHECK(empty.execute([] { return 4; }) == 4);
  CHECK(empty.try_execute([]() -> int { throw boom(); }).has_exception());

  venv env;
  keel::any_pipeline<int> guard(keel::fallback(5));
  CHECK(guard);
  CHECK(guard.execute([]() -> int { throw boom(); }) == 5);

  keel::any_pipeline<int> moved(std::move(guard));
  CHECK(moved.execute([]() -> int { throw boom(); }) == 5);
  CHECK(!guard);  // NOLINT(bugprone-use-after-move): the documented moved-from state
  CHECK(guard.execute([] { return 6; }) == 6);

  guard = moved;
  CHECK(guard.execute([]() -> int { throw boom(); }) == 5);
  moved = keel::any_pipeline<int>();
  CHECK(!moved);
  CHECK(guard.execute([]() -> int { throw boom(); }) == 5);
}

TEST_CASE("any_pipeline: one allocation when built, none per call or per copy",
          "[core][any_pipeline]") {
  if (!KEEL_TEST_COUNTS_NEW) {
    WARN("skipped: operator new is not replaceable in this build (TSan)");
    return;
  }
  venv env;
  auto breaker = keel::circuit_breaker().with_environment(env);
  auto p = keel::pipeline(keel::fallback(1), keel::retry(three_attempts()).with_environment(env),
                          std::ref(breaker));

  long before = allocations;
  const keel::any_pipeline<int> guard(p);
  CHECK(allocations - before == 1);

  before = allocations;
  for (int i = 0; i < 10; ++i) CHECK(guard.execute([] { return 2; }) == 2);
  CHECK(allocations - before == 0);

  before = allocations;
  const keel::any_pipeline<int> copy = guard;
  keel::any_pipeline<int> moved = keel::any_pipeline<int>(copy);
  CHECK(allocations - before == 0);

  before = allocations;
  const keel::any_pipeline<int> empty;
  CHECK(allocations - before == 0);
  (void)moved;
  (void)empty;
}

TEST_CASE("any_pipeline: the policy is copied once when built, never when copied",
          "[core][any_pipeline]") {
  const copy_counting policy;
  const keel::any_pipeline<int> guard(policy);
  CHECK(*policy.copies == 1);
  const keel::any_pipeline<int> copy = guard;
  CHECK(copy.execute([] { return 3; }) == 3);
  CHECK(*policy.copies == 1);
  const keel::any_pipeline<int> from_rvalue{copy_counting()};
  CHECK(*policy.copies == 1);
}

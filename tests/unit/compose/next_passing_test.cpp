// SPDX-License-Identifier: BSL-1.0
// How policies hand `next` to their out-of-line paths (detail::pass_next): a
// copy only when a copy cannot behave differently, else a reference, so that
// a stateful `next` given to run() directly keeps one state across attempts.
#include <array>
#include <chrono>
#include <functional>
#include <string>

#include <keel/keel.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;
using venv = keel::testing::virtual_environment;

namespace {

/// Fails until its third call; counts its calls in itself.
struct counting_next {
  int calls = 0;
  keel::outcome<int> operator()(keel::context&) {
    ++calls;
    if (calls < 3) return keel::outcome<int>::from_keel(keel::errc::timeout);
    return keel::outcome<int>(calls);
  }
};

/// What the pipeline's closures look like: pointers, called through const.
struct pointing_next {
  const int* value;
  keel::outcome<int> operator()(keel::context&) const { return keel::outcome<int>(*value); }
};

struct big_next {
  std::array<char, 128> bytes;
  keel::outcome<int> operator()(keel::context&) const { return keel::outcome<int>(bytes[0]); }
};

struct owning_next {
  std::string text;
  keel::outcome<int> operator()(keel::context&) const {
    return keel::outcome<int>(static_cast<int>(text.size()));
  }
};

}  // namespace

// The pipeline's own closures and the callables execute() builds capture
// pointers only: they are copied. Anything that could notice is not.
static_assert(keel::detail::cheap_next<pointing_next>);
static_assert(!keel::detail::cheap_next<counting_next>);  // called through non-const
static_assert(!keel::detail::cheap_next<big_next>);       // too large to copy for free
static_assert(!keel::detail::cheap_next<owning_next>);    // not trivially copyable

TEST_CASE("pass_next: a stateful next given to retry.run keeps one state across attempts",
          "[compose][next]") {
  venv env;
  const auto r =
      keel::retry({.max_attempts = 5, .backoff = keel::backoff::none()}).with_environment(env);
  counting_next next;
  keel::context ctx;
  const auto o = r.run<int>(next, ctx);
  REQUIRE(o.has_value());
  CHECK(o.value() == 3);
  CHECK(next.calls == 3);  // the retries called this object, not a copy of it
}

TEST_CASE("pass_next: a stateful next given to a breaker's slow path is the caller's",
          "[compose][next]") {
  venv env;
  // A slow-call rule sends every call through the permit path (run_slow).
  const auto breaker = keel::circuit_breaker({.trip = keel::failure_ratio_count{},
                                              .slow_calls = keel::slow_call_ratio{.threshold = 1s}})
                           .with_environment(env);
  counting_next next;
  keel::context ctx;
  (void)breaker.run<int>(next, ctx);
  (void)breaker.run<int>(next, ctx);
  CHECK(next.calls == 2);  // both calls reached this object, not a copy of it
}

TEST_CASE("pass_next: a pipeline retries through its layers with the caller's callable",
          "[compose][next]") {
  venv env;
  const auto breaker = keel::circuit_breaker({.trip = keel::failure_ratio_count{},
                                              .slow_calls = keel::slow_call_ratio{.threshold = 1s}})
                           .with_environment(env);
  const auto p = keel::pipeline(
      keel::retry({.max_attempts = 4, .backoff = keel::backoff::none()}).with_environment(env),
      std::cref(breaker));
  counting_next next;
  keel::context ctx;
  const auto o = p.run<int>(next, ctx);
  REQUIRE(o.has_value());
  CHECK(o.value() == 3);
  CHECK(next.calls == 3);
}

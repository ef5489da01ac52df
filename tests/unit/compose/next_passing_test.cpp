// SPDX-License-Identifier: BSL-1.0
// How policies hand `next` to their out-of-line paths (detail::pass_next): a
// copy of keel's own closures (pointers, called through const), a reference
// to anything else, so that a `next` given to run() directly is the one every
// attempt calls, whatever state or overloads it has.
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

/// Called through const, but counts its calls in a mutable member.
struct mutable_counting_next {
  mutable int calls = 0;
  keel::outcome<int> operator()(keel::context&) const {
    ++calls;
    if (calls < 3) return keel::outcome<int>::from_keel(keel::errc::timeout);
    return keel::outcome<int>(calls);
  }
};

/// Fails when called through const, succeeds through non-const.
struct overloaded_next {
  keel::outcome<int> operator()(keel::context&) const {
    return keel::outcome<int>::from_keel(keel::errc::timeout);
  }
  keel::outcome<int> operator()(keel::context&) { return keel::outcome<int>(1); }
};

/// What keel's closures hold: pointers, called through const.
struct pointing {
  const int* value;
  keel::outcome<int> operator()(keel::context&) const { return keel::outcome<int>(*value); }
};

struct big {
  std::array<char, 128> bytes;
  keel::outcome<int> operator()(keel::context&) const { return keel::outcome<int>(bytes[0]); }
};

struct owning {
  std::string text;
  keel::outcome<int> operator()(keel::context&) const {
    return keel::outcome<int>(static_cast<int>(text.size()));
  }
};

keel::retry<keel::on::any_failure_t, keel::no_listener, venv> five_attempts(venv& env) {
  return keel::retry({.max_attempts = 5, .backoff = keel::backoff::none()}).with_environment(env);
}

}  // namespace

using keel::detail::cheap_next;
using keel::detail::keel_next;

// Copied: keel's own small closures. Never copied: a user's callable, however
// harmless it looks, and keel closures too large or not trivially copyable.
static_assert(cheap_next<keel_next<pointing>>);
static_assert(cheap_next<const keel_next<pointing>>);
static_assert(!cheap_next<pointing>);
static_assert(!cheap_next<counting_next>);
static_assert(!cheap_next<mutable_counting_next>);
static_assert(!cheap_next<keel_next<big>>);
static_assert(!cheap_next<keel_next<owning>>);

// One counting in a plain member through non-const, one in a mutable member
// behind a const operator(): neither may be copied.
TEMPLATE_TEST_CASE("pass_next: a stateful next given to retry.run keeps one state across attempts",
                   "[compose][next]", counting_next, mutable_counting_next) {
  venv env;
  TestType next;
  keel::context ctx;
  const auto o = five_attempts(env).run<int>(next, ctx);
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

TEST_CASE("pass_next: a const next is called through const on every attempt", "[compose][next]") {
  venv env;
  const overloaded_next next;
  keel::context ctx;
  const auto o = five_attempts(env).run<int>(next, ctx);
  CHECK(o.is(keel::errc::timeout));  // five failures: the non-const overload never ran
}

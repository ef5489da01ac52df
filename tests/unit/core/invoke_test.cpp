// SPDX-License-Identifier: BSL-1.0
// keel calls user code through detail::invoke and recognises
// std::reference_wrapper through std::unwrap_reference, so that its headers
// need not include <functional>. These pin the std::invoke and std::ref
// semantics that replacement must keep.
#include <functional>
#include <stdexcept>

#include <keel/circuit_breaker.hpp>
#include <keel/core/events.hpp>
#include <keel/detail/functional.hpp>
#include <keel/fallback.hpp>
#include <keel/pipeline.hpp>
#include <keel/retry.hpp>

#include "support/catch.hpp"

namespace {
struct account {
  int balance = 0;
  int deposit(int amount) {
    balance += amount;
    return balance;
  }
  int peek() const { return balance; }
};

/// A listener whose on() is not const: usable only through std::ref.
struct counts_attempts {
  int attempts = 0;
  void on(const keel::retry_scheduled&) { ++attempts; }
};
}  // namespace

TEST_CASE("detail::invoke calls member pointers the way std::invoke does") {
  account a;
  CHECK(keel::detail::invoke(&account::deposit, a, 5) == 5);
  CHECK(keel::detail::invoke(&account::deposit, &a, 2) == 7);
  CHECK(keel::detail::invoke(&account::deposit, std::ref(a), 1) == 8);
  CHECK(keel::detail::invoke(&account::peek, std::as_const(a)) == 8);
  keel::detail::invoke(&account::balance, a) = 40;  // a data member, by reference
  CHECK(a.balance == 40);
  CHECK(keel::detail::invoke([](int x) { return x * 2; }, 21) == 42);
  static_assert(noexcept(keel::detail::invoke([]() noexcept { return 1; })));
  static_assert(!noexcept(keel::detail::invoke([] { return 1; })));
}

TEST_CASE("a policy runs a member function with its object as the first argument") {
  account a;
  const auto retry = keel::retry(keel::retry_options{.max_attempts = 2});
  CHECK(retry.execute(&account::deposit, a, 3) == 3);
  CHECK(retry.execute(&account::deposit, &a, 4) == 7);
  CHECK(retry.try_execute(&account::peek, a).value() == 7);
  const auto chain = keel::pipeline(keel::fallback([] { return -1; }), retry);
  CHECK(chain.execute(&account::deposit, a, 1) == 8);
}

TEST_CASE("a listener or policy behind std::ref is shared, not copied") {
  counts_attempts listener;
  const auto retry =
      keel::retry(keel::retry_options{.max_attempts = 3, .backoff = keel::backoff::none()})
          .with_listener(std::ref(listener));
  int calls = 0;
  const auto out = retry.try_execute([&]() -> int {
    if (++calls < 3) throw std::runtime_error("down");
    return calls;
  });
  CHECK(out.value() == 3);
  CHECK(listener.attempts == 2);  // two failures were retried, heard by the caller's object

  auto breaker = keel::circuit_breaker(keel::circuit_breaker_options{});
  const auto guarded = keel::pipeline(std::ref(breaker));
  for (int i = 0; i < 5; ++i)
    CHECK_FALSE(guarded.try_execute([]() -> int { throw std::runtime_error("x"); }).has_value());
  CHECK(breaker.state() == keel::circuit_state::open);  // the pipeline fed the caller's breaker
}

namespace {
struct tally {
  mutable int heard = 0;
  void on(const keel::retry_scheduled&) const { ++heard; }
};
/// A listener that is a reference wrapper (so shaped like one) with handlers
/// of its own: they, not what it refers to, hear the events.
struct own_on : std::reference_wrapper<tally> {
  using std::reference_wrapper<tally>::reference_wrapper;
  void on(const keel::retry_scheduled&) const { get().heard += 10; }
};
struct own_call : std::reference_wrapper<tally> {
  using std::reference_wrapper<tally>::reference_wrapper;
  void operator()(const keel::retry_scheduled&) const { get().heard += 10; }
};
struct wraps_lambda_like {
  void operator()(const keel::retry_scheduled&) const { ++*count; }
  int* count;
};
}  // namespace

static_assert(keel::detail::is_reference_wrapper<std::reference_wrapper<tally>>);
static_assert(keel::detail::is_reference_wrapper<std::reference_wrapper<const tally>>);
static_assert(!keel::detail::is_reference_wrapper<own_on>);
static_assert(!keel::detail::is_reference_wrapper<tally>);

TEST_CASE("a listener derived from std::reference_wrapper keeps its own handlers") {
  // keel unwraps std::reference_wrapper itself only: a listener derived from
  // it, with an on() or a call of its own, is heard through them.
  const auto base =
      keel::retry(keel::retry_options{.max_attempts = 3, .backoff = keel::backoff::none()});
  const auto fail = []() -> int { throw std::runtime_error("down"); };
  tally t;
  (void)base.with_listener(own_on(t)).try_execute(fail);
  CHECK(t.heard == 20);
  tally u;
  (void)base.with_listener(own_call(u)).try_execute(fail);
  CHECK(u.heard == 20);
  // std::ref still reaches the referent, for an on() and for a callable.
  tally v;
  (void)base.with_listener(std::ref(v)).try_execute(fail);
  CHECK(v.heard == 2);
  int calls = 0;
  const wraps_lambda_like l{&calls};
  (void)base.with_listener(std::cref(l)).try_execute(fail);
  CHECK(calls == 2);
}

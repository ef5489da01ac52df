// SPDX-License-Identifier: BSL-1.0
#include <functional>
#include <stdexcept>
#include <vector>

#include <keel/core/error.hpp>
#include <keel/core/events.hpp>
#include <keel/retry.hpp>
#include <keel/testing/recording_listener.hpp>

#include "support/catch.hpp"

namespace {
struct ping {
  int n;
};
struct pong {};

struct counts_pings {
  int* seen;
  void on(const ping& p) const { *seen += p.n; }
};
struct throws_on_ping {
  void on(const ping&) const { throw std::runtime_error("listener bug"); }
};
}  // namespace

static_assert(keel::detail::listens_to<counts_pings, ping>);
static_assert(!keel::detail::listens_to<counts_pings, pong>);
static_assert(!keel::detail::listens_to<keel::no_listener, ping>);
static_assert(keel::detail::listens_to<std::reference_wrapper<counts_pings>, ping>);

TEST_CASE("events: delivered only to handlers that exist", "[core][events]") {
  int seen = 0;
  counts_pings listener{&seen};
  keel::detail::emit(listener, ping{2});
  keel::detail::emit(listener, pong{});  // no handler: nothing happens
  keel::detail::emit(std::ref(listener), ping{3});
  keel::detail::emit(keel::no_listener{}, ping{100});
  CHECK(seen == 5);
}

TEST_CASE("events: a throwing handler is ignored", "[core][events]") {
  CHECK_NOTHROW(keel::detail::emit(throws_on_ping{}, ping{1}));
}

TEST_CASE("recording_listener: records the listed events in order", "[core][testing]") {
  keel::testing::recording_listener<ping, pong> log;
  const auto copy = log;
  keel::detail::emit(copy, ping{1});
  keel::detail::emit(copy, pong{});
  keel::detail::emit(copy, ping{2});
  CHECK(log.count<ping>() == 2);
  CHECK(log.count<pong>() == 1);
  CHECK(log.all<ping>()[1].n == 2);
  CHECK(log.events().size() == 3);
  CHECK(std::holds_alternative<pong>(log.events()[1]));
}

TEST_CASE("recording_listener: a recorded event's source outlives the call and its context",
          "[core][testing][regression]") {
  keel::testing::recording_listener<keel::retry_scheduled> log;
  std::string policy_name = "orders-retry";
  {
    const auto r = keel::retry({.max_attempts = 2, .backoff = keel::constant_backoff{}})
                       .with_listener(log)
                       .named(policy_name);
    keel::context ctx;
    ctx.set_operation("checkout");
    int calls = 0;
    CHECK(r.try_execute(ctx, [&] {
             return ++calls < 2 ? throw std::runtime_error("x"), 0 : 1;
           }).value() == 1);
    // The call's own copy of the context is gone; the caller's changes. Then
    // the policy, whose name the event viewed, goes too.
    ctx.set_operation("overwritten");
  }
  policy_name.assign(40, 'z');
  REQUIRE(log.count<keel::retry_scheduled>() == 1);
  const keel::retry_scheduled e = log.all<keel::retry_scheduled>()[0];
  CHECK(e.source.pipeline == "checkout");
  CHECK(e.source.policy == "orders-retry");
}

namespace {
struct mutable_counter {  // on() is not const: usable only through std::ref
  int seen = 0;
  void on(const ping& p) { seen += p.n; }
};
}  // namespace

// A non-const on() is refused at compile time (tests/compile_fail/nonconst_*.cpp)
// rather than silently never called; through std::ref it is callable.
static_assert(keel::detail::has_unusable_handler<mutable_counter, ping>);
static_assert(!keel::detail::has_unusable_handler<mutable_counter, pong>);
static_assert(!keel::detail::has_unusable_handler<counts_pings, ping>);
static_assert(keel::detail::listens_to<std::reference_wrapper<mutable_counter>, ping>);

TEST_CASE("events: a listener with a non-const on() hears events through std::ref",
          "[core][events]") {
  mutable_counter listener;
  keel::detail::emit(std::ref(listener), ping{4});
  keel::detail::emit(std::ref(listener), ping{5});
  CHECK(listener.seen == 9);
}

TEST_CASE("events: a lambda is a listener for the event it takes", "[core][events]") {
  int seen = 0;
  const auto only_pings = [&seen](const ping& p) { seen += p.n; };
  static_assert(keel::listens_to<decltype(only_pings), ping>);
  static_assert(!keel::listens_to<decltype(only_pings), pong>);
  keel::emit(only_pings, ping{4});
  keel::emit(only_pings, pong{});
  CHECK(seen == 4);
  int every = 0;
  const auto all = [&every](const auto&) { ++every; };
  keel::emit(all, ping{1});
  keel::emit(all, pong{});
  CHECK(every == 2);
}

TEST_CASE("events: keel::listeners fans out in order, past a member that throws",
          "[core][events]") {
  std::vector<int> order;
  int pongs = 0;
  const auto set = keel::listeners(
      [&order](const ping& p) { order.push_back(p.n); }, throws_on_ping{},
      [&order](const ping& p) { order.push_back(10 * p.n); }, [&pongs](const pong&) { ++pongs; });
  static_assert(keel::listens_to<decltype(set), ping>);
  keel::emit(set, ping{2});
  keel::emit(set, pong{});
  CHECK(order == std::vector<int>{2, 20});
  CHECK(pongs == 1);
  // A set hears an event only when one of its members does.
  static_assert(!keel::listens_to<decltype(keel::listeners(counts_pings{nullptr})), pong>);
}

TEST_CASE("events: enums name themselves", "[core][events]") {
  CHECK(keel::to_string_view(keel::errc::circuit_open) == "circuit_open");
  CHECK(keel::to_string_view(keel::errc::rate_limited) == "rate_limited");
  CHECK(keel::to_string_view(keel::errc::no_endpoint_available) == "no_endpoint_available");
  CHECK(keel::to_string_view(static_cast<keel::errc>(99)) == "unknown");
  CHECK(keel::to_string_view(keel::condition::circuit_rejected) == "circuit_rejected");
  CHECK(keel::to_string_view(keel::failure_kind::error_value) == "error_value");
}

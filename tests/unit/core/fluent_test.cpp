// SPDX-License-Identifier: BSL-1.0
// keel::rebuild, the one mechanism behind every fluent setter: a part is
// replaced (its type may change), every other part is carried over, copied
// from an lvalue and moved from an rvalue; and keel's own setters keep what
// they do not set.
#include <chrono>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include <keel/keel.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

namespace {

/// Counts how it was carried over: copies and moves.
struct tracked {
  int value = 0;
  int copies = 0;
  int moves = 0;
  explicit tracked(int v) : value(v) {}
  tracked(const tracked& o) : value(o.value), copies(o.copies + 1), moves(o.moves) {}
  tracked(tracked&& o) noexcept : value(o.value), copies(o.copies), moves(o.moves + 1) {
    o.value = -1;
  }
  tracked& operator=(const tracked&) = delete;
  tracked& operator=(tracked&&) = delete;
  ~tracked() = default;
};

struct listener_a {
  int id = 1;
};
struct listener_b {
  std::string id = "b";
};

/// A policy-like type with an all-parts constructor behind keel::from_parts
/// and a getter among its parts.
template <class Listener = listener_a>
class toy {
 public:
  explicit toy(int option) : option_(option), state_(0) {}
  toy(keel::from_parts_t, int option, Listener listener, tracked state, std::string name)
      : option_(option),
        listener_(std::move(listener)),
        state_(std::move(state)),
        name_(std::move(name)) {}

  template <class L>
  auto with_listener(L l) const& {
    return keel::rebuild<toy<L>, &toy::listener_>(*this, std::move(l), parts{});
  }
  template <class L>
  auto with_listener(L l) && {
    return keel::rebuild<toy<L>, &toy::listener_>(std::move(*this), std::move(l), parts{});
  }
  toy named(std::string n) const { return keel::rebuild<toy, &toy::name_>(*this, n, parts{}); }
  toy with_option(int o) const { return keel::rebuild<toy, &toy::option>(*this, o, parts{}); }

  int option() const { return option_; }
  const Listener& listener() const { return listener_; }
  const tracked& state() const { return state_; }
  const std::string& name() const { return name_; }

 private:
  int option_;
  Listener listener_{};
  tracked state_;
  std::string name_ = "toy";
  using parts = keel::parts<&toy::option, &toy::listener_, &toy::state_, &toy::name_>;
};

/// One without the tag: its public constructor takes every part.
template <class Listener = listener_a>
struct plain {
  explicit plain(int o = 0, Listener l = Listener()) : option_(o), listener_(std::move(l)) {}
  template <class L>
  plain<L> with_listener(L l) const {
    return keel::rebuild<plain<L>, &plain::listener_>(*this, std::move(l), parts{});
  }
  int option_;
  Listener listener_;
  using parts = keel::parts<&plain::option_, &plain::listener_>;
};

}  // namespace

TEST_CASE("fluent: rebuild replaces one part, changing its type, and copies the others",
          "[core][fluent]") {
  const toy<> t(7);
  const auto u = t.with_listener(listener_b{"x"});
  STATIC_REQUIRE(std::is_same_v<decltype(u), const toy<listener_b>>);
  CHECK(u.listener().id == "x");
  CHECK(u.option() == 7);
  CHECK(u.name() == "toy");
  CHECK(u.state().copies == 1);  // copied once, into the constructor's parameter
  CHECK(t.state().value == 0);   // the original keeps its parts
  CHECK(t.listener().id == 1);
}

TEST_CASE("fluent: from an rvalue every part is moved, none copied", "[core][fluent]") {
  toy<> t(3);
  auto u = std::move(t).with_listener(listener_b{"moved"});
  CHECK(u.state().copies == 0);
  CHECK(u.state().moves == 2);  // into the constructor's parameter, then into place
  CHECK(u.option() == 3);
  CHECK(u.name() == "toy");
}

TEST_CASE("fluent: a part read through a getter, and one of the same type", "[core][fluent]") {
  const toy<> t(1);
  const toy<> named = t.named("payments");
  CHECK(named.name() == "payments");
  CHECK(named.option() == 1);
  const toy<> changed = named.with_option(9);  // the getter's part, replaced
  CHECK(changed.option() == 9);
  CHECK(changed.name() == "payments");
  CHECK(changed.state().copies == 2);  // two setters, one copy each
}

TEST_CASE("fluent: without keel::from_parts the constructor takes the parts", "[core][fluent]") {
  const plain<> p(5, listener_a{4});
  const auto q = p.with_listener(listener_b{"q"});
  STATIC_REQUIRE(std::is_same_v<decltype(q), const plain<listener_b>>);
  CHECK(q.option_ == 5);
  CHECK(q.listener_.id == "q");
}

TEST_CASE("fluent: retry's setters each keep every other part", "[core][fluent][retry]") {
  keel::testing::virtual_environment env;
  keel::retry_budget budget(keel::retry_budget_options::grpc(10, 1));
  keel::testing::recording_listener<keel::retry_scheduled> log;
  const auto r = keel::retry({.max_attempts = 4, .backoff = keel::constant_backoff{1s}})
                     .named("payments.retry")
                     .with_budget(budget)
                     .handle(keel::on::exception<std::exception>)
                     .abort_on(keel::on::exception<std::logic_error>)
                     .with_environment(env)
                     .with_listener(log);
  CHECK(r.options().max_attempts == 4);
  CHECK(r.budget() == &budget);
  CHECK(r.name() == "payments.retry");
  int calls = 0;
  auto o = r.try_execute([&] {
    if (++calls < 3) throw std::runtime_error("flaky");
    return calls;
  });
  CHECK(o.value() == 3);
  CHECK(env.sleeps() == std::vector<keel::duration>{1s, 1s});  // the environment set before
  CHECK(log.count<keel::retry_scheduled>() == 2);
  calls = 0;
  auto aborted = r.try_execute([&]() -> int {
    ++calls;
    throw std::logic_error("bug");
  });
  CHECK(aborted.has_exception());
  CHECK(calls == 1);  // abort_on, set before with_environment and with_listener, holds
}

TEST_CASE("fluent: an invalid option cannot come back through the all-parts constructor",
          "[core][fluent][retry]") {
  keel::retry_options bad;
  bad.max_attempts = 0;
  CHECK_THROWS_AS(
      keel::retry<>(keel::from_parts, bad, {}, {}, {}, {}, nullptr, keel::policy_name("r")),
      keel::config_error);
  keel::timeout_options late;
  late.timeout = -1s;
  CHECK_THROWS_AS(keel::timeout<>(keel::from_parts, late, {}, {}, {}, keel::policy_name("t")),
                  keel::config_error);
}

TEST_CASE("fluent: a breaker's setters keep its options and name, with a fresh state",
          "[core][fluent][circuit_breaker]") {
  keel::testing::virtual_environment env;
  keel::circuit_breaker b =
      keel::circuit_breaker(
          {.trip = keel::consecutive_failures{.threshold = 2}, .open_duration = 3s})
          .named("db")
          .handle(keel::on::any_failure)
          .ignore(keel::on::code(keel::errc::cancelled))
          .with_environment(env);
  CHECK(b.name() == "db");
  CHECK(b.options().open_duration == 3s);
  CHECK(std::get<keel::consecutive_failures>(b.options().trip).threshold == 2);
  CHECK(b.state() == keel::circuit_state::closed);
}

TEST_CASE("fluent: timeout and fallback setters keep their parts", "[core][fluent]") {
  keel::testing::virtual_environment env;
  const auto t = keel::timeout({.timeout = 50ms, .keep_late_result = true})
                     .named("t")
                     .with_environment(env)
                     .with_listener(keel::no_listener{});
  CHECK(t.options().timeout == 50ms);
  CHECK(t.options().keep_late_result);
  CHECK(t.name() == "t");

  const auto f = keel::fallback(1, 2).named("f").handle(keel::on::exception<std::runtime_error>);
  CHECK(f.name() == "f");
  CHECK(std::get<1>(f.alternatives())
            .produce<int>(keel::outcome<int>::from_keel(keel::errc::timeout), keel::context())
            .value() == 2);
  auto o = f.try_execute([]() -> int { throw std::runtime_error("down"); });
  CHECK(o.value() == 1);
}

TEST_CASE("fluent: with_listener and with_counters commute", "[core][fluent][observe]") {
  keel::counters c;
  keel::testing::recording_listener<keel::retry_scheduled> log;
  const auto base = keel::retry({.max_attempts = 2, .backoff = keel::backoff::none()});
  const auto a = base.with_counters(c).with_listener(log);
  const auto b = base.with_listener(log).with_counters(c);
  STATIC_REQUIRE(std::is_same_v<decltype(a), decltype(b)>);
  STATIC_REQUIRE(
      std::is_same_v<decltype(a), const keel::retry<keel::on::any_failure_t,
                                                    keel::counted_listener<decltype(log)>>>);
  const auto fails = []() -> int { throw std::runtime_error("down"); };
  (void)a.try_execute(fails);
  (void)b.try_execute(fails);
  CHECK(c.count<keel::retry_scheduled>() == 2);
  CHECK(log.count<keel::retry_scheduled>() == 2);
  // Counters attached again replace the first ones.
  keel::counters other;
  (void)a.with_counters(other).try_execute(fails);
  CHECK(other.count<keel::retry_scheduled>() == 1);
  CHECK(c.count<keel::retry_scheduled>() == 2);
}

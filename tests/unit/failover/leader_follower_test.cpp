// SPDX-License-Identifier: BSL-1.0
// keel::leader_follower in virtual time: the exact members each call reaches,
// for every rule of docs/leader_follower.md (redirects, MOVED vs ASK, term
// fencing, probing with a backoff after a quorum, require_leader against
// etcd #7941, at-most-once calls), and a 4-thread stress with the leader
// moving under the callers.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <keel/circuit_breaker.hpp>
#include <keel/failover/leader_follower.hpp>
#include <keel/pipeline.hpp>
#include <keel/retry.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;
using keel::leader_signal;
using keel::leader_signal_kind;

namespace {

struct node {
  int id;
};

std::vector<node> nodes(int n) {
  std::vector<node> v;
  for (int i = 0; i < n; ++i) v.push_back(node{i});
  return v;
}

/// A member's failed answer, carrying what it says about the leader.
struct answer : std::runtime_error {
  explicit answer(leader_signal s) : std::runtime_error("answer"), signal(s) {}
  leader_signal signal;
};
/// A failure in transport (no leader signal).
struct transport_error : std::runtime_error {
  explicit transport_error(bool sent) : std::runtime_error("transport"), maybe_sent(sent) {}
  bool maybe_sent;
};

/// The test's extractor: the signal of a thrown `answer`.
struct answer_signal {
  template <class R>
  leader_signal operator()(const keel::outcome<R>& o, std::size_t) const {
    if (!o.has_exception()) return {};
    try {
      std::rethrow_exception(o.exception());
    } catch (const answer& a) {
      return a.signal;
    } catch (...) {
    }
    return {};
  }
};

/// Members that answer by a rule, recording which one each call reached.
struct cluster {
  /// nullopt: serves the call; else fails with this signal.
  std::function<std::optional<leader_signal>(std::size_t)> rule = [](std::size_t) {
    return std::optional<leader_signal>();
  };
  /// Runs first: may throw a transport_error.
  std::function<void(std::size_t)> before = [](std::size_t) {};
  std::vector<std::size_t> reached;
  std::vector<int> attempts;

  auto callable() {
    return [this](const keel::context& ctx) -> int {
      const std::size_t i = ctx.target().index();
      const node* n = ctx.target().get<node>();
      REQUIRE(n != nullptr);
      REQUIRE(static_cast<std::size_t>(n->id) == i);
      reached.push_back(i);
      attempts.push_back(ctx.attempt());
      before(i);
      if (auto s = rule(i)) throw answer(*s);
      return n->id;
    };
  }
  std::vector<std::size_t> take() { return std::exchange(reached, {}); }
};

using events = keel::testing::recording_listener<keel::leader_changed, keel::redirected>;
using fixed_env = keel::testing::basic_virtual_environment<keel::testing::fixed_random>;

fixed_env half_env() { return fixed_env(keel::testing::fixed_random(0.5)); }

using V = std::vector<std::size_t>;

/// not_sent: a transport error that provably never left the client.
struct never_sent {
  template <class R>
  bool operator()(const keel::outcome<R>& o) const {
    if (!o.has_exception()) return false;
    try {
      std::rethrow_exception(o.exception());
    } catch (const transport_error& e) {
      return !e.maybe_sent;
    } catch (...) {
    }
    return false;
  }
};

}  // namespace

TEST_CASE("leader_follower: the happy path sends every call to the cached leader",
          "[failover][leader]") {
  cluster c;
  keel::leader_follower lf(nodes(3));
  CHECK(lf.leader() == 0);
  CHECK(lf.term() == 0);
  for (int k = 0; k < 3; ++k) CHECK(lf.try_execute(c.callable()).value() == 0);
  CHECK(c.take() == V{0, 0, 0});

  keel::leader_follower started(nodes(3), {.initial_leader = 2});
  CHECK(started.try_execute(c.callable()).value() == 2);
  CHECK(c.take() == V{2});
  // Outside the follower, no target.
  CHECK_FALSE(keel::pipeline()
                  .try_execute([](const keel::context& ctx) { return ctx.target().has_value(); })
                  .value());
}

TEST_CASE("leader_follower: not_leader with a target follows at once, inside one retry attempt",
          "[failover][leader]") {
  // The default extractor: a thrown keel::error whose hint names the leader.
  std::vector<std::size_t> reached;
  std::vector<int> attempts;
  std::atomic<std::size_t> real_leader{2};
  const auto call = [&](const keel::context& ctx) -> int {
    const std::size_t i = ctx.target().index();
    reached.push_back(i);
    attempts.push_back(ctx.attempt());
    if (i != real_leader.load()) {
      throw keel::error(std::make_error_code(std::errc::permission_denied),
                        keel::hint{.leader = keel::leader_hint{real_leader.load(), 7}});
    }
    return static_cast<int>(i);
  };
  events log;
  auto lf = keel::leader_follower<node>(nodes(3)).with_listener(log);
  auto guarded = keel::pipeline(keel::retry({.max_attempts = 1}), std::ref(lf));
  CHECK(guarded.try_execute(call).value() == 2);
  CHECK(reached == V{0, 2});
  CHECK(attempts == std::vector<int>{1, 1});  // no retry attempt consumed
  CHECK(lf.leader() == 2);
  CHECK(lf.term() == 7);
  reached.clear();
  CHECK(guarded.try_execute(call).value() == 2);
  CHECK(reached == V{2});  // the cache holds

  const auto changes = log.all<keel::leader_changed>();
  REQUIRE(changes.size() == 1);
  CHECK(changes[0].from == 0);
  CHECK(changes[0].to == 2);
  CHECK(changes[0].term == 7);
  CHECK(changes[0].cause == keel::leader_change_cause::hint);
  CHECK(changes[0].source.policy == "leader_follower");
  const auto moves = log.all<keel::redirected>();
  REQUIRE(moves.size() == 1);
  CHECK(moves[0].from == 0);
  CHECK(moves[0].to == 2);
  CHECK(moves[0].kind == leader_signal_kind::not_leader);
  CHECK(moves[0].term == 7);
}

TEST_CASE("leader_follower: MOVED updates the cached leader, ASK follows once and does not",
          "[failover][leader]") {
  cluster c;
  auto lf = keel::leader_follower<node>(nodes(3)).with_signal(answer_signal{});
  SECTION("ask") {
    c.rule = [](std::size_t i) -> std::optional<leader_signal> {
      if (i == 0) return leader_signal::ask(1);
      return std::nullopt;
    };
    CHECK(lf.try_execute(c.callable()).value() == 1);
    CHECK(c.take() == V{0, 1});
    CHECK(lf.leader() == 0);
    CHECK(lf.try_execute(c.callable()).value() == 1);
    CHECK(c.take() == V{0, 1});  // back to the cached one first, as Redis Cluster
  }
  SECTION("moved") {
    c.rule = [](std::size_t i) -> std::optional<leader_signal> {
      if (i == 0) return leader_signal::moved(1);
      return std::nullopt;
    };
    CHECK(lf.try_execute(c.callable()).value() == 1);
    CHECK(c.take() == V{0, 1});
    CHECK(lf.leader() == 1);
    CHECK(lf.try_execute(c.callable()).value() == 1);
    CHECK(c.take() == V{1});
  }
}

TEST_CASE("leader_follower: at most max_redirects moves per call, then the last failure",
          "[failover][leader]") {
  cluster c;
  // Two members sending each other away forever.
  c.rule = [](std::size_t i) -> std::optional<leader_signal> { return leader_signal::ask(1 - i); };
  SECTION("the default, 16 (ioredis)") {
    auto lf = keel::leader_follower<node>(nodes(2)).with_signal(answer_signal{});
    const auto o = lf.try_execute(c.callable());
    REQUIRE(o.has_exception());
    CHECK(c.reached.size() == 17);  // the first call and 16 redirects
    CHECK(c.reached.back() == 0);
  }
  SECTION("three") {
    auto lf =
        keel::leader_follower<node>(nodes(2), {.max_redirects = 3}).with_signal(answer_signal{});
    CHECK(lf.try_execute(c.callable()).has_exception());
    CHECK(c.take() == V{0, 1, 0, 1});
  }
}

TEST_CASE("leader_follower: a target out of range is ignored, never indexed",
          "[failover][leader]") {
  cluster c;
  auto lf =
      keel::leader_follower<node>(nodes(3), {.probe_backoff = 0ms}).with_signal(answer_signal{});
  SECTION("not_leader naming no member: probes the next in turn") {
    c.rule = [](std::size_t i) -> std::optional<leader_signal> {
      if (i == 0) return leader_signal::not_leader(7);
      return std::nullopt;
    };
    CHECK(lf.try_execute(c.callable()).value() == 1);
    CHECK(c.take() == V{0, 1});
  }
  SECTION("moved / ask to nowhere: the failure is returned") {
    c.rule = [](std::size_t) -> std::optional<leader_signal> {
      return leader_signal::moved(static_cast<std::size_t>(-1), 9);
    };
    CHECK(lf.try_execute(c.callable()).has_exception());
    CHECK(c.take() == V{0});
    c.rule = [](std::size_t) -> std::optional<leader_signal> { return leader_signal::ask(3); };
    CHECK(lf.try_execute(c.callable()).has_exception());
    CHECK(c.take() == V{0});
  }
  CHECK(lf.leader() < 3);
}

TEST_CASE("leader_follower: term fencing ignores older terms; equal, newer and unknown pass",
          "[failover][leader]") {
  cluster c;
  auto lf =
      keel::leader_follower<node>(nodes(3), {.probe_backoff = 0ms}).with_signal(answer_signal{});
  REQUIRE(lf.set_leader(1, 5));
  REQUIRE(lf.term() == 5);

  // Older: ignored, the failure returned, the cache unchanged.
  c.rule = [](std::size_t i) -> std::optional<leader_signal> {
    if (i == 1) return leader_signal::moved(2, 4);
    return std::nullopt;
  };
  CHECK(lf.try_execute(c.callable()).has_exception());
  CHECK(c.take() == V{1});
  CHECK(lf.leader() == 1);
  CHECK(lf.term() == 5);

  // Older not_leader: its target is ignored; the member still is not the leader: probe.
  c.rule = [](std::size_t i) -> std::optional<leader_signal> {
    if (i == 1) return leader_signal::not_leader(0, 3);
    return std::nullopt;
  };
  CHECK(lf.try_execute(c.callable()).value() == 2);
  CHECK(c.take() == V{1, 2});
  CHECK(lf.term() == 5);
  REQUIRE(lf.leader() == 2);  // the probed member served: it leads

  // Equal: accepted.
  c.rule = [](std::size_t i) -> std::optional<leader_signal> {
    if (i == 2) return leader_signal::moved(0, 5);
    return std::nullopt;
  };
  CHECK(lf.try_execute(c.callable()).value() == 0);
  CHECK(c.take() == V{2, 0});
  CHECK(lf.leader() == 0);

  // Unknown (0): accepted, and the cached term stays.
  c.rule = [](std::size_t i) -> std::optional<leader_signal> {
    if (i == 0) return leader_signal::moved(1, 0);
    return std::nullopt;
  };
  CHECK(lf.try_execute(c.callable()).value() == 1);
  CHECK(lf.leader() == 1);
  CHECK(lf.term() == 5);

  // Newer: accepted, the term moves up.
  c.rule = [](std::size_t i) -> std::optional<leader_signal> {
    if (i == 1) return leader_signal::moved(2, 9);
    return std::nullopt;
  };
  CHECK(lf.try_execute(c.callable()).value() == 2);
  CHECK(lf.term() == 9);

  // set_leader is fenced alike, and refuses an index out of range.
  CHECK_FALSE(lf.set_leader(0, 8));
  CHECK_FALSE(lf.set_leader(3, 10));
  CHECK(lf.leader() == 2);
  CHECK(lf.set_leader(0));
  CHECK(lf.leader() == 0);
  CHECK(lf.term() == 9);
}

TEST_CASE("leader_follower: no target probes in turn, waiting only after a quorum answered",
          "[failover][leader]") {
  cluster c;
  const fixed_env env = half_env();  // jitter's draw at the middle: exactly probe_backoff
  c.rule = [](std::size_t) -> std::optional<leader_signal> { return leader_signal::not_leader(); };
  SECTION("five members, quorum three, 7 moves") {
    auto lf = keel::leader_follower<node>(nodes(5), {.max_redirects = 7})
                  .with_signal(answer_signal{})
                  .with_environment(env);
    CHECK(lf.try_execute(c.callable()).has_exception());
    CHECK(c.take() == V{0, 1, 2, 3, 4, 0, 1, 2});
    CHECK(env.sleeps() == std::vector<keel::duration>{25ms, 25ms});
    CHECK(lf.leader() == 0);
  }
  SECTION("the member that serves becomes the leader") {
    c.rule = [](std::size_t i) -> std::optional<leader_signal> {
      if (i == 3) return std::nullopt;
      return leader_signal::not_leader();
    };
    events log;
    auto lf = keel::leader_follower<node>(nodes(5))
                  .with_signal(answer_signal{})
                  .with_environment(env)
                  .with_listener(log)
                  .named("raft");
    CHECK(lf.try_execute(c.callable()).value() == 3);
    CHECK(c.take() == V{0, 1, 2, 3});
    CHECK(env.sleeps() == std::vector<keel::duration>{25ms});
    CHECK(lf.leader() == 3);
    const auto changes = log.all<keel::leader_changed>();
    REQUIRE(changes.size() == 1);
    CHECK(changes[0].cause == keel::leader_change_cause::probe);
    CHECK(changes[0].source.policy == "raft");
    CHECK(log.count<keel::redirected>() == 3);
  }
  SECTION("jitter: +-jitter from the environment's random source") {
    using keel::testing::fixed_random;
    const fixed_env low_env(fixed_random(0.0));
    auto low = keel::leader_follower<node>(nodes(1), {.max_redirects = 1})
                   .with_signal(answer_signal{})
                   .with_environment(low_env);
    CHECK(low.try_execute(c.callable()).has_exception());
    const fixed_env high_env(fixed_random(0.75));
    auto high = keel::leader_follower<node>(nodes(1), {.max_redirects = 1, .jitter = 0.5})
                    .with_signal(answer_signal{})
                    .with_environment(high_env);
    CHECK(high.try_execute(c.callable()).has_exception());
    CHECK(c.take() == V{0, 0, 0, 0});  // one member: a quorum alone, and its own next
    CHECK(low_env.sleeps() == std::vector<keel::duration>{22500us});
    CHECK(high_env.sleeps() == std::vector<keel::duration>{31250us});
  }
}

TEST_CASE("leader_follower: require_leader skips a member that answered no_leader (etcd #7941)",
          "[failover][leader]") {
  cluster c;
  const fixed_env env = half_env();
  // Member 0 is partitioned (no leader), 1 leads, 2 lost its leadership.
  c.rule = [](std::size_t i) -> std::optional<leader_signal> {
    if (i == 0) return leader_signal::no_leader();
    if (i == 2) return leader_signal::not_leader();
    return std::nullopt;
  };
  SECTION("require_leader (default): skipped for no_leader_cooldown") {
    auto lf =
        keel::leader_follower<node>(nodes(3)).with_signal(answer_signal{}).with_environment(env);
    CHECK(lf.try_execute(c.callable()).value() == 1);
    CHECK(c.take() == V{0, 1});
    CHECK(lf.leaderless(0));
    CHECK_FALSE(lf.leaderless(1));
    CHECK(lf.leader() == 1);
    // Discovery points at 2; 2 is no longer the leader: the next in turn is 0,
    // which is skipped, not asked again.
    REQUIRE(lf.set_leader(2));
    env.advance(999ms);
    CHECK(lf.try_execute(c.callable()).value() == 1);
    CHECK(c.take() == V{2, 1});
    CHECK(env.sleeps().empty());
    // Once the cooldown is over, 0 is asked again (and marked again).
    env.advance(1ms);
    CHECK_FALSE(lf.leaderless(0));
    REQUIRE(lf.set_leader(2));
    CHECK(lf.try_execute(c.callable()).value() == 1);
    CHECK(c.take() == V{2, 0, 1});  // a quorum (2 of 3) answered: one wait
    CHECK(env.sleeps() == std::vector<keel::duration>{25ms});
    CHECK(lf.leaderless(0));
  }
  SECTION("without it, 0 is asked in turn") {
    auto lf = keel::leader_follower<node>(nodes(3), {.require_leader = false})
                  .with_signal(answer_signal{})
                  .with_environment(env);
    CHECK(lf.try_execute(c.callable()).value() == 1);
    CHECK_FALSE(lf.leaderless(0));
    REQUIRE(lf.set_leader(2));
    c.reached.clear();
    CHECK(lf.try_execute(c.callable()).value() == 1);
    CHECK(c.take() == V{2, 0, 1});
  }
  SECTION("when every other member is marked, the next in turn is asked anyway") {
    c.rule = [](std::size_t i) -> std::optional<leader_signal> {
      if (i == 2) return leader_signal::not_leader();
      return leader_signal::no_leader();
    };
    auto lf = keel::leader_follower<node>(nodes(3), {.max_redirects = 3})
                  .with_signal(answer_signal{})
                  .with_environment(env);
    CHECK(lf.try_execute(c.callable()).has_exception());
    CHECK(c.take() == V{0, 1, 2, 0});
    CHECK(lf.leaderless(0));
    CHECK(lf.leaderless(1));
    CHECK_FALSE(lf.leaderless(2));
  }
}

TEST_CASE("leader_follower: an at-most-once call is never re-sent after a possible delivery",
          "[failover][leader]") {
  cluster c;
  auto lf = keel::leader_follower<node>(nodes(3))
                .with_signal(answer_signal{})
                .failover_on(keel::on::exception<transport_error>())
                .not_sent(never_sent{});
  SECTION("idempotent: a transport failure moves to the next member") {
    c.before = [](std::size_t i) {
      if (i == 0) throw transport_error(true);
    };
    CHECK(lf.try_execute(c.callable()).value() == 1);
    CHECK(c.take() == V{0, 1});
    CHECK(lf.leader() == 1);
  }
  SECTION("at most once: a failure that may have been delivered is returned") {
    c.before = [](std::size_t i) {
      if (i == 0) throw transport_error(true);
    };
    CHECK(lf.at_most_once().try_execute(c.callable()).has_exception());
    CHECK(c.take() == V{0});
    CHECK(lf.leader() == 0);
  }
  SECTION("at most once: one that was provably not sent (not_sent) moves") {
    c.before = [](std::size_t i) {
      if (i == 0) throw transport_error(false);
    };
    CHECK(lf.at_most_once().try_execute(c.callable()).value() == 1);
    CHECK(c.take() == V{0, 1});
  }
  SECTION("at most once: leader signals prove the call was not applied, and are followed") {
    c.rule = [](std::size_t i) -> std::optional<leader_signal> {
      if (i == 0) return leader_signal::not_leader(2);
      return std::nullopt;
    };
    const auto view = lf.at_most_once();  // a copyable policy sharing lf's state
    CHECK(keel::pipeline(view).try_execute(c.callable()).value() == 2);
    CHECK(c.take() == V{0, 2});
    CHECK(lf.leader() == 2);
    CHECK(&view.follower() == &lf);
    c.rule = [](std::size_t i) -> std::optional<leader_signal> {
      if (i == 2) return leader_signal::no_leader();
      return std::nullopt;
    };
    CHECK(view.try_execute(c.callable()).value() == 0);
    CHECK(c.take() == V{2, 0});
  }
  SECTION("failover_on defaults to none: only leader signals move a call") {
    auto plain = keel::leader_follower<node>(nodes(3)).with_signal(answer_signal{});
    c.before = [](std::size_t i) {
      if (i == 0) throw transport_error(false);
    };
    CHECK(plain.try_execute(c.callable()).has_exception());
    CHECK(c.take() == V{0});
  }
}

TEST_CASE("leader_follower: a keel rejection inside is never a delivery", "[failover][leader]") {
  events log;
  auto lf = keel::leader_follower<node>(nodes(3), {.max_redirects = 2})
                .failover_on(keel::on::rejection())
                .with_listener(log);
  keel::circuit_breaker breaker;
  breaker.isolate();
  int calls = 0;
  const auto o =
      keel::pipeline(lf.at_most_once(), std::ref(breaker)).try_execute([&] { return ++calls; });
  CHECK(o.is(keel::errc::circuit_isolated));
  CHECK(calls == 0);
  const auto moves = log.all<keel::redirected>();
  REQUIRE(moves.size() == 2);
  CHECK(moves[0].from == 0);
  CHECK(moves[0].to == 1);
  CHECK(moves[0].kind == leader_signal_kind::none);
  CHECK(moves[1].to == 2);
}

TEST_CASE("leader_follower: the wait honours the deadline and the stop token",
          "[failover][leader]") {
  cluster c;
  const fixed_env env = half_env();
  c.rule = [](std::size_t) -> std::optional<leader_signal> { return leader_signal::not_leader(); };
  auto lf =
      keel::leader_follower<node>(nodes(1)).with_signal(answer_signal{}).with_environment(env);
  SECTION("a deadline before the wait ends: the last failure, no wait") {
    keel::context ctx;
    ctx.tighten_deadline(env.now() + 10ms, env.clock());
    CHECK(lf.try_execute(ctx, c.callable()).has_exception());
    CHECK(c.take() == V{0});
    CHECK(env.sleeps().empty());
  }
  SECTION("a stop request during the wait: cancelled") {
    std::stop_source stop;
    env.sleeper().on_sleep([&](keel::duration) { stop.request_stop(); });
    CHECK(lf.try_execute(stop.get_token(), c.callable()).is(keel::errc::cancelled));
    CHECK(c.take() == V{0});
    CHECK(env.sleeps().size() == 1);
  }
  SECTION("a stop request before a move: the failure, no move") {
    std::stop_source stop;
    stop.request_stop();
    CHECK(lf.try_execute(stop.get_token(), c.callable()).has_exception());
    CHECK(c.take() == V{0});
  }
}

TEST_CASE("leader_follower: an extractor that throws means no signal", "[failover][leader]") {
  cluster c;
  c.rule = [](std::size_t) -> std::optional<leader_signal> { return leader_signal::moved(1); };
  auto lf = keel::leader_follower<node>(nodes(2)).with_signal(
      [](const keel::outcome<int>&, std::size_t) -> leader_signal {
        throw std::runtime_error("hostile");
      });
  CHECK(lf.try_execute(c.callable()).has_exception());
  CHECK(c.take() == V{0});
  CHECK(lf.leader() == 0);
  // One taking the outcome alone is accepted too.
  auto one = keel::leader_follower<node>(nodes(2)).with_signal(
      [](const keel::outcome<int>&) { return leader_signal::moved(1, 2); });
  CHECK(one.try_execute(c.callable()).has_exception());  // 1 answers moved(1) too: 16 moves
  CHECK(one.leader() == 1);
  CHECK(one.term() == 2);
}

TEST_CASE("leader_follower: shared through std::ref or a shared_ptr, under a retry",
          "[failover][leader]") {
  cluster c;
  int failures_left = 1;
  c.rule = [&](std::size_t i) -> std::optional<leader_signal> {
    if (i == 0) return leader_signal::moved(1);
    if (failures_left-- > 0) return leader_signal{};  // an ordinary failure: retry's business
    return std::nullopt;
  };
  auto shared = std::make_shared<keel::leader_follower<node, answer_signal>>(nodes(2));
  const auto guarded = keel::pipeline(keel::retry({.max_attempts = 2}), shared);
  CHECK(guarded.try_execute(c.callable()).value() == 1);
  CHECK(c.reached == V{0, 1, 1});
  CHECK(c.attempts == std::vector<int>{1, 1, 2});  // the redirect took no attempt
  CHECK(shared->leader() == 1);
}

TEST_CASE("leader_follower: options validate, naming the field", "[failover][leader]") {
  const auto field_of = [](std::vector<node> endpoints, keel::leader_follower_options o) {
    try {
      keel::leader_follower<node> lf(std::move(endpoints), o);
    } catch (const keel::config_error& e) {
      return e.field();
    }
    return std::string();
  };
  CHECK(field_of(nodes(2), {.max_redirects = 0}) == "leader_follower_options.max_redirects");
  CHECK(field_of(nodes(2), {.probe_backoff = -1ns}) == "leader_follower_options.probe_backoff");
  CHECK(field_of(nodes(2), {.jitter = 1.5}) == "leader_follower_options.jitter");
  CHECK(field_of(nodes(2), {.jitter = -0.1}) == "leader_follower_options.jitter");
  CHECK(field_of(nodes(2), {.jitter = std::numeric_limits<double>::quiet_NaN()}) ==
        "leader_follower_options.jitter");
  CHECK(field_of(nodes(2), {.no_leader_cooldown = -1s}) ==
        "leader_follower_options.no_leader_cooldown");
  CHECK(field_of(nodes(2), {.initial_leader = 2}) == "leader_follower_options.initial_leader");
  CHECK(field_of({}, {}) == "leader_follower.endpoints");
  CHECK(field_of(nodes(2), {.probe_backoff = 0ns, .jitter = 1.0, .initial_leader = 1}).empty());
  CHECK(keel::to_string_view(leader_signal_kind::ask) == "ask");
  CHECK(keel::to_string_view(keel::leader_change_cause::probe) == "probe");
}

TEST_CASE("leader_follower stress: 4 threads, the leader moving under them with rising terms",
          "[failover][leader][stress]") {
  constexpr std::size_t members = 5;
  constexpr std::uint64_t last_term = 300;
  // The cluster's truth, one word: term << 8 | leader.
  std::atomic<std::uint64_t> truth{(1u << 8) | 1u};
  auto lf = keel::leader_follower<node>(nodes(static_cast<int>(members)), {.probe_backoff = 0ms});
  std::atomic<int> out_of_range{0};
  std::atomic<int> term_backwards{0};
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> calls{0};
  const keel::testing::virtual_environment venv;

  const auto call = [&](const keel::context& ctx) -> int {
    calls.fetch_add(1);
    const std::size_t i = ctx.target().index();
    if (i >= members || ctx.target().get<node>() == nullptr) {
      out_of_range.fetch_add(1);
      return -1;
    }
    const std::uint64_t t = truth.load();
    const std::uint64_t leader = t & 0xFF;
    const std::uint64_t term = t >> 8;
    if (i == leader) return static_cast<int>(i);
    const auto code = std::make_error_code(std::errc::permission_denied);
    switch (done.load() ? 0 : ctx.attempt() + static_cast<int>(term % 4)) {  // a mix of hints
      case 1:  // a lagging member: an old leader at an old term (fenced)
        throw keel::error(
            code, keel::hint{.leader = keel::leader_hint{(leader + 1) % members, term / 2}});
      case 2:  // hostile: a member out of range at the newest term
        throw keel::error(code, keel::hint{.leader = keel::leader_hint{1000, term}});
      default:
        throw keel::error(code, keel::hint{.leader = keel::leader_hint{leader, term}});
    }
  };

  std::thread mover([&] {
    for (std::uint64_t term = 2; term <= last_term; ++term) {
      while (calls.load() < term * 6) std::this_thread::yield();  // a few calls per term
      truth.store((term << 8) | (term * 3 % members));
    }
    done.store(true);
  });
  std::thread monitor([&] {
    std::uint64_t last = 0;
    while (!done.load()) {
      const std::uint64_t now = lf.term();
      if (now < last) term_backwards.fetch_add(1);
      last = now;
    }
  });
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&] {
      // Retry's waits in virtual time: no real sleep.
      const auto retry = keel::retry({.max_attempts = 3}).with_environment(venv);
      const auto guarded = keel::pipeline(retry, std::ref(lf));
      std::uint64_t last = 0;
      while (!done.load()) {
        static_cast<void>(guarded.try_execute(call));
        const std::uint64_t now = lf.term();
        if (now < last) term_backwards.fetch_add(1);
        last = now;
      }
    });
  }
  for (auto& t : workers) t.join();
  mover.join();
  monitor.join();
  CHECK(out_of_range.load() == 0);
  CHECK(term_backwards.load() == 0);
  CHECK(lf.term() <= last_term);
  // Settled, every member honest again: the next call finds the last leader.
  const std::uint64_t t = truth.load();
  CHECK(lf.try_execute(call).value() == static_cast<int>(t & 0xFF));
  CHECK(lf.leader() == (t & 0xFF));
}

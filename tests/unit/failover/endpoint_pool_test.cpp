// SPDX-License-Identifier: BSL-1.0
// keel::endpoint_pool in virtual time: which endpoint each call reaches,
// exactly, under every strategy, health signal and priority rule.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <keel/circuit_breaker.hpp>
#include <keel/failover/endpoint_pool.hpp>
#include <keel/pipeline.hpp>
#include <keel/retry.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "pool_test_support.hpp"
#include "support/catch.hpp"

using namespace std::chrono_literals;
using pool_test::eject_after;
using pool_test::env_t;
using pool_test::event_log;
using pool_test::name_of;
using pool_test::script_random;
using strings = std::vector<std::string>;
using keel::detail::pool_test_access;

namespace {

/// Calls the pool n times; returns the endpoints reached, concatenated.
template <class Pool>
std::string reach(const Pool& pool, int n) {
  std::string seen;
  for (int i = 0; i < n; ++i) {
    pool.execute([&](const keel::context& ctx) {
      seen += name_of(ctx);
      return 0;
    });
  }
  return seen;
}

/// A breaker per endpoint that opens at the first failure for `open`.
struct breaker_per_endpoint {
  env_t env;
  keel::duration open = 10s;
  auto operator()(const std::string&, std::size_t) const {
    return keel::circuit_breaker(
               {.trip = keel::consecutive_failures{.threshold = 1}, .open_duration = open})
        .with_environment(env);
  }
};

}  // namespace

TEST_CASE("endpoint_pool: round robin in order, the callable sees the endpoint",
          "[failover][pool]") {
  keel::endpoint_pool pool(strings{"a", "b", "c"});
  CHECK(reach(pool, 7) == "abcabca");
  CHECK(pool.size() == 3);
  CHECK(pool.capacity() == 16);
  const auto o = pool.try_execute([](const keel::context& ctx) { return ctx.target().index(); });
  CHECK(o.value() == 1);
  // A callable without the context runs too.
  CHECK(pool.execute([] { return 5; }) == 5);
}

TEST_CASE("endpoint_pool: the round-robin cursor wraps at 2^32", "[failover][pool][wrap]") {
  keel::endpoint_pool pool(strings{"a", "b", "c"});
  pool_test_access::set_cursor(pool, UINT32_MAX - 1);
  // (2^32 - 2) % 3 == 2, (2^32 - 1) % 3 == 0, then 0, 1: one turn repeats at the wrap.
  CHECK(reach(pool, 4) == "caab");
  CHECK(pool_test_access::cursor(pool) == 2);
  // fastmod is exact for every turn and size: checked against % at the edges.
  for (const std::uint32_t size : {1u, 2u, 3u, 7u, 10u, 128u, 1000u}) {
    keel::endpoint_pool_options o;
    o.capacity = size;
    std::vector<std::string> names;
    for (std::uint32_t i = 0; i < size; ++i) names.push_back(std::to_string(i));
    keel::endpoint_pool sized(names, o);
    for (const std::uint32_t turn : {0u, 1u, size - 1, size, UINT32_MAX - 1, UINT32_MAX}) {
      pool_test_access::set_cursor(sized, turn);
      const auto reached =
          sized.execute([](const keel::context& ctx) { return ctx.target().index(); });
      CHECK(reached == turn % size);
    }
  }
}

TEST_CASE("endpoint_pool: random and weighted picks follow the random source exactly",
          "[failover][pool]") {
  env_t env;
  SECTION("random") {
    keel::endpoint_pool pool(strings{"a", "b", "c"}, {.strategy = keel::balance::random},
                             keel::no_layers(), keel::no_listener(), env);
    env.random().push({0.0, 0.34, 0.99, 0.5, 1.0, -3.0});
    CHECK(reach(pool, 6) == "abcbca");  // 1.0 and -3.0 (a broken source) stay in range
  }
  SECTION("weighted: a 1, b 3") {
    keel::endpoint_pool pool(std::vector<keel::pool_member<std::string>>{{"a", 1, 0}, {"b", 3, 0}},
                             {.strategy = keel::balance::weighted}, keel::no_layers(),
                             keel::no_listener(), env);
    env.random().push({0.2, 0.3, 0.99, 0.24, 0.25});
    CHECK(reach(pool, 5) == "abbab");
    pool.set_weight(0, 3);  // now 3 : 3
    env.random().push({0.49, 0.5});
    CHECK(reach(pool, 2) == "ab");
    CHECK_THROWS_AS(pool.set_weight(0, 0), keel::config_error);
  }
}

TEST_CASE("endpoint_pool: least loaded takes the endpoint with fewer calls in flight",
          "[failover][pool]") {
  env_t env;
  keel::endpoint_pool pool(strings{"a", "b", "c"}, {.strategy = keel::balance::least_loaded},
                           keel::no_layers(), keel::no_listener(), env);
  std::string seen;
  // Both draws 0: the picks are a and then b (distinct). Equal loads: the first.
  pool.execute([&](const keel::context& outer) {
    seen += name_of(outer);
    CHECK(pool.status(0).in_flight == 1);
    // a is busy now: the same two picks choose b.
    pool.execute([&](const keel::context& inner) {
      seen += name_of(inner);
      return 0;
    });
    return 0;
  });
  CHECK(seen == "ab");
  CHECK(pool.status(0).in_flight == 0);
  CHECK(pool.status(1).in_flight == 0);
  // Weights divide the load: b at weight 4 with one call in flight beats a idle.
  pool.set_weight(1, 4);
  seen.clear();
  pool.execute([&](const keel::context& outer) {
    seen += name_of(outer);  // a vs b, both idle: b (1/4 < 1/1)
    env.random().push({0.0, 0.0});
    pool.execute([&](const keel::context& inner) {
      seen += name_of(inner);  // b busy: 2/4 < 1/1, still b
      return 0;
    });
    return 0;
  });
  CHECK(seen == "bb");
}

TEST_CASE("endpoint_pool: PeakEWMA follows the peak and decays", "[failover][pool][ewma]") {
  env_t env;
  keel::endpoint_pool pool(strings{"a", "b"}, {.strategy = keel::balance::peak_ewma},
                           keel::no_layers(), keel::no_listener(), env);
  const auto call_taking = [&](keel::duration a_takes, keel::duration b_takes) {
    std::string seen;
    pool.execute([&](const keel::context& ctx) {
      seen = name_of(ctx);
      env.advance(seen == "a" ? a_takes : b_takes);
      return 0;
    });
    return seen;
  };
  // No history: a (first of the two). a takes 100 ms; then b, with no cost, wins.
  CHECK(call_taking(100ms, 10ms) == "a");
  CHECK(call_taking(100ms, 10ms) == "b");
  CHECK(call_taking(100ms, 10ms) == "b");
  // One slow answer from b: its cost jumps to the peak (500 ms > a's decayed 100 ms).
  CHECK(call_taking(100ms, 500ms) == "b");
  CHECK(call_taking(100ms, 10ms) == "a");
  // a's cost, 100 ms, decays with tau 10 s; b's 500 ms too, and stays above.
  env.advance(5s);
  CHECK(call_taking(100ms, 10ms) == "a");
}

TEST_CASE("endpoint_pool: a slow replica gets under 5 % of the traffic with PeakEWMA",
          "[failover][pool][ewma]") {
  keel::testing::virtual_environment env;
  keel::endpoint_pool pool(strings{"a", "b", "c"}, {.strategy = keel::balance::peak_ewma},
                           keel::no_layers(), keel::no_listener(), env);
  int to_slow = 0;
  const int calls = 3000;
  for (int i = 0; i < calls; ++i) {
    pool.execute([&](const keel::context& ctx) {
      const bool slow = ctx.target().index() == 1;
      to_slow += slow ? 1 : 0;
      env.advance(slow ? 200ms : 2ms);
      return 0;
    });
  }
  CHECK(to_slow > 0);
  CHECK(to_slow * 100 < calls * 5);
}

TEST_CASE("endpoint_pool: a layer's rejection moves the call to another endpoint",
          "[failover][pool]") {
  env_t env;
  keel::endpoint_pool pool(strings{"a", "b", "c"}, {}, breaker_per_endpoint{env},
                           keel::no_listener(), env);
  std::string seen;
  const auto call = [&] {
    return pool.try_execute([&](const keel::context& ctx) {
      seen += name_of(ctx);
      if (name_of(ctx) == "a" && env.elapsed() < 1s) throw std::runtime_error("a is down");
      return 1;
    });
  };
  CHECK_FALSE(call().has_value());  // a fails: its breaker opens for 10 s
  CHECK(call().has_value());        // b
  CHECK(call().has_value());        // c
  // a's turn: its breaker refuses (nothing sent), the pool moves the call on.
  const auto moved = call();
  CHECK(moved.has_value());
  CHECK(seen == "abcb");
  CHECK(pool.status(0).held);
  CHECK(pool.layers_of(0)->state() == keel::circuit_state::open);
  CHECK(call().has_value());
  CHECK(call().has_value());
  CHECK(seen == "abcbcb");
  // The open time is over: a takes its turns again, and its probe closes the breaker.
  env.advance(10s);
  CHECK(reach(pool, 3) == "bca");
  CHECK(pool.layers_of(0)->state() == keel::circuit_state::closed);
  CHECK_FALSE(pool.status(0).held);
  CHECK(pool_test_access::degraded(pool) == 0);
}

TEST_CASE("endpoint_pool: nothing usable is errc::no_endpoint_available with the earliest return",
          "[failover][pool]") {
  env_t env;
  SECTION("every endpoint held by its breaker, panic off") {
    keel::endpoint_pool pool(strings{"a", "b"}, {.panic_threshold = 0},
                             breaker_per_endpoint{env, 10s}, keel::no_listener(), env);
    pool.try_execute([](const keel::context&) -> int { throw std::runtime_error("down"); });
    env.advance(4s);
    pool.try_execute([](const keel::context&) -> int { throw std::runtime_error("down"); });
    // a is open until 10 s, b until 14 s. The call meets a's refusal (held to 10 s), then b's.
    int calls = 0;
    const auto o = pool.try_execute([&](const keel::context&) { return ++calls; });
    CHECK(calls == 0);
    REQUIRE(o.has_keel_error());
    CHECK(o.keel_error().code == keel::errc::no_endpoint_available);
    CHECK(o.keel_error().code == keel::condition::rejected);
    REQUIRE(o.retry_after().has_value());
    CHECK(*o.retry_after() == 6s);  // a is back at 10 s
    env.advance(6s);
    CHECK(pool.try_execute([&](const keel::context& ctx) { return name_of(ctx); }).value() == "a");
  }
  SECTION("every endpoint isolated: no retry-after") {
    keel::endpoint_pool pool(strings{"a", "b"});
    pool.isolate(0);
    pool.isolate(1);
    const auto o = pool.try_execute([] { return 1; });
    REQUIRE(o.has_keel_error());
    CHECK(o.keel_error().code == keel::errc::no_endpoint_available);
    CHECK_FALSE(o.retry_after().has_value());
    pool.enable(1);
    CHECK(reach(pool, 2) == "bb");
    pool.enable(0);
    CHECK(pool_test_access::degraded(pool) == 0);
  }
}

TEST_CASE("endpoint_pool: outlier detection ejects, and the endpoint comes back on time",
          "[failover][pool][outlier]") {
  env_t env;
  event_log log;
  keel::endpoint_pool pool(strings{"a", "b", "c"}, {.outlier_detection = eject_after(3)},
                           keel::no_layers(), log, env);
  std::string seen;
  const auto call = [&] {
    pool.try_execute([&](const keel::context& ctx) {
      seen += name_of(ctx);
      if (name_of(ctx) == "b") throw std::runtime_error("b fails");
      return 0;
    });
  };
  for (int i = 0; i < 8; ++i) call();  // b's third failure is call 8
  CHECK(seen == "abcabcab");
  CHECK(log.take() == std::vector<std::string>{"ejected 1 consecutive_failures"});
  CHECK(log.last_until() == keel::time_point(30s));
  CHECK(pool.status(1).ejected);
  CHECK(pool.ejected_count() == 1);
  seen.clear();
  for (int i = 0; i < 4; ++i) call();
  CHECK(seen.find('b') == std::string::npos);
  env.advance(30s);
  seen.clear();
  call();  // the sweep at the first look returns b
  CHECK(log.take() == std::vector<std::string>{"restored 1"});
  CHECK_FALSE(pool.status(1).ejected);
  CHECK(pool.status(1).ejections == 1);
  CHECK(reach(pool, 3).find('b') != std::string::npos);
}

TEST_CASE("endpoint_pool: panic below the threshold spreads over every endpoint",
          "[failover][pool][panic]") {
  env_t env;
  event_log log;
  std::vector<bool> healthy{true, false, false, false};
  auto pool = keel::endpoint_pool(strings{"a", "b", "c", "d"}, {}, keel::no_layers(), log, env)
                  .with_health_check([&](const std::string&, std::size_t i) { return healthy[i]; },
                                     {.interval = 1s,
                                      .unhealthy_threshold = 1,
                                      .healthy_threshold = 1,
                                      .no_traffic_interval = 1s});
  CHECK(pool.run_health_checks() == 4);
  CHECK(log.take() == strings{"unhealthy 1", "unhealthy 2", "unhealthy 3"});
  CHECK(pool.usable_count() == 1);
  // 1 of 4 usable (25 % < 50 %): every endpoint takes calls.
  CHECK(reach(pool, 4) == "abcd");
  CHECK(log.take() == strings{"panic entered"});
  CHECK(pool.in_panic());
  healthy[1] = true;
  env.advance(1s);
  pool.run_health_checks();
  CHECK(log.take() == strings{"healthy 1"});
  // 2 of 4 (50 %): no panic; only a and b.
  CHECK(reach(pool, 4) == "abab");
  CHECK(log.take() == strings{"panic left"});
  CHECK_FALSE(pool.in_panic());
}

TEST_CASE("endpoint_pool: priority levels share traffic by Envoy's overprovisioning rule",
          "[failover][pool][priority]") {
  env_t env;
  event_log log;
  std::vector<bool> healthy(5, true);
  using member = keel::pool_member<std::string>;
  auto pool =
      keel::endpoint_pool(
          std::vector<member>{{"a", 1, 0}, {"b", 1, 0}, {"c", 1, 0}, {"d", 1, 0}, {"e", 1, 1}}, {},
          keel::no_layers(), log, env)
          .with_health_check([&](const std::string&, std::size_t i) { return healthy[i]; },
                             {.interval = 1s,
                              .unhealthy_threshold = 1,
                              .healthy_threshold = 1,
                              .no_traffic_interval = 1s});
  CHECK(reach(pool, 4) == "abcd");  // level 0 takes everything while healthy
  healthy[2] = healthy[3] = false;
  pool.run_health_checks();
  log.take();
  // Level 0 is 50 % healthy: it takes 50 * 1.4 = 70 % and level 1 the other 30 %.
  env.random().push({0.69, 0.71, 0.0});
  CHECK(reach(pool, 3) == "aeb");
  CHECK(pool.active_priority() == 0);
  // Level 0 down: everything fails over to level 1.
  healthy[0] = healthy[1] = false;
  env.advance(1s);
  pool.run_health_checks();
  log.take();
  CHECK(reach(pool, 2) == "ee");
  CHECK(log.take() == strings{"failover 0->1"});
  CHECK(pool.active_priority() == 1);
  healthy.assign(5, true);
  env.advance(1s);
  pool.run_health_checks();
  CHECK(log.take() == strings{"healthy 0", "healthy 1", "healthy 2", "healthy 3", "failback 1->0"});
  CHECK(reach(pool, 8).find('e') == std::string::npos);
}

TEST_CASE(
    "endpoint_pool: fail back after healthy probes, a delay and a slow start; a failure "
    "during the ramp starts the delay again",
    "[failover][pool][priority][failback]") {
  env_t env;
  event_log log;
  bool primary_up = true;
  bool fail_primary_calls = false;
  std::vector<std::string> warmed;
  using member = keel::pool_member<std::string>;
  keel::endpoint_pool_options o;
  o.failback_delay = 10s;
  o.slow_start.window = 10s;
  auto pool = keel::endpoint_pool(std::vector<member>{{"p", 1, 0}, {"s", 1, 1}}, o,
                                  keel::no_layers(), log, env)
                  .with_health_check([&](const std::string& e) { return e == "s" || primary_up; },
                                     {.interval = 1s,
                                      .unhealthy_threshold = 1,
                                      .healthy_threshold = 2,
                                      .no_traffic_interval = 1s})
                  .on_warm_up([&](const std::string& e) {
                    warmed.push_back(e);
                    throw std::runtime_error("a warm-up hook that throws is ignored");
                  });
  const auto call = [&] {
    std::string seen;
    pool.try_execute([&](const keel::context& ctx) {
      seen = name_of(ctx);
      if (seen == "p" && fail_primary_calls) throw std::runtime_error("p fails");
      return 0;
    });
    return seen;
  };
  pool.run_health_checks();
  CHECK(call() == "p");
  // t = 1 s: p fails its probe: fail over to s, which warms up (hook, slow start).
  primary_up = false;
  env.advance(1s);
  pool.run_health_checks();
  CHECK(call() == "s");
  CHECK(log.take() == strings{"unhealthy 0", "failover 0->1"});
  CHECK(warmed == strings{"s"});
  // p passes one probe at 2 s (threshold 2), a second at 3 s: healthy, held back 10 s.
  primary_up = true;
  env.advance(1s);
  pool.run_health_checks();
  CHECK(call() == "s");
  env.advance(1s);
  pool.run_health_checks();
  CHECK(log.take() == strings{"healthy 0"});
  CHECK(pool.status(0).warming);
  env.advance(9999ms);  // 12.999 s
  CHECK(call() == "s");
  // 13 s: p ramps from 10 %: level 0 takes 10 * 1.4 = 14 % of the calls.
  env.advance(1ms);
  env.random().push({0.13, 0.15});
  const auto d0 = env.random().draws();
  CHECK(call() == "p");
  CHECK(env.random().draws() - d0 == 1);
  CHECK(call() == "s");
  CHECK(log.take() == strings{"failback 1->0"});
  // 18 s: half way, 50 % -> 70 %. A failure on p now restarts its delay.
  env.advance(5s);
  env.random().push({0.69});
  fail_primary_calls = true;
  CHECK(call() == "p");
  fail_primary_calls = false;
  CHECK(call() == "s");
  CHECK(log.take() == strings{"failover 0->1"});
  env.advance(9999ms);  // 27.999 s: still held back
  CHECK(call() == "s");
  env.advance(1ms + 10s);  // 38 s: the ramp is over, p takes everything
  CHECK(call() == "p");
  CHECK(call() == "p");
  CHECK(log.take() == strings{"failback 1->0"});
  CHECK_FALSE(pool.status(0).warming);
  CHECK(pool_test_access::degraded(pool) == 0);
  CHECK(warmed == strings{"s", "s"});
}

TEST_CASE("endpoint_pool: a retry outside the pool avoids the endpoints it tried",
          "[failover][pool][tried]") {
  env_t env;
  const auto run = [&](bool avoid) {
    keel::endpoint_pool pool(strings{"a", "b", "c"},
                             {.strategy = keel::balance::random, .avoid_tried = avoid},
                             keel::no_layers(), keel::no_listener(), env);
    const auto guarded = keel::pipeline(
        keel::retry({.max_attempts = 3, .backoff = keel::constant_backoff{.delay = 1ms}})
            .with_environment(env),
        std::ref(pool));
    std::string seen;
    guarded.try_execute([&](const keel::context& ctx) -> int {
      seen += name_of(ctx);
      throw std::runtime_error("fails everywhere");
    });
    return seen;
  };
  CHECK(run(true) == "abc");  // every draw is 0: the first untried endpoint
  CHECK(run(false) == "aaa");
}

TEST_CASE("endpoint_pool: active health checks: thresholds, intervals, jitter, throwing probes",
          "[failover][pool][health]") {
  env_t env;
  event_log log;
  int probes = 0;
  bool up = true;
  auto pool = keel::endpoint_pool(strings{"a", "b"}, {}, keel::no_layers(), log, env)
                  .with_health_check(
                      [&](const std::string& e) {
                        ++probes;
                        if (e == "b") throw std::runtime_error("probe error counts as failed");
                        return up;
                      },
                      {.interval = 2s,
                       .jitter = 1s,
                       .unhealthy_threshold = 2,
                       .healthy_threshold = 1,
                       .no_traffic_interval = 30s});
  env.random().set_fallback(0.5);
  CHECK(pool.run_health_checks() == 2);  // both due at start
  CHECK(probes == 2);
  // No traffic yet: next probe after 30 s + 0.5 s of jitter.
  CHECK(pool.next_health_check() == keel::time_point(30500ms));
  CHECK(pool.run_health_checks() == 0);
  reach(pool, 2);  // a and b take a call each
  env.advance(30500ms);
  CHECK(pool.run_health_checks() == 2);
  CHECK(log.take() == strings{"unhealthy 1"});  // b's second failed probe
  // With traffic: 2 s + 0.5 s.
  CHECK(pool.next_health_check() == keel::time_point(33000ms));
  CHECK(reach(pool, 2) == "aa");
  up = false;
  env.advance(2500ms);
  pool.run_health_checks();
  CHECK(log.take().empty());  // one failure of two
  env.advance(2500ms);
  pool.run_health_checks();
  CHECK(log.take() == strings{"unhealthy 0"});
  CHECK(pool.usable_count() == 0);
  // Kept out, they take no calls, and are probed every interval all the same.
  CHECK(pool.next_health_check() == keel::time_point(38000ms));
  env.advance(2500ms);
  pool.run_health_checks();
  CHECK(pool.next_health_check() == keel::time_point(40500ms));
}

TEST_CASE("endpoint_pool: a passed probe returns an ejected endpoint", "[failover][pool][health]") {
  env_t env;
  event_log log;
  auto pool =
      keel::endpoint_pool(strings{"a", "b"}, {.outlier_detection = eject_after(1)},
                          keel::no_layers(), log, env)
          .with_health_check([](const std::string&) { return true; },
                             {.interval = 1s, .healthy_threshold = 1, .no_traffic_interval = 1s});
  pool.try_execute([](const keel::context&) -> int { throw std::runtime_error("a fails"); });
  CHECK(pool.status(0).ejected);
  CHECK(log.take() == strings{"ejected 0 consecutive_failures"});
  CHECK(log.last_until() == keel::time_point(30s));
  pool.run_health_checks();
  CHECK_FALSE(pool.status(0).ejected);
  CHECK(log.take() == strings{"restored 0"});
}

TEST_CASE("endpoint_pool: replace keeps the state of endpoints that stay",
          "[failover][pool][replace]") {
  env_t env;
  keel::endpoint_pool pool(strings{"a", "b", "c"},
                           {.outlier_detection = eject_after(1), .capacity = 4}, keel::no_layers(),
                           keel::no_listener(), env);
  pool.try_execute([](const keel::context& ctx) {
    if (ctx.target().index() == 1) throw std::runtime_error("b fails");
    return 0;
  });
  pool.try_execute([](const keel::context& ctx) {
    if (ctx.target().index() == 1) throw std::runtime_error("b fails");
    return 0;
  });
  REQUIRE(pool.status(1).ejected);
  REQUIRE(pool.replace(strings{"b", "d"}));
  CHECK(pool.size() == 2);
  CHECK(pool.index_of("b") == std::size_t{1});
  CHECK(pool.index_of("d") == std::size_t{3});  // the free slot; a's and c's are freed after
  CHECK_FALSE(pool.index_of("a").has_value());
  CHECK_FALSE(pool.status(0).present);
  CHECK_FALSE(pool.status(2).present);
  CHECK(pool.status(1).ejected);  // b kept its ejection
  CHECK(pool.ejected_count() == 1);
  CHECK(reach(pool, 3) == "ddd");
  SECTION("an endpoint removed during its call stays valid until the call ends") {
    std::string after;
    pool.execute([&](const keel::context& ctx) {
      CHECK(pool.replace(strings{"e"}));
      CHECK(pool.index_of("e") == std::size_t{0});
      // Three new ones need d's slot too, held by this call: not yet.
      CHECK_FALSE(pool.replace(strings{"e", "f", "g", "h"}));
      after = name_of(ctx);  // d's slot is removed but not freed
      CHECK_FALSE(pool.status(3).present);
      CHECK(pool.status(3).in_flight == 1);
      return 0;
    });
    CHECK(after == "d");
    CHECK(pool.ejected_count() == 0);  // b left, with its ejection
    CHECK(reach(pool, 2) == "ee");
    // d's call ended: its slot is free again, and the last new endpoint takes it.
    CHECK(pool.replace(strings{"e", "f", "g", "h"}));
    CHECK(pool.index_of("f") == std::size_t{1});
    CHECK(pool.index_of("g") == std::size_t{2});
    CHECK(pool.index_of("h") == std::size_t{3});
  }
  SECTION("more than the capacity: config_error, nothing changed") {
    // Three new endpoints, two free slots and none draining: never.
    CHECK_THROWS_AS(pool.replace(strings{"w", "x", "y"}), keel::config_error);
    CHECK_THROWS_AS(pool.replace(strings{"s", "t", "u", "v", "w"}), keel::config_error);
    CHECK_THROWS_AS(pool.replace(strings{}), keel::config_error);
    CHECK(pool.size() == 2);
    CHECK(pool.index_of("d") == std::size_t{3});
  }
}

TEST_CASE("endpoint_pool: a factory that throws leaves the pool as it was",
          "[failover][pool][replace]") {
  const auto factory = [](const std::string& e, std::size_t) {
    if (e == "boom") throw std::runtime_error("no layers for boom");
    return keel::no_layers::pass_through{};
  };
  CHECK_THROWS_AS(keel::endpoint_pool(strings{"a", "boom"}, {}, factory), std::runtime_error);
  keel::endpoint_pool pool(strings{"a", "b"}, {}, factory);
  CHECK_THROWS_AS(static_cast<void>(pool.replace(strings{"a", "c", "boom"})), std::runtime_error);
  CHECK(pool.size() == 2);
  CHECK(pool.index_of("b") == std::size_t{1});
  CHECK_FALSE(pool.index_of("c").has_value());
  CHECK(reach(pool, 2) == "ab");
}

TEST_CASE("endpoint_pool: invalid options throw config_error naming the field",
          "[failover][pool][options]") {
  const auto field_of = [](auto make) -> std::string {
    try {
      make();
    } catch (const keel::config_error& e) {
      return e.field();
    }
    return "none";
  };
  const auto with = [&](keel::endpoint_pool_options o) {
    return field_of([&] { keel::endpoint_pool pool(strings{"a"}, o); });
  };
  CHECK(with({.choice_count = 1}) == "endpoint_pool_options.choice_count");
  CHECK(with({.choice_count = 11}) == "endpoint_pool_options.choice_count");
  CHECK(with({.ewma_decay = 0s}) == "endpoint_pool_options.ewma_decay");
  CHECK(with({.panic_threshold = 101}) == "endpoint_pool_options.panic_threshold");
  CHECK(with({.overprovisioning = 99}) == "endpoint_pool_options.overprovisioning");
  CHECK(with({.failback_delay = -1s}) == "endpoint_pool_options.failback_delay");
  CHECK(with({.slow_start = {.window = -1s}}) == "endpoint_pool_options.slow_start.window");
  CHECK(with({.slow_start = {.aggression = 0.0}}) == "endpoint_pool_options.slow_start.aggression");
  CHECK(with({.slow_start = {.min_weight_percent = 0}}) ==
        "endpoint_pool_options.slow_start.min_weight_percent");
  keel::outlier_detection_options bad;
  bad.interval = 0s;
  CHECK(with({.outlier_detection = bad}) == "outlier_detection_options.interval");
  const auto too_small = [] { keel::endpoint_pool pool(strings{"a", "b"}, {.capacity = 1}); };
  CHECK(field_of(too_small) == "endpoint_pool_options.capacity");
  CHECK(field_of([] { keel::endpoint_pool pool(strings{}); }) == "endpoint_pool.endpoints");
  CHECK(field_of([] {
          keel::endpoint_pool pool(std::vector<keel::pool_member<std::string>>{{"a", 0, 0}});
        }) == "pool_member.weight");
  CHECK(field_of([] {
          auto pool = keel::endpoint_pool(strings{"a"})
                          .with_health_check([](const std::string&) { return true; },
                                             {.unhealthy_threshold = 0});
        }) == "health_check_options.unhealthy_threshold");
  CHECK(field_of([] {
          auto pool =
              keel::endpoint_pool(strings{"a"})
                  .with_health_check([](const std::string&) { return true; }, {.interval = 0s});
        }) == "health_check_options.interval");
}

TEST_CASE("endpoint_pool: a listener that throws changes nothing", "[failover][pool][hostile]") {
  struct throwing_listener {
    void on(const keel::endpoint_ejected&) const { throw std::runtime_error("listener"); }
    void on(const keel::endpoint_restored&) const { throw std::runtime_error("listener"); }
  };
  env_t env;
  keel::endpoint_pool pool(strings{"a", "b"}, {.outlier_detection = eject_after(1)},
                           keel::no_layers(), throwing_listener{}, env);
  pool.try_execute([](const keel::context&) -> int { throw std::runtime_error("a fails"); });
  CHECK(pool.status(0).ejected);
  CHECK(reach(pool, 2) == "bb");
  env.advance(30s);
  CHECK(reach(pool, 4) == "baba");  // a is back
  CHECK_FALSE(pool.status(0).ejected);
}

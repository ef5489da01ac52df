// SPDX-License-Identifier: BSL-1.0
// Regression tests from an adversarial review of the failover policies
// (endpoint_pool, outlier_detector, leader_follower): each once showed a
// defect, and now holds the behaviour that replaced it. The R-number is the
// finding's.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <keel/failover/endpoint_pool.hpp>
#include <keel/failover/leader_follower.hpp>
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

// ---- An endpoint type that knows which of its objects are alive ----------

std::mutex live_mutex;
std::set<const void*>& live_objects() {
  static std::set<const void*> s;
  return s;
}
bool is_live(const void* p) {
  std::lock_guard lock(live_mutex);
  return live_objects().count(p) != 0;
}

struct tracked {
  std::string name;
  explicit tracked(std::string n) : name(std::move(n)) { add(); }
  tracked(const tracked& o) : name(o.name) { add(); }
  tracked& operator=(const tracked& o) {
    name = o.name;
    return *this;
  }
  ~tracked() {
    std::lock_guard lock(live_mutex);
    live_objects().erase(this);
  }
  bool operator==(const tracked& o) const { return name == o.name; }

 private:
  void add() {
    std::lock_guard lock(live_mutex);
    live_objects().insert(this);
  }
};
std::vector<tracked> tracked_list(std::initializer_list<const char*> names) {
  std::vector<tracked> v;
  for (const char* n : names) v.emplace_back(n);
  return v;
}

/// A listener that forwards every event to a hook set after the pool exists
/// (the pool's type depends on the listener's, so the hook is type-erased).
struct hook_listener {
  std::shared_ptr<std::function<void(const char*)>> hook =
      std::make_shared<std::function<void(const char*)>>();
  void fire(const char* what) const {
    if (*hook) (*hook)(what);
  }
  void on(const keel::endpoint_health_changed&) const { fire("health"); }
  void on(const keel::pool_failback&) const { fire("failback"); }
  void on(const keel::pool_failover&) const { fire("failover"); }
  void on(const keel::endpoint_restored&) const { fire("restored"); }
};

/// A per-endpoint layer that refuses (a rejection: nothing sent) at one slot.
struct refuse_at_slot {
  std::size_t refused;
  struct layer {
    bool refuse;
    template <class R, class Next>
    keel::outcome<R> run(Next&& next, keel::context& ctx) const {
      if (refuse) return keel::outcome<R>::from_keel(keel::errc::bulkhead_full);
      return next(ctx);
    }
  };
  layer operator()(const std::string&, std::size_t slot) const { return layer{slot == refused}; }
};

}  // namespace

// ---------------------------------------------------------------------------
// 1. A health probe reads an endpoint that replace() destroys under it.
// ---------------------------------------------------------------------------
TEST_CASE("R1: a running health probe keeps its endpoint alive through a replace()",
          "[review14][pool][health][lifetime]") {
  std::atomic<bool> in_probe{false}, release{false}, alive_after{true};
  auto pool =
      keel::endpoint_pool(tracked_list({"a", "b"})).with_health_check([&](const tracked& e) {
        if (e.name != "a") return true;
        in_probe.store(true);
        while (!release.load()) std::this_thread::yield();
        // replace() has returned meanwhile: is `e` still an object?
        alive_after.store(is_live(&e));
        return true;
      });
  std::thread checker([&] { pool.run_health_checks(); });
  while (!in_probe.load()) std::this_thread::yield();
  // Drops a (no new endpoint: replace() never touches check_mutex_).
  const bool replaced = pool.replace(tracked_list({"b"}));
  release.store(true);
  checker.join();
  CHECK(replaced);
  CHECK(alive_after.load());
}

// ---------------------------------------------------------------------------
// 2. replace() counts free slots before the leaving endpoints free theirs:
//    at full capacity an idle endpoint can never be swapped.
// ---------------------------------------------------------------------------
TEST_CASE("R2: a replace() that can never fit is a config_error, and changes nothing",
          "[review14][pool][replace]") {
  keel::endpoint_pool pool(strings{"a", "b"}, {.capacity = 2});
  // b leaves, c comes: both need a slot while b's calls may still run.
  CHECK_THROWS_AS(pool.replace(strings{"a", "c"}), keel::config_error);
  CHECK(pool.size() == 2);
  CHECK(pool.index_of("b") == std::size_t{1});
  // The default capacity holds a whole set and its replacement.
  strings first, second;
  for (int i = 0; i < 16; ++i) first.push_back("x" + std::to_string(i));
  for (int i = 0; i < 16; ++i) second.push_back("y" + std::to_string(i));
  keel::endpoint_pool big(first);
  REQUIRE(big.capacity() == 32);
  CHECK(big.replace(second));
  CHECK(big.size() == 16);
  second.push_back("y16");
  CHECK(big.replace(second));  // x's slots were freed (no call in flight)
  CHECK(big.size() == 17);
}

// ---------------------------------------------------------------------------
// 3. A replace() that removes the last degraded endpoints (drop_gate) never
//    settles: panic and the failed-over level stick, with no event.
// ---------------------------------------------------------------------------
TEST_CASE("R3a: panic ends when replace() removes the sick endpoints",
          "[review14][pool][panic][replace]") {
  env_t env;
  event_log log;
  auto pool = keel::endpoint_pool(strings{"a", "b", "c"}, {}, keel::no_layers(), log, env)
                  .with_health_check([](const std::string& e) { return e == "c"; },
                                     {.unhealthy_threshold = 1});
  pool.run_health_checks();
  pool.try_execute([] { return 0; });
  REQUIRE(pool.in_panic());
  REQUIRE(pool.replace(strings{"c"}));
  CHECK(pool_test_access::degraded(pool) == 0);
  for (int i = 0; i < 3; ++i) CHECK(pool.try_execute([] { return 0; }).has_value());
  CHECK_FALSE(pool.in_panic());
  const auto lines = log.take();
  CHECK(std::count(lines.begin(), lines.end(), "panic left") == 1);
}

TEST_CASE("R3b: traffic fails back when replace() removes the sick primary",
          "[review14][pool][priority][replace]") {
  env_t env;
  event_log log;
  keel::endpoint_pool pool(std::vector<keel::pool_member<std::string>>{{"a", 1, 0}, {"b", 1, 1}},
                           {}, keel::no_layers(), log, env);
  pool.isolate(0);
  CHECK(pool.try_execute([](const keel::context& ctx) { return name_of(ctx); }).value() == "b");
  REQUIRE(pool.active_priority() == 1);
  REQUIRE(pool.replace(std::vector<keel::pool_member<std::string>>{{"c", 1, 0}, {"b", 1, 1}}));
  CHECK(pool.try_execute([](const keel::context& ctx) { return name_of(ctx); }).value() == "c");
  CHECK(pool.active_priority() == 0);
  const auto lines = log.take();
  CHECK(std::count(lines.begin(), lines.end(), "failback 1->0") == 1);
}

// ---------------------------------------------------------------------------
// 4. A call that ends on a removed endpoint still feeds the outlier detector:
//    a ghost ejection of a slot that holds nothing, which fills the cap.
// ---------------------------------------------------------------------------
TEST_CASE("R4: a removed endpoint's last call ejects nothing",
          "[review14][pool][outlier][replace]") {
  env_t env;
  event_log log;
  keel::endpoint_pool pool(strings{"a", "b"}, {.outlier_detection = eject_after(1)},
                           keel::no_layers(), log, env);
  const auto r = pool.try_execute([&](const keel::context& ctx) -> int {
    REQUIRE(name_of(ctx) == "a");
    REQUIRE(pool.replace(strings{"b"}));  // a leaves while its call runs
    throw std::runtime_error("a fails");
  });
  CHECK_FALSE(r.has_value());
  CHECK_FALSE(pool.status(0).present);
  CHECK(pool.ejected_count() == 0);
  for (const auto& l : log.take()) CHECK(l.rfind("ejected 0", 0) != 0);
  // b, the only endpoint, now fails: max_ejection_percent 100 allows ejecting it...
  pool.try_execute([](const keel::context&) -> int { throw std::runtime_error("b fails"); });
  CHECK(pool.status(1).ejected);
}

// ---------------------------------------------------------------------------
// 5. tried_set aliasing in the call's own `local` set: a refusal at slot 130
//    excludes slot 2 for good, and the pool refuses with slot 2 usable.
// ---------------------------------------------------------------------------
TEST_CASE("R5: a refusal at slot >= 128 excludes only that slot", "[review14][pool][tried]") {
  strings names;
  for (int i = 0; i <= 130; ++i) names.push_back("e" + std::to_string(i));
  keel::endpoint_pool pool(names, {.capacity = 256}, refuse_at_slot{130});
  for (std::size_t i = 0; i <= 130; ++i)
    if (i != 2 && i != 130) pool.isolate(i);
  int refused = 0;
  for (int i = 0; i < 4; ++i) {
    const auto o = pool.try_execute([](const keel::context& ctx) { return name_of(ctx); });
    if (!o.has_value()) {
      ++refused;
    } else {
      CHECK(o.value() == "e2");
    }
  }
  // Whenever the pick is e130, its refusal marks bit 2 in `local` too.
  CHECK(refused == 0);
}

// ---------------------------------------------------------------------------
// 6. Listeners are called under locks the docs do not mention.
// ---------------------------------------------------------------------------
TEST_CASE("R6a: an endpoint_health_changed listener may read the pool",
          "[review14][pool][listener][health]") {
  hook_listener l;
  auto pool = keel::endpoint_pool(strings{"a", "b"}, {}, keel::no_layers(), l)
                  .with_health_check([](const std::string& e) { return e == "b"; },
                                     {.unhealthy_threshold = 1});
  int heard = 0;
  *l.hook = [&](const char* what) {
    if (std::string(what) != "health") return;
    ++heard;
    static_cast<void>(pool.next_health_check());  // told after the checks' lock
    static_cast<void>(pool.usable_count());
  };
  CHECK(pool.run_health_checks() == 2);
  CHECK(heard == 1);
}

TEST_CASE("R6b: a pool_failback listener may call through the pool",
          "[review14][pool][listener][outlier]") {
  env_t env;
  hook_listener l;
  auto o = eject_after(1);
  o.base_ejection_time = 10s;
  keel::endpoint_pool<std::string, keel::no_layers, hook_listener, env_t> pool(
      std::vector<keel::pool_member<std::string>>{{"a", 1, 0}, {"b", 1, 1}},
      {.outlier_detection = o}, keel::no_layers(), l, env);
  pool.try_execute([](const keel::context&) -> int { throw std::runtime_error("a fails"); });
  REQUIRE(pool.status(0).ejected);
  pool.try_execute([] { return 0; });  // fails over to b
  REQUIRE(pool.active_priority() == 1);
  int warm_calls = 0;
  *l.hook = [&](const char* what) {
    if (std::string(what) == "failback") warm_calls += pool.try_execute([] { return 1; }).value();
  };
  env.advance(10s);
  CHECK(pool.try_execute([] { return 0; }).has_value());
  CHECK(warm_calls == 1);
  CHECK(pool.active_priority() == 0);
}

// ---------------------------------------------------------------------------
// 7. A target is valid while the pool holds its endpoint (call_slots.hpp);
//    a removed endpoint is freed at the next replace() after its calls end.
// ---------------------------------------------------------------------------
TEST_CASE("R7: a removed endpoint lives through its call, and is freed at the next replace()",
          "[review14][pool][lifetime]") {
  keel::endpoint_pool pool(tracked_list({"a", "b"}));
  const void* a = nullptr;
  pool.execute([&](const keel::context& ctx) {
    a = ctx.target().get<tracked>();
    REQUIRE(pool.replace(tracked_list({"b"})));
    CHECK(is_live(a));  // its call is not over
    return 0;
  });
  CHECK(is_live(a));  // the call ended; freed at the next replace()
  REQUIRE(pool.replace(tracked_list({"b", "c"})));
  // a's slot was freed, and c took it: the same storage holds c now.
  REQUIRE(pool.endpoint(0) != nullptr);
  CHECK(static_cast<const void*>(pool.endpoint(0)) == a);
  CHECK(pool.endpoint(0)->name == "c");
}

// ---------------------------------------------------------------------------
// 8. docs/failover.md: a recovering primary takes "all of it once the ramp
//    has reached 71 %". At 71 % it takes 99.4 % (all only from 100 / 1.4 = 71.43 %).
// ---------------------------------------------------------------------------
TEST_CASE("R8: a recovered primary takes all the traffic from 100 / 1.4 % of its ramp",
          "[review14][pool][slowstart][doc]") {
  script_random random;
  env_t env(random);
  bool a_healthy = false;
  auto pool = keel::endpoint_pool(
                  std::vector<keel::pool_member<std::string>>{{"a", 1, 0}, {"b", 1, 1}},
                  {.slow_start = {.window = 100s}}, keel::no_layers(), keel::no_listener(), env)
                  .with_health_check([&](const std::string& e) { return e != "a" || a_healthy; },
                                     {.unhealthy_threshold = 1, .healthy_threshold = 1});
  pool.run_health_checks();  // a unhealthy
  REQUIRE(pool.status(0).check_failed);
  a_healthy = true;
  env.advance(60s);
  pool.run_health_checks();  // a passes: ramps from now over 100 s
  REQUIRE(pool.status(0).warming);
  env.advance(71s);
  random.push({0.995});  // the level draw: level 0 takes 0.71 * 1.4 = 99.4 %
  CHECK(pool.try_execute([](const keel::context& ctx) { return name_of(ctx); }).value() == "b");
  env.advance(500ms);  // 71.5 % > 100 / 1.4: all of it
  random.push({0.995});
  CHECK(pool.try_execute([](const keel::context& ctx) { return name_of(ctx); }).value() == "a");
}

// ---------------------------------------------------------------------------
// 9. A standby level that starts taking part of the traffic never gets its
//    warm-up hook (only a level that becomes the top does).
// ---------------------------------------------------------------------------
TEST_CASE("R9: a cold standby is warmed up before its first call, even on a partial share",
          "[review14][pool][priority][warmup]") {
  script_random random;
  env_t env(random);
  std::vector<std::string> warmed;
  auto pool =
      keel::endpoint_pool(
          std::vector<keel::pool_member<std::string>>{{"a", 1, 0}, {"b", 1, 0}, {"c", 1, 1}}, {},
          keel::no_layers(), keel::no_listener(), env)
          .with_health_check([](const std::string& e) { return e != "a"; },
                             {.unhealthy_threshold = 1})
          .on_warm_up([&](const std::string& e) { warmed.push_back(e); });
  pool.run_health_checks();  // a unhealthy: level 0 takes 50 % * 1.4 = 70 %, level 1 the rest
  random.push({0.9});        // the level draw: level 1
  const auto o = pool.try_execute([](const keel::context& ctx) { return name_of(ctx); });
  REQUIRE(o.value() == "c");
  CHECK(warmed == std::vector<std::string>{"c"});
}

// ---------------------------------------------------------------------------
// 10. Past 64 priority levels, the levels are lumped: Envoy's rules break
//     (panic sends calls to a sick endpoint while a healthy level exists) and
//     active_priority() names the wrong priority.
// ---------------------------------------------------------------------------
TEST_CASE("R10: at most 64 priority levels; 64 follow Envoy's rules",
          "[review14][pool][priority]") {
  std::vector<keel::pool_member<std::string>> members;
  for (std::uint32_t p = 0; p <= 64; ++p) members.push_back({"p" + std::to_string(p), 1, p});
  try {
    keel::endpoint_pool too_many(members);
    FAIL("65 levels accepted");
  } catch (const keel::config_error& e) {
    CHECK(e.field() == "pool_member.priority");
  }
  members.pop_back();
  auto pool = keel::endpoint_pool(members, {.panic_threshold = 60})
                  .with_health_check([](const std::string& e) { return e == "p63"; },
                                     {.unhealthy_threshold = 1});
  pool.run_health_checks();  // p0..p62 fail their checks; p63 (its own level) is healthy
  std::string seen;
  for (int i = 0; i < 4; ++i)
    seen += pool.try_execute([](const keel::context& ctx) { return name_of(ctx); }).value() + " ";
  CHECK(seen == "p63 p63 p63 p63 ");
  CHECK(pool.active_priority() == 63);
}

// ---------------------------------------------------------------------------
// 11. leader_follower: quorum above 128 members is never reached, so a
//     leaderless cluster is spun on with no wait ("only delays a wait").
// ---------------------------------------------------------------------------
TEST_CASE("R11: leader_follower with 300 members waits after 128 answered", "[review14][leader]") {
  using fixed_env = keel::testing::basic_virtual_environment<keel::testing::fixed_random>;
  const fixed_env env(keel::testing::fixed_random(0.5));
  std::vector<int> members(300);
  auto lf =
      keel::leader_follower<int>(members, {.max_redirects = 400, .require_leader = false})
          .with_signal([](const keel::outcome<int>&) { return keel::leader_signal::not_leader(); })
          .with_environment(env);
  int calls = 0;
  const auto o = lf.try_execute([&](const keel::context&) -> int {
    ++calls;
    throw std::runtime_error("not the leader");
  });
  CHECK_FALSE(o.has_value());
  CHECK(calls == 401);
  // 151 distinct members (the quorum) answered within 400 moves: at least one wait.
  CHECK_FALSE(env.sleeps().empty());
}

// ---------------------------------------------------------------------------
// 12. leader_follower: the backoff's draw is not clamped (the pool clamps
//     every draw): a random source outside [0, 1) makes a ~58-day sleep, or none.
// ---------------------------------------------------------------------------
TEST_CASE("R12: leader_follower's backoff clamps a broken random source",
          "[review14][leader][hostile]") {
  using fixed_env = keel::testing::basic_virtual_environment<keel::testing::fixed_random>;
  for (const double u : {1e9, std::nan("")}) {
    const fixed_env env(keel::testing::fixed_random{u});
    auto lf = keel::leader_follower<int>(std::vector<int>{0}, {.max_redirects = 1})
                  .with_signal(
                      [](const keel::outcome<int>&) { return keel::leader_signal::not_leader(); })
                  .with_environment(env);
    lf.try_execute([](const keel::context&) -> int { throw std::runtime_error("no"); });
    const auto sleeps = env.sleeps();
    REQUIRE(sleeps.size() == 1);
    CHECK(sleeps[0] <= 27500us);
    CHECK(sleeps[0] >= 22500us);
  }
}

// ---------------------------------------------------------------------------
// 13. build() stores in_flight = 0 over a stale caller's enter(): replays
//     the interleaving [caller: in_flight.fetch_add(1) on a stale index s]
//     [replace(): build(s) ... in_flight.store(0) ... state = live]
//     [caller: state load sees live, runs, leaves: fetch_sub]. The count
//     wraps to 2^32 - 1, so the slot is never reclaimed once removed.
// ---------------------------------------------------------------------------
TEST_CASE("R13: a stale enter() racing build() keeps in_flight balanced",
          "[review14][pool][race][replace]") {
  struct state {
    const void* pool = nullptr;
    std::function<void(std::size_t)> up;
  };
  auto st = std::make_shared<state>();
  const auto factory = [st](const std::string& e, std::size_t s) {
    // The stale caller's fetch_add lands while the slot is being built.
    if (e == "y" && st->up) st->up(s);
    return keel::no_layers::pass_through{};
  };
  keel::endpoint_pool pool(strings{"a", "b", "x"}, {.capacity = 3}, factory);
  // A caller read order_ -> slot 2 (x) and stalls; x leaves and its slot is freed.
  REQUIRE(pool.replace(strings{"a", "b"}));
  REQUIRE_FALSE(pool.status(2).present);
  st->up = [&pool](std::size_t s) { pool_test_access::in_flight_up(pool, s); };
  REQUIRE(pool.replace(strings{"a", "b", "y"}));  // y is built in slot 2
  REQUIRE(pool.index_of("y") == std::size_t{2});
  // The caller resumes: enter() reads state == live, runs its call, leaves.
  pool_test_access::in_flight_down(pool, 2);
  CHECK(pool.status(2).in_flight == 0);
  // Consequence: y, removed, is never reclaimed; its slot is lost for good.
  st->up = nullptr;
  REQUIRE(pool.replace(strings{"a", "b"}));
  CHECK(pool.replace(strings{"a", "b", "z"}));
}

// ---------------------------------------------------------------------------
// 1 (ASan). The same as R1 with a heap-allocated endpoint: under the asan
// preset a use-after-free would be reported.
// ---------------------------------------------------------------------------
TEST_CASE("R1 (heap endpoint): the health probe reads a live endpoint", "[review14]") {
  std::atomic<bool> in_probe{false}, release{false};
  std::atomic<std::size_t> seen{0};
  // Two left after the replace: a top level of one trips finding R14 first.
  const std::string long_a(64, 'a'), long_b(64, 'b'), long_c(64, 'c');
  auto pool =
      keel::endpoint_pool(strings{long_a, long_b, long_c})
          .with_health_check([&](const std::string& e) {
            if (e[0] != 'a') return true;
            in_probe.store(true);
            while (!release.load()) std::this_thread::yield();
            seen.store(e == long_a ? 1 : 2);  // reads the freed buffer (memcmp: instrumented)
            return true;
          });
  std::thread checker([&] { pool.run_health_checks(); });
  while (!in_probe.load()) std::this_thread::yield();
  REQUIRE(pool.replace(strings{long_b, long_c}));
  release.store(true);
  checker.join();
  CHECK(seen.load() == 1);
}

// ---------------------------------------------------------------------------
// 14. fastmod_multiplier(1) wraps (UINT64_MAX / 1 + 1) without
//     KEEL_DETAIL_NO_SANITIZE_UNSIGNED_WRAP: under the project's own asan
//     preset (-fsanitize=integer, -fno-sanitize-recover=all) every pool whose
//     top level has one endpoint aborts, the existing suite included.
//     Passes in ordinary builds; run under build/asan.
// ---------------------------------------------------------------------------
TEST_CASE("R14: a pool whose top level holds one endpoint (the asan preset checks its wrap)",
          "[review14]") {
  keel::endpoint_pool pool(std::vector<keel::pool_member<std::string>>{{"a", 1, 0}, {"b", 1, 1}});
  CHECK(pool.try_execute([](const keel::context& ctx) { return name_of(ctx); }).value() == "a");
}

// ---------------------------------------------------------------------------
// Second review, F1: a slow-path call whose scan predates a heal noted panic
// and a failover after the heal had settled them; the fast path never looked
// again, so in_panic() stuck. Replayed on one thread: the failover listener
// heals every endpoint in the middle of the call's notes.
// ---------------------------------------------------------------------------
TEST_CASE("R15: a heal during a slow-path call's notes settles the pool",
          "[review14][pool][panic]") {
  env_t env;
  hook_listener l;
  std::vector<bool> up{false, true, false, false};  // a (P0) and e, f (P1) fail their probes
  auto pool = keel::endpoint_pool(
                  std::vector<keel::pool_member<std::string>>{
                      {"a", 1, 0}, {"d", 1, 1}, {"e", 1, 1}, {"f", 1, 1}},
                  {}, keel::no_layers(), l, env)
                  .with_health_check([&](const std::string&, std::size_t i) { return up[i]; },
                                     {.interval = 1s,
                                      .unhealthy_threshold = 1,
                                      .healthy_threshold = 1,
                                      .no_traffic_interval = 1s});
  pool.run_health_checks();
  std::vector<std::string> told;
  *l.hook = [&](const char* what) {
    told.emplace_back(what);
    if (std::string(what) != "failover") return;
    up.assign(4, true);  // everything recovers while the call is between its notes
    env.advance(1s);
    pool.run_health_checks();
  };
  // P0 has nothing usable, P1 one of three: the call fails over, and would note panic.
  CHECK(pool.try_execute([](const keel::context& ctx) { return name_of(ctx); }).has_value());
  CHECK_FALSE(pool.in_panic());
  CHECK(pool.active_priority() == 0);
  CHECK(pool_test_access::degraded(pool) == 0);
  CHECK(pool.try_execute([](const keel::context& ctx) { return name_of(ctx); }).value() == "a");
}

// Second review, F10: the active level is a priority, so a replace() that
// changes the levels neither mislabels a fail back nor forgets one.
TEST_CASE("R16: the active priority survives a replace() that changes the levels",
          "[review14][pool][priority][replace]") {
  env_t env;
  event_log log;
  std::vector<bool> up{false, true};
  using member = keel::pool_member<std::string>;
  auto pool = keel::endpoint_pool(std::vector<member>{{"a", 1, 0}, {"b", 1, 1}}, {},
                                  keel::no_layers(), log, env)
                  .with_health_check([&](const std::string& e) { return e != "a" || up[0]; },
                                     {.unhealthy_threshold = 1});
  pool.run_health_checks();
  CHECK(pool.try_execute([](const keel::context& ctx) { return name_of(ctx); }).value() == "b");
  CHECK(log.take() == strings{"unhealthy 0", "failover 0->1"});
  CHECK(pool.active_priority() == 1);
  // a leaves: priority 1 is the top now; nothing failed back.
  REQUIRE(pool.replace(std::vector<member>{{"b", 1, 1}}));
  CHECK(log.take().empty());
  CHECK(pool.active_priority() == 1);
  // A healthy priority-0 endpoint comes: traffic goes back up, and the pool says so.
  REQUIRE(pool.replace(std::vector<member>{{"c", 1, 0}, {"b", 1, 1}}));
  CHECK(log.take() == strings{"failback 1->0"});
  CHECK(pool.active_priority() == 0);
  CHECK(pool.try_execute([](const keel::context& ctx) { return name_of(ctx); }).value() == "c");
}

// ---------------------------------------------------------------------------
// Second review, F5: a probe's verdict is carried out by the checker that
// holds it; a second checker that also saw the endpoint pass tells nothing.
// ---------------------------------------------------------------------------
namespace {
/// event_log's lines, and a hook run (once) on the first "unhealthy 0".
struct reentrant_log {
  event_log log;
  std::shared_ptr<std::function<void()>> on_unhealthy_0 = std::make_shared<std::function<void()>>();
  template <class Event>
  void on(const Event& e) const {
    log.on(e);
  }
  void on(const keel::endpoint_health_changed& e) const {
    log.on(e);
    if (!e.healthy && e.endpoint == 0 && *on_unhealthy_0) std::exchange(*on_unhealthy_0, {})();
  }
};
}  // namespace

TEST_CASE("R17: two checkers that both see an endpoint pass tell it healthy once",
          "[review14][pool][health][listener]") {
  env_t env;
  reentrant_log l;
  std::vector<bool> up{true, false};
  auto pool = keel::endpoint_pool(strings{"a", "b"}, {}, keel::no_layers(), l, env)
                  .with_health_check([&](const std::string&, std::size_t i) { return up[i]; },
                                     {.interval = 1s,
                                      .unhealthy_threshold = 1,
                                      .healthy_threshold = 1,
                                      .no_traffic_interval = 1s});
  const keel::time_point t0 = env.now();
  CHECK(pool.run_health_checks(t0) == 2);
  CHECK(l.log.take() == strings{"unhealthy 1"});
  up = {false, true};
  // The first checker tells "unhealthy 0" before it carries out b's verdict;
  // a second round, run from that event, sees b pass too and restores it.
  std::size_t second_round = 0;
  *l.on_unhealthy_0 = [&] { second_round = pool.run_health_checks(t0 + 2s); };
  CHECK(pool.run_health_checks(t0 + 1s) == 2);
  CHECK(second_round == 2);
  const strings lines = l.log.take();
  CHECK(std::count(lines.begin(), lines.end(), "healthy 1") == 1);
  CHECK(std::count(lines.begin(), lines.end(), "unhealthy 0") == 1);
  CHECK_FALSE(pool.status(1).check_failed);
  CHECK(pool.status(0).check_failed);
  CHECK(pool.status(0).in_flight == 0);  // every probe's pin was let go
  CHECK(pool.status(1).in_flight == 0);
}

// ---------------------------------------------------------------------------
// Second review, F7: a call past its endpoint's liveness test when the
// endpoint leaves still ends after replace(): its result must not eject the
// removed endpoint (the cap would count it until the next replace()).
// ---------------------------------------------------------------------------
TEST_CASE("R18: a removed endpoint's result recorded after its removal ejects nothing",
          "[review14][pool][outlier][replace]") {
  env_t env;
  event_log log;
  std::function<void()> during_verdict;
  // Up to all of the endpoints held may be ejected: a counts as held until
  // the next replace() would it eject itself.
  auto pool = keel::endpoint_pool(strings{"a", "b"}, {.outlier_detection = eject_after(1)},
                                  keel::no_layers(), log, env)
                  .handle([&](const keel::outcome<int>& o) {
                    // Asked after the pool saw the endpoint live, before it records.
                    if (during_verdict) std::exchange(during_verdict, {})();
                    return !o.has_value();
                  });
  during_verdict = [&] { REQUIRE(pool.replace(strings{"b"})); };
  const auto r = pool.try_execute([](const keel::context& ctx) -> int {
    REQUIRE(name_of(ctx) == "a");
    throw std::runtime_error("a fails");
  });
  CHECK_FALSE(r.has_value());
  CHECK_FALSE(pool.status(0).present);
  CHECK(pool.ejected_count() == 0);
  for (const auto& line : log.take()) CHECK(line.rfind("ejected 0", 0) != 0);
  // The cap (all of the one endpoint held) has room for b.
  pool.try_execute([](const keel::context&) -> int { throw std::runtime_error("b fails"); });
  CHECK(pool.status(1).ejected);
  // A new endpoint in a's slot starts clean and is counted again.
  REQUIRE(pool.replace(strings{"b", "c"}));
  CHECK(pool.status(0).present);
  CHECK(pool.ejected_count() == 1);
}

TEST_CASE("R18b: outlier_detector ignores a retired endpoint until it is forgotten",
          "[review14][outlier]") {
  keel::outlier_detection_options o = eject_after(1);
  keel::outlier_detector d(2, o);
  const keel::time_point t{};
  d.retire(0);
  CHECK(d.retired(0));
  d.record(0, true, t);
  CHECK_FALSE(d.ejected(0));
  CHECK(d.ejected_count() == 0);
  d.forget(0);
  CHECK_FALSE(d.retired(0));
  d.record(0, true, t);
  CHECK(d.ejected(0));
  // Retiring an ejected endpoint frees its place under the cap.
  d.retire(0);
  CHECK_FALSE(d.ejected(0));
  CHECK(d.ejected_count() == 0);
}

// ---------------------------------------------------------------------------
// Second review, F8: replace() never waits for a round of slow probes, and an
// endpoint built into a reused slot starts its checks' counts over.
// ---------------------------------------------------------------------------
TEST_CASE("R19: replace() does not wait for a slow probe; a reused slot's checks start over",
          "[review14][pool][health][replace]") {
  env_t env;
  std::atomic<bool> block{false}, in_probe{false}, release{false};
  std::atomic<int> c_probes{0};
  auto pool = keel::endpoint_pool(strings{"a", "b"}, {.capacity = 2}, keel::no_layers(),
                                  keel::no_listener(), env)
                  .with_health_check(
                      [&](const std::string& e) {
                        if (e == "a" && block.load()) {
                          in_probe.store(true);
                          while (!release.load()) std::this_thread::yield();
                        }
                        if (e == "c") ++c_probes;
                        return e == "a";
                      },
                      {.interval = 10s, .unhealthy_threshold = 2, .no_traffic_interval = 10s});
  const keel::time_point t0 = env.now();
  CHECK(pool.run_health_checks(t0) == 2);  // b fails once of the two it needs
  CHECK_FALSE(pool.status(1).check_failed);
  block.store(true);
  REQUIRE(pool.next_health_check() == t0 + 10s);
  std::thread checker([&] { pool.run_health_checks(t0 + 10s); });
  while (!in_probe.load()) std::this_thread::yield();
  // With a's probe still running: b leaves (its slot is freed at once), and c
  // comes into that slot. Neither waits for the probe.
  std::atomic<int> replaced{0};
  std::thread replacer([&] {
    replaced += pool.replace(strings{"a"}) ? 1 : 0;
    replaced += pool.replace(strings{"a", "c"}) ? 1 : 0;
  });
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (replaced.load() < 2 && std::chrono::steady_clock::now() < limit) std::this_thread::yield();
  const int done_during_probe = replaced.load();
  release.store(true);
  checker.join();
  replacer.join();
  CHECK(done_during_probe == 2);
  REQUIRE(pool.status(1).present);
  // The round went on to c, due since it was built: its first failure is
  // its own, not b's second.
  CHECK(c_probes.load() == 1);
  CHECK_FALSE(pool.status(1).check_failed);
  CHECK(pool.next_health_check() == t0 + 20s);
  CHECK(pool.run_health_checks(t0 + 20s) == 2);
  CHECK(c_probes.load() == 2);
  CHECK(pool.status(1).check_failed);
}

// SPDX-License-Identifier: BSL-1.0
#include <chrono>
#include <set>
#include <stop_token>
#include <thread>
#include <vector>

#include <keel/core/environment.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/seeded_random.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;
using keel::duration;
using keel::time_point;

static_assert(keel::environment<keel::default_environment>);
static_assert(keel::environment<keel::testing::virtual_environment>);
static_assert(keel::clock<keel::testing::manual_clock>);
static_assert(keel::sleeper<keel::testing::manual_sleeper>);
static_assert(keel::random_source<keel::testing::seeded_random>);
// The default environment takes no space inside a policy.
static_assert(std::is_empty_v<keel::default_environment>);

TEST_CASE("manual_clock: starts at zero, moves only when advanced, copies share time",
          "[core][testing]") {
  keel::testing::manual_clock clock;
  CHECK(clock.now() == time_point{});
  const auto copy = clock;
  clock.advance(1500ms);
  CHECK(copy.now() == time_point{} + 1500ms);
  CHECK(copy.elapsed() == 1500ms);
  clock.advance(-1s);  // time never runs backwards
  CHECK(clock.elapsed() == 1500ms);
  clock.advance(duration::max());  // saturates
  CHECK(clock.now() == time_point::max());
}

TEST_CASE("manual_clock: concurrent advances are all counted", "[core][testing]") {
  keel::testing::manual_clock clock;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([clock] {
      for (int i = 0; i < 1000; ++i) clock.advance(1ms);
    });
  }
  for (auto& t : threads) t.join();
  CHECK(clock.elapsed() == 4000ms);
}

TEST_CASE("manual_sleeper: advances the clock, records sleeps, wakes on stop", "[core][testing]") {
  keel::testing::manual_clock clock;
  keel::testing::manual_sleeper sleeper(clock);
  std::stop_source source;
  CHECK(sleeper.sleep_for(100ms, source.get_token()));
  CHECK(sleeper.sleep_for(250ms, source.get_token()));
  CHECK(clock.elapsed() == 350ms);
  CHECK(sleeper.sleeps() == std::vector<duration>{100ms, 250ms});

  // The hook runs at the start of a sleep; a stop requested there wakes the
  // sleeper at once, with no time passing.
  sleeper.on_sleep([&](duration) { source.request_stop(); });
  CHECK_FALSE(sleeper.sleep_for(1s, source.get_token()));
  CHECK(clock.elapsed() == 350ms);
  CHECK(sleeper.sleeps().size() == 3);
}

TEST_CASE("seeded_random: same seed, same sequence, always in [0, 1)", "[core][testing]") {
  keel::testing::seeded_random a(7), b(7), c(8);
  std::vector<double> xs, ys, zs;
  for (int i = 0; i < 1000; ++i) {
    xs.push_back(a.uniform());
    ys.push_back(b.uniform());
    zs.push_back(c.uniform());
  }
  CHECK(xs == ys);
  CHECK(xs != zs);
  double sum = 0;
  for (double x : xs) {
    REQUIRE(x >= 0.0);
    REQUIRE(x < 1.0);
    sum += x;
  }
  CHECK(sum / 1000 == Approx(0.5).margin(0.05));
  // Copies share the sequence.
  keel::testing::seeded_random d(7);
  auto e = d;
  CHECK(d.uniform() == xs[0]);
  CHECK(e.uniform() == xs[1]);
}

TEST_CASE("thread_local_random: uniform in [0, 1) and not constant", "[core][environment]") {
  const keel::thread_local_random random;
  std::set<double> seen;
  double sum = 0;
  for (int i = 0; i < 10000; ++i) {
    const double x = random.uniform();
    REQUIRE(x >= 0.0);
    REQUIRE(x < 1.0);
    seen.insert(x);
    sum += x;
  }
  CHECK(seen.size() > 9990);
  CHECK(sum / 10000 == Approx(0.5).margin(0.02));
}

TEST_CASE("thread_sleeper: zero sleeps return at once, a stop wakes it", "[core][environment]") {
  const keel::thread_sleeper sleeper;
  CHECK(sleeper.sleep_for(0ns, {}));
  CHECK(sleeper.sleep_for(-5ms, {}));
  std::stop_source source;
  source.request_stop();
  // Already stopped: returns false without sleeping (an hour would hang the test).
  CHECK_FALSE(sleeper.sleep_for(1h, source.get_token()));

  std::stop_source later;
  std::thread stopper([&] { later.request_stop(); });
  // Woken by the stop from another thread; never waits the full hour.
  const bool slept = sleeper.sleep_for(1h, later.get_token());
  stopper.join();
  CHECK_FALSE(slept);
}

TEST_CASE("virtual_environment: one object is clock, sleeper and random source",
          "[core][testing]") {
  keel::testing::virtual_environment env;
  const auto copy = env;
  CHECK(copy.sleep_for(2s, {}));
  CHECK(env.elapsed() == 2s);
  CHECK(env.now() == time_point{} + 2s);
  CHECK(env.sleeps() == std::vector<duration>{2s});
  env.advance(1s);
  CHECK(copy.elapsed() == 3s);
  const double u = env.uniform();
  CHECK((u >= 0.0 && u < 1.0));
  keel::testing::basic_virtual_environment<keel::testing::fixed_random> fixed(
      keel::testing::fixed_random(0.25));
  CHECK(fixed.uniform() == 0.25);
}

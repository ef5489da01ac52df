// SPDX-License-Identifier: BSL-1.0
// The generation (epoch) a call is admitted in never comes back: a result of
// a call admitted 2^27 transitions ago (the width of the generation in the
// state word) is still late. A test seam moves an idle breaker's generation
// to just before that wrap, as if that many transitions had passed, so that a
// few transitions cross it.
#include <array>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include <keel/circuit_breaker.hpp>

#include "breaker_test_support.hpp"
#include "support/catch.hpp"
#include "support/rng.hpp"

using namespace cb_test;
using keel::circuit_state;

namespace {

using seam = keel::detail::breaker_core_test_access;
constexpr std::uint64_t lap = seam::generations_per_cell;  // 2^27

/// Moves idle breaker `b` to `n` transitions before the wrap of its current cell.
template <class B>
void wrap_in(B& b, std::uint32_t n) {
  seam::set_generation(b.core(), static_cast<std::uint32_t>(lap - n));
}

}  // namespace

TEST_CASE("circuit_breaker: a failure admitted 2^27 transitions ago is late (two-step)",
          "[circuit_breaker][generation]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker(consecutive(1), env, log);
  auto stale = b.try_acquire();
  REQUIRE(stale);
  CHECK(stale.generation() == 0);
  wrap_in(b, 3);  // as if 2^27 - 3 resets had passed
  for (int i = 0; i < 3; ++i) b.reset();
  CHECK(b.try_acquire().generation() == lap);  // 27 bits of it are the stale permit's
  stale.record_failure();
  CHECK(b.state() == circuit_state::closed);
  CHECK(log.count<keel::circuit_opened>() == 0);
  CHECK(b.metrics().failures == 1);  // late failures are counted, never toward the state
  CHECK(b.metrics().window_failures == 0);
  auto fresh = b.try_acquire();
  CHECK(fresh.generation() == lap);
  fresh.record_failure();  // a failure of this generation trips
  CHECK(b.state() == circuit_state::open);
  CHECK(log.count<keel::circuit_opened>() == 1);
  CHECK(b.metrics().failures == 2);
}

TEST_CASE("circuit_breaker: a success admitted 2^27 transitions ago does not end a run",
          "[circuit_breaker][generation]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker(consecutive(3), env, log);
  auto stale = b.try_acquire();
  wrap_in(b, 2);
  b.isolate();
  b.reset();
  CHECK(fail(b).has_error_value());
  CHECK(fail(b).has_error_value());
  stale.record_success();  // late: the run of two stays
  CHECK(b.metrics().window_failures == 2);
  CHECK(fail(b).has_error_value());
  CHECK(b.state() == circuit_state::open);
  CHECK(log.count<keel::circuit_opened>() == 1);
  CHECK(b.metrics().failures == 3);
}

namespace {

void run_call_admitted_before_wrap(int threshold) {
  INFO("threshold " << threshold);
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker(consecutive(threshold), env, log);
  // The call is admitted on the closed path; while it runs, 2^27 transitions pass.
  const auto o = b.try_execute([&] {
    wrap_in(b, 3);
    for (int i = 0; i < 3; ++i) b.reset();
    return bad();
  });
  CHECK(o.has_error_value());
  CHECK(b.state() == circuit_state::closed);
  CHECK(log.count<keel::circuit_opened>() == 0);
  CHECK(b.metrics().failures == 1);
  CHECK(b.metrics().window_failures == 0);  // not in the run of the new generation
  for (int i = 0; i < threshold; ++i) {
    CHECK(b.state() == circuit_state::closed);
    CHECK(fail(b).has_error_value());
  }
  CHECK(b.state() == circuit_state::open);
  CHECK(log.count<keel::circuit_opened>() == 1);
  CHECK(b.metrics().failures == 1 + static_cast<std::uint64_t>(threshold));
}

}  // namespace

TEST_CASE("circuit_breaker: a call run() admitted 2^27 transitions ago fails late",
          "[circuit_breaker][generation]") {
  run_call_admitted_before_wrap(1);  // the failure would trip
  run_call_admitted_before_wrap(3);  // the failure would extend the run
}

TEST_CASE("circuit_breaker: run() in a later cell counts runs there, and its late calls are late",
          "[circuit_breaker][generation]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker(consecutive(3), env, log);
  wrap_in(b, 1);
  b.reset();  // the word moves to the second cell
  CHECK(fail(b).has_error_value());
  CHECK(fail(b).has_error_value());
  CHECK(b.metrics().window_failures == 2);
  CHECK(succeed(b).has_value());  // ends the run
  CHECK(b.metrics().window_failures == 0);
  CHECK(b.metrics().failures == 2);
  // Admitted in the second cell; while it runs, the word moves to a third.
  const auto o = b.try_execute([&] {
    wrap_in(b, 1);
    b.reset();
    return bad();
  });
  CHECK(o.has_error_value());
  CHECK(b.metrics().window_failures == 0);
  CHECK(b.metrics().failures == 3);
  CHECK(b.try_acquire().generation() == 2 * lap);
  for (int i = 0; i < 3; ++i) CHECK(fail(b).has_error_value());
  CHECK(b.state() == circuit_state::open);
  CHECK(fail(b).is(keel::errc::circuit_open));
  CHECK(log.count<keel::circuit_opened>() == 1);
  CHECK(b.metrics().failures == 6);
  CHECK(b.metrics().rejections == 1);
}

TEST_CASE("breaker_state_machine: a result recorded 2^27 transitions after admission is late",
          "[circuit_breaker][generation]") {
  keel::breaker_state_machine core({.trip = keel::consecutive_failures{.threshold = 1}});
  const keel::time_point t{};
  keel::circuit_admission a = core.try_acquire(t);
  REQUIRE(a.admitted);
  seam::set_generation(core, static_cast<std::uint32_t>(lap - 3));
  for (int i = 0; i < 3; ++i) CHECK(core.reset(t).has_value());
  CHECK(!core.record(a, keel::call_result::failure, t).has_value());
  CHECK(core.state() == circuit_state::closed);
  keel::circuit_admission fresh = core.try_acquire(t);
  CHECK(fresh.generation == lap);
  const auto opened = core.record(fresh, keel::call_result::failure, t);
  REQUIRE(opened.has_value());
  CHECK(opened->to == circuit_state::open);
}

namespace {

// Every kind of transition, with the wrap at transition `k`: the generations
// go on by one, late results and releases stay late, probes stay exact, the
// events are the same.
void every_transition_with_the_wrap_at(std::uint32_t k) {
  INFO("the wrap is transition " << k);
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker({.trip = keel::consecutive_failures{.threshold = 1},
                         .open_duration = 10s,
                         .permitted_probes = 2,
                         .success_threshold = 2,
                         .max_wait_in_half_open = 5s},
                        env, log);
  wrap_in(b, k);
  const std::uint64_t g = lap - k;
  auto stale = b.try_acquire();
  CHECK(stale.generation() == g);
  auto first = b.try_acquire();
  first.record_failure();  // 1: trip
  CHECK(b.state() == circuit_state::open);
  env.advance(10s);
  auto p1 = b.try_acquire();  // 2: open -> half-open
  auto p2 = b.try_acquire();
  CHECK((p1.is_probe() && p2.is_probe()));
  CHECK(p1.generation() == g + 2);
  CHECK(p2.generation() == g + 2);
  CHECK(!b.try_acquire());
  env.advance(5s);
  auto p4 = b.try_acquire();  // 3: a new round: p1 and p2 are late
  CHECK(p4.generation() == g + 3);
  p1.record_failure();
  p2.release();  // frees no slot of the new round
  CHECK(b.state() == circuit_state::half_open);
  auto p5 = b.try_acquire();
  CHECK(p5.generation() == g + 3);
  CHECK(!b.try_acquire());
  p4.record_failure();  // 4: half-open -> open
  CHECK(b.state() == circuit_state::open);
  p5.record_success();  // late
  env.advance(10s);
  auto q1 = b.try_acquire();  // 5: open -> half-open
  auto q2 = b.try_acquire();
  CHECK(q2.generation() == g + 5);
  q1.record_success();
  q2.record_success();  // 6: half-open -> closed
  CHECK(b.state() == circuit_state::closed);
  b.isolate();             // 7
  b.disable();             // 8
  b.reset();               // 9
  stale.record_failure();  // late: does not trip
  CHECK(b.state() == circuit_state::closed);
  auto last = b.try_acquire();
  CHECK(last.generation() == g + 9);
  last.record_failure();  // 10: trip
  CHECK(b.state() == circuit_state::open);
  CHECK(b.core().try_acquire(keel::time_point(env.elapsed())).generation == g + 10);

  CHECK(log.count<keel::circuit_opened>() == 3);
  CHECK(log.count<keel::circuit_half_opened>() == 3);
  CHECK(log.count<keel::circuit_closed>() == 2);
  CHECK(log.count<keel::circuit_state_changed>() == 9);  // the new round changes no state
  const keel::circuit_metrics m = b.metrics();
  CHECK(m.failures == 5);  // first, p1 (late), p4, stale (late), last
  CHECK(m.rejections == 3);
}

}  // namespace

TEST_CASE("circuit_breaker: every transition across the wrap of the generation",
          "[circuit_breaker][generation]") {
  for (std::uint32_t k = 1; k <= 10; ++k) every_transition_with_the_wrap_at(k);
}

TEST_CASE("circuit_breaker: the first cell keeps the breaker on one cache line",
          "[circuit_breaker][size]") {
  CHECK(sizeof(keel::breaker_state_machine) == 64);
  CHECK(alignof(keel::breaker_state_machine) == 64);
}

namespace {

// Threads call through a breaker that flaps (virtual time), half of them with
// permits, half with try_execute, in phases; before each phase the breaker is
// moved to just before a wrap, so that every phase crosses one under
// contention. Checked: never more probes of one round (one generation) in
// flight than permitted, and the counters.
struct wrap_tally {
  std::atomic<std::uint64_t> failures{0}, rejections{0};
  std::atomic<int> violations{0};
  std::array<std::atomic<int>, 4096> probes_in_flight{};  // per generation (mod 4096)
};

template <class B>
void flap(const B& b, const keel::testing::virtual_environment& env, wrap_tally& t, int seed,
          int iterations, int permitted) {
  keel_test::rng rng{static_cast<std::uint64_t>(seed)};
  for (int i = 0; i < iterations; ++i) {
    env.advance(100us);
    if (i % 64 == 0) std::this_thread::yield();
    auto permit = b.try_acquire();
    if (!permit) {
      t.rejections.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    std::atomic<int>* slot = nullptr;
    if (permit.is_probe()) {
      slot = &t.probes_in_flight[permit.generation() % 4096];
      if (slot->fetch_add(1) + 1 > permitted) t.violations.fetch_add(1);
    }
    env.advance(1ms);
    const bool healthy = (env.elapsed() / 20ms) % 2 == 0;
    if (slot != nullptr) slot->fetch_sub(1);
    if (rng.next() % 16 == 0) {
      permit.release();
    } else if (healthy) {
      permit.record_success();
    } else {
      t.failures.fetch_add(1, std::memory_order_relaxed);
      permit.record_failure();
    }
  }
}

// The same through try_execute (run()): no probe count, the outcomes only.
template <class B>
void flap_run(const B& b, const keel::testing::virtual_environment& env, wrap_tally& t,
              int iterations) {
  for (int i = 0; i < iterations; ++i) {
    env.advance(100us);
    if (i % 64 == 0) std::this_thread::yield();
    bool failed = false;
    const auto o = b.try_execute([&] {
      env.advance(1ms);
      failed = (env.elapsed() / 20ms) % 2 != 0;
      if (failed) t.failures.fetch_add(1, std::memory_order_relaxed);
      return failed ? bad() : good();
    });
    if (o.has_keel_error()) t.rejections.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace

TEST_CASE("circuit_breaker: stress, threads across wraps of the generation",
          "[circuit_breaker][generation][stress]") {
  keel::testing::virtual_environment env;
  event_log log;
  auto b = make_breaker({.trip = keel::consecutive_failures{.threshold = 3},
                         .open_duration = 5ms,
                         .permitted_probes = 2,
                         .success_threshold = 2,
                         .max_wait_in_half_open = 10ms},
                        env, log);
  constexpr int phases = 4;
  constexpr int threads = 4;
  constexpr int iterations = 3000;
  wrap_tally t;
  for (int phase = 0; phase < phases; ++phase) {
    wrap_in(b, 2);
    std::vector<std::thread> pool;
    for (int i = 0; i < threads; ++i) {
      pool.emplace_back([&, i] {
        if (i % 2 == 0) {
          flap(b, env, t, phase * threads + i, iterations, 2);
        } else {
          flap_run(b, env, t, iterations);
        }
      });
    }
    for (auto& th : pool) th.join();
  }
  CHECK(t.violations.load() == 0);
  const keel::circuit_metrics m = b.metrics();
  CHECK(m.failures == t.failures.load());
  CHECK(m.rejections == t.rejections.load());
  CHECK(log.count<keel::circuit_opened>() > 0);
  CHECK(log.count<keel::circuit_closed>() > 0);
  CHECK(b.try_acquire().generation() >= phases * lap);  // every phase wrapped
}

// SPDX-License-Identifier: BSL-1.0
// keel::adaptive_limiter: the algorithms step by step, the windows, the
// driver's reading of outcomes, and a simulated server in virtual time.
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <keel/admission/adaptive_limiter.hpp>
#include <keel/keel.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "limiter_sim.hpp"
#include "support/catch.hpp"

using namespace std::chrono_literals;
using keel::limit_sample;
using keel::limiter_result;

namespace {

limit_sample window(keel::duration rtt, std::uint32_t in_flight, std::uint32_t drops = 0) {
  limit_sample s;
  s.rtt = rtt;
  s.min_rtt = rtt;
  s.in_flight = in_flight;
  s.samples = drops > 0 ? 0 : 10;
  s.drops = drops;
  return s;
}

keel::time_point at(keel::duration d) { return keel::time_point(d); }

template <class F>
std::string problem_of(F&& make) {
  try {
    make();
  } catch (const keel::config_error& e) {
    return e.what();
  }
  return "";
}

// An algorithm that always asks for 10 more: shows what the limiter itself allows.
struct greedy_limit {
  double l = 20;
  std::vector<limit_sample>* seen = nullptr;
  double limit() const { return l; }
  double update(const limit_sample& s) {
    if (seen != nullptr) seen->push_back(s);
    l += 10;
    return l;
  }
};

struct response {
  int status = 200;
};

}  // namespace

TEST_CASE("adaptive_limiter: options are checked and name the field", "[adaptive_limiter]") {
  CHECK(problem_of([] {
          keel::aimd_limit({.min_limit = 0});
        }).find("aimd_limit_options.min_limit") != std::string::npos);
  CHECK(problem_of([] {
          keel::aimd_limit({.backoff_ratio = 1.0});
        }).find("aimd_limit_options.backoff_ratio") != std::string::npos);
  CHECK(problem_of([] {
          keel::aimd_limit({.initial_limit = 300});
        }).find("aimd_limit_options.initial_limit") != std::string::npos);
  CHECK(problem_of([] {
          keel::gradient2_limit({.smoothing = 0.0});
        }).find("gradient2_limit_options.smoothing") != std::string::npos);
  CHECK(problem_of([] {
          keel::gradient2_limit({.baseline_guard = {.cap = 0.5}});
        }).find("gradient2_limit_options.baseline_guard.cap") != std::string::npos);
  CHECK(problem_of([] {
          keel::vegas_limit({.max_limit = (1U << 24) + 1});
        }).find("vegas_limit_options.max_limit") != std::string::npos);
  CHECK(problem_of([] {
          keel::vegas_limit({.baseline_guard = {.cap = 2, .memory = 0}});
        }).find("vegas_limit_options.baseline_guard.memory") != std::string::npos);
  CHECK(problem_of([] {
          keel::adaptive_limiter_core<> c(keel::aimd_limit(), {.min_window = 2s, .max_window = 1s});
        }).find("adaptive_limiter_options.max_window") != std::string::npos);
  CHECK(problem_of([] {
          keel::adaptive_limiter<> l(keel::aimd_limit(), {.min_window_samples = 0});
        }).find("adaptive_limiter_options.min_window_samples") != std::string::npos);
  static_assert(!keel::adaptive_limiter_options{}.validate());
  static_assert(!keel::aimd_limit_options{}.validate());
  static_assert(!keel::gradient2_limit_options{}.validate());
  static_assert(!keel::vegas_limit_options{}.validate());
}

TEST_CASE("aimd_limit: +1 when half used, floor(L * 0.9) on a drop or a slow window",
          "[adaptive_limiter]") {
  keel::aimd_limit a({.initial_limit = 40, .min_limit = 20, .max_limit = 42});
  CHECK(a.update(window(10ms, 19)) == 40);  // 19 * 2 < 40: no growth
  CHECK(a.update(window(10ms, 20)) == 41);
  CHECK(a.update(window(10ms, 41)) == 42);
  CHECK(a.update(window(10ms, 42)) == 42);     // max
  CHECK(a.update(window(10ms, 42, 1)) == 37);  // floor(42 * 0.9)
  CHECK(a.update(window(6s, 37)) == 33);       // a window slower than the 5 s timeout: a drop
  for (int i = 0; i < 10; ++i) a.update(window(0ms, 0, 3));
  CHECK(a.limit() == 20);  // min
}

TEST_CASE("gradient2_limit: Netflix's arithmetic, and drops count (Netflix #137, #176)",
          "[adaptive_limiter]") {
  keel::gradient2_limit g({.initial_limit = 50, .min_limit = 1, .max_limit = 200});
  // First window: long = short = 100 ms; gradient min(1, 1.5) = 1; new = 50 + 4;
  // smoothed 50 * 0.8 + 54 * 0.2 = 50.8.
  CHECK(g.update(window(100ms, 50)) == Approx(50.8));
  CHECK(g.long_rtt() == 100ms);
  // App-limited (25 < 50.8 / 2 is false, 20 is): held.
  CHECK(g.update(window(100ms, 20)) == Approx(50.8));
  // Short RTT 300 ms: long = (100 + 100 + 300) / 3 = 166.67 ms (warm-up mean),
  // gradient = clamp(1.5 * 166.67 / 300, .5, 1) = 0.8333; new = 50.8 * 0.8333 + 4
  // = 46.333; smoothed 50.8 * 0.8 + 46.333 * 0.2 = 49.907.
  CHECK(g.update(window(300ms, 50)) == Approx(49.9067).epsilon(1e-4));
  // A drop: gradient 0.5 even though only 10 of ~50 were in flight.
  const double before = g.limit();
  CHECK(g.update(window(100ms, 10, 2)) == Approx(before * 0.8 + (before * 0.5 + 4) * 0.2));
  // Steady timeouts: drops every window bring it to its floor instead of the max.
  for (int i = 0; i < 200; ++i) g.update(window(0ms, 50, 5));
  CHECK(g.limit() == Approx(8.0).margin(0.01));  // the fixed point of L = 0.9 L + 0.8
}

TEST_CASE("vegas_limit: queue estimate steps, and a drop is seen before a new lowest RTT",
          "[adaptive_limiter]") {
  keel::vegas_limit v({.initial_limit = 20});
  CHECK(v.update(window(100ms, 20)) == 20);  // first RTT: the no-load RTT, no change
  CHECK(v.no_load_rtt() == 100ms);
  CHECK(v.update(window(100ms, 20)) == 26);  // queue 0 <= lg 1: + 6 lg
  // queue = ceil(26 * (1 - 100 / 110)) = 3 = 3 lg: not < alpha, not > beta: held
  CHECK(v.update(window(110ms, 26)) == 26);
  // queue = ceil(26 * (1 - 100/200)) = 13 > 6: - lg
  CHECK(v.update(window(200ms, 26)) == 25);
  CHECK(v.update(window(100ms, 5)) == 25);  // app-limited: held
  // A drop with an RTT lower than the no-load RTT: Netflix's returns early on the
  // new lowest RTT and loses the drop; here the drop lowers the limit.
  limit_sample s = window(50ms, 25);
  s.drops = 1;
  CHECK(v.update(s) == 24);
  CHECK(v.no_load_rtt() == 100ms);
}

TEST_CASE("baseline guard: a long incident cannot raise the baseline past cap x the floor",
          "[adaptive_limiter]") {
  keel::gradient2_limit plain({.min_limit = 1, .long_window = 20, .warmup_windows = 1});
  keel::gradient2_limit guarded(
      {.min_limit = 1, .long_window = 20, .warmup_windows = 1, .baseline_guard = {.cap = 2.0}});
  for (auto* g : {&plain, &guarded}) g->update(window(10ms, 20));
  for (int i = 0; i < 500; ++i) {  // an incident: 100 ms for 500 windows
    for (auto* g : {&plain, &guarded}) g->update(window(100ms, 20));
  }
  CHECK(plain.long_rtt() > 95ms);     // the incident became the normal (failsafe-go #127)
  CHECK(guarded.long_rtt() == 20ms);  // 2 x the 10 ms floor
  // Once the memory (600 windows by default) has passed, the floor follows.
  for (int i = 0; i < 1300; ++i) guarded.update(window(100ms, 20));
  CHECK(guarded.long_rtt() > 95ms);

  keel::vegas_limit v({.probe_multiplier = 1, .baseline_guard = {.cap = 1.5}});
  v.update(window(10ms, 20));
  for (int i = 0; i < 100; ++i) v.update(window(100ms, 20));
  CHECK(v.no_load_rtt() == 15ms);  // re-probes during the incident stop at 1.5 x 10 ms
}

TEST_CASE("adaptive_limiter_core: admits while in flight < limit, refuses at it",
          "[adaptive_limiter]") {
  keel::adaptive_limiter_core<keel::aimd_limit> core(
      keel::aimd_limit({.initial_limit = 2, .min_limit = 1}));
  const auto a = core.try_acquire(at(1s));
  const auto b = core.try_acquire(at(1s));
  const auto c = core.try_acquire(at(1s));
  CHECK(a.admitted);
  CHECK(b.admitted);
  CHECK(b.in_flight == 2);
  CHECK_FALSE(c.admitted);
  CHECK(c.in_flight == 2);
  CHECK(c.limit == 2);
  CHECK(core.in_flight() == 2);
  core.forget(a);
  core.forget(c);  // a refusal holds nothing
  CHECK(core.in_flight() == 1);
  core.finish(b, limiter_result::ignored, at(2s));
  CHECK(core.in_flight() == 0);
}

TEST_CASE(
    "adaptive_limiter_core: a window closes after 1 s and 10 samples; a drop closes it "
    "sooner and is never lost",
    "[adaptive_limiter]") {
  std::vector<limit_sample> seen;
  keel::adaptive_limiter_core<greedy_limit> core(greedy_limit{20, &seen});
  auto call = [&](keel::duration start, keel::duration rtt, limiter_result r) {
    const auto a = core.try_acquire(at(start));
    REQUIRE(a.admitted);
    return core.finish(a, r, at(start + rtt), [] { return 0.25; });
  };
  // The first window closes at its 10th sample (no time bound yet).
  for (int i = 0; i < 9; ++i) CHECK_FALSE(call(1s, 10ms, limiter_result::measured));
  // It asked for 30, but in flight 1 of 20 is under half: the limit may not
  // rise, so the window changed nothing.
  CHECK_FALSE(call(1s, 30ms, limiter_result::measured));
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].samples == 10);
  CHECK(seen[0].rtt == 12ms);
  CHECK(seen[0].min_rtt == 10ms);
  CHECK(seen[0].in_flight == 1);
  CHECK(seen[0].draw == 0.25);
  CHECK(core.limit() == 20);
  // The next window ends 1 s later (clamp(2 * 12 ms, 1 s, 1 s)).
  for (int i = 0; i < 20; ++i) CHECK_FALSE(call(1010ms, 10ms, limiter_result::measured));
  // A lone drop after the window's end closes it at once, short of samples or not.
  CHECK(call(2020ms, 10ms, limiter_result::dropped));
  REQUIRE(seen.size() == 2);
  CHECK(seen[1].samples == 20);
  CHECK(seen[1].drops == 1);
  // A window short of samples and with no drop stays open past its end.
  for (int i = 0; i < 5; ++i) CHECK_FALSE(call(4s, 10ms, limiter_result::measured));
  CHECK(seen.size() == 2);
  // Calls under 100 us are not samples; ignored ones neither.
  for (int i = 0; i < 50; ++i) CHECK_FALSE(call(5s, 50us, limiter_result::measured));
  for (int i = 0; i < 50; ++i) CHECK_FALSE(call(5s, 10ms, limiter_result::ignored));
  CHECK(seen.size() == 2);
  CHECK(call(5s, 10ms, limiter_result::dropped));
  CHECK(seen[2].samples == 5);
  CHECK(seen[2].drops == 1);
  CHECK(core.in_flight() == 0);
}

TEST_CASE("adaptive_limiter_core: the limit grows only when a window used half of it",
          "[adaptive_limiter]") {
  keel::adaptive_limiter_core<greedy_limit> core(greedy_limit{20, nullptr});
  auto window_with = [&](std::size_t others, keel::duration t) {
    std::vector<keel::limiter_admission> held;
    for (std::size_t i = 0; i < others; ++i) held.push_back(core.try_acquire(at(t)));
    for (int i = 0; i < 10; ++i) {
      const auto a = core.try_acquire(at(t));
      core.finish(a, limiter_result::measured, at(t + 10ms));
    }
    for (auto& a : held) core.forget(a);
  };
  window_with(8, 1s);  // at most 9 in flight: 18 < 20
  CHECK(core.limit() == 20);
  window_with(9, 3s);         // 10 in flight: 20 >= 20; what the algorithm asks (its own
  CHECK(core.limit() == 40);  // state went on to 40) is published
}

TEST_CASE("adaptive_limiter_core: a clock that goes back, and durations near the maximum",
          "[adaptive_limiter]") {
  std::vector<limit_sample> seen;
  keel::adaptive_limiter_core<greedy_limit> core(
      greedy_limit{20, &seen},
      {.min_window = keel::duration::max(), .max_window = keel::duration::max()});
  for (int i = 0; i < 10; ++i) {
    const auto a = core.try_acquire(at(10s));
    CHECK_FALSE(core.finish(a, limiter_result::measured, at(9s)));  // back in time: no sample
  }
  CHECK(seen.empty());
  for (int i = 0; i < 10; ++i) {
    const auto a = core.try_acquire(at(10s));
    core.finish(a, limiter_result::measured, at(10s + 5ms));
  }
  CHECK(seen.size() == 1);
  // The next window never ends (duration::max() saturates): no overflow into the past.
  for (int i = 0; i < 100; ++i) {
    const auto a = core.try_acquire(at(keel::duration::max() - 1h));
    core.finish(a, limiter_result::dropped, at(keel::duration::max() - 1h + 5ms));
  }
  CHECK(seen.size() == 1);
  CHECK(core.in_flight() == 0);
}

TEST_CASE(
    "adaptive_limiter: reads timeouts and overload answers as drops, ignores "
    "cancellations and inner rejections",
    "[adaptive_limiter]") {
  keel::testing::virtual_environment env;
  const auto limiter = keel::adaptive_limiter<greedy_limit>(greedy_limit{})
                           .drop_on(keel::on::result([](const response& r) {
                             return r.status == 503 || r.status == 429;
                           }))
                           .with_environment(env);
  const keel::outcome<response> ok = response{200};
  const keel::outcome<response> busy = response{503};
  const keel::outcome<response> timed_out = keel::outcome<response>::from_keel(keel::errc::timeout);
  const keel::outcome<response> cancelled =
      keel::outcome<response>::from_keel(keel::errc::cancelled);
  const keel::outcome<response> open = keel::outcome<response>::from_keel(keel::errc::circuit_open);
  const keel::outcome<response> thrown =
      keel::outcome<response>::from_exception(std::make_exception_ptr(std::runtime_error("x")));
  const keel::outcome<response> system_timeout = keel::outcome<response>::from_exception(
      std::make_exception_ptr(std::system_error(std::make_error_code(std::errc::timed_out))));
  CHECK(limiter.classify(ok) == limiter_result::measured);
  CHECK(limiter.classify(busy) == limiter_result::dropped);
  CHECK(limiter.classify(timed_out) == limiter_result::dropped);
  CHECK(limiter.classify(cancelled) == limiter_result::ignored);
  CHECK(limiter.classify(open) == limiter_result::ignored);
  CHECK(limiter.classify(thrown) == limiter_result::measured);
  // A predicate that throws answers "matches": a drop.
  const auto hostile = limiter.drop_on(
      [](const keel::outcome<response>&) -> bool { throw std::runtime_error("predicate"); });
  CHECK(hostile.classify(ok) == limiter_result::dropped);
  (void)system_timeout;
}

TEST_CASE(
    "adaptive_limiter: run() admits, refuses with bulkhead_full, reports, and reads the "
    "clock twice",
    "[adaptive_limiter]") {
  keel::testing::virtual_environment env;
  keel::counters counters;
  keel::testing::recording_listener<keel::limiter_rejected, keel::limit_changed> log;
  const auto limiter =
      keel::adaptive_limiter(keel::aimd_limit({.initial_limit = 1, .min_limit = 1}))
          .with_environment(env)
          .with_listener(log)
          .with_counters(counters)
          .named("db");
  keel::outcome<int> inner = 0;
  auto o = limiter.try_execute([&] {
    inner = limiter.try_execute([] { return 1; });
    env.advance(10ms);
    return 2;
  });
  CHECK(o.value() == 2);
  CHECK(inner.is(keel::errc::bulkhead_full));
  CHECK(keel::is_rejection(inner));
  REQUIRE(log.count<keel::limiter_rejected>() == 1);
  CHECK(log.all<keel::limiter_rejected>()[0].limit == 1);
  CHECK(log.all<keel::limiter_rejected>()[0].in_flight == 1);
  CHECK(log.all<keel::limiter_rejected>()[0].source.policy == "db");
  CHECK(counters.count<keel::limiter_rejected>() == 1);
  // Nine more: the first window closes with 10 samples, 1 in flight of 1: + 1.
  for (int i = 0; i < 9; ++i) {
    CHECK(limiter
              .try_execute([&] {
                env.advance(10ms);
                return 3;
              })
              .value() == 3);
  }
  CHECK(limiter.limit() == 2);
  REQUIRE(log.count<keel::limit_changed>() == 1);
  CHECK(log.all<keel::limit_changed>()[0].from == 1);
  CHECK(log.all<keel::limit_changed>()[0].to == 2);
  CHECK(log.all<keel::limit_changed>()[0].window.rtt == 10ms);
  CHECK(counters.count<keel::limit_changed>() == 1);
  CHECK(limiter.in_flight() == 0);
  // Copies share the state.
  const auto copy = limiter;
  CHECK(&copy.core() == &limiter.core());
}

TEST_CASE("adaptive_limiter: in a pipeline, a breaker outside never counts its rejections",
          "[adaptive_limiter]") {
  keel::circuit_breaker breaker{{.trip = keel::consecutive_failures{.threshold = 2}}};
  const keel::adaptive_limiter limiter(keel::aimd_limit({.initial_limit = 1, .min_limit = 1}));
  const auto held = limiter.core().try_acquire(at(0s));
  const auto guarded = keel::pipeline(std::ref(breaker), limiter);
  for (int i = 0; i < 5; ++i)
    CHECK(guarded.try_execute([] { return 1; }).is(keel::errc::bulkhead_full));
  CHECK(breaker.state() == keel::circuit_state::closed);
  limiter.core().forget(held);
  // And a breaker inside: its open-circuit rejections are not drops.
  keel::circuit_breaker inner{{}};
  inner.isolate();
  const auto outer = keel::pipeline(limiter, std::ref(inner));
  for (int i = 0; i < 50; ++i)
    CHECK(outer.try_execute([] { return 1; }).is(keel::errc::circuit_isolated));
  CHECK(limiter.limit() == 1);
  CHECK(limiter.in_flight() == 0);
}

namespace {

template <class Algorithm>
void simulate(Algorithm algorithm, std::uint64_t seed, std::int64_t jitter_ns = 10'000'000) {
  sim::limiter_sim<Algorithm> s(std::move(algorithm), 100, 200, seed, jitter_ns);
  s.run_for(200);
  CHECK(s.mean_limit(30) == Approx(100).epsilon(0.10));
  s.set_capacity(50);  // halves
  s.run_for(120);
  CHECK(s.mean_limit(30) == Approx(50).epsilon(0.10));
  s.set_capacity(100);  // doubles
  s.run_for(150);
  CHECK(s.mean_limit(30) == Approx(100).epsilon(0.10));
  // A storm of cancellations: no window closes on them, the limit stays.
  s.set_mode(sim::mode::cancel);
  s.run_for(10);
  CHECK(s.cancelled() > 50000);
  CHECK(s.limit() == s.limit_at_last_sample());
  s.set_mode(sim::mode::serve);
  s.run_for(30);
  // Steady timeouts: the limit falls (Netflix's Gradient2 grew to its max, #137).
  const std::uint32_t before = s.limit();
  s.set_mode(sim::mode::time_out);
  s.run_for(90);
  CHECK(s.limit() <= before / 2);
  CHECK(s.bounded());
  CHECK(s.core().in_flight() > 0);
}

}  // namespace

TEST_CASE("adaptive_limiter, simulated server: AIMD converges to C and follows it",
          "[adaptive_limiter][simulation]") {
  simulate(keel::aimd_limit{}, 7);
  simulate(keel::aimd_limit{}, 8);
}

TEST_CASE("adaptive_limiter, simulated server: Gradient2 converges to C and follows it",
          "[adaptive_limiter][simulation]") {
  simulate(keel::gradient2_limit{}, 7);
  simulate(keel::gradient2_limit{}, 8);
}

TEST_CASE("adaptive_limiter, simulated server: Vegas converges to C and follows it",
          "[adaptive_limiter][simulation]") {
  // Vegas reads queueing from RTT / no-load RTT: with its default alpha of
  // 3 lg(L), RTT noise above about 3 % at L = 100 looks like a queue and
  // stops its growth (see docs/adaptive_limiter.md), so this server is steadier.
  simulate(keel::vegas_limit{}, 7, 2'000'000);
  simulate(keel::vegas_limit{}, 8, 2'000'000);
}

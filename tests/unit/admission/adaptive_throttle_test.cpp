// SPDX-License-Identifier: BSL-1.0
// keel::adaptive_throttle: exact counts in small hand cases, the driver's
// reading of outcomes, and a backend of capacity C under a load L > C.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>

#include <keel/admission/adaptive_throttle.hpp>
#include <keel/keel.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/seeded_random.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"
#include "support/expected.hpp"

using namespace std::chrono_literals;
using keel::throttle_result;

namespace {

keel::time_point at(keel::duration d) { return keel::time_point(d); }

// Counts its draws; returns `value`.
struct counting_random {
  std::shared_ptr<std::atomic<int>> draws = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<std::atomic<double>> value = std::make_shared<std::atomic<double>>(0.5);
  double uniform() const noexcept {
    draws->fetch_add(1);
    return value->load();
  }
};

template <class F>
std::string problem_of(F&& make) {
  try {
    make();
  } catch (const keel::config_error& e) {
    return e.what();
  }
  return "";
}

using coded = keel_test::expected<int, std::error_code>;

struct response {
  int status = 200;
};

}  // namespace

TEST_CASE("adaptive_throttle: options are checked and name the field", "[adaptive_throttle]") {
  CHECK(problem_of([] {
          keel::adaptive_throttle_core c({.k = 0.5});
        }).find("adaptive_throttle_options.k") != std::string::npos);
  CHECK(problem_of([] {
          keel::adaptive_throttle_core c({.buckets = 0});
        }).find("adaptive_throttle_options.buckets") != std::string::npos);
  CHECK(problem_of([] {
          keel::adaptive_throttle_core c({.window = 10ns, .buckets = 24});
        }).find("adaptive_throttle_options.window") != std::string::npos);
  CHECK(problem_of([] {
          keel::adaptive_throttle t({.max_rejection = 1.0});
        }).find("adaptive_throttle_options.max_rejection") != std::string::npos);
  static_assert(!keel::adaptive_throttle_options{}.validate());
}

TEST_CASE("adaptive_throttle_core: exact counts and probabilities in a hand case",
          "[adaptive_throttle]") {
  keel::adaptive_throttle_core core;
  std::vector<keel::throttle_admission> calls;
  int draws = 0;
  const auto never = [&] {
    ++draws;
    return 0.0;
  };
  for (int i = 0; i < 10; ++i) calls.push_back(core.try_acquire(at(1s), never));
  CHECK(draws == 0);  // p == 0: no draw
  for (int i = 0; i < 3; ++i)
    core.finish(calls[static_cast<std::size_t>(i)], throttle_result::accepted, at(2s));
  CHECK(core.probability() == 0.0);
  core.finish(calls[3], throttle_result::refused, at(2s));
  // (10 - 2 * 3) / (10 + 1)
  CHECK(core.probability() == Approx(4.0 / 11.0).epsilon(1e-9));
  for (std::size_t i = 4; i < 10; ++i) core.finish(calls[i], throttle_result::refused, at(2s));
  CHECK(core.counts(at(2s)).requests == 10);
  CHECK(core.counts(at(2s)).accepts == 3);
  // A local rejection is a request too: (11 - 6) / 12.
  const auto shed = core.try_acquire(at(3s), 0.1);
  CHECK_FALSE(shed.admitted);
  CHECK(shed.probability == Approx(4.0 / 11.0).epsilon(1e-9));
  CHECK(core.probability() == Approx(5.0 / 12.0).epsilon(1e-9));
  // A draw at or above p goes: (12 - 6) / 13 once it is counted...
  const auto sent = core.try_acquire(at(3s), 0.9);
  CHECK(sent.admitted);
  CHECK(core.counts(at(3s)).requests == 12);
  // ...and a cancellation takes its request back: neither request nor accept.
  core.finish(sent, throttle_result::ignored, at(3s));
  CHECK(core.counts(at(3s)).requests == 11);
  CHECK(core.probability() == Approx(5.0 / 12.0).epsilon(1e-9));
  // An accept while p > 0 lowers it: (12 - 8) / 13.
  const auto ok = core.try_acquire(at(4s), 0.99);
  core.finish(ok, throttle_result::accepted, at(4s));
  CHECK(core.probability() == Approx(4.0 / 13.0).epsilon(1e-9));
  // Finishing a refused admission counts nothing more.
  core.finish(shed, throttle_result::accepted, at(4s));
  CHECK(core.counts(at(4s)).accepts == 4);
}

TEST_CASE("adaptive_throttle_core: the ceiling keeps probes flowing; old buckets age out",
          "[adaptive_throttle]") {
  keel::adaptive_throttle_core core({.max_rejection = 0.5});
  for (int i = 0; i < 100; ++i) {
    const auto a = core.try_acquire(at(1s), 0.99);
    core.finish(a, throttle_result::refused, at(1s));
  }
  CHECK(core.probability() == 0.5);               // (100 - 0) / 101, capped
  CHECK(core.try_acquire(at(1s), 0.5).admitted);  // a draw at the cap goes
  // The window is 120 s in 24 buckets of 5 s: the bucket of 0-5 s counts until
  // the window that ends at 124.999 s leaves it.
  CHECK(core.counts(at(119s)).requests == 101);
  CHECK(core.counts(at(125s)).requests == 0);
  const auto a = core.try_acquire(at(125s), 0.99);
  core.finish(a, throttle_result::accepted, at(125s));
  CHECK(core.probability() == 0.0);  // (1 - 2) / 2 < 0
}

TEST_CASE(
    "adaptive_throttle_core: a late accept or cancellation of an aged-out request "
    "counts nothing",
    "[adaptive_throttle]") {
  keel::adaptive_throttle_core core({.window = 10s, .buckets = 2});
  const auto old = core.try_acquire(at(1s), 0.0);
  const auto cancelled = core.try_acquire(at(1s), 0.0);
  // The same bucket, two rotations later.
  const auto now = core.try_acquire(at(11s), 0.0);
  CHECK(now.bucket == old.bucket);
  core.finish(old, throttle_result::accepted, at(11s));
  core.finish(cancelled, throttle_result::ignored, at(11s));
  CHECK(core.counts(at(11s)).requests == 1);
  CHECK(core.counts(at(11s)).accepts == 0);
}

TEST_CASE("adaptive_throttle_core: counts from a clock far from zero (the buckets start empty)",
          "[adaptive_throttle]") {
  keel::adaptive_throttle_core core;
  const keel::time_point t = at(std::chrono::hours(24 * 365 * 3) + 123ms);  // 3 years of uptime
  for (int i = 0; i < 7; ++i) {
    const auto a = core.try_acquire(t, 0.0);
    core.finish(a, i < 2 ? throttle_result::accepted : throttle_result::refused, t);
  }
  CHECK(core.counts(t).requests == 7);
  CHECK(core.counts(t).accepts == 2);
  CHECK(core.probability() == Approx(3.0 / 8.0).epsilon(1e-9));
}

TEST_CASE("adaptive_throttle_core: epochs wrap at 2^24 buckets; a clock that goes back",
          "[adaptive_throttle]") {
  // 1 ns buckets: the 24-bit epoch wraps every 16.8 ms of time.
  keel::adaptive_throttle_core core({.window = 4ns, .buckets = 4});
  const std::int64_t wrap = std::int64_t{1} << 24;
  for (std::int64_t t = wrap - 2; t < wrap + 2; ++t) {
    const auto a = core.try_acquire(at(keel::duration(t)), 0.0);
    core.finish(a, throttle_result::refused, at(keel::duration(t)));
  }
  CHECK(core.counts(at(keel::duration(wrap + 1))).requests == 4);
  CHECK(core.probability() == Approx(0.8));  // 4 / 5
  // Back in time by 5 ns: the slot holds a newer epoch (wrap - 1), and the
  // request joins it rather than restart it.
  const auto back = core.try_acquire(at(keel::duration(wrap - 5)), 0.99);
  CHECK(back.admitted);
  CHECK(back.epoch == static_cast<std::uint32_t>((wrap - 1) & 0xffffff));
  core.finish(back, throttle_result::accepted, at(keel::duration(wrap - 5)));
  CHECK(core.counts(at(keel::duration(wrap + 1))).requests == 5);
  CHECK(core.counts(at(keel::duration(wrap + 1))).accepts == 1);
  // Negative time counts as the epoch 0.
  keel::adaptive_throttle_core early;
  const auto e = early.try_acquire(at(-5s), 0.0);
  CHECK(e.bucket == 0);
}

TEST_CASE(
    "adaptive_throttle: run() sheds with errc::throttled, draws only when p > 0, "
    "reports, and reads outcomes",
    "[adaptive_throttle]") {
  counting_random random;
  keel::testing::basic_virtual_environment<counting_random> env(random);
  keel::counters counters;
  keel::testing::recording_listener<keel::throttle_rejected> log;
  const auto throttle = keel::adaptive_throttle({.max_rejection = 0.5})
                            .with_environment(env)
                            .with_listener(log)
                            .with_counters(counters)
                            .named("api");
  for (int i = 0; i < 100; ++i) CHECK(throttle.try_execute([] { return 1; }).value() == 1);
  CHECK(*random.draws == 0);  // healthy: no draw
  // Cancellations and inner rejections are neither requests nor accepts.
  for (int i = 0; i < 50; ++i) {
    CHECK(keel::is_cancellation(throttle.try_execute([]() -> coded {
      return keel_test::unexpected(std::make_error_code(std::errc::operation_canceled));
    })));
    CHECK(keel::is_rejection(throttle.try_execute([]() -> coded {
      return keel_test::unexpected(keel::make_error_code(keel::errc::bulkhead_full));
    })));
  }
  CHECK(throttle.core().counts(env.now()).requests == 100);
  CHECK(throttle.core().counts(env.now()).accepts == 100);
  // 300 failures: (400 - 200) / 401 ~ 0.4988.
  for (int i = 0; i < 300; ++i) {
    CHECK_FALSE(throttle.try_execute([]() -> int { throw std::runtime_error("503"); }).has_value());
  }
  CHECK(throttle.probability() == Approx(200.0 / 401.0).epsilon(1e-9));
  // p > 0 once requests > 2 * 100 accepts: from the 102nd failure's admission on.
  CHECK(*random.draws == 199);
  random.value->store(0.1);
  const auto shed = throttle.try_execute([] { return 1; });
  CHECK(shed.is(keel::errc::throttled));
  CHECK(keel::is_rejection(shed));
  CHECK(shed.code() == keel::condition::rejected);
  REQUIRE(log.count<keel::throttle_rejected>() == 1);
  CHECK(log.all<keel::throttle_rejected>()[0].probability == Approx(200.0 / 401.0).epsilon(1e-9));
  CHECK(log.all<keel::throttle_rejected>()[0].source.policy == "api");
  CHECK(counters.count<keel::throttle_rejected>() == 1);
  // Copies share the state.
  const auto copy = throttle;
  CHECK(copy.probability() == throttle.probability());
}

TEST_CASE("adaptive_throttle: refuse_on picks the refusals; other failures are accepts",
          "[adaptive_throttle]") {
  const auto throttle = keel::adaptive_throttle().refuse_on(
      keel::on::result([](const response& r) { return r.status == 503 || r.status == 429; }));
  CHECK(throttle.classify(keel::outcome<response>(response{200})) == throttle_result::accepted);
  CHECK(throttle.classify(keel::outcome<response>(response{404})) == throttle_result::accepted);
  CHECK(throttle.classify(keel::outcome<response>(response{503})) == throttle_result::refused);
  CHECK(throttle.classify(keel::outcome<response>::from_keel(keel::errc::circuit_open)) ==
        throttle_result::ignored);
  // A predicate that throws answers "matches": a refusal.
  const auto hostile = throttle.refuse_on(
      [](const keel::outcome<response>&) -> bool { throw std::runtime_error("predicate"); });
  CHECK(hostile.classify(keel::outcome<response>(response{200})) == throttle_result::refused);
  // A breaker outside never counts the throttle's sheds.
  keel::circuit_breaker breaker{{.trip = keel::consecutive_failures{.threshold = 2}}};
  const auto t =
      keel::adaptive_throttle({.max_rejection = 0.9})
          .with_environment(keel::testing::basic_virtual_environment<keel::testing::fixed_random>(
              keel::testing::fixed_random(0.0)));
  for (int i = 0; i < 10; ++i) (void)t.try_execute([]() -> int { throw std::runtime_error("x"); });
  const auto guarded = keel::pipeline(std::ref(breaker), t);
  for (int i = 0; i < 5; ++i)
    CHECK(guarded.try_execute([] { return 1; }).is(keel::errc::throttled));
  CHECK(breaker.state() == keel::circuit_state::closed);
}

TEST_CASE(
    "adaptive_throttle: a backend of capacity C under load L > C settles at K * C sent, "
    "and recovers within a window",
    "[adaptive_throttle][simulation]") {
  for (const std::uint64_t seed : {1ULL, 2ULL, 3ULL}) {
    keel::adaptive_throttle_core core;
    std::mt19937_64 rng(seed);
    const auto draw = [&] { return static_cast<double>(rng() >> 11) * 0x1.0p-53; };
    // The backend: 20 calls a second (a token bucket, burst 2); the load: 100 a second.
    double tokens = 2;
    double capacity = 20;
    std::int64_t now_ms = 0;
    std::uint64_t sent_in_last = 0;
    auto step = [&](std::int64_t ms, bool count) {
      for (std::int64_t end = now_ms + ms; now_ms < end; now_ms += 10) {
        tokens = std::min(2.0, tokens + capacity / 100.0);
        const auto a = core.try_acquire(at(std::chrono::milliseconds(now_ms)), draw);
        if (!a) continue;
        if (count) ++sent_in_last;
        const bool ok = tokens >= 1.0;
        if (ok) tokens -= 1.0;
        core.finish(a, ok ? throttle_result::accepted : throttle_result::refused,
                    at(std::chrono::milliseconds(now_ms)));
      }
    };
    step(600'000, false);
    step(120'000, true);
    const double sent_per_second = static_cast<double>(sent_in_last) / 120.0;
    CHECK(sent_per_second == Approx(40.0).epsilon(0.10));  // K * C
    // Capacity returns: within one window (and a bucket) nothing is shed.
    capacity = 1e9;
    step(125'000, false);
    CHECK(core.probability() == 0.0);
    sent_in_last = 0;
    step(10'000, true);
    CHECK(sent_in_last == 1000);
  }
}

TEST_CASE("errc::throttled is a rejection with a name and a message", "[adaptive_throttle]") {
  const std::error_code c = keel::make_error_code(keel::errc::throttled);
  CHECK(keel::to_string_view(keel::errc::throttled) == "throttled");
  CHECK(c == keel::condition::rejected);
  CHECK_FALSE(c == keel::condition::circuit_rejected);
  CHECK(c.message() == "throttled: the dependency has been refusing calls");
  CHECK(keel::to_string_view(keel::event_kind::throttle_rejected) == "throttle_rejected");
  CHECK(keel::to_string_view(keel::event_kind::limit_changed) == "limit_changed");
  CHECK(keel::to_string_view(keel::event_kind::limiter_rejected) == "limiter_rejected");
}

// A thread whose stripe hint was moved (a breaker's window moves it after a
// collision) onto a stripe another thread owns counts there once with
// compare-and-swap, then goes back to the stripe it owns.
TEST_CASE("adaptive_throttle: a thread moved off its own stripe goes back to it",
          "[adaptive_throttle]") {
  const std::size_t stripes = keel::detail::stripe_count();
  if (stripes < 2) {
    SUCCEED("one stripe on this machine: nothing to move between");
    return;
  }
  keel::adaptive_throttle_core core(keel::adaptive_throttle_options{});
  const keel::time_point t{std::chrono::seconds(1)};
  const auto count_one = [&] {
    const auto a = core.try_acquire(t, 0.5);
    REQUIRE(a.admitted);
    core.finish(a, keel::throttle_result::accepted, t);
  };
  unsigned& hint = keel::detail::this_thread_stripe();
  const unsigned saved = hint;
  count_one();  // owns the stripe of its hint
  const std::size_t mine = hint & (stripes - 1);
  // Another thread owns the next stripe.
  const std::size_t theirs = (mine + 1) & (stripes - 1);
  std::thread other([&] {
    keel::detail::this_thread_stripe() = 0x100u | static_cast<unsigned>(theirs);
    count_one();
  });
  other.join();
  hint = 0x100u | static_cast<unsigned>(theirs);
  count_one();  // not its stripe: counted with compare-and-swap, then moved back
  CHECK((hint & (stripes - 1)) == mine);
  count_one();
  CHECK((hint & (stripes - 1)) == mine);
  const auto c = core.counts(t);
  CHECK(c.requests == 4);
  CHECK(c.accepts == 4);
  hint = saved;
}

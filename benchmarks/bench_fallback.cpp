// SPDX-License-Identifier: BSL-1.0
// Costs of keel::fallback, keel::last_known_good and keel::timeout, each as a
// ratio to a bare call (and, for the timeout, to one steady_clock read).
#include <chrono>
#include <stdexcept>
#include <system_error>
#include <utility>
#include <variant>

#include <keel/fallback.hpp>
#include <keel/pipeline.hpp>
#include <keel/timeout.hpp>

#include "bench_support.hpp"

using namespace std::chrono_literals;

namespace {

/// A minimal expected-like result, for the value channel.
class result {
 public:
  using unexpected_type = std::error_code;
  result(int v) : state_(v) {}              // NOLINT: implicit like std::expected
  result(std::error_code e) : state_(e) {}  // NOLINT
  bool has_value() const noexcept { return state_.index() == 0; }
  int operator*() const { return std::get<0>(state_); }
  std::error_code error() const { return std::get<1>(state_); }

 private:
  std::variant<int, std::error_code> state_;
};

[[gnu::noinline]] result failing_work(int x) noexcept {
  benchmark::DoNotOptimize(x);
  return result(std::make_error_code(std::errc::io_error));
}

}  // namespace

static void fallback_primary_succeeds(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const auto fb = keel::fallback([](const keel::outcome<int>&) { return -1; }, -2);
  int x = 0;
  for (auto _ : state) {
    x = fb.execute([&] { return keel_bench::work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(fallback_primary_succeeds);

static void fallback_primary_fails_as_value_alternative_value(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const auto fb = keel::fallback(result(7));
  int x = 0;
  for (auto _ : state) {
    auto o = fb.try_execute([&] { return failing_work(x); });
    x += *o.value();
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(fallback_primary_fails_as_value_alternative_value);

static void fallback_primary_throws_alternative_value(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const auto fb = keel::fallback(7);
  int x = 0;
  for (auto _ : state) {
    x += fb.execute([&]() -> int {
      if (keel_bench::work(x) != 0) throw std::runtime_error("down");
      return 0;
    });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(fallback_primary_throws_alternative_value);

static void timeout_success(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  const keel::timeout t{{.timeout = 1s}};
  int x = 0;
  for (auto _ : state) {
    x = t.execute([&] { return keel_bench::work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(timeout_success);

static void timeout_success_with_watchdog(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  keel::watchdog w;
  const auto t = keel::timeout{{.timeout = 1s}}.with_watchdog(w);
  int x = 0;
  for (auto _ : state) {
    x = t.execute([&] { return keel_bench::work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(timeout_success_with_watchdog);

static void last_known_good_record(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  keel::last_known_good<int> cache;
  const auto record = cache.record();
  int x = 0;
  for (auto _ : state) {
    x = record.execute([&] { return keel_bench::work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(last_known_good_record);

static void last_known_good_serve(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  keel::last_known_good<result> cache({.max_age = 1h});
  cache.put({}, result(5));
  const auto fb = keel::fallback(cache.serve());
  int x = 0;
  for (auto _ : state) {
    auto o = fb.try_execute([&] { return failing_work(x); });
    x += *o.value();
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(last_known_good_serve);

static void pipeline_fallback_record_timeout_success(benchmark::State& state) {
  keel_bench::allocation_counter alloc(state);
  keel::last_known_good<int> cache;
  const auto p = keel::pipeline(keel::fallback(cache.serve(), -1), cache.record(),
                                keel::timeout{{.timeout = 1s}});
  int x = 0;
  for (auto _ : state) {
    x = p.execute([&] { return keel_bench::work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(pipeline_fallback_record_timeout_success);

KEEL_BENCHMARK_MAIN()

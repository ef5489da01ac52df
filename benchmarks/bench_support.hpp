// SPDX-License-Identifier: BSL-1.0
// Shared by every benchmark binary (each is one translation unit, so the
// operator new replacement below is defined once per binary).
//
// Every figure is a ratio to a bare call measured in the same run, because
// these machines are noisy: this header registers the two baselines,
// "bare_call" and "steady_clock_now"; end the file with KEEL_BENCHMARK_MAIN(). Allocations per call
// are counted by replacing the global operator new.
#ifndef KEEL_BENCHMARKS_BENCH_SUPPORT_HPP_INCLUDED
#define KEEL_BENCHMARKS_BENCH_SUPPORT_HPP_INCLUDED

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <new>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

namespace keel_bench {

inline std::atomic<long long> allocations{0};

/// The callable every benchmark wraps: out of line, so that the policy's cost
/// is what differs between rows, not the inlining of the work.
[[gnu::noinline]] inline int work(int x) noexcept {
  benchmark::DoNotOptimize(x);
  return x + 1;
}

/// Counts allocations while `state` runs and reports them per iteration.
class allocation_counter {
 public:
  explicit allocation_counter(benchmark::State& state)
      : state_(state), start_(allocations.load(std::memory_order_relaxed)) {}
  ~allocation_counter() {
    const auto n = allocations.load(std::memory_order_relaxed) - start_;
    state_.counters["allocs/call"] =
        benchmark::Counter(static_cast<double>(n), benchmark::Counter::kAvgIterations);
  }
  allocation_counter(const allocation_counter&) = delete;
  allocation_counter& operator=(const allocation_counter&) = delete;

 private:
  benchmark::State& state_;
  long long start_;
};

/// The row every ratio divides by: work() called bare, registered as "bare_call".
inline void bare_call(benchmark::State& state) {
  allocation_counter alloc(state);
  int x = 0;
  for (auto _ : state) {
    x = work(x);
    benchmark::DoNotOptimize(x);
  }
}

/// One steady_clock::now(), registered as "steady_clock_now": the unit of the
/// "x clock read" column (what an open-breaker rejection must approach).
inline void steady_clock_now(benchmark::State& state) {
  allocation_counter alloc(state);
  for (auto _ : state) benchmark::DoNotOptimize(std::chrono::steady_clock::now());
}

// Registered first, so that every binary has both baselines (one TU per binary).
inline benchmark::internal::Benchmark* const bare_call_row =
    benchmark::RegisterBenchmark("bare_call", bare_call);
inline benchmark::internal::Benchmark* const steady_clock_now_row =
    benchmark::RegisterBenchmark("steady_clock_now", steady_clock_now);

/// Prints the usual console table, then each row as a ratio to "bare_call"
/// (and to "steady_clock_now" when the binary has it) from the same run.
class ratio_reporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.run_type == Run::RT_Aggregate && r.aggregate_name != "median") continue;
      std::string name = r.benchmark_name();
      times_.emplace_back(name, r.GetAdjustedRealTime());
    }
    ConsoleReporter::ReportRuns(runs);
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    double bare = 0, now = 0;
    for (const auto& [name, t] : times_) {
      if (name.rfind("bare_call", 0) == 0 && bare == 0) bare = t;
      if (name.rfind("steady_clock_now", 0) == 0 && now == 0) now = t;
    }
    if (bare <= 0) return;
    std::printf("\n%-64s %10s %12s\n", "benchmark", "x bare", "x clock read");
    for (const auto& [name, t] : times_) {
      if (now > 0) {
        std::printf("%-64s %10.2f %12.2f\n", name.c_str(), t / bare, t / now);
      } else {
        std::printf("%-64s %10.2f %12s\n", name.c_str(), t / bare, "-");
      }
    }
  }

 private:
  std::vector<std::pair<std::string, double>> times_;
};

/// Keeps a core busy for `ms` milliseconds, so that the first row (the bare
/// call every ratio divides by) does not run while the CPU is still clocking
/// up: without it, the bare call measured up to 1.5x slower than the rows after it.
inline void warm_up(int ms) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  int x = 0;
  while (std::chrono::steady_clock::now() < end) {
    for (int i = 0; i < 1000; ++i) x = work(x);
  }
  benchmark::DoNotOptimize(x);
}

inline int run_main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  warm_up(300);
  ratio_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}

}  // namespace keel_bench

// GCC 12 at -O2 inlines these into the benchmark registrations and then warns
// that free() releases what operator new returned: true, and intended.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void* operator new(std::size_t n) {
  keel_bench::allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

/// The benchmark binary's main(): runs everything, then prints the ratios.
#define KEEL_BENCHMARK_MAIN() \
  int main(int argc, char** argv) { return keel_bench::run_main(argc, argv); }

#endif  // KEEL_BENCHMARKS_BENCH_SUPPORT_HPP_INCLUDED

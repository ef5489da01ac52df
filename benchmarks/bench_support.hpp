// SPDX-License-Identifier: BSL-1.0
// Shared by every benchmark binary (each is one translation unit, so the
// operator new replacement below is defined once per binary).
//
// Every figure is a ratio to a row measured in the same run, because these
// machines are noisy: this header registers the two baselines, "bare_call" and
// "steady_clock_now"; end the file with KEEL_BENCHMARK_MAIN(). A row named
// hand_written_* is the floor of the rows after it (same thread count): the
// smallest correct code a careful programmer would write instead. Allocations
// per call are counted by replacing the global operator new.
#ifndef KEEL_BENCHMARKS_BENCH_SUPPORT_HPP_INCLUDED
#define KEEL_BENCHMARKS_BENCH_SUPPORT_HPP_INCLUDED

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "workload_support.hpp"

namespace keel_bench {

inline std::atomic<long long> allocations{0};

/// Counts allocations while `state` runs and reports them per iteration. On
/// several threads only thread 0 reports: the count is process-wide, and Google
/// Benchmark sums the threads' counters (it holds every thread at a barrier
/// after the loop, so thread 0 sees them all).
class allocation_counter {
 public:
  explicit allocation_counter(benchmark::State& state)
      : state_(state), start_(allocations.load(std::memory_order_relaxed)) {}
  ~allocation_counter() {
    if (state_.thread_index() != 0) return;
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

/// N, the largest number of threads sharing one breaker or budget: the
/// environment variable KEEL_BENCH_THREADS (benchmarks/run.sh --threads N),
/// else the number of CPUs but at least 4, so that there is contention even
/// on a small machine. Read once.
inline int bench_threads() {
  static const int n = [] {
    if (const char* env = std::getenv("KEEL_BENCH_THREADS")) {
      const long v = std::strtol(env, nullptr, 10);
      if (v >= 1 && v <= 1024) return static_cast<int>(v);
      std::fprintf(stderr, "KEEL_BENCH_THREADS=%s ignored: not within [1, 1024]\n", env);
    }
    return std::max(4, static_cast<int>(std::thread::hardware_concurrency()));
  }();
  return n;
}

/// For ->Apply(): runs the row on 1, 2 and N threads (each count once), or on
/// 2 and N only. The threads share what the row's function keeps in statics:
/// one breaker, one budget.
inline void on_2_n_threads(benchmark::internal::Benchmark* b) {
  const int n = bench_threads();
  if (n >= 2) b->Threads(2);
  if (n > 2) b->Threads(n);
}
inline void on_1_2_n_threads(benchmark::internal::Benchmark* b) {
  b->Threads(1);
  on_2_n_threads(b);
}

/// The thread count in a row's name ("name/threads:4"); 1 without one.
inline int threads_of(const std::string& name) {
  constexpr std::string_view tag = "/threads:";
  const auto at = name.find(tag);
  return at == std::string::npos ? 1 : std::atoi(name.c_str() + at + tag.size());
}

/// Prints the usual console table, then each row as a ratio to "bare_call",
/// to "steady_clock_now" and to its floor (the nearest hand_written_* row
/// above it with the same thread count), all from the same run.
class ratio_reporter : public benchmark::ConsoleReporter {
 public:
  /// What one call costs the thread that makes it: its CPU time per call.
  /// Not the real time: on k threads Google Benchmark divides the wall time by
  /// all threads' calls (a throughput, k times too small), and on a machine
  /// shared with others wall time also counts the time other processes ran.
  /// (benchmarks/run.sh reads the same figure.)
  static double per_call(const Run& r) { return r.GetAdjustedCPUTime(); }

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.run_type == Run::RT_Aggregate && r.aggregate_name != "median") continue;
      times_.emplace_back(r.benchmark_name(), per_call(r));
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
    std::printf("\n%-64s %10s %12s %10s\n", "benchmark", "x bare", "x clock read", "x floor");
    std::map<int, double> floors;  // thread count -> the latest hand-written row
    for (const auto& [name, t] : times_) {
      const int threads = threads_of(name);
      if (name.rfind("hand_written", 0) == 0) floors[threads] = t;
      const auto floor = floors.find(threads);
      std::printf("%-64s %10.2f", name.c_str(), t / bare);
      print_ratio(t, now, 12);
      print_ratio(t, floor == floors.end() ? 0 : floor->second, 10);
      std::printf("\n");
    }
  }

 private:
  static void print_ratio(double t, double base, int width) {
    if (base > 0) {
      std::printf(" %*.2f", width, t / base);
    } else {
      std::printf(" %*s", width, "-");
    }
  }

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

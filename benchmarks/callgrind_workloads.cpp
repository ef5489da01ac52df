// SPDX-License-Identifier: BSL-1.0
// Fixed workloads for instruction counting under callgrind (a regression guard
// that timing noise cannot hide): each keel_cg_<name>(n) makes n calls of one
// kind; tools/bench-callgrind.sh runs each under
// `valgrind --tool=callgrind --toggle-collect=keel_cg_<name>*` and divides the
// instructions by n. Not a Google Benchmark binary: it needs only keel.
//
//   callgrind_workloads <name> [calls]   runs one workload (default 1,000,000 calls)
//   callgrind_workloads --list           prints the workload names
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>

#include <keel/keel.hpp>

namespace {

using namespace std::chrono_literals;

/// A minimal expected-like result: the value channel without exceptions.
struct result {
  int value = 0;
  int code = 0;
  bool has_value() const noexcept { return code == 0; }
  int error() const noexcept { return code; }
};

// The callable every workload wraps, out of line so that only the policy differs.
[[gnu::noinline]] int work(int x) noexcept {
  asm volatile("" : "+r"(x));
  return x + 1;
}
[[gnu::noinline]] result failing(int x) noexcept {
  asm volatile("" : "+r"(x));
  return {0, 1};
}

template <class T>
void keep(T& v) {
  asm volatile("" : : "r,m"(v) : "memory");
}

}  // namespace

// Each workload: n calls, the result kept so that nothing is optimized away.
// Global, unmangled-looking names so that --toggle-collect can find them.

[[gnu::noinline]] void keel_cg_bare(int n) {
  int x = 0;
  for (int i = 0; i < n; ++i) {
    x = work(x);
    keep(x);
  }
}

template <class Policy>
void success_calls(const Policy& p, int n) {
  int x = 0;
  for (int i = 0; i < n; ++i) {
    auto r = p.try_execute([&] { return work(x); });
    if (r.has_value()) x = r.value();
    keep(x);
  }
}

[[gnu::noinline]] void keel_cg_breaker_consecutive(int n) {
  static const keel::circuit_breaker b{{.trip = keel::consecutive_failures{.threshold = 5}}};
  success_calls(b, n);
}

[[gnu::noinline]] void keel_cg_breaker_in_period(int n) {
  static const keel::circuit_breaker b{
      {.trip = keel::failures_in_period{.threshold = 5, .period = 10s}}};
  success_calls(b, n);
}

[[gnu::noinline]] void keel_cg_breaker_ratio_count(int n) {
  static const keel::circuit_breaker b{{.trip = keel::failure_ratio_count{}}};
  success_calls(b, n);
}

[[gnu::noinline]] void keel_cg_breaker_ratio_time(int n) {
  static const keel::circuit_breaker b{{.trip = keel::failure_ratio_time{}}};
  success_calls(b, n);
}

[[gnu::noinline]] void keel_cg_breaker_failure_as_value(int n) {
  static const keel::circuit_breaker b{{.trip = keel::consecutive_failures{.threshold = INT_MAX}}};
  int x = 0;
  for (int i = 0; i < n; ++i) {
    auto r = b.try_execute([&] { return failing(x); });
    keep(r);
  }
}

[[gnu::noinline]] void keel_cg_breaker_open_rejection(int n) {
  static const keel::circuit_breaker b{{.trip = keel::consecutive_failures{.threshold = 1},
                                        .open_duration = 1h,
                                        .max_open_duration = 1h}};
  (void)b.try_execute([] { return failing(0); });
  int x = 0;
  for (int i = 0; i < n; ++i) {
    auto r = b.try_execute([&] { return work(x); });
    keep(r);
  }
}

[[gnu::noinline]] void keel_cg_steady_clock_now(int n) {
  for (int i = 0; i < n; ++i) {
    auto t = std::chrono::steady_clock::now();
    keep(t);
  }
}

[[gnu::noinline]] void keel_cg_retry(int n) {
  static const keel::retry r({.max_attempts = 3});
  success_calls(r, n);
}

[[gnu::noinline]] void keel_cg_fallback(int n) {
  static const keel::fallback f(-1);
  success_calls(f, n);
}

[[gnu::noinline]] void keel_cg_pipeline(int n) {
  static keel::circuit_breaker<> breaker{
      {.trip = keel::consecutive_failures{.threshold = 1'000'000'000}}};
  static const auto p =
      keel::pipeline(keel::fallback(-1), keel::retry({.max_attempts = 3}), std::ref(breaker));
  int x = 0;
  for (int i = 0; i < n; ++i) {
    x = p.execute(work, x);
    keep(x);
  }
}

namespace {

struct workload {
  const char* name;
  void (*run)(int);
};

constexpr workload workloads[] = {
    {"bare", keel_cg_bare},
    {"breaker_consecutive", keel_cg_breaker_consecutive},
    {"breaker_in_period", keel_cg_breaker_in_period},
    {"breaker_ratio_count", keel_cg_breaker_ratio_count},
    {"breaker_ratio_time", keel_cg_breaker_ratio_time},
    {"breaker_failure_as_value", keel_cg_breaker_failure_as_value},
    {"breaker_open_rejection", keel_cg_breaker_open_rejection},
    {"steady_clock_now", keel_cg_steady_clock_now},
    {"retry", keel_cg_retry},
    {"fallback", keel_cg_fallback},
    {"pipeline", keel_cg_pipeline},
};

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "--list") == 0) {
    for (const workload& w : workloads) std::printf("%s\n", w.name);
    return 0;
  }
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <workload> [calls] | --list\n", argv[0]);
    return 2;
  }
  const int n = argc >= 3 ? std::atoi(argv[2]) : 1'000'000;
  for (const workload& w : workloads) {
    if (std::strcmp(argv[1], w.name) == 0) {
      w.run(n);
      return 0;
    }
  }
  std::fprintf(stderr, "unknown workload %s\n", argv[1]);
  return 2;
}

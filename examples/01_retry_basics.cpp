// SPDX-License-Identifier: BSL-1.0
// 01_retry_basics: keel::retry calls a flaky dependency again, with backoff, until it answers.
//
// The dependency fails twice, then answers. Time is virtual (virtual_environment),
// so the example runs instantly and prints the same thing every time.
#include <chrono>
#include <stdexcept>
#include <vector>

#include <fmt/core.h>

#include <keel/retry.hpp>
#include <keel/testing/virtual_environment.hpp>

using namespace std::chrono_literals;

namespace {

/// Prints each event retry reports; a listener only writes the handlers it wants.
struct printer {
  const keel::testing::virtual_environment* env;
  void on(const keel::retry_scheduled& e) const {
    fmt::print("  t={:>4} ms  attempt {} failed; retrying in {} ms\n",
               std::chrono::duration_cast<std::chrono::milliseconds>(env->elapsed()).count(),
               e.attempt, std::chrono::duration_cast<std::chrono::milliseconds>(e.delay).count());
  }
  void on(const keel::retries_exhausted& e) const {
    fmt::print("  gave up after {} attempts\n", e.attempts);
  }
};

}  // namespace

int main() {
  keel::testing::virtual_environment env;

  // Counts every event, readable at any time; shared by every copy of the retry.
  keel::counters counters;

  // 4 calls at most, the first included; 100 ms, 200 ms, 400 ms between them.
  const auto retry =
      keel::retry(
          {.max_attempts = 4,
           .backoff = keel::exponential_backoff{.initial = 100ms, .factor = 2.0, .max_delay = 2s}})
          .with_environment(env)
          .with_listener(printer{&env})
          .with_counters(counters);

  int calls = 0;
  fmt::print("a dependency that fails twice:\n");
  const int answer = retry.execute([&] {
    ++calls;
    env.advance(10ms);  // each call takes 10 ms of virtual time
    if (calls < 3) throw std::runtime_error("connection reset");
    return 42;
  });
  fmt::print("  answer {} after {} calls, at t={} ms\n", answer, calls,
             std::chrono::duration_cast<std::chrono::milliseconds>(env.elapsed()).count());

  fmt::print("a dependency that never answers:\n");
  bool rethrown = false;
  try {
    (void)retry.execute([]() -> int { throw std::runtime_error("down"); });
  } catch (const std::runtime_error& e) {  // the last failure, unchanged
    rethrown = true;
    fmt::print("  caller sees: {}\n", e.what());
  }

  const std::vector<keel::duration> expected{100ms, 200ms,          // first call
                                             100ms, 200ms, 400ms};  // second call
  const bool ok = answer == 42 && calls == 3 && rethrown && env.sleeps() == expected &&
                  counters.count<keel::retry_scheduled>() == 5 &&
                  counters.count<keel::retries_exhausted>() == 1;
  fmt::print("{}\n", ok ? "as expected" : "UNEXPECTED");
  return ok ? 0 : 1;
}

// 04_pipeline: fallback, retry, circuit breaker and timeout composed outermost first, through an
// outage. SPDX-License-Identifier: BSL-1.0
//
// keel::pipeline(fallback, retry, breaker, timeout) runs each call as
// fallback(retry(breaker(timeout(call)))): every attempt has its own 200 ms
// deadline, the breaker sees every attempt, retry never retries what the open
// breaker rejects, and the fallback answers when nothing else can.
// The dependency is down from t = 3 s to t = 9 s. Virtual time: deterministic, instant.
#include <chrono>
#include <stdexcept>
#include <string>

#include <fmt/core.h>

#include <keel/keel.hpp>
#include <keel/testing/virtual_environment.hpp>

using namespace std::chrono_literals;

namespace {

long long ms(keel::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

}  // namespace

int main() {
  keel::testing::virtual_environment env;

  // Shared state lives outside the pipeline: one breaker per dependency.
  auto breaker = keel::circuit_breaker(
                     {.trip = keel::consecutive_failures{.threshold = 3}, .open_duration = 4s})
                     .with_environment(env);

  const auto guarded = keel::pipeline(
      keel::fallback(std::string("price from yesterday")),
      keel::retry({.max_attempts = 3,
                   .backoff = keel::exponential_backoff{.initial = 100ms, .max_delay = 1s}})
          .with_environment(env),
      std::ref(breaker), keel::timeout({.timeout = 200ms}).with_environment(env));

  int dependency_calls = 0;
  auto fetch_price = [&](const keel::context& ctx) -> std::string {
    ++dependency_calls;
    const bool down = env.elapsed() >= 3s && env.elapsed() < 9s;
    env.advance(down ? 250ms : 20ms);  // down: it hangs past the 200 ms deadline
    if (ctx.expired()) throw std::runtime_error("read timed out");
    return "price 42 (attempt " + std::to_string(ctx.attempt()) + ")";
  };

  fmt::print("{:>7}  {:<28} {:>6}  {}\n", "t (ms)", "answer", "calls", "breaker");
  int fallbacks = 0;
  for (int request = 0; request < 14; ++request) {
    const auto start = env.elapsed();
    const int before = dependency_calls;
    const std::string answer = guarded.execute(fetch_price);
    if (answer == "price from yesterday") ++fallbacks;
    fmt::print("{:>7}  {:<28} {:>6}  {}\n", ms(start), answer, dependency_calls - before,
               keel::to_string(breaker.state()));
    env.advance(1s);
  }

  fmt::print("{} requests, {} dependency calls, {} answered by the fallback\n", 14,
             dependency_calls, fallbacks);
  // Every request got an answer; during the outage the open breaker kept the
  // load to probes only, instead of three attempts per request.
  const bool as_expected = fallbacks > 0 && fallbacks < 14 && dependency_calls < 14 * 3 &&
                           breaker.state() == keel::circuit_state::closed;
  return as_expected ? 0 : 1;
}

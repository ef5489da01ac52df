// 09_agent_tool_guard: an AI agent whose tool calls and model calls go through keel, so a hung
// tool or a rate-limited model degrades one step instead of stalling the whole agent.
// SPDX-License-Identifier: BSL-1.0
//
// Every 10 s (virtual time) the agent calls two tools, then asks a language model.
//
//   tools  each behind its own circuit breaker and a 2 s per-call timeout, so the
//          weather tool hanging costs at most 2 s twice, then nothing (the open breaker
//          answers at once) -- and the search tool never notices;
//   model  an ordered provider chain: the primary model, a secondary model, the last
//          answer the primary gave to the same question (keel::last_known_good), and a
//          friendly message. Each model has its own breaker, which opens for exactly the
//          Retry-After of a 429, and both retry through one shared keel::retry_budget.
//
// Providers and tools are simulated in-process on keel::testing::virtual_environment
// with scripted failures: no network, the same output on every run. Returns non-zero
// when what the agent saw differs from what keel promises.
#include <array>
#include <chrono>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <fmt/core.h>

#include <keel/keel.hpp>
#include <keel/testing/virtual_environment.hpp>

using namespace std::chrono_literals;

namespace {

using env_t = keel::testing::virtual_environment;

double seconds(keel::duration d) { return std::chrono::duration<double>(d).count(); }

// ---- The outside world, scripted ----------------------------------------------------------

// True while the virtual time is in [from, to).
bool during(const env_t& env, keel::duration from, keel::duration to) {
  return env.elapsed() >= from && env.elapsed() < to;
}

// A tool that answers in 50 ms, or hangs for a minute while `hung` says so. It gives up at
// the caller's deadline (ctx.remaining()), as a real client with a timeout would.
struct tool {
  env_t env;
  const char* name;
  keel::duration hung_from, hung_until;
  int calls = 0;

  std::string operator()(const keel::context& ctx) {
    ++calls;
    const keel::duration latency = during(env, hung_from, hung_until) ? 60s : 50ms;
    if (latency > ctx.remaining()) {
      env.advance(ctx.remaining());
      throw std::system_error(std::make_error_code(std::errc::timed_out), name);
    }
    env.advance(latency);
    return "ok";
  }
};

// A model provider: answers in `latency`; while rate-limited it answers 429 with a
// Retry-After counting down to the end of the limit; while down it answers 503.
struct provider {
  env_t env;
  const char* name;
  keel::duration latency;
  keel::duration limited_from, limited_until;  // 429 Retry-After
  keel::duration down_from, down_until;        // 503
  int calls = 0;

  std::string operator()(const std::string& question) {
    ++calls;
    env.advance(latency);
    if (during(env, limited_from, limited_until)) {
      throw keel::error(keel::errc::rate_limited, limited_until - env.elapsed());
    }
    if (during(env, down_from, down_until)) throw std::runtime_error("503 Service Unavailable");
    return fmt::format("[{}] answer to '{}'", name, question);
  }
};

// ---- What the agent saw -------------------------------------------------------------------

std::string tool_result(const keel::outcome<std::string>& o) {
  if (o.has_value()) return o.value();
  if (o.is(keel::errc::timeout)) return "timeout";
  if (o.code() == keel::condition::circuit_rejected) {  // open, or isolated by an operator
    return fmt::format("open ({:.0f}s)", seconds(o.retry_after().value_or(keel::duration{})));
  }
  return "failed";
}

// Records when a model breaker opened and for how long.
struct open_log {
  std::vector<keel::circuit_opened>* opened;
  void on(const keel::circuit_opened& e) const { opened->push_back(e); }
};

const std::string friendly = "Sorry, I can't answer that right now; please try again shortly.";

}  // namespace

int main() {
  env_t env;

  // Tools: one breaker each (two failures in a row open it for 20 s), one 2 s timeout.
  tool weather{env, "weather", 30s, 55s};
  tool search{env, "search", 0s, 0s};
  const keel::circuit_breaker_options tool_breaker_options{
      .trip = keel::consecutive_failures{.threshold = 2}, .open_duration = 20s};
  auto weather_breaker = keel::circuit_breaker(tool_breaker_options).with_environment(env);
  auto search_breaker = keel::circuit_breaker(tool_breaker_options).with_environment(env);
  const auto per_call_timeout = keel::timeout({.timeout = 2s}).with_environment(env);
  const auto weather_guard = keel::pipeline(std::ref(weather_breaker), per_call_timeout);
  const auto search_guard = keel::pipeline(std::ref(search_breaker), per_call_timeout);

  // Models: the primary is rate-limited from 20 s to 60 s, the secondary down from 30 s
  // to 50 s. Each breaker honours Retry-After (honor_retry_after, the default).
  provider primary{env, "primary", 300ms, 20s, 60s, 0s, 0s};
  provider secondary{env, "secondary", 500ms, 0s, 0s, 30s, 50s};
  std::vector<keel::circuit_opened> primary_opened;
  const keel::circuit_breaker_options model_breaker_options{
      .trip = keel::consecutive_failures{.threshold = 2}, .open_duration = 15s};
  auto primary_breaker = keel::circuit_breaker(model_breaker_options)
                             .with_environment(env)
                             .with_listener(open_log{&primary_opened});
  auto secondary_breaker = keel::circuit_breaker(model_breaker_options).with_environment(env);
  keel::retry_budget budget;  // shared by both models' retries
  // Two attempts; a Retry-After longer than 1 s is not waited for here (the breaker is).
  const auto model_retry = keel::retry({.max_attempts = 2, .max_hint_delay = 1s})
                               .with_environment(env)
                               .with_budget(budget);
  auto answers =
      keel::last_known_good<std::string, std::string>({.max_age = 10min}).with_environment(env);

  // One model call: the whole provider chain, outermost first.
  const auto ask_model = [&](const std::string& question, keel::staleness& staleness) {
    const auto chain = keel::pipeline(
        keel::fallback(keel::alternative([&] {
                         return secondary(question);
                       }).through(keel::pipeline(model_retry, std::ref(secondary_breaker))),
                       answers.serve(question, staleness), friendly),
        answers.record(question), model_retry, std::ref(primary_breaker));
    return chain.try_execute([&] { return primary(question); });
  };

  const std::array<const char*, 8> questions{"what to pack", "which train",        "what to pack",
                                             "which train",  "is the museum open", "what to pack",
                                             "which train",  "what to pack"};

  // What keel promises for this script, step by step.
  const std::array<const char*, 8> expected_weather{"ok",      "ok",         "ok",        "timeout",
                                                    "timeout", "open (12s)", "open (2s)", "ok"};
  const std::array<const char*, 8> expected_model{"primary",  "primary",   "secondary", "cached",
                                                  "friendly", "secondary", "primary",   "primary"};

  fmt::print("{:>6}  {:<12} {:<8} {:<20} {:<10} {}\n", "t (s)", "weather", "search", "question",
             "model", "answer");
  bool as_promised = true;
  for (std::size_t step = 0; step < questions.size(); ++step) {
    env.advance(static_cast<long long>(step) * 10s - env.elapsed());
    const keel::duration started = env.elapsed();

    const std::string weather_saw = tool_result(weather_guard.try_execute(std::ref(weather)));
    const std::string search_saw = tool_result(search_guard.try_execute(std::ref(search)));

    keel::staleness staleness;
    const keel::outcome<std::string> answer = ask_model(questions[step], staleness);
    const std::string& text = answer.value();  // the chain ends in a plain value: never fails
    const char* source = text == friendly                ? "friendly"
                         : staleness.stale               ? "cached"
                         : text.starts_with("[primary]") ? "primary"
                                                         : "secondary";

    fmt::print("{:>6.1f}  {:<12} {:<8} {:<20} {:<10} {}\n", seconds(started), weather_saw,
               search_saw, questions[step], source, text);
    as_promised = as_promised && weather_saw == expected_weather[step] && search_saw == "ok" &&
                  source == std::string(expected_model[step]) &&
                  env.elapsed() - started < 5s;  // no step stalls, whatever hangs
  }

  // The breaker opened on the 429 for exactly its Retry-After: until the limit's end, 60 s.
  const bool honoured_retry_after =
      primary_opened.size() == 1 &&
      primary_opened[0].at.time_since_epoch() + primary_opened[0].open_for == 60s;
  if (!primary_opened.empty()) {
    fmt::print("\nprimary breaker opened at {:.1f} s for {:.1f} s (its Retry-After)\n",
               seconds(primary_opened[0].at.time_since_epoch()),
               seconds(primary_opened[0].open_for));
  }
  fmt::print("calls made: weather {}, search {}, primary {}, secondary {}\n", weather.calls,
             search.calls, primary.calls, secondary.calls);
  fmt::print("retry budget left: {:.1f} tokens; search breaker: {}\n", budget.tokens(),
             search_breaker.state() == keel::circuit_state::closed ? "closed" : "NOT closed");

  // While a breaker was open its dependency was not called at all.
  const bool shielded = weather.calls == 6 && primary.calls == 6 && search.calls == 8;
  const bool ok = as_promised && honoured_retry_after && shielded &&
                  search_breaker.state() == keel::circuit_state::closed;
  fmt::print("{}\n", ok ? "the agent saw what keel promises" : "MISMATCH: see above");
  return ok ? 0 : 1;
}

// 09_agent_tool_guard: an AI agent whose tool calls and model calls go through keel, so a hung
// tool or a rate-limited model degrades one step instead of stalling the whole agent.
// SPDX-License-Identifier: BSL-1.0
//
// Every 10 s (virtual time) the agent calls two tools, then asks a language model.
//
//   tools  each behind its own circuit breaker and a 2 s per-call timeout, so the
//          weather tool hanging costs at most 2 s twice, then nothing (the open breaker
//          answers at once) -- and the search tool never notices;
//   model  the primary model is a keel::endpoint_pool of three deployments of it
//          (eastus, westus, sweden), each behind its own breaker, which opens for exactly
//          the Retry-After of a 429. A deployment whose breaker is open is skipped at once
//          (nothing is sent to it), and a failed attempt is retried on another deployment.
//          Only when no deployment can answer does the fallback chain take over: a
//          secondary model, the last answer the primary gave to the same question
//          (keel::last_known_good), and a friendly message. Both models' retries share one
//          keel::retry_budget.
//
// Providers and tools are simulated in-process on keel::testing::virtual_environment
// with scripted failures: no network, the same output on every run. Returns non-zero
// when what the agent saw differs from what keel promises.
#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/core.h>

#include <keel/failover/endpoint_pool.hpp>
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

// A deployment of a model, as the client knows it: the pool's endpoint type.
struct deployment {
  std::string_view name;
  keel::duration latency;
  bool operator==(const deployment&) const = default;
};

// The provider's side of one deployment: answers after the deployment's latency; while
// rate-limited it answers 429 with a Retry-After counting down to the end of the limit;
// while down it answers 503. It keeps the time of each request, and notes each in `hops`
// when it has one.
struct provider {
  env_t env;
  keel::duration limited_from, limited_until;  // 429 Retry-After
  keel::duration down_from, down_until;        // 503
  std::vector<std::string>* hops = nullptr;
  std::vector<keel::duration> calls{};  // when each request arrived

  std::string operator()(const deployment& at, const std::string& question) {
    calls.push_back(env.elapsed());
    env.advance(at.latency);
    const auto note = [&](std::string_view what) {
      if (hops != nullptr) hops->push_back(fmt::format("{}{}", at.name, what));
    };
    if (during(env, limited_from, limited_until)) {
      note(" 429");
      throw keel::error(keel::errc::rate_limited, limited_until - env.elapsed());
    }
    if (during(env, down_from, down_until)) {
      note(" 503");
      throw std::runtime_error("503 Service Unavailable");
    }
    note("");
    return fmt::format("[{}] answer to '{}'", at.name, question);
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

// A deployment's breaker events: when it opened and for how long, and each call it
// refused (nothing was sent; the pool moved the call to another deployment).
struct deployment_log {
  std::string_view name;
  std::vector<keel::circuit_opened>* opened;
  std::vector<std::string>* hops;
  void on(const keel::circuit_opened& e) const { opened->push_back(e); }
  void on(const keel::call_rejected&) const { hops->push_back(fmt::format("{} open", name)); }
};

// The primary's retry gives up at once on a rejection: here, the pool's answer that no
// deployment is usable, which hands the call to the fallback chain.
struct give_up_log {
  std::vector<std::string>* hops;
  void on(const keel::retry_aborted& e) const {
    if (e.failure.code == keel::errc::no_endpoint_available) hops->push_back("none usable");
  }
};

std::string joined(const std::vector<std::string>& parts) {
  std::string s;
  for (const std::string& p : parts) s += (s.empty() ? "" : ", ") + p;
  return s;
}

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

  // The primary model's deployments: eastus is rate-limited from 20 s to 70 s, westus is
  // down from 30 s to 60 s, sweden is rate-limited from 40 s to 70 s. The secondary model
  // is down from 50 s to 70 s.
  std::vector<std::string> hops;  // what one model call met in the pool, in order
  const std::vector<deployment> deployments{
      {"eastus", 300ms}, {"westus", 400ms}, {"sweden", 600ms}};
  std::array<provider, 3> primary{provider{env, 20s, 70s, 0s, 0s, &hops},
                                  provider{env, 0s, 0s, 30s, 60s, &hops},
                                  provider{env, 40s, 70s, 0s, 0s, &hops}};
  const deployment secondary_model{"secondary", 500ms};
  provider secondary{env, 0s, 0s, 50s, 70s};

  // One breaker per deployment, built in place by the pool: a single failure opens it
  // (another deployment can take the call, so there is no reason to insist), for 15 s or
  // for exactly the Retry-After of a 429 (honor_retry_after, the default).
  std::array<std::vector<keel::circuit_opened>, 3> opened;
  const keel::circuit_breaker_options deployment_breaker_options{
      .trip = keel::consecutive_failures{.threshold = 1}, .open_duration = 15s};
  const auto breaker_for = [&](const deployment& d, std::size_t slot) {
    return keel::circuit_breaker(deployment_breaker_options)
        .with_environment(env)
        .with_listener(deployment_log{d.name, &opened[slot], &hops});
  };
  // Round robin: the deployments serve the same model, and each has its own quota (tokens
  // per minute), so spreading the calls keeps every quota furthest from its limit; priority
  // levels (a preferred region first) would spend one quota before touching the others.
  // No panic (panic_threshold 0): a deployment out of the rotation is one whose breaker is
  // open and would refuse the call anyway, so with none left the pool answers
  // errc::no_endpoint_available at once and the fallback chain takes over.
  auto primary_pool =
      keel::endpoint_pool(deployments, {.panic_threshold = 0}, breaker_for).with_environment(env);

  auto secondary_breaker =
      keel::circuit_breaker(
          {.trip = keel::consecutive_failures{.threshold = 2}, .open_duration = 15s})
          .with_environment(env);
  keel::retry_budget budget;  // shared by both models' retries
  // The primary: three attempts, each on a deployment this call has not tried yet (the
  // pool's avoid-tried). A 429's Retry-After is for the deployment that sent it, whose
  // breaker waits it out, so the next attempt goes elsewhere at once.
  const auto primary_retry = keel::retry({.max_attempts = 3, .max_hint_delay = 0s})
                                 .with_environment(env)
                                 .with_budget(budget)
                                 .with_listener(give_up_log{&hops});
  // The secondary: two attempts; a Retry-After longer than 1 s is not waited for here.
  const auto secondary_retry = keel::retry({.max_attempts = 2, .max_hint_delay = 1s})
                                   .with_environment(env)
                                   .with_budget(budget);
  auto answers =
      keel::last_known_good<std::string, std::string>({.max_age = 10min}).with_environment(env);

  // One model call: the whole provider chain, outermost first. The callable sends the
  // question to the deployment the pool chose for this attempt.
  const auto ask_model = [&](const std::string& question, keel::staleness& staleness) {
    const auto chain = keel::pipeline(
        keel::fallback(keel::alternative([&] {
                         return secondary(secondary_model, question);
                       }).through(keel::pipeline(secondary_retry, std::ref(secondary_breaker))),
                       answers.serve(question, staleness), friendly),
        answers.record(question), primary_retry, std::ref(primary_pool));
    return chain.try_execute([&](const keel::context& ctx) {
      return primary.at(ctx.target().index())(*ctx.target().get<deployment>(), question);
    });
  };

  const std::array<const char*, 10> questions{
      "what to pack", "which train",        "what to pack", "which train",  "is the museum open",
      "what to pack", "is the museum open", "which train",  "what to pack", "is the museum open"};

  // What keel promises for this script, step by step: what the weather tool answered, what
  // the model call met in the pool ("open": the deployment's breaker refused, nothing was
  // sent), and who answered.
  const std::array<const char*, 10> expected_weather{
      "ok", "ok", "ok", "timeout", "timeout", "open (12s)", "open (2s)", "ok", "ok", "ok"};
  const std::array<const char*, 10> expected_hops{
      "eastus",
      "westus",
      "sweden",
      "eastus 429, westus 503, sweden",
      "eastus open, sweden 429, westus open, sweden open, none usable",
      "westus 503, westus open, none usable",
      "none usable",
      "sweden",
      "eastus",
      "westus"};
  const std::array<const char*, 10> expected_model{"eastus",    "westus", "sweden",   "sweden",
                                                   "secondary", "cached", "friendly", "sweden",
                                                   "eastus",    "westus"};

  fmt::print("{:>6}  {:<12} {:<8} {:<20} {:<64} {}\n", "t (s)", "weather", "search", "question",
             "deployments met", "answered by");
  bool as_promised = true;
  for (std::size_t step = 0; step < questions.size(); ++step) {
    env.advance(static_cast<long long>(step) * 10s - env.elapsed());
    const keel::duration started = env.elapsed();

    const std::string weather_saw = tool_result(weather_guard.try_execute(std::ref(weather)));
    const std::string search_saw = tool_result(search_guard.try_execute(std::ref(search)));

    hops.clear();
    keel::staleness staleness;
    const keel::outcome<std::string> answer = ask_model(questions[step], staleness);
    const std::string& text = answer.value();  // the chain ends in a plain value: never fails
    // An answer starts with "[who]"; the cached one with the deployment that gave it first.
    const std::string source = text == friendly  ? "friendly"
                               : staleness.stale ? "cached"
                                                 : text.substr(1, text.find(']') - 1);
    const std::string met = joined(hops);

    fmt::print("{:>6.1f}  {:<12} {:<8} {:<20} {:<64} {}\n", seconds(started), weather_saw,
               search_saw, questions[step], met, source);
    as_promised = as_promised && weather_saw == expected_weather[step] && search_saw == "ok" &&
                  met == expected_hops[step] && source == expected_model[step] &&
                  env.elapsed() - started < 5s;  // no step stalls, whatever hangs
  }

  // After a 429 a breaker opened for the Retry-After, to the limit's end (70 s); after a
  // 503 for 15 s: westus twice, as its probe at 50 s met the outage still on.
  const auto opened_until = [&](std::size_t i, std::size_t k) {
    return opened[i].size() > k ? opened[i][k].at.time_since_epoch() + opened[i][k].open_for
                                : keel::duration{};
  };
  const bool honoured_retry_after = opened[0].size() == 1 && opened_until(0, 0) == 70s &&
                                    opened[2].size() == 1 && opened_until(2, 0) == 70s &&
                                    opened[1].size() == 2 && opened[1][0].open_for == 15s &&
                                    opened[1][1].open_for == 15s;
  // While a deployment's breaker was open, not one request reached it.
  bool shielded = true;
  fmt::print("\n");
  for (std::size_t i = 0; i < deployments.size(); ++i) {
    for (const keel::circuit_opened& e : opened[i]) {
      fmt::print("{} breaker opened at {:.1f} s for {:.1f} s\n", deployments[i].name,
                 seconds(e.at.time_since_epoch()), seconds(e.open_for));
      for (const keel::duration t : primary[i].calls) {
        shielded =
            shielded && !(t >= e.at.time_since_epoch() && t < e.at.time_since_epoch() + e.open_for);
      }
    }
  }
  fmt::print("requests: weather {}, search {}, eastus {}, westus {}, sweden {}, secondary {}\n",
             weather.calls, search.calls, primary[0].calls.size(), primary[1].calls.size(),
             primary[2].calls.size(), secondary.calls.size());
  fmt::print("retry budget left: {:.1f} tokens; search breaker: {}\n", budget.tokens(),
             search_breaker.state() == keel::circuit_state::closed ? "closed" : "NOT closed");

  const bool counted = weather.calls == 8 && search.calls == 10 && primary[0].calls.size() == 3 &&
                       primary[1].calls.size() == 4 && primary[2].calls.size() == 4 &&
                       secondary.calls.size() == 3;
  const bool ok = as_promised && honoured_retry_after && shielded && counted &&
                  search_breaker.state() == keel::circuit_state::closed;
  fmt::print("{}\n", ok ? "the agent saw what keel promises" : "MISMATCH: see above");
  return ok ? 0 : 1;
}

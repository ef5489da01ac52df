// 00_outage_demo: one dependency outage replayed in virtual time against no policy, naive retry
// and a keel pipeline; prints what callers saw and what the dependency suffered, and draws it.
// SPDX-License-Identifier: BSL-1.0
//
// A request arrives every 100 ms for five minutes of virtual time. The dependency is
// healthy, then fails 30% of calls, then is down, then answers too slowly, then recovers.
// The same stream of requests goes through three strategies:
//
//   no policy    call it once and hope;
//   naive retry  3 attempts, no backoff, no timeout: the classic retry storm;
//   keel         fallback(retry with backoff, jitter and a shared budget
//                         (circuit breaker (per-attempt timeout (call)))).
//
// Everything runs on keel::testing::virtual_environment, so the output is identical on
// every run and takes well under a second. Writes outage.svg (or argv[1]). Returns non-zero
// unless keel kept the load bounded during the outage while naive retry tripled it, and
// keel's callers got an answer more often than the others'.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <fmt/core.h>

#include <keel/keel.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/panel_chart.hpp"

using namespace std::chrono_literals;

namespace {

// ---- The scenario -------------------------------------------------------------------------

struct phase {
  const char* name;
  keel::duration begins;
};

constexpr std::array<phase, 5> phases{
    {{"healthy", 0s}, {"30% errors", 60s}, {"outage", 120s}, {"slow", 180s}, {"recovery", 240s}}};
enum : std::size_t { healthy, errors, outage, slow, recovery };  // indices into phases
constexpr keel::duration scenario_length = 300s;
constexpr keel::duration between_requests = 100ms;
constexpr int request_count = static_cast<int>(scenario_length / between_requests);

std::size_t phase_at(keel::duration t) {
  std::size_t p = 0;
  while (p + 1 < phases.size() && t >= phases[p + 1].begins) ++p;
  return p;
}

double seconds(keel::duration d) { return std::chrono::duration<double>(d).count(); }
double millis(keel::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// ---- The dependency -----------------------------------------------------------------------

// Two clocks. In production requests overlap; here they run one after another, so each
// request is timed on its own stopwatch (latency, backoff sleeps, timeouts), while the
// world clock moves 100 ms per request and decides the dependency's health and the
// breaker's open time.
struct dependency {
  keel::testing::virtual_environment world{keel::testing::seeded_random(2024)};
  keel::testing::virtual_environment stopwatch{keel::testing::seeded_random(7)};
  int calls = 0;  // calls that reached the dependency

  // One call: takes some (virtual) time, then answers or throws. A caller with a deadline
  // gives up at its deadline: the call then throws a timeout after ctx.remaining().
  std::string operator()(const keel::context& ctx) {
    ++calls;
    const double u = world.uniform();
    keel::duration latency = 20ms + std::chrono::duration_cast<keel::duration>(20ms * u);
    bool fails = false;
    switch (phase_at(world.elapsed())) {
      case errors:
        fails = u < 0.3;
        break;
      case outage:  // connections are refused at once
        latency = 5ms;
        fails = true;
        break;
      case slow:  // correct answers, after 1 to 2 s
        latency = 1s + std::chrono::duration_cast<keel::duration>(1s * u);
        break;
      default:  // healthy, recovery
        break;
    }
    if (latency > ctx.remaining()) {
      stopwatch.advance(ctx.remaining());
      throw std::system_error(std::make_error_code(std::errc::timed_out), "read timed out");
    }
    stopwatch.advance(latency);
    if (fails) throw std::runtime_error("503 Service Unavailable");
    return "fresh";
  }
};

// ---- What callers saw ---------------------------------------------------------------------

struct tally {
  int requests = 0, fresh = 0, degraded = 0, calls = 0;
  std::vector<double> latencies_ms;

  double percent(int n) const { return requests == 0 ? 0.0 : 100.0 * n / requests; }
  double answered() const { return percent(fresh + degraded); }
  double load() const { return requests == 0 ? 0.0 : static_cast<double>(calls) / requests; }
  double latency_percentile(double q) const {
    if (latencies_ms.empty()) return 0.0;
    std::vector<double> sorted = latencies_ms;
    std::sort(sorted.begin(), sorted.end());
    const auto rank = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
    return sorted[rank];
  }
};

constexpr keel::duration bucket_length = 5s;  // resolution of the chart
constexpr int bucket_count = static_cast<int>(scenario_length / bucket_length);

struct run_result {
  const char* name;
  std::array<tally, phases.size()> per_phase{};
  std::array<tally, bucket_count> per_bucket{};
  tally total;
};

const std::string cached_answer = "cached";

// Sends the whole request stream through `guarded` (any keel policy or pipeline).
template <class Guarded>
run_result replay(const char* name, const Guarded& guarded, dependency& dep) {
  run_result result{name, {}, {}, {}};
  for (int i = 0; i < request_count; ++i) {
    const keel::duration arrival = i * between_requests;
    dep.world.advance(arrival - dep.world.elapsed());
    const keel::duration started = dep.stopwatch.elapsed();
    const int calls_before = dep.calls;

    const keel::outcome<std::string> answer =
        guarded.try_execute([&](const keel::context& ctx) { return dep(ctx); });

    for (tally* t :
         {&result.per_phase[phase_at(arrival)],
          &result.per_bucket[static_cast<std::size_t>(arrival / bucket_length)], &result.total}) {
      ++t->requests;
      if (answer.has_value()) ++(answer.value() == cached_answer ? t->degraded : t->fresh);
      t->calls += dep.calls - calls_before;
      t->latencies_ms.push_back(millis(dep.stopwatch.elapsed() - started));
    }
  }
  return result;
}

// ---- The breaker's diary ------------------------------------------------------------------

struct state_change {
  keel::circuit_state to;
  keel::duration at;  // world time
};

// A listener: hears every transition of the breaker.
struct breaker_diary {
  std::vector<state_change>* changes;
  void on(const keel::circuit_state_changed& e) const {
    changes->push_back({e.to, e.at.time_since_epoch()});
  }
};

// ---- The chart ----------------------------------------------------------------------------

// One panel of the chart: a quantity per 5 s bucket, for every strategy.
struct chart_panel {
  const char* title;
  const char* unit;
  double y_max, y_step;
  double (*value)(const tally&);
};

void write_svg(const std::string& path, const std::array<run_result, 3>& runs) {
  const std::array<chart_panel, 3> panels{{
      {"callers answered (%)", "%", 100, 25, [](const tally& t) { return t.answered(); }},
      {"dependency calls per request", "x", 3.5, 0.5, [](const tally& t) { return t.load(); }},
      {"p99 latency (s)", "s", 2.5, 0.5,
       [](const tally& t) { return t.latency_percentile(0.99) / 1000; }},
  }};
  // Drawn in this order, so keel's line is on top; the wide grey one shows beneath.
  const std::array<const char*, 3> strokes{
      R"(stroke="#9a9a9a" stroke-width="6")",
      R"(stroke="#d62728" stroke-width="2.5" stroke-dasharray="7 4")",
      R"(stroke="#1f77b4" stroke-width="2.5")"};
  const char* const fresh_look = R"(stroke="#1f77b4" stroke-width="1.5" stroke-dasharray="2 3")";
  const std::array<const char*, 5> shades{"#ffffff", "#fff4cc", "#ffd6d6", "#ffe5cc", "#e6f5e6"};
  std::vector<keel_examples::chart_phase> shaded;
  for (std::size_t p = 0; p < phases.size(); ++p) {
    shaded.push_back({seconds(phases[p].begins),
                      seconds(p + 1 < phases.size() ? phases[p + 1].begins : scenario_length),
                      phases[p].name, shades[p]});
  }
  keel_examples::panel_chart chart(
      path,
      fmt::format("A dependency outage, replayed in virtual time: {} requests, one every 100 ms",
                  request_count),
      seconds(scenario_length), panels.size(), 170);
  for (std::size_t k = 0; k < panels.size(); ++k) {
    const chart_panel& panel = panels[k];
    chart.panel(k, panel.title, panel.unit, panel.y_max, panel.y_step, shaded);
    // One line per strategy, a point per bucket.
    for (std::size_t r = 0; r < runs.size(); ++r) {
      std::vector<double> values;
      for (const tally& t : runs[r].per_bucket) values.push_back(panel.value(t));
      chart.line(values, seconds(bucket_length),
                 fmt::format("{} stroke-linejoin=\"round\"", strokes[r]));
    }
    if (k == 0) {  // keel's fresh answers, the rest of its answered ones being cached
      std::vector<double> values;
      for (const tally& t : runs[2].per_bucket) values.push_back(t.percent(t.fresh));
      chart.line(values, seconds(bucket_length), fresh_look);
    }
  }
  chart.time_axis(30);
  for (std::size_t r = 0; r < runs.size(); ++r) {
    chart.legend(140 * static_cast<double>(r), strokes[r], runs[r].name);
  }
  chart.legend(420, fresh_look, "keel, fresh answers only (the rest are cached)");
  chart.close();
}

}  // namespace

int main(int argc, char** argv) {
  // (a) No policy: the call, once.
  dependency plain;
  const keel::pipeline<> no_policy{};

  // (b) Naive retry: three attempts back to back, no timeout.
  dependency naive;
  const auto naive_retry = keel::retry({.max_attempts = 3, .backoff = keel::constant_backoff{0ms}})
                               .with_environment(naive.stopwatch);

  // (c) keel. The breaker and the budget are shared state: one per dependency, shared by
  // reference by every caller. The breaker opens when 60% of the last 40 attempts failed,
  // for 5 s, then 10 s after each failed probe; it reads the world clock.
  dependency guarded;
  std::vector<state_change> changes;
  auto breaker =
      keel::circuit_breaker(
          {.trip = keel::failure_ratio_count{.window_size = 40, .minimum_calls = 20, .ratio = 0.6},
           .open_duration = 5s,
           .open_duration_factor = 2.0,
           .max_open_duration = 10s})
          .with_environment(guarded.world)
          .with_listener(breaker_diary{&changes});
  // Each failed attempt costs a token, each success earns half of one; retries stop
  // while the bucket is under half full, so a long outage gets first attempts only.
  keel::retry_budget budget({.max_tokens = 100, .token_ratio = 0.5});
  const auto retry =
      keel::retry(
          {.max_attempts = 3,
           .backoff = keel::exponential_backoff{.initial = 50ms, .max_delay = 1s, .jitter = 0.2}})
          .with_environment(guarded.stopwatch)
          .with_budget(budget);
  const auto per_attempt_timeout =
      keel::timeout({.timeout = 300ms}).with_environment(guarded.stopwatch);
  // Outermost first: fallback(retry(breaker(timeout(call)))).
  const auto keel_pipeline =
      keel::pipeline(keel::fallback(cached_answer), retry, std::ref(breaker), per_attempt_timeout);

  const std::array<run_result, 3> runs{replay("no policy", no_policy, plain),
                                       replay("naive retry", naive_retry, naive),
                                       replay("keel", keel_pipeline, guarded)};

  fmt::print("{} requests, one every {} ms of virtual time; latencies in virtual ms\n\n",
             request_count, millis(between_requests));
  fmt::print("{:<22} {:<12} {:>8} {:>7} {:>8} {:>9} {:>7} {:>7}\n", "phase", "strategy", "answered",
             "fresh", "degraded", "calls/req", "p50", "p99");
  for (std::size_t p = 0; p <= phases.size(); ++p) {
    const bool all = p == phases.size();
    const std::string label =
        all ? std::string("whole run")
            : fmt::format("{} {:g}-{:g} s", phases[p].name, seconds(phases[p].begins),
                          seconds(p + 1 < phases.size() ? phases[p + 1].begins : scenario_length));
    for (const run_result& r : runs) {
      const tally& t = all ? r.total : r.per_phase[p];
      fmt::print("{:<22} {:<12} {:>7.1f}% {:>6.1f}% {:>7.1f}% {:>9.2f} {:>7.0f} {:>7.0f}\n",
                 &r == runs.data() ? label : "", r.name, t.answered(), t.percent(t.fresh),
                 t.percent(t.degraded), t.load(), t.latency_percentile(0.50),
                 t.latency_percentile(0.99));
    }
  }

  fmt::print("\nkeel's circuit breaker ({} state changes, virtual time):\n", changes.size());
  for (std::size_t i = 0; i < changes.size(); ++i) {
    const std::string item =
        fmt::format("{:.1f} s {}", seconds(changes[i].at), keel::to_string(changes[i].to));
    if (i % 6 == 5 || i + 1 == changes.size()) {
      fmt::print("  {}\n", item);
    } else {
      fmt::print("  {:<17}", item);
    }
  }
  fmt::print("retry budget left: {:.1f} of {:.0f} tokens\n", budget.tokens(),
             budget.options().max_tokens);

  const std::string svg = argc > 1 ? argv[1] : "outage.svg";
  write_svg(svg, runs);
  fmt::print("chart: {}\n", std::filesystem::absolute(svg).string());

  // What the demo promises: during the outage keel sends a bounded trickle of probes
  // while naive retry triples the load, and keel's callers are answered more often.
  const run_result& no_policy_run = runs[0];
  const run_result& naive_run = runs[1];
  const run_result& keel_run = runs[2];
  const bool bounded =
      keel_run.per_phase[outage].load() <= 0.5 && naive_run.per_phase[outage].load() >= 2.9;
  bool best = keel_run.total.answered() > naive_run.total.answered() &&
              keel_run.total.answered() > no_policy_run.total.answered();
  for (std::size_t p = 0; p < phases.size(); ++p) {  // and never worse in any phase
    const double keel_answered = keel_run.per_phase[p].answered();
    best = best && keel_answered >= naive_run.per_phase[p].answered() &&
           keel_answered >= no_policy_run.per_phase[p].answered();
  }
  fmt::print("\nload bounded during the outage: {}; keel's callers answered most often: {}\n",
             bounded ? "yes" : "NO", best ? "yes" : "NO");
  return bounded && best ? 0 : 1;
}

// SPDX-License-Identifier: BSL-1.0
// keel::breaker_state_machine driven step by step through its public API,
// with no circuit_breaker at all: what an async driver would do. Each script
// runs twice on virtual time, through circuit_breaker::try_execute and
// through a hand-written driver of the state machine; the outcomes, the
// metrics after every step and the events must be the same.
#include <chrono>
#include <cstdint>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include <keel/circuit_breaker.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"

namespace {

using namespace std::chrono_literals;
using keel::call_result;
using keel::circuit_state;
using keel::duration;
using keel::time_point;

using event_log =
    keel::testing::recording_listener<keel::circuit_opened, keel::circuit_half_opened,
                                      keel::circuit_closed, keel::circuit_state_changed,
                                      keel::call_rejected>;

/// One step of a script: a call (that takes `takes` of virtual time and ends
/// as `ends`, a failure carrying `hint`), a wait, or a manual transition.
struct step {
  enum kind { call, wait, isolate, disable, reset } what = call;
  call_result ends = call_result::success;
  duration takes{};
  std::optional<duration> hint{};
};

step ok(duration takes = {}) { return {step::call, call_result::success, takes, {}}; }
step bad(std::optional<duration> hint = std::nullopt, duration takes = {}) {
  return {step::call, call_result::failure, takes, hint};
}
step cancelled() { return {step::call, call_result::ignored, {}, {}}; }
step wait(duration d) { return {step::wait, call_result::success, d, {}}; }
step manual(step::kind k) { return {k, call_result::success, {}, {}}; }

std::string ns(duration d) { return std::to_string(d.count()) + "ns"; }
std::string ns(std::optional<duration> d) { return d ? ns(*d) : std::string("none"); }
std::string at(time_point t) { return ns(t.time_since_epoch()); }

std::string from(const keel::event_source& s) {
  return " from " + std::string(s.pipeline) + "/" + std::string(s.policy);
}
std::string text(const keel::circuit_opened& e) {
  return "opened(" + std::to_string(static_cast<int>(e.reason)) + ", " +
         std::to_string(e.failure_ratio) + ", " + ns(e.open_for) + ", " + at(e.at) + ")" +
         from(e.source);
}
std::string text(const keel::circuit_half_opened& e) {
  return "half_opened(" + at(e.at) + ")" + from(e.source);
}
std::string text(const keel::circuit_closed& e) {
  return "closed(" + at(e.at) + ")" + from(e.source);
}
std::string text(const keel::circuit_state_changed& e) {
  return std::string("changed(") + keel::to_string(e.from) + " -> " + keel::to_string(e.to) + ", " +
         at(e.at) + ")" + from(e.source);
}
std::string text(const keel::call_rejected& e) {
  return std::string("rejected(") + (e.code == keel::errc::circuit_isolated ? "isolated" : "open") +
         ", " + keel::to_string(e.state) + ", " + ns(e.retry_after) + ")" + from(e.source);
}

std::vector<std::string> texts(const event_log& log) {
  std::vector<std::string> out;
  for (const auto& e : log.events()) std::visit([&](const auto& x) { out.push_back(text(x)); }, e);
  return out;
}

std::string text(const keel::circuit_metrics& m) {
  std::ostringstream s;
  s << keel::to_string(m.state) << " failures=" << m.failures << " slow=" << m.slow_calls
    << " rejections=" << m.rejections << " window_calls=" << m.window_calls
    << " window_failures=" << m.window_failures << " window_slow=" << m.window_slow_calls
    << " ratio=" << m.failure_ratio << " slow_ratio=" << m.slow_call_ratio
    << " probes=" << m.probes_admitted << " last=" << at(m.last_transition)
    << " retry_after=" << ns(m.retry_after);
  return s.str();
}

std::string rejected(keel::errc code, std::optional<duration> retry_after) {
  return std::string("rejected ") + (code == keel::errc::circuit_isolated ? "isolated" : "open") +
         " " + ns(retry_after);
}

/// What a script produced: per step, what the caller saw and the metrics
/// after it; then every event.
struct trace {
  std::vector<std::string> steps;
  std::vector<std::string> events;
  std::vector<std::uint64_t> counts;  // keel::counters, per event kind
};

constexpr std::string_view breaker_name = "db";

std::vector<std::uint64_t> counts(const keel::counters& c) {
  std::vector<std::uint64_t> out;
  for (std::size_t k = 0; k < keel::event_kind_count; ++k)
    out.push_back(c.count(static_cast<keel::event_kind>(k)));
  return out;
}

// ---- Through circuit_breaker::try_execute ---------------------------------------------

trace through_the_shell(const keel::circuit_breaker_options& o, const std::vector<step>& script) {
  keel::testing::virtual_environment env;
  event_log log;
  keel::counters counters;
  auto breaker = keel::circuit_breaker{o}
                     .with_environment(env)
                     .with_listener(log)
                     .with_counters(counters)
                     .named(breaker_name);
  trace t;
  for (const step& s : script) {
    std::string seen = "-";
    switch (s.what) {
      case step::call: {
        const keel::outcome<int> r = breaker.try_execute([&]() -> int {
          env.advance(s.takes);
          if (s.ends == call_result::ignored) throw keel::error(keel::errc::cancelled);
          if (s.ends == call_result::failure) {
            if (s.hint) throw keel::error(keel::errc::timeout, s.hint);
            throw std::runtime_error("down");
          }
          return 1;
        });
        if (r.is(keel::errc::circuit_open) || r.is(keel::errc::circuit_isolated)) {
          seen = rejected(r.is(keel::errc::circuit_open) ? keel::errc::circuit_open
                                                         : keel::errc::circuit_isolated,
                          r.retry_after());
        } else {
          seen = "ran";
        }
        break;
      }
      case step::wait:
        env.advance(s.takes);
        break;
      case step::isolate:
        breaker.isolate();
        break;
      case step::disable:
        breaker.disable();
        break;
      case step::reset:
        breaker.reset();
        break;
    }
    t.steps.push_back(seen + " | " + text(breaker.metrics()));
  }
  t.events = texts(log);
  t.counts = counts(counters);
  return t;
}

// ---- Through the state machine's public step API, no shell -------------------------

/// A driver of breaker_state_machine as an async or callback driver would
/// write it: the closed path when it admits, else the general path; every
/// event from emit_for. Nothing private, nothing of circuit_breaker.
class hand_driver {
 public:
  explicit hand_driver(const keel::circuit_breaker_options& o) : machine_(o, breaker_name) {}

  std::string call(const step& s) {
    auto now = [this] { return env_.now(); };
    auto hint = [&s] { return s.hint; };
    keel::breaker_state_machine::closed_admission a = machine_.admit_closed();
    if (!a) {
      a = machine_.admit_closed_current();
      if (const keel::open_rejection r = machine_.reject_open(a, now)) {
        keel::emit_for(listener_, r, machine_.source(ctx_));
        return rejected(keel::errc::circuit_open, r.retry_after());
      }
    }
    if (a) {  // the closed path: one load admitted the call
      env_.advance(s.takes);
      switch (s.ends) {
        case call_result::success:
          machine_.record_closed_success(a, now);
          break;
        case call_result::failure:
          if (!machine_.record_closed_failure(a)) {
            keel::emit_for(listener_, machine_.record_with(a.generation(), s.ends, {}, now, hint),
                           machine_.source());
          }
          break;
        case call_result::ignored:
          machine_.release(a.generation());
          break;
      }
      return "ran";
    }
    // The general path: any state, the slow-call rule's timing.
    keel::circuit_admission admission = machine_.try_acquire_with(now);
    keel::emit_for(listener_, admission, machine_.source(), machine_.source(ctx_));
    if (!admission) return rejected(admission.rejection_code(), admission.retry_after);
    const time_point start = env_.now();
    env_.advance(s.takes);
    const duration elapsed = machine_.measures_duration() ? env_.now() - start : duration{};
    keel::emit_for(listener_,
                   machine_.record_with(admission.generation, s.ends, elapsed, now, hint),
                   machine_.source());
    return "ran";
  }

  trace run(const std::vector<step>& script) {
    trace t;
    for (const step& s : script) {
      std::string seen = "-";
      switch (s.what) {
        case step::call:
          seen = call(s);
          break;
        case step::wait:
          env_.advance(s.takes);
          break;
        case step::isolate:
          keel::emit_for(listener_, machine_.isolate(env_.now()), machine_.source());
          break;
        case step::disable:
          keel::emit_for(listener_, machine_.disable(env_.now()), machine_.source());
          break;
        case step::reset:
          keel::emit_for(listener_, machine_.reset(env_.now()), machine_.source());
          break;
      }
      t.steps.push_back(seen + " | " + text(machine_.metrics(env_.now())));
    }
    t.events = texts(log_);
    t.counts = counts(counters_);
    return t;
  }

 private:
  keel::breaker_state_machine machine_;
  keel::testing::virtual_environment env_;
  event_log log_;
  keel::counters counters_;
  // What with_counters makes of a listener slot, built by hand.
  keel::counted_listener<std::reference_wrapper<const event_log>> listener_{std::cref(log_),
                                                                            &counters_};
  keel::context ctx_;  // the calls' context: no pipeline, so events name the breaker alone
};

/// Runs `script` both ways; every step and every event must agree.
trace same_both_ways(const keel::circuit_breaker_options& o, const std::vector<step>& script) {
  const trace shell = through_the_shell(o, script);
  const trace driven = hand_driver(o).run(script);
  REQUIRE(shell.steps.size() == script.size());
  for (std::size_t i = 0; i < script.size(); ++i) {
    INFO("step " << i);
    CHECK(driven.steps[i] == shell.steps[i]);
  }
  CHECK(driven.events == shell.events);
  CHECK(driven.counts == shell.counts);
  return shell;
}

}  // namespace

static_assert(std::is_same_v<keel::circuit_breaker_core, keel::breaker_state_machine>,
              "the former name still names the state machine");

TEST_CASE(
    "breaker_state_machine: driven by hand through closed, open, a failed probe, half-open and "
    "closed, exactly as circuit_breaker::try_execute",
    "[decision][breaker]") {
  const keel::circuit_breaker_options o{.trip = keel::consecutive_failures{.threshold = 2},
                                        .open_duration = 10s,
                                        .open_duration_factor = 2.0,
                                        .max_open_duration = 1min};
  const std::vector<step> script = {
      ok(),         // 0 closed
      bad(),        // 1 a run of one
      ok(),         // 2 ends it
      bad(),        // 3
      bad(),        // 4 trips at 0: open for 10 s
      ok(),         // 5 rejected, 10 s left
      wait(4s),     // 6
      ok(),         // 7 rejected, 6 s left
      wait(6s),     // 8
      bad(),        // 9 the probe at 10 s fails: open for 20 s
      wait(1s),     // 10
      ok(),         // 11 rejected, 19 s left
      wait(19s),    // 12
      cancelled(),  // 13 a probe at 30 s that says nothing: its slot is freed
      ok(),         // 14 the next probe succeeds: closed at 30 s
      ok(),         // 15
      bad(),        // 16
      bad(3s),      // 17 trips again, the hint sets the open time: 3 s
      wait(3s),     // 18
      ok(),         // 19 probe at 33 s: closed
  };
  const trace t = same_both_ways(o, script);
  const std::vector<std::string> expected = {
      "changed(closed -> open, 0ns) from /db",
      "opened(0, 1.000000, 10000000000ns, 0ns) from /db",
      "rejected(open, open, 10000000000ns) from /db",
      "rejected(open, open, 6000000000ns) from /db",
      "changed(open -> half-open, 10000000000ns) from /db",
      "half_opened(10000000000ns) from /db",
      "changed(half-open -> open, 10000000000ns) from /db",
      "opened(4, 1.000000, 20000000000ns, 10000000000ns) from /db",
      "rejected(open, open, 19000000000ns) from /db",
      "changed(open -> half-open, 30000000000ns) from /db",
      "half_opened(30000000000ns) from /db",
      "changed(half-open -> closed, 30000000000ns) from /db",
      "closed(30000000000ns) from /db",
      "changed(closed -> open, 30000000000ns) from /db",
      "opened(0, 1.000000, 3000000000ns, 30000000000ns) from /db",
      "changed(open -> half-open, 33000000000ns) from /db",
      "half_opened(33000000000ns) from /db",
      "changed(half-open -> closed, 33000000000ns) from /db",
      "closed(33000000000ns) from /db",
  };
  CHECK(t.events == expected);
  CHECK(t.steps[19] ==
        "ran | closed failures=6 slow=0 rejections=3 window_calls=0 window_failures=0 "
        "window_slow=0 ratio=0 slow_ratio=0 probes=0 last=33000000000ns retry_after=none");
}

TEST_CASE(
    "breaker_state_machine: a count window and two probes, driven by hand, as "
    "circuit_breaker::try_execute",
    "[decision][breaker]") {
  const keel::circuit_breaker_options o{
      .trip = keel::failure_ratio_count{.window_size = 4, .minimum_calls = 4, .ratio = 0.5},
      .open_duration = 5s,
      .permitted_probes = 2,
      .success_threshold = 2};
  const std::vector<step> script = {
      ok(),     ok(), ok(), ok(), ok(),  // a full window of successes: a fixed point
      bad(),                             // 1 of 4
      bad(),                             // 2 of 4: opens
      ok(),                              // rejected
      wait(5s),
      ok(),                  // probe 1
      bad(),                 // probe 2 fails: closing is impossible, reopens
      wait(5s), ok(), ok(),  // two probes: closed
      ok(),                  // a fresh window
      bad(),
  };
  const trace t = same_both_ways(o, script);
  CHECK(t.events.size() == 11);
  CHECK(t.events.back() == "closed(10000000000ns) from /db");
  CHECK(t.steps.back() ==
        "ran | closed failures=4 slow=0 rejections=1 window_calls=2 window_failures=1 "
        "window_slow=0 ratio=0.5 slow_ratio=0 probes=0 last=10000000000ns retry_after=none");
}

TEST_CASE(
    "breaker_state_machine: slow calls timed by the driver, a time window, isolate, disable and "
    "reset, as circuit_breaker::try_execute",
    "[decision][breaker]") {
  const keel::circuit_breaker_options o{
      .trip =
          keel::failure_ratio_time{.period = 10s, .buckets = 10, .minimum_calls = 2, .ratio = 1.0},
      .slow_calls = keel::slow_call_ratio{.threshold = 2s, .ratio = 0.5},
      .open_duration = 4s};
  const std::vector<step> script = {
      ok(1s),                 // timed: not slow
      ok(3s),                 // slow: 1 of 2, opens on the slow-call ratio
      ok(),                   // rejected
      wait(4s),               //
      ok(1s),                 // the probe: closed
      manual(step::isolate),  //
      ok(),                   // rejected: isolated
      manual(step::disable),  //
      bad(),
      bad(),
      ok(3s),               // counted, never trips
      manual(step::reset),  //
      ok(),                 //
  };
  const trace t = same_both_ways(o, script);
  const std::vector<std::string> expected = {
      "changed(closed -> open, 4000000000ns) from /db",
      "opened(3, 0.000000, 4000000000ns, 4000000000ns) from /db",
      "rejected(open, open, 4000000000ns) from /db",
      "changed(open -> half-open, 8000000000ns) from /db",
      "half_opened(8000000000ns) from /db",
      "changed(half-open -> closed, 9000000000ns) from /db",
      "closed(9000000000ns) from /db",
      "changed(closed -> isolated, 9000000000ns) from /db",
      "rejected(isolated, isolated, none) from /db",
      "changed(isolated -> disabled, 9000000000ns) from /db",
      "changed(disabled -> closed, 12000000000ns) from /db",
      "closed(12000000000ns) from /db",
  };
  CHECK(t.events == expected);
}

TEST_CASE("breaker_state_machine: failures_in_period driven by hand, as try_execute",
          "[decision][breaker]") {
  const keel::circuit_breaker_options o{
      .trip = keel::failures_in_period{.threshold = 3, .period = 10s}, .open_duration = 2s};
  const std::vector<step> script = {
      bad(), wait(6s), bad(), ok(), wait(5s),  // the first failure has expired
      bad(),                                   // 2 in the period
      bad(),                                   // 3: opens
      ok(),  wait(2s), ok(),  ok(),
  };
  const trace t = same_both_ways(o, script);
  CHECK(t.events.size() == 7);
  CHECK(t.events[1] == "opened(1, 1.000000, 2000000000ns, 11000000000ns) from /db");
}

TEST_CASE("breaker_state_machine: releasing a rejection frees no probe slot",
          "[circuit_breaker][decision][regression]") {
  keel::breaker_state_machine core({.trip = keel::consecutive_failures{.threshold = 1},
                                    .open_duration = 1s,
                                    .permitted_probes = 1});
  time_point t{10s};
  core.record(core.try_acquire(t), call_result::failure, t);
  t += 2s;
  auto probe = core.try_acquire(t);
  auto rejected = core.try_acquire(t);
  REQUIRE(probe.admitted);
  REQUIRE_FALSE(rejected.admitted);
  core.release(rejected);                     // e.g. a driver's guard on every admission
  CHECK_FALSE(core.try_acquire(t).admitted);  // still one probe out of one
  core.release(probe);
  CHECK(core.try_acquire(t).admitted);  // the probe's slot is free again
}

// SPDX-License-Identifier: BSL-1.0
// keel::bulkhead and its decision core: options, the one-step admission, the
// permit released exactly once, the queue (FIFO, LIFO, bounds), waiting in
// virtual time (a grant from another thread, an expiry at exactly max_wait,
// a stop request), set_limit, events and counters, and its place in a
// pipeline (a breaker outside never counts its rejections).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <keel/admission.hpp>
#include <keel/circuit_breaker.hpp>
#include <keel/pipeline.hpp>
#include <keel/retry.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;
using keel::errc;
using keel::time_point;
using keel::wait_end;
using keel::wait_start;

namespace {

using venv = keel::testing::virtual_environment;
using core_t = keel::bulkhead_core<keel::testing::manual_clock>;
using log_t = keel::testing::recording_listener<keel::bulkhead_rejected, keel::bulkhead_queued,
                                                keel::bulkhead_granted>;

time_point at(keel::duration d) { return time_point{d}; }

keel::bulkhead_options waiting(std::uint32_t permits, std::uint32_t queue, keel::duration wait,
                               keel::queue_order order = keel::queue_order::fifo) {
  keel::bulkhead_options o;
  o.max_concurrent = permits;
  o.max_queue = queue;
  o.max_wait = wait;
  o.order = order;
  return o;
}

// Spins (yielding, never sleeping) until `done()`.
template <class F>
void until(F done) {
  while (!done()) std::this_thread::yield();
}

}  // namespace

// ---- Options ----------------------------------------------------------------

TEST_CASE("bulkhead options: resilience4j's defaults, and each rule names its field",
          "[admission][bulkhead]") {
  constexpr keel::bulkhead_options d{};
  static_assert(d.max_concurrent == 25 && d.max_queue == 0 && d.max_wait == keel::duration::zero());
  static_assert(d.order == keel::queue_order::fifo && !d.retry_after);
  static_assert(!d.validate());
  const auto field = [](const keel::bulkhead_options& o) {
    const auto p = o.validate();
    return p ? std::string(p->field) : std::string();
  };
  keel::bulkhead_options o;
  o.max_concurrent = 0;
  CHECK(field(o) == "bulkhead_options.max_concurrent");
  o = {};
  o.max_wait = -1ns;
  CHECK(field(o) == "bulkhead_options.max_wait");
  o = {};
  o.max_queue = 4;  // a queue nobody could wait in
  CHECK(field(o) == "bulkhead_options.max_wait");
  o = {};
  o.max_wait = 10ms;  // a wait with no queue
  CHECK(field(o) == "bulkhead_options.max_queue");
  o = waiting(1, keel::unbounded_queue, keel::duration::max());
  CHECK(field(o).empty());
  o.retry_after = -1ms;
  CHECK(field(o) == "bulkhead_options.retry_after");
#if KEEL_HAS_EXCEPTIONS
  keel::bulkhead_options bad;
  bad.max_concurrent = 0;
  CHECK_THROWS_AS(keel::bulkhead<>(bad), keel::config_error);
  CHECK_THROWS_AS(core_t(bad, keel::testing::manual_clock()), keel::config_error);
#endif
  CHECK(to_string_view(keel::queue_order::lifo) == "lifo");
  CHECK(to_string_view(keel::bulkhead_rejection::wait_expired) == "wait_expired");
  CHECK(to_string_view(keel::event_kind::bulkhead_granted) == "bulkhead_granted");
}

// ---- Admission and the permit -------------------------------------------------

TEST_CASE("bulkhead: max_concurrent calls at once, the next refused with a rejection",
          "[admission][bulkhead]") {
  const keel::bulkhead<> b({.max_concurrent = 2});
  CHECK(b.available() == 2);
  auto p1 = b.try_acquire();
  auto p2 = b.try_acquire();
  REQUIRE(p1);
  REQUIRE(p2);
  CHECK(b.in_flight() == 2);
  CHECK(b.available() == 0);
  auto p3 = b.try_acquire();
  CHECK_FALSE(p3);
  bool ran = false;
  const auto o = b.try_execute([&] {
    ran = true;
    return 1;
  });
  CHECK_FALSE(ran);
  CHECK(o.is(errc::bulkhead_full));
  CHECK(keel::is_rejection(o));
  CHECK(o.code() == keel::condition::rejected);
  CHECK_FALSE(o.retry_after());  // none by default
  p1.release();
  CHECK(b.try_execute([&] { return b.in_flight(); }).value() == 2);  // p2 and this call
  CHECK(b.in_flight() == 1);
}

TEST_CASE("bulkhead: a rejection carries options.retry_after when set", "[admission][bulkhead]") {
  keel::bulkhead_options o;
  o.max_concurrent = 1;
  o.retry_after = 250ms;
  const keel::bulkhead<> b(o);
  auto held = b.try_acquire();
  const auto r = b.try_execute([] { return 1; });
  REQUIRE(r.retry_after());
  CHECK(*r.retry_after() == 250ms);
#if KEEL_HAS_EXCEPTIONS
  try {
    b.execute([] { return 1; });
    FAIL("no throw");
  } catch (const keel::error& e) {
    CHECK(e.code() == errc::bulkhead_full);
    CHECK(e.retry_after() == std::optional<keel::duration>(250ms));
  }
#endif
}

TEST_CASE("bulkhead: the permit is move-only and released exactly once (resilience4j #263)",
          "[admission][bulkhead]") {
  using permit = keel::bulkhead<>::permit;
  static_assert(!std::is_copy_constructible_v<permit> && !std::is_copy_assignable_v<permit>);
  static_assert(std::is_nothrow_move_constructible_v<permit>);
  static_assert(std::is_nothrow_move_assignable_v<permit>);
  const keel::bulkhead<> b({.max_concurrent = 2});
  {
    auto p = b.try_acquire();
    p.release();
    p.release();  // a second release gives nothing back
    CHECK(b.in_flight() == 0);
    permit moved = std::move(p);  // NOLINT(bugprone-use-after-move): released: moves nothing
    CHECK_FALSE(moved);
  }
  CHECK(b.in_flight() == 0);
  {
    auto a = b.try_acquire();
    permit c = std::move(a);
    CHECK_FALSE(a);  // NOLINT(bugprone-use-after-move)
    a.release();     // the moved-from permit holds nothing
    CHECK(b.in_flight() == 1);
    auto d = b.try_acquire();
    CHECK(b.in_flight() == 2);
    c = std::move(d);  // c's permit is released, d's moves in
    CHECK(b.in_flight() == 1);
    permit& same = c;
    c = std::move(same);  // self-move keeps it
    CHECK(b.in_flight() == 1);
  }
  CHECK(b.in_flight() == 0);
  // No permit was made by the releases: still exactly two.
  auto x = b.try_acquire();
  auto y = b.try_acquire();
  auto z = b.try_acquire();
  CHECK((x && y && !z));
}

TEST_CASE("bulkhead core: a double release through the core's permit creates no permit",
          "[admission][bulkhead]") {
  keel::testing::manual_clock clock;
  core_t core({.max_concurrent = 1}, clock);
  auto p = core.try_acquire();
  REQUIRE(p);
  CHECK_FALSE(core.try_acquire());
  p.release();
  p.release();
  auto q = core.try_acquire();
  REQUIRE(q);
  CHECK_FALSE(core.try_acquire());  // one permit, still
  CHECK(core.in_flight() == 1);
}

TEST_CASE("bulkhead: the permit is given back when the call throws or returns an error",
          "[admission][bulkhead]") {
  const keel::bulkhead<> b({.max_concurrent = 1});
  const auto thrown = b.try_execute([]() -> int { throw std::runtime_error("down"); });
  CHECK(thrown.has_exception());
  CHECK(b.in_flight() == 0);
  struct hostile {  // a result whose copy and move throw
    int v = 0;
    explicit hostile(int x) : v(x) {}
    hostile(const hostile&) { throw std::runtime_error("copy"); }
    hostile& operator=(const hostile&) = default;
  };
  const auto o = b.try_execute([] { return hostile(7); });
  CHECK(b.in_flight() == 0);
  CHECK(b.try_acquire());
  static_cast<void>(o);
}

TEST_CASE("bulkhead: a two-step permit outlives every copy of the bulkhead",
          "[admission][bulkhead]") {
  std::optional<keel::bulkhead<>::permit> kept;
  {
    const keel::bulkhead<> b({.max_concurrent = 1});
    const keel::bulkhead<> copy = b;  // NOLINT(performance-unnecessary-copy-initialization)
    kept.emplace(copy.try_acquire());
    CHECK(b.in_flight() == 1);  // copies share the permits
  }
  REQUIRE(*kept);
  kept->release();  // the state is still alive (ASan would see it otherwise)
  CHECK_FALSE(*kept);
}

TEST_CASE("bulkhead: copies and setters share one bulkhead; with_environment makes a new one",
          "[admission][bulkhead]") {
  venv env;
  const auto b = keel::bulkhead<>({.max_concurrent = 1}).with_environment(env);
  log_t log;
  const auto heard = b.with_listener(log).named("db");
  auto p = b.try_acquire();
  CHECK(heard.in_flight() == 1);
  CHECK(heard.try_execute([] { return 1; }).is(errc::bulkhead_full));
  REQUIRE(log.count<keel::bulkhead_rejected>() == 1);
  CHECK(log.all<keel::bulkhead_rejected>()[0].source.policy == "db");
  CHECK(heard.name() == "db");
  CHECK(b.name() == "bulkhead");
  const auto fresh = heard.with_environment(venv());
  CHECK(fresh.in_flight() == 0);
  CHECK(fresh.try_execute([] { return 1; }).value() == 1);
}

// ---- The queue, driven by hand -----------------------------------------------

TEST_CASE("bulkhead core: FIFO grants the oldest waiter, LIFO the newest",
          "[admission][bulkhead]") {
  const auto order = GENERATE(keel::queue_order::fifo, keel::queue_order::lifo);
  keel::testing::manual_clock clock;
  core_t core(waiting(1, 3, 1s, order), clock);
  auto held = core.try_acquire();
  keel::bulkhead_waiter a;
  keel::bulkhead_waiter b;
  keel::bulkhead_waiter c;
  for (keel::bulkhead_waiter* w : {&a, &b, &c}) {
    CHECK(core.enqueue(*w, at(0ms), at(1s)).status == wait_start::queued);
  }
  CHECK(core.queued() == 3);
  CHECK_FALSE(core.try_acquire());  // waiters are never overtaken
  held.release();
  keel::bulkhead_waiter& first = order == keel::queue_order::fifo ? a : c;
  keel::bulkhead_waiter& last = order == keel::queue_order::fifo ? c : a;
  CHECK(first.granted());
  CHECK_FALSE(b.granted());
  CHECK(core.in_flight() == 1);
  CHECK(core.queued() == 2);
  auto got = core.finish_wait(first, at(0ms), false);
  REQUIRE(got.status == wait_end::granted);
  got.held.release();
  CHECK(b.granted());
  auto got_b = core.finish_wait(b, at(0ms), false);
  REQUIRE(got_b.status == wait_end::granted);
  got_b.held.release();
  auto got_last = core.finish_wait(last, at(0ms), false);
  REQUIRE(got_last.status == wait_end::granted);
  got_last.held.release();
  CHECK(core.in_flight() == 0);
  CHECK(core.queued() == 0);
  CHECK(core.available() == 1);
}

TEST_CASE("bulkhead core: a wait ends at exactly its end; a permit freed then goes to the pool",
          "[admission][bulkhead]") {
  keel::testing::manual_clock clock;
  core_t core(waiting(1, 2, 50ms), clock);
  SECTION("granted 1 ns before the end") {
    auto held = core.try_acquire();
    keel::bulkhead_waiter w;
    REQUIRE(core.enqueue(w, at(0ms), at(50ms)).status == wait_start::queued);
    CHECK(core.finish_wait(w, at(50ms) - 1ns, false).status == wait_end::waiting);
    clock.advance(50ms - 1ns);
    held.release();  // reads the clock: 1 ns before the end
    CHECK(w.granted());
    // Granted before the end, the permit is the waiter's even when it looks later.
    auto e = core.finish_wait(w, at(60ms), false);
    CHECK(e.status == wait_end::granted);
    CHECK(core.in_flight() == 1);
  }
  SECTION("a release at the end expires the waiter instead") {
    auto held = core.try_acquire();
    keel::bulkhead_waiter w;
    REQUIRE(core.enqueue(w, at(0ms), at(50ms)).status == wait_start::queued);
    clock.advance(50ms);
    held.release();
    CHECK_FALSE(w.granted());
    CHECK(core.queued() == 0);
    CHECK(core.finish_wait(w, at(50ms), false).status == wait_end::expired);
    CHECK(core.in_flight() == 0);
    CHECK(core.available() == 1);
  }
  SECTION("a waiter that looks at its end expires itself") {
    auto held = core.try_acquire();
    keel::bulkhead_waiter w;
    REQUIRE(core.enqueue(w, at(0ms), at(50ms)).status == wait_start::queued);
    CHECK(core.finish_wait(w, at(50ms), false).status == wait_end::expired);
    CHECK(core.queued() == 0);
    held.release();
    CHECK(core.available() == 1);
  }
  SECTION("expire(now) ends, by hand, every wait over by now") {
    auto held = core.try_acquire();
    keel::bulkhead_waiter w1;
    keel::bulkhead_waiter w2;
    REQUIRE(core.enqueue(w1, at(0ms), at(20ms)).status == wait_start::queued);
    REQUIRE(core.enqueue(w2, at(0ms), at(50ms)).status == wait_start::queued);
    core.expire(at(20ms));
    CHECK(core.queued() == 1);
    CHECK(core.finish_wait(w1, at(20ms), false).status == wait_end::expired);
    held.release();
    CHECK(w2.granted());
    CHECK(core.finish_wait(w2, at(20ms), false).status == wait_end::granted);
  }
}

TEST_CASE("bulkhead core: a waiter cancelled as it is granted gives the permit on",
          "[admission][bulkhead]") {
  keel::testing::manual_clock clock;
  core_t core(waiting(1, 2, 1s), clock);
  auto held = core.try_acquire();
  keel::bulkhead_waiter first;
  keel::bulkhead_waiter second;
  REQUIRE(core.enqueue(first, at(0ms), at(1s)).status == wait_start::queued);
  REQUIRE(core.enqueue(second, at(0ms), at(1s)).status == wait_start::queued);
  held.release();
  REQUIRE(first.granted());  // granted; its caller stops at the same moment
  CHECK(core.finish_wait(first, at(0ms), true).status == wait_end::cancelled);
  CHECK(second.granted());  // the permit went on, not lost
  CHECK(core.in_flight() == 1);
  auto e = core.finish_wait(second, at(0ms), true);  // cancelled too: back to the pool
  CHECK(e.status == wait_end::cancelled);
  CHECK(core.in_flight() == 0);
  CHECK(core.queued() == 0);
  CHECK(core.available() == 1);
}

TEST_CASE("bulkhead core: the queue's bound, a wait with no time, a free permit at enqueue",
          "[admission][bulkhead]") {
  keel::testing::manual_clock clock;
  core_t core(waiting(1, 1, 1s), clock);
  keel::bulkhead_waiter early;
  auto at_once = core.enqueue(early, at(0ms), at(1s));  // free and nobody waits: granted
  CHECK(at_once.status == wait_start::granted);
  CHECK(at_once.held);
  keel::bulkhead_waiter w;
  keel::bulkhead_waiter over;
  CHECK(core.enqueue(over, at(5ms), at(5ms)).status == wait_start::no_time);
  CHECK(core.enqueue(w, at(0ms), at(1s)).status == wait_start::queued);
  CHECK(core.enqueue(over, at(0ms), at(1s)).status == wait_start::queue_full);
  CHECK(core.queued() == 1);
  CHECK(core.finish_wait(w, at(0ms), true).status == wait_end::cancelled);
  CHECK(core.queued() == 0);
}

TEST_CASE("bulkhead core: set_limit grants waiters at once when raised, drains when lowered",
          "[admission][bulkhead]") {
  keel::testing::manual_clock clock;
  core_t core(waiting(2, 4, 1s), clock);
  auto a = core.try_acquire();
  auto b = core.try_acquire();
  keel::bulkhead_waiter w1;
  keel::bulkhead_waiter w2;
  keel::bulkhead_waiter w3;
  REQUIRE(core.enqueue(w1, at(0ms), at(1s)).status == wait_start::queued);
  REQUIRE(core.enqueue(w2, at(0ms), at(10ms)).status == wait_start::queued);
  REQUIRE(core.enqueue(w3, at(0ms), at(1s)).status == wait_start::queued);
  core.set_limit(5, at(10ms));  // three more: w1, w3 granted; w2's wait is over
  CHECK(core.limit() == 5);
  CHECK(w1.granted());
  CHECK_FALSE(w2.granted());
  CHECK(w3.granted());
  CHECK(core.in_flight() == 4);
  CHECK(core.available() == 1);
  CHECK(core.finish_wait(w2, at(10ms), false).status == wait_end::expired);
  auto p1 = core.finish_wait(w1, at(10ms), false);
  auto p3 = core.finish_wait(w3, at(10ms), false);
  core.set_limit(1, at(10ms));  // four run: they finish, none starts until fewer than one
  CHECK(core.in_flight() == 4);
  CHECK(core.available() == 0);
  a.release();
  b.release();
  p1.held.release();
  CHECK_FALSE(core.try_acquire());
  p3.held.release();
  auto again = core.try_acquire();
  CHECK(again);
  CHECK_FALSE(core.try_acquire());
  core.set_limit(0, at(10ms));  // 0 pauses admission
  again.release();
  CHECK_FALSE(core.try_acquire());
}

TEST_CASE("bulkhead core: a clock that jumps backwards neither expires nor wraps",
          "[admission][bulkhead]") {
  keel::testing::manual_clock clock;
  core_t core(waiting(1, 2, 1s), clock);
  auto held = core.try_acquire();
  keel::bulkhead_waiter w;
  REQUIRE(core.enqueue(w, at(100ms), at(150ms)).status == wait_start::queued);
  CHECK(core.finish_wait(w, at(50ms), false).status == wait_end::waiting);  // earlier: waits
  CHECK(core.finish_wait(w, time_point::min(), false).status == wait_end::waiting);
  keel::bulkhead_waiter far;
  REQUIRE(core.enqueue(far, time_point::max() - 1ns, time_point::max()).status ==
          wait_start::queued);
  CHECK(core.finish_wait(far, time_point::max() - 1ns, false).status == wait_end::waiting);
  CHECK(core.finish_wait(far, time_point::max(), false).status == wait_end::expired);
  CHECK(core.finish_wait(w, at(150ms), false).status == wait_end::expired);
}

// ---- Waiting in virtual time ---------------------------------------------------

TEST_CASE("bulkhead: a waiter expires at exactly max_wait of virtual time",
          "[admission][bulkhead][virtual]") {
  venv env;
  log_t log;
  const auto b =
      keel::bulkhead<>(waiting(1, 4, 50ms)).with_environment(env).with_listener(log).named("db");
  auto held = b.try_acquire();
  bool ran = false;
  const auto o = b.try_execute([&] {
    ran = true;
    return 1;
  });
  CHECK_FALSE(ran);
  CHECK(o.is(errc::bulkhead_full));
  CHECK(env.elapsed() == 50ms);
  CHECK(env.sleeps() == std::vector<keel::duration>{50ms});
  CHECK(b.queued() == 0);
  CHECK(b.in_flight() == 1);
  REQUIRE(log.events().size() == 2);
  const auto q = log.all<keel::bulkhead_queued>();
  REQUIRE(q.size() == 1);
  CHECK(q[0].in_flight == 1);
  CHECK(q[0].queued == 1);
  CHECK(q[0].max_wait == 50ms);
  const auto r = log.all<keel::bulkhead_rejected>();
  REQUIRE(r.size() == 1);
  CHECK(r[0].reason == keel::bulkhead_rejection::wait_expired);
  CHECK(r[0].in_flight == 1);
  CHECK(r[0].queued == 0);
  CHECK(r[0].source.policy == "db");
}

TEST_CASE("bulkhead: the wait is bounded by the context's deadline", "[admission][bulkhead]") {
  venv env;
  const auto b = keel::bulkhead<>(waiting(1, 4, 1s)).with_environment(env);
  auto held = b.try_acquire();
  SECTION("a deadline sooner than max_wait ends the wait there") {
    keel::context ctx;
    ctx.tighten_deadline(env.now() + 30ms, env);
    const auto o = b.try_execute(ctx, [] { return 1; });
    CHECK(o.is(errc::bulkhead_full));
    CHECK(env.sleeps() == std::vector<keel::duration>{30ms});
    CHECK(env.elapsed() == 30ms);
  }
  SECTION("a deadline already passed refuses at once, with no wait") {
    keel::context ctx;
    ctx.tighten_deadline(env.now(), env);
    CHECK(b.try_execute(ctx, [] { return 1; }).is(errc::bulkhead_full));
    CHECK(env.sleeps().empty());
    CHECK(b.queued() == 0);
  }
  SECTION("max_wait = duration::max() waits until time's end, and no arithmetic wraps") {
    const auto forever =
        keel::bulkhead<>(waiting(1, 1, keel::duration::max())).with_environment(env);
    auto h = forever.try_acquire();
    CHECK(forever.try_execute([] { return 1; }).is(errc::bulkhead_full));
    CHECK(env.now() == time_point::max());  // the manual clock saturated
  }
}

TEST_CASE("bulkhead: a waiter on another thread is granted when the holder releases",
          "[admission][bulkhead][virtual]") {
  venv env;
  log_t log;
  const auto b = keel::bulkhead<>(waiting(1, 4, 50ms)).with_environment(env).with_listener(log);
  auto held = b.try_acquire();
  std::atomic<bool> released{false};
  // The waiter's sleep holds (in real time) until the holder has released: the
  // virtual clock moves only when the test says.
  env.sleeper().on_sleep([&](keel::duration) { until([&] { return released.load(); }); });
  std::optional<keel::outcome<int>> got;
  std::thread waiter([&] { got = b.try_execute([&] { return static_cast<int>(b.in_flight()); }); });
  until([&] { return b.queued() == 1; });
  env.advance(30ms);
  held.release();  // granted at 30 ms: before the 50 ms end
  released = true;
  waiter.join();
  REQUIRE(got);
  CHECK(got->value() == 1);
  CHECK(env.elapsed() == 30ms);  // the sleep was cut short: no advance
  CHECK(b.in_flight() == 0);
  CHECK(b.queued() == 0);
  const auto g = log.all<keel::bulkhead_granted>();
  REQUIRE(g.size() == 1);
  CHECK(g[0].waited == 30ms);
  CHECK(log.count<keel::bulkhead_rejected>() == 0);
}

TEST_CASE("bulkhead: a stop request wakes a waiter at once", "[admission][bulkhead][virtual]") {
  venv env;
  const auto b = keel::bulkhead<>(waiting(1, 4, 50ms)).with_environment(env);
  auto held = b.try_acquire();
  std::stop_source stop;
  SECTION("from another thread, while it waits") {
    // Held until request_stop() has returned, which is after it ran the
    // callback that stops the waiter's own wake token (stop_requested() turns
    // true before that, and the virtual sleeper would advance in between).
    std::atomic<bool> stopped{false};
    env.sleeper().on_sleep([&](keel::duration) { until([&] { return stopped.load(); }); });
    std::optional<keel::outcome<int>> got;
    std::thread waiter([&] { got = b.try_execute(stop.get_token(), [] { return 1; }); });
    until([&] { return b.queued() == 1; });
    stop.request_stop();
    stopped.store(true);
    waiter.join();
    REQUIRE(got);
    CHECK(got->is(errc::cancelled));
    CHECK_FALSE(keel::is_rejection(*got));
  }
  SECTION("requested before it would wait: cancelled without waiting") {
    stop.request_stop();
    CHECK(b.try_execute(stop.get_token(), [] { return 1; }).is(errc::cancelled));
    CHECK(env.sleeps().empty());
  }
  CHECK(env.elapsed() == 0ms);
  CHECK(b.queued() == 0);
  CHECK(b.in_flight() == 1);
  held.release();
  CHECK(b.available() == 1);
}

TEST_CASE("bulkhead: a sleeper that throws ends the wait as a rejection, permits intact",
          "[admission][bulkhead][virtual]") {
  venv env;
  const auto b = keel::bulkhead<>(waiting(1, 4, 50ms)).with_environment(env);
  auto held = b.try_acquire();
  env.sleeper().on_sleep([](keel::duration) { throw std::runtime_error("sleeper"); });
  CHECK(b.try_execute([] { return 1; }).is(errc::bulkhead_full));
  CHECK(b.queued() == 0);
  CHECK(b.in_flight() == 1);
}

TEST_CASE("bulkhead: acquire() waits as run() does, for the two-step API",
          "[admission][bulkhead][virtual]") {
  venv env;
  const auto b = keel::bulkhead<>(waiting(1, 1, 20ms)).with_environment(env);
  auto first = b.acquire();
  REQUIRE(first);
  const auto second = b.acquire();
  CHECK_FALSE(second);
  CHECK(second.refused == errc::bulkhead_full);
  CHECK(env.elapsed() == 20ms);
  first.held.release();
  CHECK(b.acquire());
}

TEST_CASE("bulkhead: set_limit on the driver hands permits to waiting threads",
          "[admission][bulkhead][virtual]") {
  venv env;
  const auto b = keel::bulkhead<>(waiting(1, 4, 50ms)).with_environment(env);
  auto held = b.try_acquire();
  std::atomic<bool> raised{false};
  env.sleeper().on_sleep([&](keel::duration) { until([&] { return raised.load(); }); });
  std::optional<keel::outcome<int>> got;
  std::thread waiter([&] { got = b.try_execute([] { return 1; }); });
  until([&] { return b.queued() == 1; });
  b.set_limit(2);
  raised = true;
  waiter.join();
  REQUIRE(got);
  CHECK(got->value() == 1);
  CHECK(b.limit() == 2);
  CHECK(b.in_flight() == 1);
}

// ---- Events, counters, pipelines ----------------------------------------------

TEST_CASE("bulkhead: counters count its events; a full queue is its own reason",
          "[admission][bulkhead]") {
  venv env;
  keel::counters c;
  log_t log;
  const auto b = keel::bulkhead<>(waiting(1, 1, 10ms))
                     .with_environment(env)
                     .with_listener(log)
                     .with_counters(c);
  auto held = b.try_acquire();
  // One waits (queued, then expires); while it waits, another finds the queue full.
  env.sleeper().on_sleep([&](keel::duration) {
    CHECK(b.try_execute(keel::context(), [] { return 1; }).is(errc::bulkhead_full));
  });
  CHECK(b.try_execute([] { return 1; }).is(errc::bulkhead_full));
  CHECK(c.count<keel::bulkhead_queued>() == 1);
  CHECK(c.count<keel::bulkhead_rejected>() == 2);
  CHECK(c.count<keel::bulkhead_granted>() == 0);
  const auto r = log.all<keel::bulkhead_rejected>();
  REQUIRE(r.size() == 2);
  CHECK(r[0].reason == keel::bulkhead_rejection::queue_full);
  CHECK(r[0].queued == 1);
  CHECK(r[1].reason == keel::bulkhead_rejection::wait_expired);
  const auto plain = keel::bulkhead<>({.max_concurrent = 1}).with_counters(c);
  auto p = plain.try_acquire();
  CHECK(plain.try_execute([] { return 1; }).is(errc::bulkhead_full));
  CHECK(c.count<keel::bulkhead_rejected>() == 3);
}

TEST_CASE("bulkhead in a pipeline: a breaker outside never counts its rejections",
          "[admission][bulkhead][pipeline]") {
  keel::circuit_breaker breaker{{.trip = keel::consecutive_failures{.threshold = 1}}};
  const keel::bulkhead<> b({.max_concurrent = 1});
  const auto guarded = keel::pipeline(std::ref(breaker), b);
  auto held = b.try_acquire();
  for (int i = 0; i < 5; ++i) {
    CHECK(guarded.try_execute([] { return 1; }).is(errc::bulkhead_full));
  }
  CHECK(breaker.state() == keel::circuit_state::closed);
  CHECK(breaker.metrics().failures == 0);
  held.release();
  CHECK(guarded.try_execute([] { return 1; }).value() == 1);
  // A real failure still trips it.
  CHECK(guarded.try_execute([]() -> int { throw std::runtime_error("down"); }).has_exception());
  CHECK(breaker.state() == keel::circuit_state::open);
  CHECK(b.in_flight() == 0);
}

TEST_CASE(
    "bulkhead in a pipeline: inside a retry, a rejection is not retried and no permit is "
    "held during a backoff",
    "[admission][bulkhead][pipeline]") {
  venv env;
  const auto b = keel::bulkhead<>({.max_concurrent = 1}).with_environment(env);
  const auto r = keel::retry({.max_attempts = 3}).with_environment(env);
  const auto guarded = keel::pipeline(r, b);
  int calls = 0;
  std::vector<std::uint32_t> in_flight_at_sleep;
  env.sleeper().on_sleep([&](keel::duration) { in_flight_at_sleep.push_back(b.in_flight()); });
  const auto o = guarded.try_execute([&]() -> int {
    if (++calls < 3) throw std::runtime_error("flaky");
    return 1;
  });
  CHECK(o.value() == 1);
  CHECK(calls == 3);
  CHECK(in_flight_at_sleep == std::vector<std::uint32_t>{0, 0});
  auto held = b.try_acquire();
  int attempts = 0;
  CHECK(guarded
            .try_execute([&] {
              ++attempts;
              return 1;
            })
            .is(errc::bulkhead_full));
  CHECK(attempts == 0);
  CHECK(env.sleeps().size() == 2);  // the rejection was not retried
}

TEST_CASE("bulkhead: many threads never exceed max_concurrent (exact counts)",
          "[admission][bulkhead][threads]") {
  const keel::bulkhead<> b({.max_concurrent = 3});
  std::atomic<int> running{0};
  std::atomic<int> peak{0};
  std::atomic<int> ok{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        const auto o = b.try_execute([&] {
          const int now = running.fetch_add(1) + 1;
          int seen = peak.load();
          while (now > seen && !peak.compare_exchange_weak(seen, now)) {
          }
          std::this_thread::yield();
          running.fetch_sub(1);
          return 1;
        });
        (o.has_value() ? ok : refused).fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(peak.load() <= 3);
  CHECK(ok.load() + refused.load() == 12000);
  CHECK(b.in_flight() == 0);
  CHECK(b.available() == 3);
}

TEST_CASE("bulkhead core: the largest limit, and the queue's count, at their widths",
          "[admission][bulkhead]") {
  keel::testing::manual_clock clock;
  constexpr std::uint32_t most = 0xFFFF'FFFFu;
  core_t core(waiting(most, keel::unbounded_queue, keel::duration::max()), clock);
  auto p = core.try_acquire();
  REQUIRE(p);
  CHECK(core.available() == most - 1);
  CHECK(core.limit() == most);
  core.set_limit(1, at(0ms));  // one runs: a new call must wait
  keel::bulkhead_waiter w;
  REQUIRE(core.enqueue(w, at(0ms), time_point::max()).status == wait_start::queued);
  CHECK(core.queued() == 1);
  CHECK(core.in_flight() == 1);  // the waiter's count did not spill into the permits
  p.release();
  CHECK(w.granted());
  auto e = core.finish_wait(w, time_point::max(), false);
  CHECK(e.status == wait_end::granted);
  CHECK(core.in_flight() == 1);
  CHECK(core.queued() == 0);
}

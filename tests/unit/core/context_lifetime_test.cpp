// SPDX-License-Identifier: BSL-1.0
// A context copied inside a call may outlive the policy that set its deadline
// (a per-call pipeline, say): it keeps its own copy of that policy's clock.
// The policies are heap-allocated and deleted, so that under ASan a context
// still reading them would be a heap-use-after-free.
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>

#include <keel/core/context.hpp>
#include <keel/core/environment.hpp>
#include <keel/pipeline.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_environment.hpp>
#include <keel/timeout.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

namespace {

using keel::duration;
using keel::time_point;
using venv = keel::testing::virtual_environment;

time_point at(duration d) { return time_point{} + d; }

/// A manual clock whose copies are counted through `alive`.
struct counted_clock {
  keel::testing::manual_clock clock;
  std::shared_ptr<int> alive = std::make_shared<int>(0);
  time_point now() const noexcept { return clock.now(); }
};

/// An environment with its clock in a member of its own name, not `clock`.
struct plain_env {
  keel::testing::manual_clock time;
  time_point now() const noexcept { return time.now(); }
  bool sleep_for(duration, const std::stop_token&) const { return true; }
  double uniform() const { return 0.5; }
};

/// A large environment, kept whole.
struct big_env {
  keel::testing::manual_clock clock;
  char padding[256] = {};
  time_point now() const noexcept { return clock.now(); }
  bool sleep_for(duration, const std::stop_token&) const { return true; }
  double uniform() const { return 0.5; }
};

}  // namespace

// Regression: the context pointed at the environment inside the timeout; a copy
// that outlived a per-call pipeline read freed memory.
TEST_CASE("context: a copy outlives the per-call timeout that set its deadline",
          "[core][context][regression]") {
  venv env;
  std::optional<keel::context> kept;
  {
    auto* per_call =
        new auto(keel::pipeline(keel::timeout{{.timeout = 100ms}}.with_environment(env)));
    const auto o = per_call->try_execute([&](const keel::context& ctx) {
      kept = ctx;
      return 1;
    });
    CHECK(o.value() == 1);
    delete per_call;
  }
  REQUIRE(kept.has_value());
  CHECK(kept->deadline() == at(100ms));
  env.advance(40ms);
  CHECK(kept->now() == at(40ms));
  CHECK(kept->remaining() == 60ms);
  CHECK_FALSE(kept->expired());
  const keel::context copy = *kept;  // a copy of the copy reads the same clock
  kept.reset();
  env.advance(60ms);
  CHECK(copy.now() == at(100ms));
  CHECK(copy.remaining() == 0ms);
  CHECK(copy.expired());
}

TEST_CASE("context: a copy outlives a timeout whose environment holds its clock as a member",
          "[core][context][regression]") {
  keel::testing::manual_clock clock;
  std::optional<keel::context> kept;
  auto* t = new auto(keel::timeout{{.timeout = 5s}}.with_environment(
      keel::basic_environment<keel::testing::manual_clock>{clock}));
  (void)t->try_execute([&](const keel::context& ctx) {
    kept = ctx;
    return 0;
  });
  delete t;
  clock.advance(2s);
  CHECK(kept->now() == at(2s));
  CHECK(kept->remaining() == 3s);
  CHECK_FALSE(kept->expired());
}

TEST_CASE("context: a copy outlives a timeout whose environment is kept whole",
          "[core][context][regression]") {
  plain_env env;
  std::optional<keel::context> kept;
  auto* t = new auto(keel::timeout{{.timeout = 5s}}.with_environment(env));
  (void)t->try_execute([&](const keel::context& ctx) {
    kept = ctx;
    return 0;
  });
  delete t;
  env.time.advance(5s);
  CHECK(kept->now() == at(5s));
  CHECK(kept->remaining() == 0s);
  CHECK(kept->expired());
}

TEST_CASE("context: a copy outlives a timeout with a large environment",
          "[core][context][regression]") {
  big_env env;
  std::optional<keel::context> kept;
  auto* t = new auto(keel::timeout{{.timeout = 5s}}.with_environment(env));
  (void)t->try_execute([&](const keel::context& ctx) {
    kept = ctx;
    return 0;
  });
  delete t;
  env.clock.advance(1s);
  CHECK(kept->now() == at(1s));
  CHECK(kept->remaining() == 4s);
}

TEST_CASE("context: with the default environment a copy reads steady_clock after the timeout",
          "[core][context]") {
  std::optional<keel::context> kept;
  time_point before{};
  auto* t = new keel::timeout{{.timeout = 1h}};
  (void)t->try_execute([&](const keel::context& ctx) {
    before = keel::steady_clock{}.now();
    kept = ctx;
    return 0;
  });
  delete t;
  const time_point now = kept->now();
  CHECK(now >= before);
  CHECK(now <= keel::steady_clock{}.now());
  CHECK(kept->remaining() > 0s);
  CHECK(kept->remaining() <= 1h);
  CHECK_FALSE(kept->expired());
}

TEST_CASE("context: copies share one kept clock, released with the last of them",
          "[core][context]") {
  counted_clock clock;
  REQUIRE(clock.alive.use_count() == 1);
  {
    keel::context a;
    a.tighten_deadline(at(10s), clock);
    CHECK(clock.alive.use_count() == 2);  // one copy, kept for a and its copies
    keel::context b = a;
    keel::context c;
    c = b;
    const keel::context& same = c;
    c = same;  // self-assignment changes nothing
    CHECK(clock.alive.use_count() == 2);
    c = keel::context{};  // no deadline: steady_clock, nothing kept
    keel::context d = std::move(b);
    CHECK(clock.alive.use_count() == 2);
    clock.clock.advance(4s);
    CHECK(d.remaining() == 6s);
    CHECK(a.remaining() == 6s);
    a.tighten_deadline(at(8s), clock);  // tighter: a keeps a new copy, d the old one
    CHECK(clock.alive.use_count() == 3);
    CHECK(a.remaining() == 4s);
    CHECK(d.remaining() == 6s);
  }
  CHECK(clock.alive.use_count() == 1);  // nothing leaked
}

namespace {

/// A clock whose copies throw: the context cannot keep it.
struct uncopiable_clock {
  keel::testing::manual_clock clock;
  uncopiable_clock() = default;
  uncopiable_clock(const uncopiable_clock&) { throw std::runtime_error("no copy"); }
  uncopiable_clock& operator=(const uncopiable_clock&) = delete;
  time_point now() const noexcept { return clock.now(); }
};

}  // namespace

TEST_CASE("context: a clock it cannot keep makes the deadline count as passed", "[core][context]") {
  uncopiable_clock clock;
  keel::context ctx;
  ctx.tighten_deadline(at(10s), clock);  // the copy throws: caught, never escapes
  CHECK(ctx.deadline() == at(10s));
  CHECK(ctx.now() == time_point::max());
  CHECK(ctx.expired());
  CHECK(ctx.remaining() == 0s);
  const keel::context copy = ctx;
  CHECK(copy.expired());
}

// SPDX-License-Identifier: BSL-1.0
// execute / try_execute in the caller's context: its deadline and stop token
// bound the call as an outer timeout's would.
#include <chrono>
#include <stdexcept>
#include <stop_token>
#include <vector>

#include <keel/pipeline.hpp>
#include <keel/retry.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/virtual_environment.hpp>
#include <keel/timeout.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

namespace {
using venv = keel::testing::virtual_environment;

struct exhausted_listener {
  std::shared_ptr<std::vector<keel::give_up_reason>> reasons =
      std::make_shared<std::vector<keel::give_up_reason>>();
  void on(const keel::retries_exhausted& e) const { reasons->push_back(e.reason); }
};
}  // namespace

TEST_CASE("caller context: the callable sees the caller's deadline and stop token",
          "[core][context]") {
  venv env;
  std::stop_source stop;
  keel::context ctx(stop.get_token());
  ctx.tighten_deadline(env.now() + 250ms, env);
  auto r = keel::retry().with_environment(env);
  auto o = r.try_execute(ctx, [&](const keel::context& c) {
    CHECK(c.deadline() == keel::time_point{} + 250ms);
    CHECK(c.remaining() == 250ms);
    CHECK_FALSE(c.stop_requested());
    stop.request_stop();
    CHECK(c.stop_requested());
    return 1;
  });
  CHECK(o.value() == 1);
  CHECK(r.execute(ctx, [](const keel::context& c) { return c.remaining(); }) == 250ms);
}

TEST_CASE("caller context: a retry gives up when its next wait would pass the caller's deadline",
          "[core][context]") {
  venv env;
  keel::context ctx;
  ctx.tighten_deadline(env.now() + 250ms, env);
  exhausted_listener l;
  auto r = keel::retry({.max_attempts = 10, .backoff = keel::constant_backoff{100ms}})
               .with_environment(env)
               .with_listener(l);
  int calls = 0;
  auto o = r.try_execute(ctx, [&]() -> int {
    ++calls;
    throw std::runtime_error("down");
  });
  CHECK(o.has_exception());
  // Waits at 0 and 100 ms fit; at 200 ms only 50 ms are left: no third wait.
  CHECK(calls == 3);
  CHECK(env.now() == keel::time_point{} + 200ms);
  CHECK(*l.reasons == std::vector<keel::give_up_reason>{keel::give_up_reason::deadline});
}

TEST_CASE("caller context: an inner timeout keeps the earlier of its deadline and the caller's",
          "[core][context]") {
  venv env;
  keel::context ctx;
  ctx.tighten_deadline(env.now() + 50ms, env);
  auto p = keel::pipeline(keel::timeout({.timeout = 1s}).with_environment(env));
  auto o = p.try_execute(ctx, [&](const keel::context& c) {
    CHECK(c.deadline() == keel::time_point{} + 50ms);  // the caller's is earlier
    env.advance(60ms);
    return 1;
  });
  CHECK(o.is(keel::errc::timeout));
}

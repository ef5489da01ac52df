// SPDX-License-Identifier: BSL-1.0
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <vector>

#include <keel/pipeline.hpp>
#include <keel/testing/scripted.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"
#include "support/expected.hpp"

using namespace std::chrono_literals;

namespace {

// Until the real policies land in a test, these stand in for them.

/// Records when it is entered and left, into a shared journal.
struct recording_policy : keel::executable<recording_policy> {
  std::string name;
  std::shared_ptr<std::vector<std::string>> journal;

  template <class R, class Next>
  keel::outcome<R> run(Next&& next, keel::context& ctx) const {
    journal->push_back(name + ">");
    auto o = next(ctx);
    journal->push_back("<" + name);
    return o;
  }
};

/// Passes the call through unchanged.
struct pass_through : keel::executable<pass_through> {
  template <class R, class Next>
  keel::outcome<R> run(Next&& next, keel::context& ctx) const {
    return next(ctx);
  }
};

/// Refuses every call with a keel code, as an open breaker would.
struct refuse : keel::executable<refuse> {
  keel::errc code = keel::errc::circuit_open;
  template <class R, class Next>
  keel::outcome<R> run(Next&&, keel::context&) const {
    return keel::outcome<R>::from_keel(code, 2s);
  }
};

/// Calls the rest twice, setting the attempt, and returns the second outcome.
struct twice : keel::executable<twice> {
  template <class R, class Next>
  keel::outcome<R> run(Next&& next, keel::context& ctx) const {
    ctx.set_attempt(1);
    (void)next(ctx);
    ctx.set_attempt(2);
    return next(ctx);
  }
};

static_assert(keel::policy<pass_through>);
static_assert(keel::policy<keel::pipeline<pass_through, refuse>>);
static_assert(keel::policy_holder<std::reference_wrapper<refuse>>);
static_assert(keel::policy_holder<std::shared_ptr<const twice>>);
static_assert(!keel::policy<int>);

using result = keel_test::expected<int, std::error_code>;

}  // namespace

TEST_CASE("pipeline: runs outermost first", "[core][pipeline]") {
  auto journal = std::make_shared<std::vector<std::string>>();
  keel::pipeline p(recording_policy{{}, "fallback", journal},
                   recording_policy{{}, "retry", journal},
                   recording_policy{{}, "breaker", journal});
  const int r = p.execute([&] {
    journal->push_back("call");
    return 1;
  });
  CHECK(r == 1);
  CHECK(*journal == std::vector<std::string>{"fallback>", "retry>", "breaker>", "call", "<breaker",
                                             "<retry", "<fallback"});
}

TEST_CASE("pipeline: nests, and holds policies by value, std::ref and shared_ptr",
          "[core][pipeline]") {
  auto journal = std::make_shared<std::vector<std::string>>();
  recording_policy shared_one{{}, "shared", journal};
  auto owned = std::make_shared<recording_policy>(recording_policy{{}, "owned", journal});
  keel::pipeline inner(std::ref(shared_one), owned);
  keel::pipeline outer(recording_policy{{}, "outer", journal}, inner);
  CHECK(outer.execute([] { return 2; }) == 2);
  CHECK(*journal ==
        std::vector<std::string>{"outer>", "shared>", "owned>", "<owned", "<shared", "<outer"});
  // An empty pipeline passes the call through.
  CHECK(keel::pipeline<>().execute([] { return 3; }) == 3);
}

TEST_CASE("execute: arguments and the context reach the callable", "[core][pipeline]") {
  keel::pipeline p(pass_through{}, twice{});
  std::vector<int> attempts;
  const int sum = p.execute(
      [&](const keel::context& ctx, int a, const std::string& b) {
        attempts.push_back(ctx.attempt());
        return a + static_cast<int>(b.size());
      },
      40, std::string("ab"));
  CHECK(sum == 42);
  CHECK(attempts == std::vector<int>{1, 2});

  // Without a context parameter the callable gets only the arguments.
  int calls = 0;
  p.execute([&](int& counter) { ++counter; }, calls);
  CHECK(calls == 2);  // passed as an lvalue, twice
}

TEST_CASE("execute: the callable's exception is rethrown unchanged", "[core][pipeline]") {
  struct custom : std::exception {
    int code = 17;
  };
  keel::pipeline p(pass_through{});
  try {
    p.execute([]() -> int { throw custom{}; });
    FAIL("no exception");
  } catch (const custom& e) {
    CHECK(e.code == 17);
  }
  auto o = p.try_execute([]() -> int { throw custom{}; });
  CHECK(o.has_exception());
}

TEST_CASE("execute: an error value comes back unchanged", "[core][pipeline]") {
  keel::pipeline p(pass_through{});
  const result r = p.execute(
      [] { return result(keel_test::unexpected(std::make_error_code(std::errc::io_error))); });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == std::errc::io_error);
}

TEST_CASE("execute: keel's own failures as keel::error or as the user's error type",
          "[core][pipeline]") {
  keel::pipeline p(pass_through{}, refuse{});
  bool called = false;
  try {
    p.execute([&] {
      called = true;
      return 1;
    });
    FAIL("no exception");
  } catch (const keel::error& e) {
    CHECK(e.code() == keel::errc::circuit_open);
    CHECK(e.retry_after() == keel::duration(2s));
  }
  CHECK_FALSE(called);

  const result r = p.execute([] { return result(1); });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == keel::errc::circuit_open);

  auto o = p.try_execute([] { return 1; });
  CHECK(o.is(keel::errc::circuit_open));
  CHECK(o.retry_after() == keel::duration(2s));
}

TEST_CASE("execute: void and move-only results", "[core][pipeline]") {
  keel::pipeline p(pass_through{});
  int touched = 0;
  p.execute([&] { ++touched; });
  CHECK(touched == 1);
  auto o = p.try_execute([] {});
  CHECK(o.has_value());

  std::unique_ptr<int> ptr = p.execute([] { return std::make_unique<int>(5); });
  CHECK(*ptr == 5);
}

TEST_CASE("execute: the caller's stop token reaches the callable", "[core][pipeline]") {
  keel::pipeline p(pass_through{});
  std::stop_source source;
  bool saw_stop = true;
  p.execute(source.get_token(), [&](const keel::context& ctx) { saw_stop = ctx.stop_requested(); });
  CHECK_FALSE(saw_stop);
  source.request_stop();
  p.execute(source.get_token(), [&](const keel::context& ctx) { saw_stop = ctx.stop_requested(); });
  CHECK(saw_stop);
  auto o = p.try_execute(source.get_token(),
                         [](const keel::context& ctx) { return ctx.stop_requested(); });
  CHECK(o.value());
}

TEST_CASE("scripted: plays steps in order, repeats the last, records calls", "[core][testing]") {
  keel::testing::virtual_environment env;
  using step = keel::testing::step<int>;
  keel::testing::scripted<int> dep(
      env.clock(), {step::throws(std::runtime_error("down")), step::returns(7).after(20ms),
                    step::runs([](const keel::context& c) { return c.attempt() * 100; })});
  keel::pipeline p(twice{});
  CHECK(p.execute(dep) == 7);  // attempt 1 throws, attempt 2 returns 7 after 20ms
  CHECK(dep.calls() == 2);
  CHECK(env.elapsed() == 20ms);
  CHECK(p.execute(dep) == 200);  // third step, then it repeats
  CHECK(dep.calls() == 4);
  const auto records = dep.records();
  CHECK(records[0].attempt == 1);
  CHECK(records[1].attempt == 2);
  CHECK(records[2].started == keel::time_point{} + 20ms);
  CHECK(records[3].deadline == keel::no_deadline);
  CHECK(dep.start_times() == std::vector<keel::duration>{0ms, 0ms, 20ms, 20ms});
}

TEST_CASE("context: deadline only tightens and remaining() reads its clock", "[core][context]") {
  keel::testing::virtual_environment env;
  keel::context ctx;
  CHECK(ctx.attempt() == 1);
  CHECK_FALSE(ctx.has_deadline());
  CHECK(ctx.remaining() == keel::duration::max());
  CHECK_FALSE(ctx.expired());
  ctx.tighten_deadline(keel::time_point{} + 5s, env);
  CHECK(ctx.remaining() == 5s);
  ctx.tighten_deadline(keel::time_point{} + 9s, env);  // later: ignored
  CHECK(ctx.deadline() == keel::time_point{} + 5s);
  env.advance(3s);
  CHECK(ctx.remaining() == 2s);
  CHECK(ctx.now() == keel::time_point{} + 3s);
  env.advance(4s);
  CHECK(ctx.remaining() == 0s);
  CHECK(ctx.expired());
}

// SPDX-License-Identifier: BSL-1.0
// keel::hint, the one type through which a failure advises the policies that
// read it: retry-after, leader redirect, remaining quota.
#include <optional>
#include <stdexcept>
#include <vector>

#include <keel/circuit_breaker.hpp>
#include <keel/core.hpp>
#include <keel/retry.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"

namespace {

using namespace std::chrono_literals;
using keel::duration;

/// A user's exception that carries a hint.
struct not_leader : std::runtime_error, keel::hint_source {
  not_leader(std::uint64_t leader, std::uint64_t term)
      : std::runtime_error("not leader"), leader_(leader), term_(term) {}
  keel::hint hint() const noexcept override {
    return {.retry_after = 250ms, .leader = keel::leader_hint{leader_, term_}};
  }
  std::uint64_t leader_, term_;
};

struct response {
  int status = 0;
  std::optional<duration> retry_after;
  std::uint64_t remaining = 0;
};

}  // namespace

TEST_CASE("hint: parts, emptiness, merging and equality", "[hint]") {
  const keel::hint none;
  CHECK(none.empty());
  const keel::hint a{.retry_after = 2s};
  const keel::hint b{
      .retry_after = 9s, .leader = keel::leader_hint{3, 7}, .quota = keel::quota_hint{10, 30s}};
  CHECK_FALSE(a.empty());
  const keel::hint merged = a.or_else(b);
  CHECK(merged.retry_after == 2s);  // its own part wins
  CHECK(merged.leader == keel::leader_hint{3, 7});
  CHECK(merged.quota == keel::quota_hint{10, 30s});
  CHECK(none.or_else(b) == b);
  CHECK(b.or_else(none) == b);
  CHECK_FALSE(a == b);
}

TEST_CASE("hint: an outcome finds it in a keel failure and in a thrown hint_source", "[hint]") {
  const auto rejected = keel::outcome<int>::from_keel(keel::errc::circuit_open, 3s);
  CHECK(rejected.hint() == keel::hint{.retry_after = 3s});
  CHECK(rejected.describe().hint.retry_after == 3s);

  const auto thrown = keel::outcome<int>::from_exception(std::make_exception_ptr(not_leader(2, 5)));
  CHECK(thrown.hint().leader == keel::leader_hint{2, 5});
  CHECK(thrown.retry_after() == 250ms);
  CHECK(thrown.describe().hint.empty());  // an event's record does not rethrow to look

  // keel::error is a hint_source; a user may throw one with a code of its own.
  const keel::hint h{.quota = keel::quota_hint{0, 12s}};
  const auto user = keel::outcome<int>::from_exception(std::make_exception_ptr(
      keel::error(std::make_error_code(std::errc::device_or_resource_busy), h)));
  CHECK(user.hint() == h);
  CHECK_FALSE(user.retry_after().has_value());

  const auto plain =
      keel::outcome<int>::from_exception(std::make_exception_ptr(std::runtime_error("x")));
  CHECK(plain.hint().empty());
  CHECK(keel::outcome<int>(4).hint().empty());
}

TEST_CASE("hint: keel::error keeps every part and its code", "[hint]") {
  const keel::hint h{
      .retry_after = 1s, .leader = keel::leader_hint{1, 2}, .quota = keel::quota_hint{5, 60s}};
  const keel::error e(make_error_code(keel::errc::rate_limited), h);
  CHECK(e.code() == keel::errc::rate_limited);
  CHECK(e.hint() == h);
  CHECK(e.retry_after() == 1s);
  CHECK(e.info().retry_after == 1s);
  const keel::error by_code(keel::errc::circuit_open, 4s);
  CHECK(by_code.hint() == keel::hint{.retry_after = 4s});
}

TEST_CASE("hint: retry waits what a thrown hint_source asks, up to max_hint_delay",
          "[hint][retry]") {
  keel::testing::virtual_environment env;
  const auto retry =
      keel::retry({.max_attempts = 3, .max_hint_delay = 200ms}).with_environment(env);
  int calls = 0;
  const auto o = retry.try_execute([&]() -> int {
    if (++calls < 3) throw not_leader(1, 1);
    return 8;
  });
  CHECK(o.value() == 8);
  CHECK(env.sleeps() == std::vector<duration>{200ms, 200ms});  // 250 ms asked, capped
}

TEST_CASE("hint: with_hint may answer with a keel::hint", "[hint][retry]") {
  keel::testing::virtual_environment env;
  const auto retry =
      keel::retry({.max_attempts = 3})
          .handle(keel::on::result([](const response& r) { return r.status != 200; }))
          .with_environment(env)
          .with_hint([](const response& r) {
            return keel::hint{.retry_after = r.retry_after,
                              .quota = keel::quota_hint{r.remaining, 60s}};
          });
  std::vector<response> script{{429, 1500ms, 0}, {503, std::nullopt, 3}, {200, std::nullopt, 9}};
  std::size_t i = 0;
  const auto o = retry.try_execute([&] { return script[i++]; });
  CHECK(o.value().status == 200);
  // The first hint's retry_after wins over the backoff; the second has none.
  REQUIRE(env.sleeps().size() == 2);
  CHECK(env.sleeps()[0] == 1500ms);
  CHECK(env.sleeps()[1] != 1500ms);
}

TEST_CASE("hint: a breaker opens for the retry_after a thrown hint_source carries",
          "[hint][circuit_breaker]") {
  keel::testing::virtual_environment env;
  const auto breaker = keel::circuit_breaker{
      keel::circuit_breaker_options{
          .trip = keel::consecutive_failures{.threshold = 1},
          .open_duration = 10s,
      }}.with_environment(env);
  const auto o = breaker.try_execute([]() -> int { throw not_leader(0, 1); });
  CHECK(o.has_exception());
  REQUIRE(breaker.state() == keel::circuit_state::open);
  CHECK(breaker.metrics().retry_after == 250ms);  // the hint, not the 10 s open time
}

namespace {
struct other_hint_base : keel::hint_source {
  keel::hint hint() const noexcept override { return {.retry_after = 7s}; }
};
struct both_bases : keel::error, other_hint_base {
  both_bases() : keel::error(keel::errc::rate_limited, 3s) {}
};
}  // namespace

TEST_CASE("hint: a type that is a keel::error and another hint_source gives keel::error's",
          "[hint][regression]") {
  const auto o = keel::outcome<int>::from_exception(std::make_exception_ptr(both_bases()));
  CHECK(o.hint().retry_after == 3s);
  CHECK(o.retry_after() == 3s);
}

// SPDX-License-Identifier: BSL-1.0
// The hierarchy of fallbacks the resilience guides teach, as one chain: a
// retried primary; a redundant backup behind its own breaker; stale cached
// data within max_age; a simplified default; a friendly message. Retry and
// breaker are small stand-ins (tests/unit/fallback/stand_in_policies.hpp).
#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <keel/fallback.hpp>
#include <keel/pipeline.hpp>
#include <keel/testing/recording_listener.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"
#include "unit/fallback/stand_in_policies.hpp"

using namespace std::chrono_literals;

namespace {

using keel::outcome;
using venv = keel::testing::virtual_environment;

std::string describe(const outcome<std::string>& o) {
  if (o.has_keel_error()) return o.code().message();
  try {
    std::rethrow_exception(o.exception());
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace

TEST_CASE("fallback: the full hierarchy, each level reached exactly when the one before fails",
          "[fallback][hierarchy]") {
  venv env;
  keel::last_known_good<std::string, std::string, venv> cache({.max_age = 1min}, env);
  keel_test::stand_in_breaker backup_breaker(1);
  keel::testing::recording_listener<keel::fallback_used, keel::all_fallbacks_failed> log;
  keel::staleness stale;
  std::vector<std::string> trail;
  bool primary_up = true;
  bool backup_up = true;
  bool defaults_up = true;
  int primary_calls = 0;

  auto backup = keel::alternative([&](const outcome<std::string>& why) -> std::string {
                  trail.push_back("backup after: " + describe(why));
                  if (!backup_up) throw std::runtime_error("backup down");
                  return "from backup";
                }).through(std::ref(backup_breaker));
  auto simplified = keel::alternative([&](const outcome<std::string>& why) -> std::string {
                      trail.push_back("simplified after: " + describe(why));
                      if (!defaults_up) throw std::runtime_error("no defaults");
                      return "simplified";
                    }).when(keel::on::keel_error);  // only when keel itself gave up
  auto chain = keel::fallback(backup, keel::alternative(cache.serve("user:42", stale)), simplified,
                              "Sorry, please try again later")
                   .with_listener(log);
  auto guarded = keel::pipeline(chain, cache.record("user:42"),
                                keel_test::stand_in_retry<venv>(3, {10ms, 20ms}, env));
  auto primary = [&]() -> std::string {
    ++primary_calls;
    if (!primary_up) throw std::runtime_error("primary down");
    return "fresh";
  };

  // 1. The primary works: nothing else runs, the result is remembered.
  CHECK(guarded.execute(primary) == "fresh");
  CHECK(trail.empty());
  CHECK(primary_calls == 1);

  // 2. The primary fails three times (retried with backoff): the backup stands in.
  primary_up = false;
  CHECK(guarded.execute(primary) == "from backup");
  CHECK(primary_calls == 4);
  CHECK(env.sleeps() == std::vector<keel::duration>{10ms, 20ms});
  CHECK(trail == std::vector<std::string>{"backup after: primary down"});
  REQUIRE(log.count<keel::fallback_used>() == 1);
  CHECK(log.all<keel::fallback_used>()[0].index == 0);

  // 3. The backup fails too (its breaker opens): stale data, 60 ms old, marked so.
  backup_up = false;
  CHECK(guarded.execute(primary) == "fresh");
  CHECK(stale.stale);
  CHECK(stale.age == 60ms);
  CHECK(backup_breaker.open());
  CHECK(log.all<keel::fallback_used>()[1].index == 1);

  // 4. A minute later the cached value is too old, the backup's breaker rejects
  //    without calling it: the simplified default handles these keel failures.
  env.advance(1min);
  trail.clear();
  CHECK(guarded.execute(primary) == "simplified");
  CHECK(trail == std::vector<std::string>{
                     "simplified after: " +
                     keel::make_error_code(keel::last_known_good_errc::too_old).message()});
  CHECK(backup_breaker.rejected() == 1);
  const auto used4 = log.all<keel::fallback_used>()[2];
  CHECK(used4.index == 2);
  CHECK(used4.failure.code == keel::last_known_good_errc::too_old);

  // 5. Without defaults: the friendly message, the last word.
  defaults_up = false;
  trail.clear();
  CHECK(guarded.execute(primary) == "Sorry, please try again later");
  CHECK(trail == std::vector<std::string>{
                     "simplified after: " +
                     keel::make_error_code(keel::last_known_good_errc::no_value).message()});
  const auto used5 = log.all<keel::fallback_used>()[3];
  CHECK(used5.index == 3);
  CHECK(used5.failure.kind == keel::failure_kind::exception);
  CHECK(log.count<keel::all_fallbacks_failed>() == 0);
  CHECK(primary_calls == 13);  // 1 + 4 calls of 3 attempts
}

TEST_CASE("fallback: the hierarchy without its last word reports every failure in order",
          "[fallback][hierarchy]") {
  venv env;
  keel::last_known_good<std::string, std::string, venv> cache({.max_age = 1min}, env);
  keel_test::stand_in_breaker backup_breaker(5);
  auto chain =
      keel::fallback(keel::alternative([]() -> std::string {
                       throw std::runtime_error("backup down");
                     }).through(std::ref(backup_breaker)),
                     keel::alternative(cache.serve("k")), keel::alternative([]() -> std::string {
                                                            throw std::runtime_error("no defaults");
                                                          }).when(keel::on::keel_error));
  auto guarded =
      keel::pipeline(chain, cache.record("k"), keel_test::stand_in_retry<venv>(2, {5ms}, env));
  auto o = guarded.try_execute([]() -> std::string { throw std::runtime_error("primary down"); });
  REQUIRE(o.is(keel::errc::all_fallbacks_failed));
  std::vector<std::string> causes;
  for (const auto& c : o.causes()) causes.push_back(describe(c));
  CHECK(causes == std::vector<std::string>{
                      "primary down", "backup down",
                      keel::make_error_code(keel::last_known_good_errc::no_value).message(),
                      "no defaults"});
}

// 03_fallback_chain: degrade step by step (backup, stale cache, default); when all fail, see why.
// SPDX-License-Identifier: BSL-1.0
#include <chrono>
#include <exception>
#include <stdexcept>
#include <string>

#include <fmt/core.h>

#include <keel/fallback.hpp>
#include <keel/pipeline.hpp>
#include <keel/testing/virtual_environment.hpp>

using namespace std::chrono_literals;

namespace {

using env_t = keel::testing::virtual_environment;

/// The services the example calls; each can be switched off.
struct services {
  bool primary_up = true;
  bool backup_up = true;

  std::string primary(const std::string& city) const {
    if (!primary_up) throw std::runtime_error("primary: connection refused");
    return city + ": 21 C (primary)";
  }
  std::string backup(const std::string& city) const {
    if (!backup_up) throw std::runtime_error("backup: 503");
    return city + ": 21 C (backup)";
  }
};

std::string describe(const keel::failure& f) {
  if (f.kind == keel::failure_kind::exception) {
    try {
      std::rethrow_exception(f.exception);
    } catch (const std::exception& e) {
      return e.what();
    }
  }
  return f.code.message();
}

}  // namespace

int main() {
  env_t env;  // virtual time: the cache's max_age is exact and the example is deterministic
  services svc;
  auto cache =
      keel::last_known_good<std::string, std::string>({.max_age = 10min}).with_environment(env);

  // One call: the pipeline is a few pointers, so it is built per call with the call's key.
  auto weather = [&](const std::string& city, keel::staleness& stale) {
    auto chain = keel::pipeline(keel::fallback([&] { return svc.backup(city); },  // 1. backup
                                               cache.serve(city, stale),          // 2. stale data
                                               "weather unavailable"),            // 3. last word
                                cache.record(city));  // remembers fresh answers only
    return chain.try_execute([&] { return svc.primary(city); });
  };

  bool ok = true;
  auto expect = [&](bool condition, const char* what) {
    if (!condition) {
      fmt::print("UNEXPECTED: {}\n", what);
      ok = false;
    }
  };

  keel::staleness stale;
  auto r1 = weather("Oslo", stale);
  fmt::print("1. {}\n", r1.value());
  expect(r1.value() == "Oslo: 21 C (primary)", "the primary answers");

  svc.primary_up = false;
  auto r2 = weather("Oslo", stale);
  fmt::print("2. {}\n", r2.value());
  expect(r2.value() == "Oslo: 21 C (backup)", "the backup stands in");

  svc.backup_up = false;
  env.advance(3min);
  stale = {};
  auto r3 = weather("Oslo", stale);
  fmt::print("3. {} (stale: {}, {} s old)\n", r3.value(), stale.stale,
             std::chrono::duration_cast<std::chrono::seconds>(stale.age).count());
  expect(r3.value() == "Oslo: 21 C (primary)" && stale.stale && stale.age == 3min,
         "the last known good value, 3 minutes old");

  env.advance(10min);
  auto r4 = weather("Oslo", stale);
  fmt::print("4. {}\n", r4.value());
  expect(r4.value() == "weather unavailable", "too old: the default message");

  // Without a last word, the caller gets every failure, in order.
  auto all_fail =
      keel::pipeline(keel::fallback([&] { return svc.backup("Oslo"); }, cache.serve("Oslo")),
                     cache.record("Oslo"));
  try {
    (void)all_fail.execute([&] { return svc.primary("Oslo"); });
    expect(false, "all_fallbacks_failed is thrown");
  } catch (const keel::error& e) {
    fmt::print("5. {}:\n", e.what());
    for (const keel::failure& cause : e.causes()) fmt::print("   - {}\n", describe(cause));
    expect(e.code() == keel::errc::all_fallbacks_failed && e.causes().size() == 3,
           "three causes: primary, backup, cache");
  }
  return ok ? 0 : 1;
}

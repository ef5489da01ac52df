// 06_expected_without_exceptions: expected-like results as the only error channel; keel's own
// failures join it. SPDX-License-Identifier: BSL-1.0
//
// The callable returns a result type with has_value() and error() (here a
// small one of our own; std::expected and tl::expected work the same way). It
// fails when it holds an error. keel reports its own failures (an open
// circuit) as that error type through one customization point,
// keel::error_traits. Nothing here throws: this file also builds with -fno-exceptions.
#include <chrono>
#include <string>
#include <utility>
#include <variant>

#include <fmt/core.h>

#include <keel/keel.hpp>
#include <keel/testing/virtual_environment.hpp>

using namespace std::chrono_literals;

namespace shop {

enum class fetch_error { not_found, upstream_down, try_later };

/// The application's own result type: a value or a fetch_error.
template <class T>
class result {
 public:
  struct unexpected_type {  // how keel builds an error result
    fetch_error error;
  };
  result(T value) : state_(std::move(value)) {}   // NOLINT: implicit
  result(unexpected_type e) : state_(e.error) {}  // NOLINT: implicit
  bool has_value() const { return state_.index() == 0; }
  const T& operator*() const { return std::get<0>(state_); }
  fetch_error error() const { return std::get<1>(state_); }

 private:
  std::variant<T, fetch_error> state_;
};

}  // namespace shop

/// keel's failures (open circuit, budget spent, timeout...) become "try later".
template <>
struct keel::error_traits<shop::fetch_error> {
  static shop::fetch_error from_keel(const keel::error_info&) {
    return shop::fetch_error::try_later;
  }
};

int main() {
  keel::testing::virtual_environment env;
  using shop::fetch_error;

  // "not found" says nothing about the service's health: the breaker ignores
  // it and retry does not repeat it.
  const auto not_found = keel::on::error([](fetch_error e) { return e == fetch_error::not_found; });
  auto breaker = keel::circuit_breaker({.trip = keel::consecutive_failures{.threshold = 2}})
                     .ignore(not_found)
                     .with_environment(env);
  const auto guarded = keel::pipeline(
      keel::retry({.max_attempts = 2, .backoff = keel::constant_backoff{.delay = 50ms}})
          .abort_on(not_found)
          .with_environment(env),
      std::ref(breaker));

  int calls = 0;
  auto lookup = [&](const std::string& sku) -> shop::result<int> {
    ++calls;
    if (sku == "gone") return shop::result<int>::unexpected_type{fetch_error::not_found};
    if (sku == "flaky") return shop::result<int>::unexpected_type{fetch_error::upstream_down};
    return 1999;
  };

  bool ok = true;
  auto show = [&](const char* sku, const shop::result<int>& r, const char* expected) {
    const char* got = r.has_value()                             ? "a price"
                      : r.error() == fetch_error::not_found     ? "not found"
                      : r.error() == fetch_error::upstream_down ? "upstream down"
                                                                : "try later";
    fmt::print("{:<6} -> {:<14} (calls so far: {})\n", sku, got, calls);
    ok = ok && std::string(got) == expected;
  };

  show("book", guarded.execute(lookup, std::string("book")), "a price");
  show("gone", guarded.execute(lookup, std::string("gone")), "not found");        // 1 call: aborted
  show("flaky", guarded.execute(lookup, std::string("flaky")), "upstream down");  // 2 calls: trips
  show("book", guarded.execute(lookup, std::string("book")), "try later");        // open: no call
  ok = ok && calls == 4;

  // try_execute keeps the detail: which keel failure, and when to come back.
  const auto o = guarded.try_execute(lookup, std::string("book"));
  fmt::print("try_execute: keel error '{}', retry after {} s\n", o.code().message(),
             std::chrono::duration_cast<std::chrono::seconds>(*o.retry_after()).count());
  ok = ok && o.is(keel::errc::circuit_open);
  return ok ? 0 : 1;
}

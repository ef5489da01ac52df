// SPDX-License-Identifier: BSL-1.0
// libFuzzer harness: arbitrary bytes become a keel::retry_options (any
// backoff formula, any field values, NaN and infinities included). Either
// validate() refuses them, naming a "retry_options." field, and the retry's
// constructor throws keel::config_error with that field; or every delay the
// backoff gives, at any attempt and for any random draw, stays within the
// formula's documented bounds, and a retry built from them on virtual time
// makes exactly max_attempts calls with sleeps within those bounds.
// Build: tests/fuzz/run.sh.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <keel/retry.hpp>
#include <keel/testing/virtual_environment.hpp>

namespace {

using keel::duration;

struct reader {
  const std::uint8_t* data;
  std::size_t size;
  template <class T>
  T take() {
    T v{};
    const std::size_t n = std::min(size, sizeof(T));
    std::memcpy(&v, data, n);
    data += n;
    size -= n;
    return v;
  }
  duration dur() { return duration(take<std::int64_t>()); }
  double real() { return take<double>(); }
};

void check(bool ok) {
  if (!ok) std::abort();
}

/// A random source replaying fuzzer-chosen draws in [0, 1).
struct replay_random {
  std::vector<double>* draws;
  mutable std::size_t next = 0;
  double uniform() const {
    if (draws->empty()) return 0.0;
    return (*draws)[next++ % draws->size()];
  }
};

/// [lo, hi] of the wait before a retry, from the formula's documentation, in
/// long double. keel computes in double: a result may differ from the exact
/// value by a rounding of the double (relative 2^-52), so `holds` allows that.
struct bounds {
  long double lo, hi;
  bool holds(duration d) const {
    const long double x = static_cast<long double>(d.count());
    const long double slack = 0x1p-50L;
    return x >= lo * (1 - slack) - 1 && x <= hi * (1 + slack) + 1;
  }
};
long double scale(duration d, double f) {
  return static_cast<long double>(d.count()) * static_cast<long double>(f);
}
long double ns(duration d) { return static_cast<long double>(d.count()); }
/// None depends on the attempt number: that is the point of a cap.
bounds documented(const keel::backoff& b) {
  switch (b.get().index()) {
    case 0: {
      const auto& c = std::get<keel::constant_backoff>(b.get());
      return {scale(c.delay, 1.0 - c.jitter), scale(c.delay, 1.0 + c.jitter)};
    }
    case 1: {
      const auto& l = std::get<keel::linear_backoff>(b.get());
      // The un-jittered delay is within [initial, max_delay].
      return {scale(l.initial, 1.0 - l.jitter), scale(l.max_delay, 1.0 + l.jitter)};
    }
    case 2: {
      const auto& e = std::get<keel::exponential_backoff>(b.get());
      return {scale(e.initial, 1.0 - e.jitter), scale(e.max_delay, 1.0 + e.jitter)};
    }
    case 3:
      return {0, ns(std::get<keel::full_jitter_backoff>(b.get()).max_delay)};
    case 4:
      return {0, ns(std::get<keel::equal_jitter_backoff>(b.get()).max_delay)};
    case 5: {
      const auto& d = std::get<keel::decorrelated_jitter_backoff>(b.get());
      return {ns(d.base), ns(d.max_delay)};
    }
    default:
      return {0, ns(std::get<keel::decorrelated_jitter_v2_backoff>(b.get()).max_delay)};
  }
}

keel::backoff any_backoff(reader& in) {
  switch (in.take<std::uint8_t>() % 7) {
    case 0: {
      const duration d = in.dur();
      return keel::constant_backoff{d, in.real()};
    }
    case 1: {
      const duration a = in.dur(), b = in.dur(), c = in.dur();
      return keel::linear_backoff{a, b, c, in.real()};
    }
    case 2: {
      const duration a = in.dur();
      const double f = in.real();
      const duration c = in.dur();
      return keel::exponential_backoff{a, f, c, in.real()};
    }
    case 3: {
      const duration a = in.dur();
      const double f = in.real();
      return keel::full_jitter_backoff{a, f, in.dur()};
    }
    case 4: {
      const duration a = in.dur();
      const double f = in.real();
      return keel::equal_jitter_backoff{a, f, in.dur()};
    }
    case 5: {
      const duration a = in.dur();
      return keel::decorrelated_jitter_backoff{a, in.dur()};
    }
    default: {
      const duration a = in.dur();
      return keel::decorrelated_jitter_v2_backoff{a, in.dur()};
    }
  }
}

bool field_named(const keel::config_problem& p) {
  return p.field.substr(0, 14) == "retry_options." && p.field.size() > 14 && !p.reason.empty();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  reader in{data, size};
  keel::retry_options o;
  o.max_attempts = in.take<int>();
  o.backoff = any_backoff(in);
  o.max_elapsed = in.dur();
  o.max_hint_delay = in.dur();
  o.retry_rejections = (in.take<std::uint8_t>() & 1) != 0;
  std::vector<double> draws;
  while (in.size >= sizeof(double) && draws.size() < 16) {
    const double u = in.real();
    if (u >= 0.0 && u < 1.0) draws.push_back(u);  // a random source's contract: [0, 1)
  }

  if (const keel::validation_result problem = keel::validate(o)) {
    check(field_named(*problem));
    try {
      keel::retry r(o);
      std::abort();  // a refused configuration must not build a policy
    } catch (const keel::config_error& e) {
      check(e.field() == problem->field);
    }
    return 0;
  }

  // Valid: every delay within the formula's bounds, at every kind of attempt.
  const replay_random rnd{&draws};
  keel::backoff_state st;
  for (const int r : {1, 2, 3, 10, 63, 64, 65, 1023, 1024, 1025, 100000, INT32_MAX}) {
    const duration d = o.backoff.next(r, st, rnd);
    const bounds b = documented(o.backoff);
    check(d >= duration::zero());
    check(b.holds(d));
  }

  // And through the policy: a call that always fails, on virtual time.
  keel::testing::virtual_environment venv;
  const int attempts = o.max_attempts;
  o.max_attempts = std::min(o.max_attempts, 8);  // keep one input fast
  auto retry = keel::retry(o).with_environment(venv);
  int calls = 0;
  auto out = retry.try_execute([&]() -> int {
    ++calls;
    throw std::runtime_error("down");
  });
  check(out.has_exception() || out.is(keel::errc::cancelled));
  for (const duration s : venv.sleeps()) {
    check(s >= duration::zero());
    // The virtual environment's seeded source is also in [0, 1): the same bounds.
    check(documented(o.backoff).holds(s));
  }
  if (o.max_elapsed == duration::max()) check(calls == std::min(attempts, 8));
  check(calls >= 1 && calls <= std::min(attempts, 8));
  return 0;
}

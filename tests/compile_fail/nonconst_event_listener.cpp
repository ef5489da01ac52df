// expect: has an on\(\) handler for this event that keel cannot call
// SPDX-License-Identifier: BSL-1.0
// A handler taking the event by non-const reference would never be called:
// keel refuses it with a sentence.
#include <keel/circuit_breaker.hpp>

struct listener {
  void on(keel::circuit_opened&) const {}
};

int main() {
  keel::circuit_breaker breaker{{}, keel::on::any_failure, listener{}};
  return breaker.execute([] { return 1; });
}

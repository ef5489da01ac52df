// expect: keel::circuit_breaker::handle needs a predicate on the outcome
// errors: 1
// SPDX-License-Identifier: BSL-1.0
// The breaker's handle() takes a predicate on the whole outcome, like retry's.
#include <keel/circuit_breaker.hpp>

int main() {
  auto breaker = keel::circuit_breaker().handle([](int status) { return status >= 500; });
  return breaker.execute([] { return 200; });
}

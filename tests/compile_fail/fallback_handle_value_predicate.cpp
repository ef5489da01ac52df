// expect: keel::fallback::handle needs a predicate on the outcome
// errors: 1
// SPDX-License-Identifier: BSL-1.0
// The fallback's handle() takes a predicate on the whole outcome, like retry's.
#include <keel/fallback.hpp>

int main() {
  auto f = keel::fallback(0).handle([](int status) { return status >= 500; });
  return f.execute([] { return 200; });
}

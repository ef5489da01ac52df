// expect: has an on\(\) handler for this event that keel cannot call
// SPDX-License-Identifier: BSL-1.0
// A mutable lambda cannot be called through the const listener keel holds:
// refused with a sentence instead of never being called.
#include <keel/retry.hpp>

int main() {
  int heard = 0;
  auto r = keel::retry().with_listener([heard](const keel::retry_scheduled&) mutable { ++heard; });
  return r.execute([] { return 1; });
}

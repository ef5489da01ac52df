// expect: has an on\(\) handler for this event that keel cannot call
// SPDX-License-Identifier: BSL-1.0
// A handler taking the event as an rvalue cannot be given keel's const event:
// refused with a sentence instead of never being called.
#include <keel/retry.hpp>

struct counting_listener {
  mutable int heard = 0;
  void on(keel::retry_scheduled&&) const { ++heard; }
};

int main() {
  counting_listener l;
  auto r = keel::retry().with_listener(l);
  return r.execute([] { return 1; });
}

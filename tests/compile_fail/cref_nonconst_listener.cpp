// expect: has an on\(\) handler for this event that keel cannot call
// SPDX-License-Identifier: BSL-1.0
// std::cref of a listener whose on() is not const: keel cannot call it
// through the const reference, and says so instead of dropping its events.
#include <functional>

#include <keel/retry.hpp>

struct counting_listener {
  int heard = 0;
  void on(const keel::retry_scheduled&) { ++heard; }  // not const
};

int main() {
  counting_listener l;
  auto r = keel::retry().with_listener(std::cref(l));
  return r.execute([] { return 1; });
}

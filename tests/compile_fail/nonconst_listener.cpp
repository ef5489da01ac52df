// expect: has an on\(\) handler for this event that keel cannot call
// SPDX-License-Identifier: BSL-1.0
// A listener whose on() is not const would never be called: keel refuses it
// with a sentence instead of dropping its events without a word.
#include <keel/retry.hpp>

struct counting_listener {
  int heard = 0;
  void on(const keel::retry_scheduled&) { ++heard; }  // not const
};

int main() {
  counting_listener l;
  auto r = keel::retry().with_listener(l);
  return r.execute([] { return 1; });
}

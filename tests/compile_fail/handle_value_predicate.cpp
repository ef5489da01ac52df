// expect: keel::retry::handle needs a predicate on the outcome
// errors: 1
// SPDX-License-Identifier: BSL-1.0
// handle() takes a predicate on the whole outcome; one on the returned value
// is refused where it is given, with the way to write it (keel::on::result).
#include <keel/retry.hpp>

int main() {
  auto r = keel::retry().handle([](int status) { return status >= 500; });
  return r.execute([] { return 200; });
}

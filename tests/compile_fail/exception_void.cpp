// expect: keel::on::exception<E>: E is the type thrown
// SPDX-License-Identifier: BSL-1.0
// on::exception<void> (or a reference type) names no thrown type: one keel
// sentence instead of "forming reference to void".
#include <keel/retry.hpp>

int main() {
  auto r = keel::retry().handle(keel::on::exception<void>);
  return r.execute([] { return 1; });
}

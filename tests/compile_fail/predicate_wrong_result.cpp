// expect: cannot take this call's outcome
// errors: 1
// SPDX-License-Identifier: BSL-1.0
// A predicate on another result type's outcome is refused where the call
// fixes R, with a sentence.
#include <keel/retry.hpp>

int main() {
  auto r = keel::retry().handle([](const keel::outcome<long>& o) { return !o.has_value(); });
  return r.execute([] { return 1; });
}

// expect: keel::any_pipeline<R>: the callable's result type is not R
// errors: 1
// SPDX-License-Identifier: BSL-1.0
// An any_pipeline runs callables of the one result type it was declared with.
#include <keel/any_pipeline.hpp>
#include <keel/retry.hpp>

int main() {
  const keel::any_pipeline<int> guard(keel::retry({}));
  return guard.execute([] { return 1L; }) > 0 ? 0 : 1;
}

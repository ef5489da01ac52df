// expect: cannot be copied into an any_pipeline: pass std::ref\(breaker\)
// errors: 1
// SPDX-License-Identifier: BSL-1.0
// any_pipeline holds a policy as keel::pipeline does: a breaker is shared, never copied.
#include <keel/any_pipeline.hpp>
#include <keel/circuit_breaker.hpp>

int main() {
  keel::circuit_breaker breaker({});
  const keel::any_pipeline<int> guard(breaker);
  return guard.execute([] { return 1; });
}

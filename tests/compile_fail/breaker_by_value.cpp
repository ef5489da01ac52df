// expect: cannot be copied into a pipeline: pass std::ref\(breaker\)
// errors: 1
// SPDX-License-Identifier: BSL-1.0
// A circuit breaker is shared state: a pipeline never copies one. Given by
// value, it is refused with a sentence saying how to share it.
#include <keel/circuit_breaker.hpp>
#include <keel/pipeline.hpp>
#include <keel/retry.hpp>

int main() {
  keel::circuit_breaker breaker{{}};
  auto p = keel::pipeline(keel::retry(), breaker);
  return p.execute([] { return 1; });
}

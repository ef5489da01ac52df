// expect: callable returns a reference
// SPDX-License-Identifier: BSL-1.0
// A callable returning a reference cannot be guarded: keel stores and may
// retry the result, and a reference into the callee's state would dangle.
#include <keel/pipeline.hpp>

int main() {
  static int value = 1;
  keel::pipeline<> p;
  return p.execute([]() -> int& { return value; });
}

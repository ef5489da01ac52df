// expect: the callable cannot be called with these arguments
// SPDX-License-Identifier: BSL-1.0
// Arguments that the callable does not take are refused with a sentence, not
// with a page of overload candidates.
#include <keel/pipeline.hpp>

int main() {
  keel::pipeline<> p;
  return p.execute([](int x) { return x; }, "not an int");
}

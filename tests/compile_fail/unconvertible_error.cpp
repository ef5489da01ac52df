// expect: specialize keel::error_traits<E> or use try_execute
// SPDX-License-Identifier: BSL-1.0
// execute() on an expected-like result must be able to report keel's own
// failures in its error type; an error type keel cannot build is refused.
#include <keel/pipeline.hpp>

struct my_error {};
struct result {
  using unexpected_type = my_error;
  result(int) {}
  result(my_error) {}
  bool has_value() const { return true; }
  my_error error() const { return {}; }
};

int main() {
  keel::pipeline<> p;
  (void)p.execute([] { return result(1); });
}

// expect: keel: a listener is copied into every copy of the policy and this one cannot be copied
// SPDX-License-Identifier: BSL-1.0
// A listener that cannot be copied: one keel sentence (pass std::ref), not
// a wall of deleted-function errors from inside the policy.
#include <mutex>

#include <keel/timeout.hpp>

struct locked_log {
  std::mutex m;
  void on(const keel::timed_out&) const {}
};

int main() {
  locked_log l;
  auto t = keel::timeout({.timeout = std::chrono::seconds(1)}).with_listener(l);
  return t.execute([] { return 1; });
}

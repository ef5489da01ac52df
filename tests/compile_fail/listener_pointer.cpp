// expect: keel: a listener is held by value and a pointer has no on\(\)
// SPDX-License-Identifier: BSL-1.0
// A listener given by pointer (or shared_ptr) would compile and hear nothing:
// keel refuses it with a sentence.
#include <memory>

#include <keel/retry.hpp>

struct counting_listener {
  std::shared_ptr<int> heard = std::make_shared<int>(0);
  void on(const keel::retry_scheduled&) const { ++*heard; }
};

int main() {
  counting_listener l;
  auto r = keel::retry().with_listener(&l);
  return r.execute([] { return 1; });
}

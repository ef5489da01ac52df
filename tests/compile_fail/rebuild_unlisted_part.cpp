// expect: keel::rebuild: the part to replace is not in the policy's keel::parts list
// errors: 1
// SPDX-License-Identifier: BSL-1.0
// A fluent setter that replaces a part its policy's keel::parts list leaves
// out is refused with one sentence, not with a constructor's overload list.
#include <keel/core/fluent.hpp>

class limit {
 public:
  explicit limit(int max = 1) : max_(max) {}
  limit with_name(int name) const {
    return keel::rebuild<limit, &limit::name_>(*this, name, parts{});
  }

 private:
  int max_;
  int name_ = 0;
  using parts = keel::parts<&limit::max_>;
};

int main() {
  (void)limit().with_name(2);
  return 0;
}

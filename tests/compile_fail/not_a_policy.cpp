// expect: keel::pipeline: an argument is not a policy
// errors: 1
// SPDX-License-Identifier: BSL-1.0
// Something that is not a policy is refused with a sentence, not with the
// policy concept's every unmet requirement.
#include <keel/pipeline.hpp>
#include <keel/retry.hpp>

struct not_a_policy {
  int run() const { return 0; }
};

int main() {
  auto p = keel::pipeline(keel::retry(), not_a_policy{});
  return p.execute([] { return 1; });
}

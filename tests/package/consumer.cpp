// SPDX-License-Identifier: BSL-1.0
// Consumer of the keel CMake package: compiles against keel::keel alone (no
// C++ standard set by the consumer; keel::keel must require C++20 itself).
#include <cstdio>
#include <string_view>

#include <keel/version.hpp>

static_assert(__cplusplus >= 202002L, "keel::keel must bring C++20 to its consumers");

int main() {
  constexpr std::string_view expected = KEEL_EXPECTED_VERSION;
  std::printf("keel %.*s\n", static_cast<int>(keel::version.size()), keel::version.data());
  return keel::version == expected ? 0 : 1;
}

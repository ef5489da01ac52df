// SPDX-License-Identifier: BSL-1.0
#include <string>

#include <keel/version.hpp>

#include "support/catch.hpp"

// KEEL_TEST_PROJECT_VERSION* come from project(keel VERSION ...) via cmake/dev-mode.cmake.

TEST_CASE("version: macros match project(VERSION) in CMakeLists.txt", "[core][version]") {
  STATIC_REQUIRE(KEEL_VERSION_MAJOR == KEEL_TEST_PROJECT_VERSION_MAJOR);
  STATIC_REQUIRE(KEEL_VERSION_MINOR == KEEL_TEST_PROJECT_VERSION_MINOR);
  STATIC_REQUIRE(KEEL_VERSION_PATCH == KEEL_TEST_PROJECT_VERSION_PATCH);
  STATIC_REQUIRE(KEEL_VERSION ==
                 KEEL_VERSION_MAJOR * 10000 + KEEL_VERSION_MINOR * 100 + KEEL_VERSION_PATCH);
}

TEST_CASE("version: constants agree with the macros", "[core][version]") {
  STATIC_REQUIRE(keel::version_major == KEEL_VERSION_MAJOR);
  STATIC_REQUIRE(keel::version_minor == KEEL_VERSION_MINOR);
  STATIC_REQUIRE(keel::version_patch == KEEL_VERSION_PATCH);
}

TEST_CASE("version: string is MAJOR.MINOR.PATCH of project(VERSION)", "[core][version]") {
  STATIC_REQUIRE(keel::version == KEEL_TEST_PROJECT_VERSION);
  const std::string from_macros = std::to_string(KEEL_VERSION_MAJOR) + "." +
                                  std::to_string(KEEL_VERSION_MINOR) + "." +
                                  std::to_string(KEEL_VERSION_PATCH);
  REQUIRE(std::string(keel::version) == from_macros);
}

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_VERSION_HPP_INCLUDED
#define KEEL_VERSION_HPP_INCLUDED

#include <string_view>

/// Major version of keel; bumped on incompatible API changes.
#define KEEL_VERSION_MAJOR 0
/// Minor version of keel; bumped on backwards-compatible additions.
#define KEEL_VERSION_MINOR 1
/// Patch version of keel; bumped on backwards-compatible fixes.
#define KEEL_VERSION_PATCH 0

/// The version as one comparable number: MAJOR * 10000 + MINOR * 100 + PATCH.
#define KEEL_VERSION (KEEL_VERSION_MAJOR * 10000 + KEEL_VERSION_MINOR * 100 + KEEL_VERSION_PATCH)

namespace keel {

/// Major, minor and patch parts of the keel version, usable in constant expressions.
inline constexpr int version_major = KEEL_VERSION_MAJOR;
inline constexpr int version_minor = KEEL_VERSION_MINOR;
inline constexpr int version_patch = KEEL_VERSION_PATCH;

/// The version as "MAJOR.MINOR.PATCH"; kept equal to the macros above by a unit test.
inline constexpr std::string_view version = "0.1.0";

}  // namespace keel

#endif  // KEEL_VERSION_HPP_INCLUDED

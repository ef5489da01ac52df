// SPDX-License-Identifier: BSL-1.0
// The one Catch2 include of keel's tests: works with Catch2 v3 and with the
// Catch2 v2 single header that Debian 12 ships. Tests write
//   #include "support/catch.hpp"
// and then use TEST_CASE, TEMPLATE_TEST_CASE, SECTION, REQUIRE, CHECK, REQUIRE_THROWS_AS,
// REQUIRE_THROWS_WITH, STATIC_REQUIRE, REQUIRE_THAT, Approx / Catch::Approx,
// Catch::Matchers::{WithinAbs, WithinRel, StartsWith, EndsWith, Equals} and, for
// the one matcher whose name differs between v2 and v3, keel_test::contains().
#ifndef KEEL_TESTS_SUPPORT_CATCH_HPP_INCLUDED
#define KEEL_TESTS_SUPPORT_CATCH_HPP_INCLUDED

#include <string>

#if __has_include(<catch2/catch_test_macros.hpp>)

#define KEEL_TEST_CATCH2_MAJOR 3
#include <catch2/catch_approx.hpp>
#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers.hpp>
#include <catch2/matchers/catch_matchers_floating_point.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
#if !defined(CATCH_CONFIG_DISABLE_EXCEPTIONS)
#include <catch2/matchers/catch_matchers_exception.hpp>
#endif

using Catch::Approx;

namespace keel_test {
/// Matches a std::string that contains `part` (v3: ContainsSubstring).
inline auto contains(const std::string& part) { return Catch::Matchers::ContainsSubstring(part); }
}  // namespace keel_test

#else

#define KEEL_TEST_CATCH2_MAJOR 2
#include <catch2/catch.hpp>

// v2 names it Catch::Detail::Approx (and ::Approx); v3 names it Catch::Approx.
namespace Catch {
using Detail::Approx;
}  // namespace Catch

namespace keel_test {
/// Matches a std::string that contains `part` (v2: Contains).
inline auto contains(const std::string& part) { return Catch::Matchers::Contains(part); }
}  // namespace keel_test

#endif

#endif  // KEEL_TESTS_SUPPORT_CATCH_HPP_INCLUDED

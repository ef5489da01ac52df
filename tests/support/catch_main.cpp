// SPDX-License-Identifier: BSL-1.0
// Catch2 v2's main(), compiled once per flavour (with and without exceptions)
// and linked into every test binary. With Catch2 v3 the build links
// Catch2::Catch2WithMain instead and does not compile this file.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

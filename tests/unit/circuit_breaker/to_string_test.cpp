// SPDX-License-Identifier: BSL-1.0
#include <string_view>

#include <keel/circuit_breaker.hpp>

#include "support/catch.hpp"

TEST_CASE("circuit_state: every state has a readable name", "[circuit_breaker]") {
  STATIC_REQUIRE(std::string_view(keel::to_string(keel::circuit_state::closed)) == "closed");
  CHECK(std::string_view(keel::to_string(keel::circuit_state::open)) == "open");
  CHECK(std::string_view(keel::to_string(keel::circuit_state::half_open)) == "half-open");
  CHECK(std::string_view(keel::to_string(keel::circuit_state::isolated)) == "isolated");
  CHECK(std::string_view(keel::to_string(keel::circuit_state::disabled)) == "disabled");
  CHECK(std::string_view(keel::to_string(static_cast<keel::circuit_state>(200))) == "unknown");
}

// SPDX-License-Identifier: BSL-1.0
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <keel/retry/retry_after.hpp>

#include "support/catch.hpp"

namespace {

using namespace std::chrono_literals;
using namespace std::string_view_literals;
using keel::duration;
using std::chrono::system_clock;

// "Now" for every row: Wednesday 25 November 2026, 12:00:00.250 UTC.
const system_clock::time_point now =
    std::chrono::sys_days{std::chrono::year{2026} / std::chrono::November / 25} + 12h + 250ms;

struct row {
  std::string_view input;
  std::optional<duration> expected;
};

const std::optional<duration> none = std::nullopt;
const duration day = 24h;

const row table[] = {
    // delay-seconds
    {"120", 120s},
    {" 120", 120s},  // leading and trailing whitespace is not part of a field value
    {"120 ", 120s},
    {"\t120\t", 120s},
    {"0", 0s},
    {"000042", 42s},
    {"86400", day},
    {"86401", day},                 // capped at one day
    {"99999999999999999999", day},  // would overflow 64 bits: capped, not wrapped
    {"-5", none},
    {"+5", none},
    {"1e3", none},
    {"1.5", none},
    {"12 0", none},
    {"0x10", none},
    {"abc", none},
    {"", none},
    {"   ", none},
    {"12\0"
     "3"sv,
     none},  // embedded NUL
    {"120\0"sv, none},
    // IMF-fixdate
    {"Wed, 25 Nov 2026 12:02:00 GMT", 119750ms},
    {"Wed, 25 Nov 2026 12:02:00 GMT ", 119750ms},
    {"Tue, 24 Nov 2026 12:00:00 GMT", 0s},       // in the past
    {"Wed, 25 Nov 2026 12:00:00 GMT", 0s},       // 250 ms ago
    {"Wed, 25 Nov 2026 12:00:60 GMT", 59750ms},  // a leap second
    {"Thu, 26 Nov 2026 12:00:00 GMT", 86'399'750ms},
    {"Fri, 27 Nov 2026 12:00:00 GMT", day},
    {"Thu, 29 Feb 2024 00:00:00 GMT", 0s},    // leap day, valid, past
    {"Tue, 29 Feb 2000 00:00:00 GMT", 0s},    // 2000 is a leap year
    {"Tue, 29 Feb 2028 00:00:00 GMT", day},   // leap day in the future
    {"Wed, 29 Feb 2023 00:00:00 GMT", none},  // 2023 is not
    {"Thu, 29 Feb 1900 00:00:00 GMT", none},  // nor is 1900
    {"Mon, 31 Nov 2026 12:00:00 GMT", none},  // November has 30 days
    {"Wed, 00 Nov 2026 12:00:00 GMT", none},
    {"Wed, 25 Nov 2026 24:00:00 GMT", none},
    {"Wed, 25 Nov 2026 12:60:00 GMT", none},
    {"Wed, 25 Nov 2026 12:00:61 GMT", none},
    {"Wed, 25 Nov 2026 12:02:00 UTC", none},
    {"wed, 25 nov 2026 12:02:00 GMT", none},  // names are case-sensitive
    {"Wed, 25 Nov 2026 12:02:00 GMT garbage", none},
    {"Wed,  25 Nov 2026 12:02:00 GMT", none},
    {"Wed, 5 Nov 2026 12:02:00 GMT", none},
    {"Wed, 25 Nov 26 12:02:00 GMT", none},
    {"Wed, 25 Nov 2026 12:02 GMT", none},
    {"Wed, 25 Nov 2026 12:02:00 GMT\0"sv, none},
    {"Wed 25 Nov 2026 12:02:00 GMT", none},
    // RFC 850 (obsolete): two-digit years within 50 years of now
    {"Wednesday, 25-Nov-26 12:01:00 GMT", 59750ms},
    {"Sunday, 06-Nov-94 08:49:37 GMT", 0s},    // 1994
    {"Friday, 06-Nov-76 08:49:37 GMT", day},   // 2076: exactly 50 years ahead is still ahead
    {"Saturday, 06-Nov-77 08:49:37 GMT", 0s},  // 2077 would be > 50 years ahead: 1977
    {"Wednesday, 25-Nov-2026 12:01:00 GMT", none},
    {"Wed, 25-Nov-26 12:01:00 GMT", none},
    // asctime (obsolete)
    {"Wed Nov 25 12:00:30 2026", 29750ms},
    {"Sun Nov  1 08:49:37 2026", 0s},  // single-digit day padded with a space
    {"Sun Nov 1 08:49:37 2026", none},
    {"Wed Nov 25 12:00:30 2026 GMT", none},
    {"Sun Feb 29 08:49:37 2026", none},
};

}  // namespace

TEST_CASE("parse_retry_after: reads delay-seconds and the three HTTP-date forms exactly",
          "[retry][retry_after]") {
  STATIC_REQUIRE(std::size(table) >= 30);
  for (const row& r : table) {
    INFO("input: \"" << std::string(r.input) << "\"");
    const std::optional<duration> got = keel::parse_retry_after(r.input, now);
    REQUIRE(got.has_value() == r.expected.has_value());
    if (got) CHECK(got->count() == r.expected->count());
  }
}

TEST_CASE("parse_retry_after: the cap is a parameter", "[retry][retry_after]") {
  CHECK(keel::parse_retry_after("120", now, 60s) == 60s);
  CHECK(keel::parse_retry_after("59", now, 60s) == 59s);
  CHECK(keel::parse_retry_after("2", now, 1500ms) == 1500ms);
  CHECK(keel::parse_retry_after("Wed, 25 Nov 2026 13:00:00 GMT", now, 10min) == 10min);
  CHECK(keel::parse_retry_after("5", now, -1s) == 0s);  // a negative cap means "no wait"
}

TEST_CASE("parse_retry_after: never throws and never allocates", "[retry][retry_after]") {
  STATIC_REQUIRE(noexcept(keel::parse_retry_after(std::string_view(), now)));
  // Every prefix of a valid date is garbage, none reads past its end.
  const std::string date = "Wed, 25 Nov 2026 12:02:00 GMT";
  for (std::size_t n = 0; n < date.size(); ++n) {
    const std::string prefix = date.substr(0, n);  // its own buffer: ASan sees any overread
    CHECK_FALSE(keel::parse_retry_after(prefix, now).has_value());
  }
}

TEST_CASE("parse_retry_after: a now at either end of the clock's range reads dates exactly",
          "[retry][retry_after]") {
  // system_clock's range in nanoseconds: 1677-09-21 00:12:43.145224192 to
  // 2262-04-11 23:47:16.854775807. Splitting `now` into days must not overflow.
  const system_clock::time_point lowest = system_clock::time_point::min();
  CHECK(keel::parse_retry_after("Tue, 21 Sep 1677 00:12:44 GMT", lowest) == duration(854'775'808));
  CHECK(keel::parse_retry_after("Tue, 21 Sep 1677 00:12:43 GMT", lowest) == 0s);
  CHECK(keel::parse_retry_after("Tue, 21 Sep 1677 01:12:44 GMT", lowest) ==
        1h + duration(854'775'808));
  const system_clock::time_point highest = system_clock::time_point::max();
  CHECK(keel::parse_retry_after("Fri, 11 Apr 2262 23:47:17 GMT", highest) == duration(145'224'193));
  CHECK(keel::parse_retry_after("Fri, 11 Apr 2262 23:47:16 GMT", highest) == 0s);
  CHECK(keel::parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", highest) ==
        keel::default_retry_after_cap);
}

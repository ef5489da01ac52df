// SPDX-License-Identifier: BSL-1.0
// RFC 850 dates carry a two-digit year. RFC 9110 §5.6.7: one that appears to be
// more than 50 years in the future is the most recent past year with the same
// last two digits; so the century follows "now", not a fixed pivot.
#include <chrono>
#include <optional>
#include <string_view>

#include <keel/retry/retry_after.hpp>

#include "support/catch.hpp"

namespace {

using namespace std::chrono_literals;
using keel::duration;
using std::chrono::sys_days;
using std::chrono::system_clock;
using ymd = std::chrono::year_month_day;

constexpr std::string_view nov_94 = "Sunday, 06-Nov-94 08:49:37 GMT";
constexpr std::string_view jan_49 = "Thursday, 01-Jan-49 00:00:00 GMT";
constexpr std::string_view jan_00 = "Friday, 01-Jan-00 00:00:00 GMT";
constexpr std::string_view nov_10 = "Saturday, 06-Nov-10 08:49:37 GMT";

system_clock::time_point at(ymd date, duration time_of_day = duration::zero()) {
  return sys_days(date) + time_of_day;
}

/// The wait until `date`, with no cap in the way: it tells which century was read.
std::optional<duration> wait(std::string_view date, system_clock::time_point now) {
  return keel::parse_retry_after(date, now, duration::max());
}

/// The year read_rfc850 gives `date` at `now`.
int year_read(std::string_view date, system_clock::time_point now) {
  const sys_days day = std::chrono::floor<std::chrono::days>(now);
  const ymd d(day);
  const std::chrono::hh_mm_ss<std::chrono::seconds> t(
      std::chrono::floor<std::chrono::seconds>(now - day));
  const keel::detail::civil_time now_civil{static_cast<int>(d.year()),
                                           static_cast<int>(static_cast<unsigned>(d.month())),
                                           static_cast<int>(static_cast<unsigned>(d.day())),
                                           static_cast<int>(t.hours().count()),
                                           static_cast<int>(t.minutes().count()),
                                           static_cast<int>(t.seconds().count())};
  keel::detail::civil_time out;
  REQUIRE(keel::detail::read_rfc850(date, now_civil, out));
  return out.year;
}

const system_clock::time_point in_2026 = at(std::chrono::year{2026} / 6 / 15, 12h);
const system_clock::time_point in_2051 = at(std::chrono::year{2051} / 6 / 15, 12h);
const system_clock::time_point in_2095 = at(std::chrono::year{2095} / 6 / 15, 12h);

const system_clock::time_point nov_6_2094 = at(std::chrono::year{2094} / 11 / 6, 8h + 49min + 37s);
const system_clock::time_point jan_1_2049 = at(std::chrono::year{2049} / 1 / 1);
const system_clock::time_point jan_1_2100 = at(std::chrono::year{2100} / 1 / 1);
const system_clock::time_point nov_6_2110 = at(std::chrono::year{2110} / 11 / 6, 8h + 49min + 37s);

}  // namespace

TEST_CASE("parse_retry_after: RFC 850 years in 2026", "[retry][retry_after]") {
  CHECK(year_read(nov_94, in_2026) == 1994);  // 2094 would be 68 years ahead
  CHECK(wait(nov_94, in_2026) == 0s);
  CHECK(year_read(jan_49, in_2026) == 2049);  // 22.5 years ahead
  CHECK(wait(jan_49, in_2026) == jan_1_2049 - in_2026);
  CHECK(year_read(jan_00, in_2026) == 2000);
  CHECK(year_read(nov_10, in_2026) == 2010);
}

// Regression: the year was taken in the current century or the one before,
// never the next, so from 2051 on "00" was read 51 years back instead of 49
// ahead.
TEST_CASE("parse_retry_after: RFC 850 years in 2051", "[retry][retry_after][regression]") {
  CHECK(year_read(nov_94, in_2051) == 2094);  // 43 years ahead
  CHECK(wait(nov_94, in_2051) == nov_6_2094 - in_2051);
  CHECK(year_read(jan_49, in_2051) == 2049);  // 2149 would be 98 years ahead
  CHECK(wait(jan_49, in_2051) == 0s);
  CHECK(year_read(jan_00, in_2051) == 2100);  // 48.5 years ahead, not 51 back
  CHECK(wait(jan_00, in_2051) == jan_1_2100 - in_2051);
}

TEST_CASE("parse_retry_after: RFC 850 years in 2095", "[retry][retry_after][regression]") {
  CHECK(year_read(nov_94, in_2095) == 2094);  // 2194 would be 99 years ahead
  CHECK(wait(nov_94, in_2095) == 0s);
  CHECK(year_read(jan_49, in_2095) == 2049);  // 2149 would be 53.5 years ahead
  CHECK(wait(jan_49, in_2095) == 0s);
  CHECK(year_read(jan_00, in_2095) == 2100);  // 4.5 years ahead
  CHECK(wait(jan_00, in_2095) == jan_1_2100 - in_2095);
  CHECK(year_read(nov_10, in_2095) == 2110);  // 15 years ahead, not 85 back
  CHECK(wait(nov_10, in_2095) == nov_6_2110 - in_2095);
}

TEST_CASE("parse_retry_after: RFC 850 \"more than 50 years\" is measured to the second",
          "[retry][retry_after]") {
  const auto now = at(std::chrono::year{2026} / 11 / 25, 12h + 250ms);
  // 2076-11-25 12:00:00 is 50 years ahead less 250 ms: still ahead.
  CHECK(year_read("Wednesday, 25-Nov-76 12:00:00 GMT", now) == 2076);
  CHECK(wait("Wednesday, 25-Nov-76 12:00:00 GMT", now) ==
        at(std::chrono::year{2076} / 11 / 25, 12h) - now);
  // One second later it is more than 50 years ahead: the previous century.
  CHECK(year_read("Wednesday, 25-Nov-76 12:00:01 GMT", now) == 1976);
  CHECK(wait("Wednesday, 25-Nov-76 12:00:01 GMT", now) == 0s);
}

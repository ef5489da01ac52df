// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_RETRY_RETRY_AFTER_HPP_INCLUDED
#define KEEL_RETRY_RETRY_AFTER_HPP_INCLUDED

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "keel/core/time.hpp"

namespace keel {

/// The largest wait parse_retry_after returns unless told otherwise: one day.
inline constexpr duration default_retry_after_cap = std::chrono::hours(24);

namespace detail {

// A tiny cursor over the header value: every accessor checks bounds, so no
// input can read past the end, and nothing allocates or throws.
class http_date_reader {
 public:
  constexpr explicit http_date_reader(std::string_view s) noexcept : s_(s) {}

  constexpr bool done() const noexcept { return i_ == s_.size(); }

  constexpr bool literal(std::string_view word) noexcept {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  /// Exactly `n` ASCII digits.
  constexpr bool digits(int n, int& out) noexcept {
    int value = 0;
    for (int k = 0; k < n; ++k) {
      if (i_ >= s_.size() || s_[i_] < '0' || s_[i_] > '9') return false;
      value = value * 10 + (s_[i_] - '0');
      ++i_;
    }
    out = value;
    return true;
  }

  /// One of the `n` names; its index in `out`.
  template <std::size_t N>
  constexpr bool one_of(const std::string_view (&names)[N], int& out) noexcept {
    for (std::size_t k = 0; k < N; ++k) {
      if (literal(names[k])) {
        out = static_cast<int>(k);
        return true;
      }
    }
    return false;
  }

 private:
  std::string_view s_;
  std::size_t i_ = 0;
};

inline constexpr std::string_view short_days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
inline constexpr std::string_view long_days[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                                 "Friday", "Saturday", "Sunday"};
inline constexpr std::string_view months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

struct civil_time {
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
};

// time-of-day = hour ":" minute ":" second (RFC 9110 §5.6.7); 60 allows a leap second.
constexpr bool read_time(http_date_reader& r, civil_time& t) noexcept {
  return r.digits(2, t.hour) && r.literal(":") && r.digits(2, t.minute) && r.literal(":") &&
         r.digits(2, t.second) && t.hour <= 23 && t.minute <= 59 && t.second <= 60;
}

// IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
constexpr bool read_imf_fixdate(std::string_view s, civil_time& t) noexcept {
  http_date_reader r(s);
  int ignored = 0;
  if (!(r.one_of(short_days, ignored) && r.literal(", ") && r.digits(2, t.day) && r.literal(" ") &&
        r.one_of(months, t.month) && r.literal(" ") && r.digits(4, t.year) && r.literal(" ") &&
        read_time(r, t) && r.literal(" GMT") && r.done())) {
    return false;
  }
  t.month += 1;
  return true;
}

/// True when `t` lies more than 50 years after `now` (to the second): the
/// calendar fields are compared with those of now moved 50 years on.
constexpr bool more_than_50_years_after(const civil_time& t, const civil_time& now) noexcept {
  const int a[] = {t.year, t.month, t.day, t.hour, t.minute, t.second};
  const int b[] = {now.year + 50, now.month, now.day, now.hour, now.minute, now.second};
  for (int k = 0; k < 6; ++k) {
    if (a[k] != b[k]) return a[k] > b[k];
  }
  return false;
}

// rfc850-date (obsolete): Sunday, 06-Nov-94 08:49:37 GMT. RFC 9110 §5.6.7: a
// two-digit year that would put the date more than 50 years in the future of
// `now` is the most recent past year with those digits. So the year is the
// latest one ending in those digits that is not more than 50 years ahead: it
// depends on the date, not on a fixed pivot.
constexpr bool read_rfc850(std::string_view s, const civil_time& now, civil_time& t) noexcept {
  http_date_reader r(s);
  int ignored = 0;
  int yy = 0;
  if (!(r.one_of(long_days, ignored) && r.literal(", ") && r.digits(2, t.day) && r.literal("-") &&
        r.one_of(months, t.month) && r.literal("-") && r.digits(2, yy) && r.literal(" ") &&
        read_time(r, t) && r.literal(" GMT") && r.done())) {
    return false;
  }
  t.month += 1;
  const int century = now.year - ((now.year % 100) + 100) % 100;  // floor to a multiple of 100
  t.year = century + 100 + yy;  // at least 1 year ahead: the latest candidate
  while (more_than_50_years_after(t, now)) t.year -= 100;  // at most twice
  return true;
}

// asctime-date (obsolete): Sun Nov  6 08:49:37 1994 (day is 2DIGIT or SP DIGIT).
constexpr bool read_asctime(std::string_view s, civil_time& t) noexcept {
  http_date_reader r(s);
  int ignored = 0;
  if (!(r.one_of(short_days, ignored) && r.literal(" ") && r.one_of(months, t.month) &&
        r.literal(" "))) {
    return false;
  }
  if (r.literal(" ")) {
    if (!r.digits(1, t.day)) return false;
  } else if (!r.digits(2, t.day)) {
    return false;
  }
  if (!(r.literal(" ") && read_time(r, t) && r.literal(" ") && r.digits(4, t.year) && r.done())) {
    return false;
  }
  t.month += 1;
  return true;
}

constexpr bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

}  // namespace detail

/// Reads an HTTP `Retry-After` value (RFC 9110 §10.2.3): delay-seconds ("120")
/// or an HTTP-date in IMF-fixdate, RFC 850 or asctime form (§5.6.7), which is
/// wall-clock time, hence `now` from std::chrono::system_clock. An RFC 850
/// two-digit year is the latest year with those digits that puts the date no
/// more than 50 years after `now`.
/// Returns the wait: a past date gives zero, anything above `cap` gives `cap`
/// (default one day); garbage (signs, exponents, fractions, an embedded NUL,
/// trailing text, an impossible date such as 29 Feb 2023) gives nullopt, "no hint".
/// Leading and trailing spaces and tabs are ignored, as HTTP field parsing does.
/// Never throws, never allocates.
inline std::optional<duration> parse_retry_after(std::string_view value,
                                                 std::chrono::system_clock::time_point now,
                                                 duration cap = default_retry_after_cap) noexcept {
  using namespace std::chrono;
  if (cap < duration::zero()) cap = duration::zero();
  while (!value.empty() && detail::is_ows(value.front())) value.remove_prefix(1);
  while (!value.empty() && detail::is_ows(value.back())) value.remove_suffix(1);
  if (value.empty()) return std::nullopt;

  const std::int64_t cap_seconds = duration_cast<seconds>(cap).count();
  if (value.front() >= '0' && value.front() <= '9') {  // delay-seconds = 1*DIGIT
    std::int64_t secs = 0;
    for (const char c : value) {
      if (c < '0' || c > '9') return std::nullopt;
      // Saturate at the cap: the digits are still all checked, but can never overflow.
      if (secs <= cap_seconds) secs = secs * 10 + (c - '0');
    }
    if (secs > cap_seconds) return cap;
    return duration_cast<duration>(seconds(secs));
  }

  // `now` split into whole seconds (floored) and the sub-second rest, in
  // seconds from here on: a `now` within a day of the clock's minimum must not
  // overflow when a day or a second is converted to the clock's unit.
  const auto since_epoch = now.time_since_epoch();
  seconds now_secs = duration_cast<seconds>(since_epoch);  // toward zero: fits
  duration now_rest = duration_cast<duration>(since_epoch - now_secs);
  if (now_rest < duration::zero()) {
    now_rest += seconds(1);
    now_secs -= seconds(1);
  }
  const sys_days today = floor<days>(sys_seconds(now_secs));
  const year_month_day ymd(today);
  const hh_mm_ss<seconds> clock_time(sys_seconds(now_secs) - today);
  const detail::civil_time now_civil{static_cast<int>(ymd.year()),
                                     static_cast<int>(static_cast<unsigned>(ymd.month())),
                                     static_cast<int>(static_cast<unsigned>(ymd.day())),
                                     static_cast<int>(clock_time.hours().count()),
                                     static_cast<int>(clock_time.minutes().count()),
                                     static_cast<int>(clock_time.seconds().count())};
  detail::civil_time t;
  if (!detail::read_imf_fixdate(value, t) && !detail::read_rfc850(value, now_civil, t) &&
      !detail::read_asctime(value, t)) {
    return std::nullopt;
  }
  const year_month_day date{year(t.year), month(static_cast<unsigned>(t.month)),
                            day(static_cast<unsigned>(t.day))};
  if (!date.ok()) return std::nullopt;  // 31 Apr, 29 Feb of a common year, day 00...

  // Whole seconds first (a year-9999 date in nanoseconds would overflow), then
  // the sub-second part of `now`.
  const std::int64_t date_s = duration_cast<seconds>(sys_days(date).time_since_epoch()).count() +
                              std::int64_t{t.hour} * 3600 + std::int64_t{t.minute} * 60 + t.second;
  const std::int64_t diff_s = date_s - now_secs.count();
  if (diff_s <= 0) return duration::zero();
  if (diff_s > cap_seconds) return cap;
  const duration d = duration_cast<duration>(seconds(diff_s)) - now_rest;
  if (d < duration::zero()) return duration::zero();
  return d < cap ? d : cap;
}

}  // namespace keel

#endif  // KEEL_RETRY_RETRY_AFTER_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
// The bound a rate limit promises, checked on what was sent: over any closed
// interval of length d, at most burst + floor(d / t) units.
#ifndef KEEL_TEST_SUPPORT_RATE_BOUND_HPP_INCLUDED
#define KEEL_TEST_SUPPORT_RATE_BOUND_HPP_INCLUDED

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

namespace keel_test {

/// Units that went at one time (ns).
struct sent_unit {
  std::int64_t at;
  std::uint64_t units;
};

/// The largest excess of units sent over any closed interval beyond
/// burst + floor(length / t); <= 0 when the bound holds. Intervals longer
/// than `span` ns are skipped (a stress test's speed-up: they are looser).
inline std::int64_t worst_excess(std::vector<sent_unit> sent, std::uint64_t burst, std::int64_t t,
                                 std::int64_t span = std::numeric_limits<std::int64_t>::max()) {
  std::sort(sent.begin(), sent.end(),
            [](const sent_unit& a, const sent_unit& b) { return a.at < b.at; });
  std::int64_t worst = -1;
  for (std::size_t i = 0; i < sent.size(); ++i) {
    std::uint64_t total = 0;
    for (std::size_t j = i; j < sent.size(); ++j) {
      if (sent[j].at - sent[i].at > span) break;
      total += sent[j].units;
      const std::int64_t allowed = static_cast<std::int64_t>(burst) + (sent[j].at - sent[i].at) / t;
      worst = std::max(worst, static_cast<std::int64_t>(total) - allowed);
    }
  }
  return worst;
}

/// The most units sent in any closed interval [s, s + period] (a window
/// limit's bound: at most `limit`).
inline std::uint64_t most_in_a_period(std::vector<sent_unit> sent, std::int64_t period) {
  std::sort(sent.begin(), sent.end(),
            [](const sent_unit& a, const sent_unit& b) { return a.at < b.at; });
  std::uint64_t most = 0;
  std::uint64_t in = 0;
  std::size_t first = 0;
  for (std::size_t j = 0; j < sent.size(); ++j) {
    in += sent[j].units;
    while (sent[j].at - sent[first].at > period) in -= sent[first++].units;
    most = std::max(most, in);
  }
  return most;
}

}  // namespace keel_test

#endif  // KEEL_TEST_SUPPORT_RATE_BOUND_HPP_INCLUDED

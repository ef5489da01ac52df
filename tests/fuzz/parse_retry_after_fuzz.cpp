// SPDX-License-Identifier: BSL-1.0
// libFuzzer harness: keel::parse_retry_after on arbitrary bytes, at an
// arbitrary "now" and cap. It must never crash or hit UB, and a result must
// lie within [0, cap] (cap below zero counts as zero). Build: tests/fuzz/run.sh.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include <keel/retry/retry_after.hpp>

namespace {
std::int64_t take_i64(const std::uint8_t*& data, std::size_t& size) {
  std::int64_t v = 0;
  const std::size_t n = size < sizeof v ? size : sizeof v;
  std::memcpy(&v, data, n);
  data += n;
  size -= n;
  return v;
}
void check(bool ok) {
  if (!ok) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Layout: a flags byte, then (flags & 1) an 8-byte "now", (flags & 2) an
  // 8-byte cap, then the header value. Mostly a realistic now, so that dates
  // in the corpus land near it; sometimes anything at all.
  if (size < 1) return 0;
  const std::uint8_t flags = data[0];
  ++data;
  --size;
  using clock = std::chrono::system_clock;
  clock::time_point now = clock::time_point(std::chrono::seconds(1'764'000'000));  // Nov 2025
  if (flags & 1) now = clock::time_point(clock::duration(take_i64(data, size)));
  keel::duration cap = keel::default_retry_after_cap;
  if (flags & 2) cap = keel::duration(take_i64(data, size));
  const std::string_view value(reinterpret_cast<const char*>(data), size);

  const std::optional<keel::duration> r = keel::parse_retry_after(value, now, cap);
  if (r) {
    const keel::duration top = cap < keel::duration::zero() ? keel::duration::zero() : cap;
    check(*r >= keel::duration::zero());
    check(*r <= top);
  }
  const std::optional<keel::duration> d = keel::parse_retry_after(value, now);
  if (d) check(*d >= keel::duration::zero() && *d <= keel::default_retry_after_cap);
  // The same input gives the same answer: no hidden state.
  check(keel::parse_retry_after(value, now, cap) == r);
  return 0;
}

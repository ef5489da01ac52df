// SPDX-License-Identifier: BSL-1.0
// libFuzzer harness: the fuzzer's bytes choose a circuit breaker's
// configuration and a sequence of operations (acquire, success, failure with
// or without a hint, drop, time advance, isolate, disable, reset); the real
// keel::circuit_breaker and the reference model of breaker_model.hpp must
// agree after every operation. A disagreement aborts with the operations
// that led to it. Build: tests/fuzz/run.sh.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "breaker_model.hpp"

namespace {

/// A Source for keel_model::drive that reads its choices from the input;
/// once the input is used up it answers `lo` and reports done().
struct byte_source {
  const std::uint8_t* data;
  std::size_t size;

  bool done() const { return size == 0; }
  std::int64_t in(std::int64_t lo, std::int64_t hi) {
    const auto span = static_cast<std::uint64_t>(hi - lo) + 1;
    std::uint64_t v = 0;
    const std::size_t n = span <= 256 ? 1 : span <= 65536 ? 2 : 8;
    const std::size_t k = n < size ? n : size;
    std::memcpy(&v, data, k);
    data += k;
    size -= k;
    return lo + static_cast<std::int64_t>(v % span);
  }
  bool chance(int percent) { return in(0, 99) < percent; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const auto rule = (data[0] & 1) != 0 ? keel_model::model_rule::ratio_count
                                       : keel_model::model_rule::consecutive;
  byte_source src{data + 1, size - 1};
  const keel_model::run_result r = keel_model::drive(src, 0, rule, 4096);
  if (!r.mismatch.empty()) {
    std::fprintf(stderr, "breaker and model disagree: %s\n", r.mismatch.c_str());
    std::abort();
  }
  return 0;
}

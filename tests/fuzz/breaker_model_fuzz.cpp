// SPDX-License-Identifier: BSL-1.0
// libFuzzer harness: the fuzzer's bytes choose a circuit breaker's trip rule
// (any of the four), its options (in the ranges of the unit test, or, when
// the first byte says so, with extreme values, valid or not) and a sequence
// of operations (acquire, success or failure with a duration and a hint,
// outcomes the breaker handles, does not handle, ignores or that are
// cancellations, drop, try_execute calls that take virtual time, time
// advances, isolate, disable, reset). Invalid options must be refused with
// keel::config_error naming a field the model finds invalid; otherwise the
// real keel::circuit_breaker and the reference model of
// tests/support/breaker_model.hpp must agree after every operation. A
// disagreement aborts with the operations that led to it. Build:
// tests/fuzz/run.sh.
//
// Input: byte 0 = rule (bits 0-1) and extreme options (bit 2); then the
// options and the operations, each choice read from the next 1, 2 or 8 bytes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "support/breaker_model.hpp"

namespace {

/// A Source for keel_model::drive that reads its choices from the input;
/// once the input is used up it answers `lo` (and "no" to every chance) and
/// reports done().
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
  bool chance(int percent) { return !done() && in(0, 99) < percent; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const auto rule = static_cast<keel_model::model_rule>(data[0] & 3);
  const bool extremes = (data[0] & 4) != 0;
  byte_source src{data + 1, size - 1};
  const keel::circuit_breaker_options o = keel_model::draw_options(src, rule, extremes);
  const keel_model::run_result r = keel_model::drive(src, 0, o, 4096);
  if (!r.mismatch.empty()) {
    std::fprintf(stderr, "breaker and model disagree (%s%s): %s\n", keel_model::name(rule),
                 extremes ? ", extreme options" : "", r.mismatch.c_str());
    std::abort();
  }
  return 0;
}

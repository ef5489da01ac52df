// SPDX-License-Identifier: BSL-1.0
// A result type that attacks whatever stores it: its Nth copy, move, copy
// assignment or move assignment throws, it counts the objects alive, and it
// notices being destroyed twice (its heap cell also lets ASan see that).
// Single-threaded: the counters are plain globals of the test binary.
#ifndef KEEL_TESTS_SUPPORT_HOSTILE_HPP_INCLUDED
#define KEEL_TESTS_SUPPORT_HOSTILE_HPP_INCLUDED

#include <cstdint>
#include <memory>
#include <stdexcept>

namespace keel_test {

/// What hostile throws.
struct hostile_error : std::runtime_error {
  hostile_error() : std::runtime_error("hostile: copy or move refused") {}
};

/// The counters of every hostile object.
struct hostile_stats {
  long live = 0;          ///< objects constructed and not yet destroyed
  long operations = 0;    ///< copies, moves and assignments so far
  long throw_at = 0;      ///< the operation number that throws (0: none)
  long thrown = 0;        ///< how many operations threw
  long bad_destroys = 0;  ///< destructions of an object not alive
};

inline hostile_stats& hostile_counters() {
  static hostile_stats s;
  return s;
}

/// Starts a round: counters zero (but `live`, which counts objects still held
/// from earlier rounds), operation `throw_at` (1-based) throws.
inline void hostile_reset(long throw_at = 0) {
  hostile_counters() = hostile_stats{hostile_counters().live, 0, throw_at};
}

class hostile {
 public:
  explicit hostile(int v) : cell_(std::make_unique<int>(v)) { ++hostile_counters().live; }
  hostile(const hostile& other) : cell_((tick(), std::make_unique<int>(other.value()))) {
    ++hostile_counters().live;
  }
  hostile(hostile&& other) : cell_((tick(), std::move(other.cell_))) {  // NOLINT: throws on purpose
    ++hostile_counters().live;
  }
  hostile& operator=(const hostile& other) {
    tick();
    cell_ = std::make_unique<int>(other.value());
    return *this;
  }
  hostile& operator=(hostile&& other) {  // NOLINT: throws on purpose
    tick();
    cell_ = std::move(other.cell_);
    return *this;
  }
  ~hostile() {
    if (magic_ != alive) ++hostile_counters().bad_destroys;
    magic_ = dead;
    --hostile_counters().live;
  }

  /// The value; -1000 for a moved-from object.
  int value() const { return cell_ ? *cell_ : -1000; }

 private:
  static constexpr std::uint32_t alive = 0x600dcafe;
  static constexpr std::uint32_t dead = 0xdeadbeef;

  static void tick() {
    hostile_stats& s = hostile_counters();
    if (++s.operations == s.throw_at) {
      ++s.thrown;
      throw hostile_error();
    }
  }

  std::unique_ptr<int> cell_;
  std::uint32_t magic_ = alive;
};

}  // namespace keel_test

#endif  // KEEL_TESTS_SUPPORT_HOSTILE_HPP_INCLUDED

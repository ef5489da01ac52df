// SPDX-License-Identifier: BSL-1.0
// Two shared libraries, keel_shared_adder_a and keel_shared_adder_b, built
// from shared_adder.cpp with -fvisibility=hidden -fvisibility-inlines-hidden:
// each holds its own copy of every keel inline function and of its statics,
// as two plugins of one program would. Each exports only these functions,
// named after its side (a or b).
#ifndef KEEL_TESTS_SHARED_LIBS_SHARED_ADDER_HPP_INCLUDED
#define KEEL_TESTS_SHARED_LIBS_SHARED_ADDER_HPP_INCLUDED

#include <cstddef>
#include <cstdint>

#include <keel/circuit_breaker/breaker_core.hpp>
#include <keel/circuit_breaker/detail/windows.hpp>
#include <keel/core/context.hpp>
#include <keel/failover/endpoint_pool.hpp>

/// An endpoint type both libraries and the test know. Its end marks it, so
/// that a call reading one freed under it sees -1.
struct shared_endpoint {
  int port = 0;
  shared_endpoint() = default;
  explicit shared_endpoint(int p) : port(p) {}
  shared_endpoint(const shared_endpoint&) = default;
  shared_endpoint& operator=(const shared_endpoint&) = default;
  ~shared_endpoint() { port = -1; }
  friend bool operator==(const shared_endpoint& a, const shared_endpoint& b) {
    return a.port == b.port;
  }
};

/// A round-robin pool both libraries call.
using shared_pool = keel::endpoint_pool<shared_endpoint>;

#if defined(_WIN32)
#if defined(KEEL_SHARED_ADDER_BUILDING)
#define KEEL_SHARED_ADDER_API __declspec(dllexport)
#else
#define KEEL_SHARED_ADDER_API __declspec(dllimport)
#endif
#else
#define KEEL_SHARED_ADDER_API __attribute__((visibility("default")))
#endif

#define KEEL_SHARED_ADDER_DECLARE(side)                                                   \
  /** Adds 1 to `counter` n times. */                                                     \
  KEEL_SHARED_ADDER_API void keel_shared_add_##side(keel::detail::owned_counter& counter, \
                                                    std::uint64_t n);                     \
  /** Asks `core` for n admissions at `now`; returns how many were rejected. */           \
  KEEL_SHARED_ADDER_API std::uint64_t keel_shared_reject_##side(                          \
      keel::breaker_state_machine& core, std::uint64_t n, keel::time_point now);          \
  /** Sets `ctx`'s target to endpoint `i`, `ep`, and its user value to `v`. */            \
  KEEL_SHARED_ADDER_API void keel_shared_set_target_##side(                               \
      keel::context& ctx, std::size_t i, const shared_endpoint& ep, std::uint64_t v);     \
  /** `ctx`'s target as a shared_endpoint (null if none), and its user value. */          \
  KEEL_SHARED_ADDER_API const shared_endpoint* keel_shared_get_target_##side(             \
      const keel::context& ctx, std::uint64_t& v);                                        \
  /** One call on `pool`, running `inner(arg)` inside; the port it reached (-2: none). */ \
  KEEL_SHARED_ADDER_API int keel_shared_pool_call_##side(const shared_pool& pool,         \
                                                         void (*inner)(void*), void* arg);

KEEL_SHARED_ADDER_DECLARE(a)
KEEL_SHARED_ADDER_DECLARE(b)

#endif  // KEEL_TESTS_SHARED_LIBS_SHARED_ADDER_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
// Compiled twice, with KEEL_SHARED_ADDER_SIDE=a and =b (see shared_adder.hpp).
#include "shared_adder.hpp"

#define KEEL_SHARED_ADDER_CAT2(x, y) x##y
#define KEEL_SHARED_ADDER_CAT(x, y) KEEL_SHARED_ADDER_CAT2(x, y)
#define KEEL_SHARED_ADDER_NAME(stem) KEEL_SHARED_ADDER_CAT(stem, KEEL_SHARED_ADDER_SIDE)

void KEEL_SHARED_ADDER_NAME(keel_shared_add_)(keel::detail::owned_counter& counter,
                                              std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) counter.add();
}

std::uint64_t KEEL_SHARED_ADDER_NAME(keel_shared_reject_)(keel::breaker_state_machine& core,
                                                          std::uint64_t n, keel::time_point now) {
  std::uint64_t rejected = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    if (!core.try_acquire(now).admitted) ++rejected;
  }
  return rejected;
}

void KEEL_SHARED_ADDER_NAME(keel_shared_set_target_)(keel::context& ctx, std::size_t i,
                                                     const shared_endpoint& ep, std::uint64_t v) {
  ctx.set_target(keel::target(i, ep));
  ctx.set_user_value(v);
}

const shared_endpoint* KEEL_SHARED_ADDER_NAME(keel_shared_get_target_)(const keel::context& ctx,
                                                                       std::uint64_t& v) {
  v = ctx.user_value<std::uint64_t>().value_or(0);
  return ctx.target().get<shared_endpoint>();
}

int KEEL_SHARED_ADDER_NAME(keel_shared_pool_call_)(const shared_pool& pool, void (*inner)(void*),
                                                   void* arg) {
  const auto out = pool.try_execute([&](const keel::context& ctx) {
    const shared_endpoint* e = ctx.target().get<shared_endpoint>();
    const int before = e != nullptr ? e->port : -2;
    if (inner != nullptr) inner(arg);
    return e != nullptr && e->port == before ? before : -1;
  });
  return out.has_value() ? out.value() : -2;
}

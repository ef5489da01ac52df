// SPDX-License-Identifier: BSL-1.0
// The failover workloads of keel_callgrind_workloads (see
// callgrind_workloads.cpp for how they are run), in a translation unit of
// their own, so that GCC's inlining of the other workloads does not depend on
// them (see callgrind_workloads_coarse.cpp).
#include <atomic>
#include <cstddef>
#include <functional>
#include <vector>

#include <keel/failover/leader_follower.hpp>

#include "workload_support.hpp"

namespace {

using keel_bench::keep;

/// Three members, one port each: the endpoint the callable reads.
struct member {
  int port;
};

/// What a call through the leader follower works with: the endpoint's port.
[[gnu::noinline]] int work_at(const member& m, int x) noexcept {
  __asm__ __volatile__("" : "+r"(x));
  return x + (m.port & 1);
}

}  // namespace

// The floor: the cached leader read with one relaxed load, and the call to it.
bool keel_cg_hand_written_leader(int n) {
  static const std::vector<member> members = {{2}, {4}, {6}};
  static std::atomic<std::size_t> leader{1};
  int x = 0;
  for (int i = 0; i < n; ++i) {
    x = work_at(members[leader.load(std::memory_order_relaxed)], x);
    keep(x);
  }
  return x == 0;
}

// The happy path: the leader answers; the callable reads its endpoint from the context.
bool keel_cg_leader_follower(int n) {
  static const keel::leader_follower<member> lf({{2}, {4}, {6}}, {.initial_leader = 1});
  int x = 0;
  for (int i = 0; i < n; ++i) {
    auto r = lf.try_execute(
        [&](const keel::context& ctx) { return work_at(*ctx.target().get<member>(), x); });
    if (r.has_value()) x = r.value();
    keep(x);
  }
  return x == 0 && lf.leader() == 1;
}

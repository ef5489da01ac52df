// SPDX-License-Identifier: BSL-1.0
// Third adversarial review of the failover policies (issue 14). Each test is
// named after the defect it shows; see the review's report for the details.
#include <ucontext.h>

#if defined(__linux__)
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#include <atomic>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <keel/failover/endpoint_pool.hpp>
#include <keel/failover/leader_follower.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "pool_test_support.hpp"
#include "support/catch.hpp"

using namespace std::chrono_literals;
using strings = std::vector<std::string>;

namespace {

std::mutex r3_live_mutex;
std::set<const void*>& r3_live() {
  static std::set<const void*> s;
  return s;
}
bool r3_is_live(const void* p) {
  const std::lock_guard lock(r3_live_mutex);
  return r3_live().count(p) != 0;
}

/// An endpoint that knows which of its objects are alive.
struct r3_tracked {
  std::string name;
  explicit r3_tracked(std::string n) : name(std::move(n)) { add(); }
  r3_tracked(const r3_tracked& o) : name(o.name) { add(); }
  r3_tracked& operator=(const r3_tracked& o) {
    name = o.name;
    return *this;
  }
  ~r3_tracked() {
    const std::lock_guard lock(r3_live_mutex);
    r3_live().erase(this);
  }
  bool operator==(const r3_tracked& o) const { return name == o.name; }

 private:
  void add() {
    const std::lock_guard lock(r3_live_mutex);
    r3_live().insert(this);
  }
};
std::vector<r3_tracked> r3_list(std::initializer_list<const char*> names) {
  std::vector<r3_tracked> v;
  for (const char* n : names) v.emplace_back(n);
  return v;
}

#if defined(__SANITIZE_THREAD__)
constexpr bool r3_under_tsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool r3_under_tsan = true;
#else
constexpr bool r3_under_tsan = false;
#endif
#else
constexpr bool r3_under_tsan = false;
#endif

// ---- Two stackful coroutines (fibers) on one thread --------------------------
struct fibers {
  ucontext_t main_uc{}, a_uc{}, b_uc{};
  std::unique_ptr<char[]> a_stack = std::make_unique<char[]>(1 << 18);
  std::unique_ptr<char[]> b_stack = std::make_unique<char[]>(1 << 18);
  keel::endpoint_pool<r3_tracked>* pool = nullptr;
  std::string a_name, b_name;
  const r3_tracked* b_endpoint = nullptr;
  bool b_alive_after = true;
};
fibers* the_fibers = nullptr;

void fiber_a() {
  fibers& f = *the_fibers;
  f.pool->execute([&f](const keel::context& ctx) {
    f.a_name = ctx.target().get<r3_tracked>()->name;
    swapcontext(&f.a_uc, &f.b_uc);  // B enters while A is inside
    return 0;                       // A leaves first: not the last in
  });
}
void fiber_b() {
  fibers& f = *the_fibers;
  f.pool->execute([&f](const keel::context& ctx) {
    f.b_endpoint = ctx.target().get<r3_tracked>();
    f.b_name = f.b_endpoint->name;
    swapcontext(&f.b_uc, &f.a_uc);               // back to A, which returns
    f.b_alive_after = r3_is_live(f.b_endpoint);  // B's call is still inside it
    return 0;
  });
}

}  // namespace

// ---------------------------------------------------------------------------
// P1 (branch poolperf): a call's hold on its endpoint must not depend on calls
// on one thread ending in the reverse order they began. Stackful coroutines
// (ucontext, Boost.Context, folly fibers) interleave calls on one thread; a
// per-thread record that pops "the last entry" then drops the wrong call's
// hold and replace() frees an endpoint a call is still inside. Holds on main
// (in_flight counts per slot); fails on poolperf (f99f145 / de14d29).
// ---------------------------------------------------------------------------
TEST_CASE("R3-P1: a call keeps its endpoint alive when calls on one thread end out of order",
          "[review14c][pool][lifetime][poolperf]") {
  if (r3_under_tsan) {
    WARN("skipped: ThreadSanitizer does not follow swapcontext");
    return;
  }
  keel::endpoint_pool<r3_tracked> pool(r3_list({"a", "b"}), {.capacity = 4});
  fibers f;
  f.pool = &pool;
  the_fibers = &f;
  getcontext(&f.a_uc);
  f.a_uc.uc_stack.ss_sp = f.a_stack.get();
  f.a_uc.uc_stack.ss_size = 1 << 18;
  f.a_uc.uc_link = &f.main_uc;
  makecontext(&f.a_uc, fiber_a, 0);
  getcontext(&f.b_uc);
  f.b_uc.uc_stack.ss_sp = f.b_stack.get();
  f.b_uc.uc_stack.ss_size = 1 << 18;
  f.b_uc.uc_link = &f.main_uc;
  makecontext(&f.b_uc, fiber_b, 0);

  swapcontext(&f.main_uc, &f.a_uc);  // A in, B in, A out; B is suspended inside its call
  REQUIRE(f.a_name != f.b_name);
  REQUIRE(pool.replace(r3_list({f.a_name.c_str()})));  // B's endpoint leaves during B's call
  swapcontext(&f.main_uc, &f.b_uc);                    // B resumes and ends
  the_fibers = nullptr;
  CHECK(f.b_alive_after);
  CHECK(pool.status(0).in_flight + pool.status(1).in_flight == 0);
}

namespace {

/// How many members answered "not leader" before the follower's first wait.
std::size_t answers_before_first_wait(std::size_t members, std::size_t first) {
  using fixed_env = keel::testing::basic_virtual_environment<keel::testing::fixed_random>;
  const fixed_env env(keel::testing::fixed_random(0.5));
  auto lf =
      keel::leader_follower<std::size_t>(
          std::vector<std::size_t>(members),
          {.max_redirects = 1000, .require_leader = false, .initial_leader = first})
          .with_signal([](const keel::outcome<int>&) { return keel::leader_signal::not_leader(); })
          .with_environment(env);
  std::size_t calls = 0, before = 0;
  static_cast<void>(lf.try_execute([&](const keel::context&) -> int {
    if (before == 0 && !env.sleeps().empty()) before = calls;
    ++calls;
    throw std::runtime_error("not the leader");
  }));
  return before;
}

}  // namespace

// ---------------------------------------------------------------------------
// L1: docs/leader_follower.md: "waits probe_backoff only after a quorum,
// floor(n/2) + 1 distinct members, answered"; "more than 255 members: after
// 128 distinct members". The quorum is counted in a tried_set, whose indexes
// from 128 share bits with index % 128: a probe pass that starts at or wraps
// past 128 counts fewer members than answered, and waits late (200 members
// from 128: 173 answers, not 101; 300 from 200: 172, not 128).
// ---------------------------------------------------------------------------
TEST_CASE("R3-L1: leader_follower waits after exactly a quorum of distinct members answered",
          "[review14c][leader]") {
  CHECK(answers_before_first_wait(5, 0) == 3);        // holds
  CHECK(answers_before_first_wait(300, 0) == 128);    // holds (what R11 should assert)
  CHECK(answers_before_first_wait(200, 128) == 101);  // 173
  CHECK(answers_before_first_wait(300, 200) == 128);  // 172
}

// ---------------------------------------------------------------------------
// O1: docs/failover.md: "Each interval swept while the endpoint is not
// ejected takes one off k; a quiet stretch counts as the intervals it spans."
// An ejection that ended inside a quiet stretch is returned only after the
// stretch's one combined sweep, which saw it still ejected: none of the
// intervals after its end decays k, so its next ejection lasts twice as long
// as with a call every interval.
// ---------------------------------------------------------------------------
TEST_CASE("R3-O1: a quiet stretch decays k for the intervals after an ejection ended in it",
          "[review14c][outlier]") {
  keel::outlier_detection_options o;
  o.success_rate = std::nullopt;
  o.max_ejection_percent = 100;
  o.interval = 10s;
  o.base_ejection_time = 30s;
  const keel::time_point t0{};
  const auto eject_at = [](keel::outlier_detector& d, keel::time_point t) {
    for (int k = 0; k < 5; ++k) d.record(0, true, t);
  };
  keel::outlier_detector busy(2, o), quiet(2, o);
  eject_at(busy, t0 + 1s);
  eject_at(quiet, t0 + 1s);
  REQUIRE(*busy.ejected_until(0) == t0 + 31s);
  for (int k = 1; k <= 10; ++k) busy.sweep(t0 + k * 10s);  // a look every interval
  quiet.sweep(t0 + 100s);                                  // one look after 10 intervals
  CHECK_FALSE(busy.ejected(0));
  CHECK_FALSE(quiet.ejected(0));
  CHECK(busy.multiplier(0) == 0);
  CHECK(quiet.multiplier(0) == busy.multiplier(0));  // 1
  eject_at(busy, t0 + 101s);
  eject_at(quiet, t0 + 101s);
  CHECK(*quiet.ejected_until(0) == *busy.ejected_until(0));  // 161 s, not 131 s
}

#if defined(__linux__) && defined(SYS_membarrier)
// ---------------------------------------------------------------------------
// P2 (branch poolperf): docs/failover.md there: "Where membarrier is not there
// (..., a seccomp filter that refuses it, ...) each call instead makes one
// seq_cst exchange". The mode is decided once, at the first call; a sandbox
// that starts after it (or a membarrier that fails with ENOMEM) makes the
// next replace() that removes an endpoint call std::terminate(). Holds on main.
// ---------------------------------------------------------------------------
TEST_CASE("R3-P2: replace() survives membarrier refused after the first call",
          "[review14c][pool][poolperf]") {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::signal(SIGABRT, SIG_DFL);  // the child's abort is the parent's finding, not Catch's
    keel::endpoint_pool<std::string> pool(strings{"a", "b"});
    static_cast<void>(pool.execute([](const keel::context&) { return 0; }));
    sock_filter f[] = {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
                       BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_membarrier, 0, 1),
                       BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 1),  // EPERM
                       BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    sock_fprog prog{sizeof f / sizeof f[0], f};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
      ::_exit(3);
    const bool replaced = pool.replace(strings{"a"});
    ::_exit(replaced ? 0 : 4);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));  // poolperf: killed by SIGABRT (std::terminate)
  CHECK(WEXITSTATUS(status) == 0);
}
#endif

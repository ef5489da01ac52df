// SPDX-License-Identifier: BSL-1.0
// Fourth adversarial review (issue 14's cost cuts, branch poolcost). Each
// test is named after the defect it shows, or after the attack it survived;
// see the review's report for the details.
#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <keel/failover/endpoint_pool.hpp>
#include <keel/pipeline.hpp>
#include <keel/retry.hpp>
#include <keel/testing/virtual_environment.hpp>
#include <keel/timeout.hpp>

#include "pool_test_support.hpp"
#include "support/catch.hpp"

using namespace std::chrono_literals;
using keel::detail::pool_test_access;

namespace {

using names = std::vector<std::string>;

names numbered(std::size_t n) {
  names v;
  for (std::size_t i = 0; i < n; ++i) v.push_back("endpoint-" + std::to_string(i));
  return v;
}

/// A per-endpoint layer that refuses (a rejection: nothing sent) at one slot,
/// or throws there.
struct r4_layers {
  std::size_t refused = keel::target::none;
  std::size_t throwing = keel::target::none;
  struct layer {
    bool refuse;
    bool raise;
    template <class R, class Next>
    keel::outcome<R> run(Next&& next, keel::context& ctx) const {
      if (raise) throw std::runtime_error("a layer that throws");
      if (refuse) return keel::outcome<R>::from_keel(keel::errc::bulkhead_full);
      return next(ctx);
    }
  };
  layer operator()(const std::string&, std::size_t slot) const {
    return layer{slot == refused, slot == throwing};
  }
};

/// A result that counts its moves.
struct move_counted {
  static inline int moves = 0;
  std::size_t index = 0;
  explicit move_counted(std::size_t i) : index(i) {}
  move_counted(const move_counted&) = default;
  move_counted(move_counted&& o) noexcept : index(o.index) { ++moves; }
  move_counted& operator=(const move_counted&) = default;
  move_counted& operator=(move_counted&&) = default;
};

/// The old context's tried slot, as a model: set_target marked at once.
struct context_model {
  std::size_t target = keel::target::none;
  keel::tried_set tried;
};

bool agrees(const keel::context& c, const context_model& m) {
  if (c.target().index() != m.target) return false;
  if (c.target().has_value() != (m.target != keel::target::none)) return false;
  if (!(c.tried() == m.tried)) return false;
  for (std::size_t i = 0; i < 300; ++i)
    if (c.was_tried(i) != m.tried.contains(i)) return false;
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------
// The context: the target's tried bit against a model of the old tried set.
// ---------------------------------------------------------------------------
TEST_CASE(
    "review4: the target's tried bit matches an eagerly written tried set through every "
    "context operation",
    "[review14d][context]") {
  const std::array<std::string, 2> eps{{"a", "b"}};
  std::mt19937_64 gen(20261205);
  constexpr std::size_t n = 4;
  for (int round = 0; round < 200; ++round) {
    std::array<keel::context, n> ctx{};
    std::array<context_model, n> model{};
    for (int step = 0; step < 60; ++step) {
      const std::size_t a = gen() % n, b = gen() % n;
      // Indexes below 4, near 128 (aliases) and far above.
      const std::size_t picks[] = {0, 1, 2, 3, 127, 128, 130, 255, 1000003};
      const std::size_t i = picks[gen() % std::size(picks)];
      switch (gen() % 10) {
        case 0:
        case 1:
          ctx[a].set_target(keel::target(i, eps[i % 2]));
          model[a].target = i;
          model[a].tried.insert(i);
          break;
        case 2:
          ctx[a].set_target(keel::target());
          model[a].target = keel::target::none;
          break;
        case 3:
          ctx[a].clear_target();
          model[a].target = keel::target::none;
          break;
        case 4:
          ctx[a].mark_tried(i);
          model[a].tried.insert(i);
          break;
        case 5:
          ctx[a].clear_tried();
          model[a].tried.clear();
          break;
        case 6:
          ctx[a] = ctx[b];
          model[a] = model[b];
          break;
        case 7: {
          keel::context moved(std::move(ctx[b]));
          ctx[a] = std::move(moved);
          model[a] = model[b];
          break;
        }
        case 8:
          ctx[a].take_slots(ctx[b]);
          model[a] = model[b];  // deadline and stop token aside, the slots are b's
          break;
        default: {
          const keel::context copy(ctx[b]);
          ctx[a] = copy;
          model[a] = model[b];
          break;
        }
      }
      for (std::size_t k = 0; k < n; ++k) {
        INFO("round " << round << " step " << step << " context " << k);
        REQUIRE(agrees(ctx[k], model[k]));
      }
    }
  }
}

// ---------------------------------------------------------------------------
// fastmod and index_below against the plain arithmetic.
// ---------------------------------------------------------------------------
TEST_CASE("review4: round robin's 128-bit fastmod equals % for sizes 1..70 and cursors at the wrap",
          "[review14d][pool][wrap]") {
  for (std::size_t size = 1; size <= 70; ++size) {
    keel::endpoint_pool_options o;
    o.capacity = size;
    keel::endpoint_pool pool(numbered(size), o);
    for (const std::uint32_t turn :
         {0u, 1u, static_cast<std::uint32_t>(size - 1), static_cast<std::uint32_t>(size),
          0x7fffffffu, 0x80000000u, UINT32_MAX - static_cast<std::uint32_t>(size), UINT32_MAX - 2,
          UINT32_MAX - 1, UINT32_MAX}) {
      pool_test_access::set_cursor(pool, turn);
      const auto reached =
          pool.execute([](const keel::context& ctx) { return ctx.target().index(); });
      INFO("size " << size << " turn " << turn);
      CHECK(reached == turn % size);
    }
  }
}

TEST_CASE("review4: index_below through int64 equals the unsigned conversion, below n",
          "[review14d][pool]") {
  const auto old_index_below = [](double u, std::size_t n) -> std::size_t {
    if (!(u > 0.0)) return 0;
    const double x = u * static_cast<double>(n);
    if (!(x < static_cast<double>(n))) return n - 1;
    return static_cast<std::size_t>(x);
  };
  const double below_one = std::nextafter(1.0, 0.0);
  const double us[] = {0.0,
                       -0.0,
                       std::numeric_limits<double>::denorm_min(),
                       1e-300,
                       0.25,
                       0.5,
                       0.75,
                       below_one,
                       std::nextafter(below_one, 0.0),
                       1.0,
                       2.0,
                       std::numeric_limits<double>::infinity(),
                       -1.0,
                       std::numeric_limits<double>::quiet_NaN()};
  std::vector<std::size_t> ns;
  for (std::size_t n = 1; n <= 300; ++n) ns.push_back(n);
  for (const std::size_t n :
       {std::size_t{1} << 31, (std::size_t{1} << 31) + 1, (std::size_t{1} << 32) - 3,
        (std::size_t{1} << 32) - 2, (std::size_t{1} << 32) - 1})
    ns.push_back(n);
  for (const std::size_t n : ns) {
    for (const double u : us) {
      const std::size_t got = keel::detail::index_below(u, n);
      INFO("n " << n << " u " << u);
      CHECK(got < n);
      CHECK(got == old_index_below(u, n));
    }
  }
}

// ---------------------------------------------------------------------------
// The outcome "built in the caller's slot": the call that moved.
// ---------------------------------------------------------------------------
TEST_CASE(
    "review4: a call moved off a refusing endpoint moves its result at most three times more "
    "than a call that was not",
    "[review14d][pool][outcome]") {
  keel::endpoint_pool pool(names{"a", "b"}, {}, r4_layers{0, keel::target::none});
  const auto call = [&] {
    move_counted::moves = 0;
    const auto o = pool.try_execute(
        [](const keel::context& ctx) { return move_counted(ctx.target().index()); });
    REQUIRE(o.has_value());
    CHECK(o.value().index == 1);
    return move_counted::moves;
  };
  pool_test_access::set_cursor(pool, 1);  // b at once
  const int direct = call();
  pool_test_access::set_cursor(pool, 0);  // a refuses: the call moves to b
  const int moved = call();
  INFO("moves: direct " << direct << ", moved " << moved);
  // The slow path's outcome is assigned into the fast path's named one (so
  // that the common path builds its outcome in the caller's slot, moved
  // once): a moved call pays up to three more moves of its result.
  CHECK(direct == 1);
  CHECK(moved <= direct + 3);
  for (std::size_t i = 0; i < pool.capacity(); ++i) CHECK(pool.status(i).in_flight == 0);
}

// ---------------------------------------------------------------------------
// In-flight counts back to zero on every way out, quiet or not.
// ---------------------------------------------------------------------------
TEST_CASE("review4: in-flight returns to zero after a layer throws or refuses, quiet or not",
          "[review14d][pool][in_flight]") {
  for (const bool probing : {false, true}) {
    for (const bool detecting : {false, true}) {
      for (const auto strategy : {keel::balance::round_robin, keel::balance::least_loaded,
                                  keel::balance::peak_ewma, keel::balance::random}) {
        keel::endpoint_pool_options o;
        o.strategy = strategy;
        if (detecting) o.outlier_detection = keel::outlier_detection_options{};
        keel::endpoint_pool base(names{"a", "b", "c"}, o, r4_layers{1, 2});
        const auto run = [&](const auto& pool) {
          for (int i = 0; i < 30; ++i) {
            try {
              const auto r = pool.try_execute([](const keel::context& ctx) {
                if (ctx.target().index() == 0 && ctx.attempt() % 2 == 0)
                  throw std::logic_error("the callable throws");
                return ctx.target().index();
              });
              static_cast<void>(r);
            } catch (const std::runtime_error&) {
            }
          }
          for (std::size_t s = 0; s < pool.capacity(); ++s) {
            INFO("probing " << probing << " detecting " << detecting << " strategy "
                            << keel::to_string_view(strategy) << " slot " << s);
            CHECK(pool.status(s).in_flight == 0);
          }
        };
        if (probing) {
          run(std::move(base).with_health_check([](const std::string&) { return true; }));
        } else {
          run(base);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Avoid-tried through a retry outside the pool (and a timeout between them),
// every strategy, 2, 3 and 130 endpoints, the fast pick landing on a tried one.
// ---------------------------------------------------------------------------
TEST_CASE(
    "review4: a retry's attempts reach distinct endpoints for every strategy and size, "
    "through a timeout too",
    "[review14d][pool][tried]") {
  for (const std::size_t size : {std::size_t{2}, std::size_t{3}, std::size_t{130}}) {
    for (const auto strategy :
         {keel::balance::round_robin, keel::balance::random, keel::balance::least_loaded,
          keel::balance::peak_ewma, keel::balance::weighted}) {
      for (const bool timed : {false, true}) {
        pool_test::env_t env;
        keel::endpoint_pool_options o;
        o.strategy = strategy;
        keel::endpoint_pool pool(numbered(size), o, keel::no_layers(), keel::no_listener(), env);
        // The first endpoint reached is at index size - 1 (130: it shares 1's bit).
        pool_test_access::set_cursor(pool, static_cast<std::uint32_t>(size - 1));
        env.random().set_fallback(std::nextafter(1.0, 0.0));
        const int attempts = static_cast<int>(size < 3 ? size : 3);
        const auto retry =
            keel::retry({.max_attempts = attempts, .backoff = keel::constant_backoff{.delay = 1ms}})
                .with_environment(env);
        std::vector<std::size_t> seen;
        const auto callable = [&](const keel::context& ctx) -> int {
          seen.push_back(ctx.target().index());
          // The next attempt's turn lands on this endpoint again: it must move on.
          pool_test_access::set_cursor(pool, static_cast<std::uint32_t>(ctx.target().index()));
          throw std::runtime_error("fails everywhere");
        };
        if (timed) {
          keel::pipeline(retry, keel::timeout({.timeout = 1h}).with_environment(env),
                         std::ref(pool))
              .try_execute(callable);
        } else {
          keel::pipeline(retry, std::ref(pool)).try_execute(callable);
        }
        INFO("size " << size << " strategy " << keel::to_string_view(strategy) << " timed "
                     << timed);
        REQUIRE(seen.size() == static_cast<std::size_t>(attempts));
        keel::tried_set bits;
        for (const std::size_t i : seen) {
          CHECK_FALSE(bits.contains(i));  // distinct, modulo 128 from 128 up
          bits.insert(i);
        }
        for (std::size_t s = 0; s < pool.capacity(); ++s) CHECK(pool.status(s).in_flight == 0);
      }
    }
  }
}

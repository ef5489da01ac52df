// SPDX-License-Identifier: BSL-1.0
// The per-call slots of keel::context: target, tried set, operation name and
// a user value; none allocates, and a copy refers to nothing the call owns.
#include <array>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <keel/core.hpp>
#include <keel/pipeline.hpp>
#include <keel/retry.hpp>
#include <keel/testing/virtual_environment.hpp>
#include <keel/timeout.hpp>

#include "support/catch.hpp"

namespace {

using namespace std::chrono_literals;

struct endpoint {
  std::string host;
  int port = 0;
};

struct trace_id {
  std::uint64_t high = 0, low = 0;
  friend bool operator==(const trace_id&, const trace_id&) = default;
};

struct no_default {  // trivially copyable, not default-constructible
  explicit no_default(int v) : value(v) {}
  int value;
};

/// A stand-in for a replica pool: attempt n goes to endpoint n - 1.
struct round_by_attempt {
  const std::vector<endpoint>* endpoints;
  template <class R, class Next>
  keel::outcome<R> run(Next&& next, keel::context& ctx) const {
    const auto i = static_cast<std::size_t>(ctx.attempt() - 1) % endpoints->size();
    ctx.set_target(keel::target(i, (*endpoints)[i]));
    return next(ctx);
  }
};

}  // namespace

TEST_CASE("context slots: a fresh context has none of them", "[context][slots]") {
  const keel::context ctx;
  CHECK_FALSE(ctx.target().has_value());
  CHECK(ctx.target().index() == keel::target::none);
  CHECK(ctx.target().get<endpoint>() == nullptr);
  CHECK(ctx.tried().empty());
  CHECK(ctx.tried().size() == 0);
  CHECK(ctx.operation().empty());
  CHECK_FALSE(ctx.user_value<int>().has_value());
}

TEST_CASE("context slots: the target is typed, and choosing one marks it tried",
          "[context][slots]") {
  const std::array<endpoint, 3> eps{{{"a", 1}, {"b", 2}, {"c", 3}}};
  keel::context ctx;
  ctx.set_target(keel::target(2, eps[2]));
  CHECK(ctx.target().has_value());
  CHECK(ctx.target().index() == 2);
  CHECK(ctx.target().get<endpoint>() == &eps[2]);
  CHECK(ctx.target().get<int>() == nullptr);  // another type: nothing
  CHECK(ctx.tried().contains(2));
  CHECK(ctx.tried().size() == 1);

  ctx.set_target(keel::target(0, eps[0]));
  CHECK(ctx.target().get<endpoint>()->host == "a");
  CHECK(ctx.tried().size() == 2);
  ctx.clear_target();
  CHECK_FALSE(ctx.target().has_value());
  CHECK(ctx.tried().size() == 2);  // what was tried stays tried
  ctx.clear_tried();
  CHECK(ctx.tried().empty());
  ctx.mark_tried(1);
  CHECK(ctx.tried().contains(1));
  CHECK_FALSE(ctx.target().has_value());
}

TEST_CASE("context slots: tried() and was_tried() agree however the target was set",
          "[context][slots]") {
  const std::array<endpoint, 2> eps{{{"a", 1}, {"b", 2}}};
  const auto agrees = [](const keel::context& c) {
    for (std::size_t i = 0; i < 300; ++i)
      if (c.was_tried(i) != c.tried().contains(i)) return false;
    return true;
  };
  keel::context ctx;
  CHECK(agrees(ctx));
  ctx.set_target(keel::target(130, eps[0]));  // shares index 2's bit
  CHECK(ctx.was_tried(130));
  CHECK(ctx.was_tried(2));
  CHECK(agrees(ctx));
  ctx.set_target(keel::target(1, eps[1]));  // the one before stays tried
  CHECK(ctx.tried().size() == 2);
  CHECK(ctx.was_tried(130));
  CHECK(agrees(ctx));
  ctx.set_target(keel::target());  // an empty target marks nothing
  CHECK_FALSE(ctx.target().has_value());
  CHECK(ctx.tried().size() == 2);
  CHECK(agrees(ctx));

  // Forgotten with clear_tried(), the target stays, and is not tried again
  // until chosen again.
  keel::context again;
  again.set_target(keel::target(3, eps[0]));
  again.clear_tried();
  CHECK(again.target().index() == 3);
  CHECK(again.tried().empty());
  CHECK_FALSE(again.was_tried(3));
  again.mark_tried(5);
  again.set_target(keel::target(4, eps[1]));
  CHECK(again.tried().size() == 2);
  CHECK(again.was_tried(4));
  CHECK(again.was_tried(5));
  CHECK_FALSE(again.was_tried(3));
  CHECK(agrees(again));

  // A copy, and the slots taken back from one, carry the target's mark.
  keel::context inner = again;
  inner.set_target(keel::target(7, eps[0]));
  keel::context outer;
  outer.take_slots(inner);
  CHECK(outer.tried().size() == 3);
  CHECK(outer.was_tried(7));
  outer.clear_target();
  CHECK(outer.was_tried(7));
  CHECK(outer.tried().size() == 3);
  CHECK(agrees(outer));
}

TEST_CASE("tried_set: exact below 128, folded above", "[context][slots]") {
  keel::tried_set s;
  for (const std::size_t i : {0u, 63u, 64u, 127u}) s.insert(i);
  CHECK(s.size() == 4);
  for (std::size_t i = 0; i < keel::tried_set::exact_below; ++i) {
    INFO("index " << i);
    CHECK(s.contains(i) == (i == 0 || i == 63 || i == 64 || i == 127));
  }
  CHECK(s.contains(128));  // shares index 0's bit, as documented
  CHECK_FALSE(s.contains(129));
  s.insert(1000);  // 1000 % 128 == 104
  CHECK(s.contains(104));
  CHECK(s.contains(1000));
  CHECK(s.size() == 5);
  s.insert(static_cast<std::size_t>(-1));  // the largest index folds too (127)
  CHECK(s.size() == 5);
  s.clear();
  CHECK(s.empty());
}

TEST_CASE("context slots: the operation name is kept inside and cut at its capacity",
          "[context][slots]") {
  keel::context ctx;
  {
    std::string name = "payments.charge";
    ctx.set_operation(name);
    name.assign(40, 'x');  // the context does not look at the caller's buffer again
  }
  CHECK(ctx.operation() == "payments.charge");

  const std::string longest(keel::short_name::capacity, 'a');
  ctx.set_operation(longest + "bcd");
  CHECK(ctx.operation() == longest);
  ctx.set_operation("");
  CHECK(ctx.operation().empty());
}

TEST_CASE("context slots: a user value is read back by its type", "[context][slots]") {
  keel::context ctx;
  ctx.set_user_value(trace_id{0x0123456789abcdef, 42});
  CHECK(ctx.user_value<trace_id>() == trace_id{0x0123456789abcdef, 42});
  CHECK_FALSE(ctx.user_value<std::uint64_t>().has_value());
  ctx.set_user_value(no_default(7));
  CHECK(ctx.user_value<no_default>()->value == 7);
  CHECK_FALSE(ctx.user_value<trace_id>().has_value());
  STATIC_REQUIRE(keel::user_slot::fits<trace_id>);
  STATIC_REQUIRE_FALSE(keel::user_slot::fits<std::array<char, 17>>);
  STATIC_REQUIRE_FALSE(keel::user_slot::fits<std::string>);
}

TEST_CASE("context slots: copies, moves and assignments carry them; a copy outlives its source",
          "[context][slots]") {
  const endpoint ep{"b", 2};
  auto source = std::make_unique<keel::context>();
  source->set_target(keel::target(5, ep));
  source->set_operation("inventory.get");
  source->set_user_value(std::uint32_t{99});

  const keel::context copy = *source;
  keel::context assigned;
  assigned.set_operation("to be replaced");
  assigned = *source;
  keel::context moved = std::move(*source);
  source.reset();  // the source is gone: ASan sees any reference into it

  for (const keel::context* c : std::vector<const keel::context*>{&copy, &assigned, &moved}) {
    CHECK(c->target().index() == 5);
    CHECK(c->target().get<endpoint>() == &ep);
    CHECK(c->tried().contains(5));
    CHECK(c->operation() == "inventory.get");
    CHECK(c->user_value<std::uint32_t>() == 99u);
  }

  // Assigning a context without slots clears them all.
  assigned = keel::context();
  CHECK_FALSE(assigned.target().has_value());
  CHECK(assigned.tried().empty());
  CHECK(assigned.operation().empty());
  CHECK_FALSE(assigned.user_value<std::uint32_t>().has_value());

  // Self-assignment keeps them.
  keel::context& alias = moved;
  moved = alias;
  CHECK(moved.operation() == "inventory.get");
}

TEST_CASE("context slots: across a retry's attempts the tried set grows",
          "[context][slots][retry]") {
  const std::vector<endpoint> eps{{"a", 1}, {"b", 2}, {"c", 3}};
  keel::testing::virtual_environment env;
  const auto p = keel::pipeline(keel::retry({.max_attempts = 3}).with_environment(env),
                                round_by_attempt{&eps});
  std::vector<std::string> seen;
  std::vector<std::size_t> tried_sizes;
  keel::context ctx;
  ctx.set_operation("orders.list");
  const auto o = p.try_execute(ctx, [&](const keel::context& c) -> int {
    seen.push_back(c.target().get<endpoint>()->host + "/" + std::string(c.operation()));
    tried_sizes.push_back(c.tried().size());
    if (c.attempt() < 3) throw std::runtime_error("replica down");
    return c.tried().contains(0) && c.tried().contains(1) ? 1 : 0;
  });
  CHECK(o.value() == 1);
  CHECK(seen == std::vector<std::string>{"a/orders.list", "b/orders.list", "c/orders.list"});
  CHECK(tried_sizes == std::vector<std::size_t>{1, 2, 3});
}

TEST_CASE("context slots: local types of the same name are different types",
          "[context][slots][regression]") {
  keel::context ctx;
  {
    struct S {
      int v;
    };
    static const S s{1};
    ctx.set_target(keel::target(0, s));
    ctx.set_user_value(S{0x41});
  }
  {
    struct S {
      double* v;
    };
    CHECK(ctx.target().get<S>() == nullptr);
    CHECK_FALSE(ctx.user_value<S>().has_value());
  }
}

TEST_CASE("context slots: get<const E> is get<E>", "[context][slots][regression]") {
  const endpoint ep{"a", 1};
  keel::context ctx;
  ctx.set_target(keel::target(0, ep));
  CHECK(ctx.target().get<const endpoint>() == &ep);
  CHECK(ctx.target().get<volatile endpoint>() == &ep);
  const int five = 5;
  ctx.set_user_value(five);
  CHECK(ctx.user_value<int>() == 5);
  CHECK(ctx.user_value<const int>() == 5);
}

TEST_CASE("short_name: a cut name stays valid UTF-8", "[context][slots][regression]") {
  // 30 ASCII bytes, then a two-byte character straddling the cut at 31.
  const std::string straddling = std::string(30, 'a') + "\xD0\x96" + "tail";
  CHECK(keel::short_name(straddling).view() == std::string(30, 'a'));
  // A two-byte character that ends exactly at byte 31 is kept whole.
  const std::string fitting = std::string(29, 'a') + "\xD0\x96" + "tail";
  CHECK(keel::short_name(fitting).view() == std::string(29, 'a') + "\xD0\x96");
  // A four-byte character cut after one, two or three of its bytes.
  for (std::size_t lead = 28; lead <= 30; ++lead) {
    const std::string s = std::string(lead, 'a') + "\xF0\x9F\x98\x80";
    INFO("ASCII bytes before it: " << lead);
    CHECK(keel::short_name(s).view() == std::string(lead, 'a'));
  }
  CHECK(keel::short_name(std::string(40, 'z')).view().size() == keel::short_name::capacity);
}

namespace {
/// A pool stand-in that picks the first endpoint not yet tried.
struct first_untried {
  const std::vector<endpoint>* endpoints;
  template <class R, class Next>
  keel::outcome<R> run(Next&& next, keel::context& ctx) const {
    std::size_t i = 0;
    while (i + 1 < endpoints->size() && ctx.tried().contains(i)) ++i;
    ctx.set_target(keel::target(i, (*endpoints)[i]));
    return next(ctx);
  }
};
}  // namespace

TEST_CASE("context slots: what the layers inside a timeout choose reaches the retry outside",
          "[context][slots][timeout][regression]") {
  const std::vector<endpoint> eps{{"a", 1}, {"b", 2}, {"c", 3}};
  keel::testing::virtual_environment env;
  const auto p =
      keel::pipeline(keel::retry({.max_attempts = 3}).with_environment(env),
                     keel::timeout({.timeout = 1s}).with_environment(env), first_untried{&eps});
  std::vector<std::string> hosts;
  const auto o = p.try_execute([&](const keel::context& c) -> int {
    hosts.push_back(c.target().get<endpoint>()->host);
    if (hosts.size() < 3) throw std::runtime_error("down");
    return static_cast<int>(c.tried().size());
  });
  CHECK(o.value() == 3);
  CHECK(hosts == std::vector<std::string>{"a", "b", "c"});
}

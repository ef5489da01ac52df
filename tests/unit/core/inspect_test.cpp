// SPDX-License-Identifier: BSL-1.0
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>

#include <keel/core/error.hpp>
#include <keel/core/hint.hpp>
#include <keel/core/inspect.hpp>

#include "support/catch.hpp"

namespace {

// Shapes of exception a handler may or may not catch as a base.
struct plain {
  int tag = 1;
};
struct base_a {
  virtual ~base_a() = default;
  int a = 2;
};
struct base_b {
  virtual ~base_b() = default;
  int b = 3;
};
struct two_bases : std::runtime_error, base_a, base_b {
  two_bases() : std::runtime_error("two") {}
};
struct private_base : private base_a {};
struct protected_base : protected base_a {};
struct left : std::runtime_error {
  left() : std::runtime_error("left") {}
};
struct right : std::logic_error {
  right() : std::logic_error("right") {}
};
struct ambiguous_exception : left, right {};  // two std::exception bases
struct virtual_left : virtual base_a {};
struct virtual_right : virtual base_a {};
struct diamond : virtual_left, virtual_right {};
struct derived_error final : keel::error {
  derived_error() : keel::error(keel::errc::timeout, keel::hint{std::chrono::seconds(2), {}, {}}) {}
};

// What `catch (const Q&)` makes of p: the address it binds to, or null.
template <class Q>
const void* caught_as(const std::exception_ptr& p) {
  try {
    std::rethrow_exception(p);
  } catch (const Q& q) {
    return &q;
  } catch (...) {
    return nullptr;
  }
}

template <class T>
std::exception_ptr thrown(T value) {
  try {
    throw value;
  } catch (...) {
    return std::current_exception();
  }
}

// Every query type against one thrown exception: inspect_exception binds to
// what a handler binds to, or answers `otherwise` where no handler catches.
template <class... Qs>
void check_all_queries(const std::exception_ptr& p) {
  (
      [&] {
        const void* want = caught_as<Qs>(p);
        const void* got =
            keel::inspect_exception<Qs>(p, static_cast<const void*>(nullptr),
                                        [](const Qs& q) { return static_cast<const void*>(&q); });
        INFO("query " << typeid(Qs).name());
        CHECK(got == want);
#if KEEL_DETAIL_PEEKS_EXCEPTIONS
        const keel::detail::peeked<Qs> peek = keel::detail::peek_exception<Qs>(p);
        CHECK(peek.known);
        CHECK(static_cast<const void*>(peek.object) == want);
#endif
      }(),
      ...);
}

template <class T>
void check_thrown(T value) {
  INFO("thrown " << typeid(T).name());
  check_all_queries<std::exception, std::runtime_error, std::logic_error, std::system_error, base_a,
                    base_b, plain, two_bases, left, right, ambiguous_exception, virtual_left,
                    diamond, private_base, keel::error, keel::hint_source, derived_error,
                    std::bad_alloc, std::nested_exception>(thrown(value));
}

}  // namespace

TEST_CASE("inspect_exception: binds to exactly what a catch clause binds to, for every shape") {
  check_thrown(std::runtime_error("r"));
  check_thrown(std::system_error(std::make_error_code(std::errc::timed_out)));
  check_thrown(plain{});
  check_thrown(two_bases{});
  check_thrown(private_base{});
  check_thrown(protected_base{});
  check_thrown(ambiguous_exception{});
  check_thrown(diamond{});
  check_thrown(virtual_left{});
  check_thrown(derived_error{});
  check_thrown(keel::error(keel::errc::circuit_open));
  check_thrown(std::bad_alloc{});
  check_thrown(42);
  check_thrown(std::string("text"));
  // std::throw_with_nested throws an unnamed type deriving from both.
  std::exception_ptr nested;
  try {
    try {
      throw std::logic_error("inner");
    } catch (...) {
      std::throw_with_nested(std::runtime_error("outer"));
    }
  } catch (...) {
    nested = std::current_exception();
  }
  check_all_queries<std::exception, std::runtime_error, std::logic_error, std::nested_exception>(
      nested);
  // std::make_exception_ptr (no throw at all on libstdc++).
  check_all_queries<std::exception, std::runtime_error, std::logic_error, two_bases>(
      std::make_exception_ptr(two_bases{}));
}

TEST_CASE("inspect_exception: reads through a base at its adjusted address") {
  const std::exception_ptr p = thrown(two_bases{});
  CHECK(keel::inspect_exception<base_b>(p, 0, [](const base_b& b) { return b.b; }) == 3);
  CHECK(keel::inspect_exception<base_a>(p, 0, [](const base_a& a) { return a.a; }) == 2);
  CHECK(keel::inspect_exception<std::exception>(p, std::string(), [](const std::exception& e) {
          return std::string(e.what());
        }) == "two");
  CHECK(keel::inspect_exception<std::logic_error>(p, -1,
                                                  [](const std::logic_error&) { return 1; }) == -1);
  CHECK(keel::inspect_exception<std::exception>(std::exception_ptr(), -1,
                                                [](const std::exception&) { return 1; }) == -1);
}

TEST_CASE("inspect_exception: two types, the first that catches wins, as with two clauses") {
  const auto which = [](const std::exception_ptr& p) {
    return keel::inspect_exception<keel::error, keel::hint_source>(
        p, 0, [](const keel::error&) { return 1; }, [](const keel::hint_source&) { return 2; });
  };
  struct only_hint : keel::hint_source {
    keel::hint hint() const noexcept override { return {}; }
  };
  CHECK(which(thrown(derived_error{})) == 1);
  CHECK(which(thrown(only_hint{})) == 2);
  CHECK(which(thrown(std::runtime_error("x"))) == 0);
  CHECK(which(thrown(7)) == 0);
  CHECK(which(std::exception_ptr()) == 0);
}

TEST_CASE("inspect_exception: a non-class query type is answered by a rethrow") {
  const std::exception_ptr p = thrown(42);
  CHECK(keel::inspect_exception<int>(p, 0, [](int v) { return v; }) == 42);
  CHECK(keel::inspect_exception<long>(p, 0L, [](long v) { return v; }) == 0);
  CHECK_FALSE(keel::detail::peek_exception<int>(p).known);
}

TEST_CASE("inspect_exception: what the inspector throws reaches the caller") {
  const std::exception_ptr p = thrown(std::runtime_error("x"));
  CHECK_THROWS_AS(keel::inspect_exception<std::runtime_error>(
                      p, 0, [](const std::runtime_error&) -> int { throw std::logic_error("f"); }),
                  std::logic_error);
}

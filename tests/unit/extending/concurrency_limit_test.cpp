// SPDX-License-Identifier: BSL-1.0
// The example policy of docs/extending.md: it behaves as a keel policy
// should, composes with keel's own, and is the very code the page shows.
#include "concurrency_limit.hpp"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <keel/testing/recording_listener.hpp>
#include <keel/testing/virtual_environment.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

namespace {

struct rejections {
  std::shared_ptr<std::vector<std::uint32_t>> seen = std::make_shared<std::vector<std::uint32_t>>();
  void on(const example::limit_rejected& e) const { seen->push_back(e.in_flight); }
};

std::string read(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("extending: the limit admits max_in_flight nested calls and rejects the next",
          "[extending]") {
  rejections r;
  const auto limit = example::concurrency_limit({.max_in_flight = 2}).with_listener(r);
  auto o = limit.try_execute([&] {
    CHECK(limit.in_flight() == 1);
    return limit
        .try_execute([&] {
          CHECK(limit.in_flight() == 2);
          auto third = limit.try_execute([] { return 3; });  // a third at once: refused
          CHECK(third.is(keel::errc::bulkhead_full));
          CHECK(keel::is_rejection(third));
          CHECK(third.code() == keel::condition::rejected);
          return 2;
        })
        .value();
  });
  CHECK(o.value() == 2);
  CHECK(limit.in_flight() == 0);
  CHECK(*r.seen == std::vector<std::uint32_t>{2});
}

TEST_CASE("extending: a refused call is not counted, not even while its event is heard",
          "[extending]") {
  std::vector<std::uint32_t> during;
  std::function<std::uint32_t()> in_flight;
  const auto hear = [&](const example::limit_rejected&) { during.push_back(in_flight()); };
  const auto limit = example::concurrency_limit({.max_in_flight = 1}).with_listener(hear);
  in_flight = [&] { return limit.in_flight(); };
  auto o = limit.try_execute([&] {
    CHECK(limit.try_execute([] { return 0; }).is(keel::errc::bulkhead_full));
    CHECK(limit.try_execute([] { return 0; }).is(keel::errc::bulkhead_full));
    return limit.in_flight();
  });
  CHECK(o.value() == 1);  // only the call that runs, after two refusals
  CHECK(during == std::vector<std::uint32_t>{1, 1});
  CHECK(limit.in_flight() == 0);
  CHECK(limit.try_execute([] { return 7; }).value() == 7);
}

TEST_CASE("extending: the limit composes: retry does not retry its rejection, exceptions pass",
          "[extending]") {
  const example::concurrency_limit<> limit({.max_in_flight = 1});
  int calls = 0;
  auto p = keel::pipeline(keel::retry({.max_attempts = 3, .backoff = keel::constant_backoff{1ms}})
                              .with_environment(keel::testing::virtual_environment{}),
                          limit);
  auto o = p.try_execute([&] {
    ++calls;
    return p.try_execute([] { return 1; }).is(keel::errc::bulkhead_full) ? 1 : 0;
  });
  CHECK(o.value() == 1);
  CHECK(calls == 1);
  auto thrown = limit.try_execute([]() -> int { throw std::runtime_error("x"); });
  CHECK(thrown.has_exception());
  CHECK(limit.in_flight() == 0);  // released on every path
}

TEST_CASE("extending: invalid options throw config_error naming the field", "[extending]") {
  try {
    example::concurrency_limit<> bad({.max_in_flight = 0});
    FAIL("no exception");
  } catch (const keel::config_error& e) {
    CHECK(e.field() == "concurrency_limit_options.max_in_flight");
  }
}

TEST_CASE("extending: copies share one count; never more than max_in_flight inside, 8 threads",
          "[extending][stress]") {
  const example::concurrency_limit<> limit({.max_in_flight = 3});
  const auto copy = limit;  // e.g. the copy a pipeline holds
  std::atomic<int> inside{0}, worst{0}, admitted{0}, refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      const auto& mine = (t % 2 == 0) ? limit : copy;
      for (int i = 0; i < 2000; ++i) {
        auto o = mine.try_execute([&] {
          const int now = inside.fetch_add(1) + 1;
          int w = worst.load();
          while (now > w && !worst.compare_exchange_weak(w, now)) {
          }
          std::this_thread::yield();
          inside.fetch_sub(1);
          return 1;
        });
        (o.has_value() ? admitted : refused).fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(worst.load() <= 3);
  CHECK(admitted.load() + refused.load() == 16000);
  CHECK(admitted.load() > 0);
  CHECK(limit.in_flight() == 0);
}

TEST_CASE("extending: docs/extending.md shows this policy's code as it is", "[extending][docs]") {
  const std::filesystem::path root(KEEL_SOURCE_DIR);
  const std::string header = read(root / "tests/unit/extending/concurrency_limit.hpp");
  const std::string page = read(root / "docs/extending.md");
  const std::string open = "```cpp\n";
  const auto marker = page.find("<!-- the file tests/unit/extending/concurrency_limit.hpp -->");
  REQUIRE(marker != std::string::npos);
  const auto start = page.find(open, marker) + open.size();
  const auto end = page.find("```\n", start);
  REQUIRE(end != std::string::npos);
  CHECK(page.substr(start, end - start) == header);
}

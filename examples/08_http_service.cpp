// 08_http_service: a real HTTP client (cpp-httplib) guarded by keel against a real server that
// misbehaves on command: 429 and 503 with Retry-After, slow answers, dropped connections.
// SPDX-License-Identifier: BSL-1.0
//
// The server runs inside this program on 127.0.0.1 (an ephemeral port). The client's calls
// go through keel::pipeline(fallback to last-known-good data, record fresh data, retry
// honouring Retry-After, circuit breaker, 300 ms timeout per attempt); the client's own
// socket timeouts come from ctx.remaining(). Real time and real sockets: it takes about
// five seconds. Returns non-zero when what it observes differs from what keel promises.
// Needs cpp-httplib (Debian: libcpp-httplib-dev); the build defines KEEL_EXAMPLE_HTTPLIB when
// it links it. Without it, the example says so and exits with 0.
#include <fmt/core.h>

#if defined(KEEL_EXAMPLE_HTTPLIB)

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

#include <keel/keel.hpp>

using namespace std::chrono_literals;

namespace {

// ---- The server, misbehaving on command ----------------------------------------------------

enum class mode { healthy, rate_limited_once, unavailable, slow, dropping };

class price_server {
 public:
  price_server() {
    server_.Get("/price", [this](const httplib::Request&, httplib::Response& res) {
      ++hits_;
      switch (mode_.load()) {
        case mode::rate_limited_once:
          mode_ = mode::healthy;
          res.status = 429;
          res.set_header("Retry-After", "1");
          return;
        case mode::unavailable:
          res.status = 503;
          res.set_header("Retry-After", "1");
          return;
        case mode::slow:
          std::this_thread::sleep_for(1500ms);  // far beyond the client's 300 ms
          break;
        case mode::dropping:  // the connection closes before a byte of the answer
          res.set_content_provider(
              5, "text/plain", [](std::size_t, std::size_t, httplib::DataSink&) { return false; });
          return;
        case mode::healthy:
          break;
      }
      res.set_content("42.00", "text/plain");
    });
    // Bound and listening from here on: the client may connect before the thread runs.
    port_ = server_.bind_to_any_port("127.0.0.1");
    if (port_ <= 0) throw std::runtime_error("cannot listen on 127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~price_server() {
    server_.stop();
    thread_.join();
  }
  price_server(const price_server&) = delete;
  price_server& operator=(const price_server&) = delete;

  int port() const { return port_; }
  int hits() const { return hits_.load(); }
  void set(mode m) { mode_ = m; }

 private:
  httplib::Server server_;
  std::atomic<mode> mode_{mode::healthy};
  std::atomic<int> hits_{0};
  int port_ = 0;
  std::thread thread_;
};

// ---- The client ----------------------------------------------------------------------------

// One GET /price. The socket timeouts are what is left of keel's deadline. A 429, or a 503
// with Retry-After, becomes keel::error(rate_limited, Retry-After): the retry waits that long
// and the circuit breaker opens for that long.
std::string fetch_price(httplib::Client& client, const keel::context& ctx) {
  const auto left = std::chrono::duration_cast<std::chrono::microseconds>(
      std::min<keel::duration>(ctx.remaining(), 10s));
  client.set_connection_timeout(left);
  client.set_read_timeout(left);
  client.set_write_timeout(left);
  const httplib::Result res = client.Get("/price");
  if (!res) throw std::runtime_error("GET /price: " + httplib::to_string(res.error()));
  if (res->status == 429 || (res->status == 503 && res->has_header("Retry-After"))) {
    throw keel::error(keel::errc::rate_limited,
                      keel::parse_retry_after(res->get_header_value("Retry-After"),
                                              std::chrono::system_clock::now()));
  }
  if (res->status != 200) throw std::runtime_error(fmt::format("GET /price: {}", res->status));
  return res->body;
}

double ms(keel::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Remembers how long the breaker opened for, each time it opened.
struct open_log {
  keel::duration* last_open_for;
  void on(const keel::circuit_opened& e) const { *last_open_for = e.open_for; }
};

}  // namespace

int main() {
  price_server server;
  httplib::Client client("127.0.0.1", server.port());

  // Shared state: the last good price, the breaker. The breaker opens after two failures in
  // a row, for 800 ms -- or for as long as a Retry-After says.
  keel::last_known_good<std::string> last_price({.max_age = 10min});
  keel::duration opened_for{};
  auto breaker = keel::circuit_breaker(
                     {.trip = keel::consecutive_failures{.threshold = 2}, .open_duration = 800ms})
                     .with_listener(open_log{&opened_for});
  const auto retry = keel::retry({.max_attempts = 2,
                                  .backoff = keel::exponential_backoff{.initial = 100ms},
                                  .max_hint_delay = 2s});
  const auto per_attempt_timeout = keel::timeout({.timeout = 300ms});

  struct step {
    const char* what;
    mode server_mode;
    keel::duration wait_before;  // lets an open breaker's time pass
    const char* expect_answer;   // "fresh" or "stale"
    int expect_hits;             // requests that reached the server
    keel::duration at_least, at_most, expect_open_for;
  };
  // The upper bounds are loose on purpose: real time on a busy machine.
  const step steps[] = {
      {"healthy", mode::healthy, 0ms, "fresh", 1, 0ms, 1s, 0ms},
      {"429, Retry-After: 1", mode::rate_limited_once, 0ms, "fresh", 2, 1s, 2500ms, 0ms},
      {"slow (1.5 s answers)", mode::slow, 0ms, "stale", 2, 600ms, 1400ms, 800ms},
      {"slow, breaker open", mode::slow, 0ms, "stale", 0, 0ms, 200ms, 800ms},
      {"recovered", mode::healthy, 800ms, "fresh", 1, 0ms, 1s, 800ms},
      {"503, Retry-After: 1", mode::unavailable, 0ms, "stale", 2, 1s, 2500ms, 1s},
      {"503, breaker open", mode::unavailable, 0ms, "stale", 0, 0ms, 200ms, 1s},
      {"dropped, probe fails", mode::dropping, 1s, "stale", 1, 0ms, 1s, 800ms},
      {"recovered", mode::healthy, 800ms, "fresh", 1, 0ms, 1s, 800ms},
  };

  fmt::print("{:<22} {:<6} {:>5} {:>6}  {}\n", "server", "answer", "hits", "ms",
             "breaker last opened for");
  bool as_promised = true;
  for (const step& s : steps) {
    std::this_thread::sleep_for(s.wait_before);
    server.set(s.server_mode);
    const int hits_before = server.hits();
    const auto start = std::chrono::steady_clock::now();

    keel::staleness staleness;  // set when the answer came from last_price
    const auto answer =
        keel::pipeline(keel::fallback(last_price.serve({}, staleness)), last_price.record(), retry,
                       std::ref(breaker), per_attempt_timeout)
            .try_execute([&](const keel::context& ctx) { return fetch_price(client, ctx); });

    const keel::duration took = std::chrono::steady_clock::now() - start;
    const int hits = server.hits() - hits_before;
    const char* seen = !answer.has_value() ? "none" : staleness.stale ? "stale" : "fresh";
    const bool ok = seen == std::string(s.expect_answer) && hits == s.expect_hits &&
                    took >= s.at_least && took <= s.at_most && opened_for == s.expect_open_for;
    fmt::print("{:<22} {:<6} {:>5} {:>6.0f}  {:>4.0f} ms{}\n", s.what, seen, hits, ms(took),
               ms(opened_for), ok ? "" : "   <- not what keel promises");
    as_promised = as_promised && ok;
  }
  fmt::print("{}\n", as_promised ? "every answer as promised" : "MISMATCH");
  return as_promised ? 0 : 1;
}

#else

int main() {
  fmt::print(
      "08_http_service: built without cpp-httplib (apt-get install libcpp-httplib-dev, "
      "see cmake/dev-mode.cmake); skipped\n");
  return 0;
}

#endif

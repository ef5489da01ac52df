// SPDX-License-Identifier: BSL-1.0
// keel::endpoint_pool against three real HTTP replicas (cpp-httplib) on
// 127.0.0.1: each request's replica read from the answer's body, a killed
// replica ejected and back, a slow one avoided, priority fail back.
//
// The HTTP calls, the sockets, the health probes (GET /health, run by
// run_health_checks(now)) and the attempt timeout are real; the pool's time
// (outlier ejections, health-check intervals, breakers, the failback delay)
// is virtual and moves only when the test moves it, so each of those times is
// checked to the nanosecond. For PeakEWMA, which weighs round trips, each call
// moves the virtual clock by the real time it took.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <keel/circuit_breaker.hpp>
#include <keel/failover/endpoint_pool.hpp>
#include <keel/pipeline.hpp>
#include <keel/retry.hpp>
#include <keel/testing/virtual_environment.hpp>
#include <keel/timeout.hpp>

#include "support/catch.hpp"
#include "support/pool_event_log.hpp"

using namespace std::chrono_literals;

namespace {

using real_clock = std::chrono::steady_clock;
using env_t = keel::testing::virtual_environment;

/// What the pool holds per replica.
struct replica_address {
  std::string name;
  int port = 0;
  bool operator==(const replica_address&) const = default;
};

/// Polls `done` every millisecond until it holds; false after `limit`.
template <class F>
bool wait_until(F done, keel::duration limit = 5s) {
  const auto give_up = real_clock::now() + limit;
  while (!done()) {
    if (real_clock::now() >= give_up) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

enum class mode { ok, unavailable, slow };

/// One HTTP replica on 127.0.0.1: GET /who answers its name, GET /health
/// "ok". unavailable: both answer 503; slow: /who answers after `slow_for`.
/// stop() closes its socket (connection refused); start() listens again on
/// the same port.
class replica {
 public:
  static constexpr keel::duration slow_for = 300ms;

  explicit replica(std::string name) : name_(std::move(name)) { start(); }
  ~replica() { stop(); }
  replica(const replica&) = delete;
  replica& operator=(const replica&) = delete;

  void start() {
    if (server_) return;
    auto server = std::make_unique<httplib::Server>();
    server->Get("/who", [this](const httplib::Request&, httplib::Response& res) {
      hits_.fetch_add(1);
      const mode m = mode_.load();
      if (m == mode::unavailable) {
        res.status = 503;
        return;
      }
      if (m == mode::slow) std::this_thread::sleep_for(slow_for);
      res.set_content(name_, "text/plain");
    });
    server->Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      probes_.fetch_add(1);
      res.status = mode_.load() == mode::unavailable ? 503 : 200;
      res.set_content("ok", "text/plain");
    });
    // Bound and listening once this returns: a client may connect before the
    // thread runs. The first start takes any free port; a restart takes the same.
    if (port_ == 0) {
      port_ = server->bind_to_any_port("127.0.0.1");
      if (port_ <= 0) throw std::runtime_error("cannot listen on 127.0.0.1");
    } else if (!server->bind_to_port("127.0.0.1", port_)) {
      throw std::runtime_error("cannot listen on 127.0.0.1:" + std::to_string(port_) + " again");
    }
    httplib::Server* s = server.get();
    thread_ = std::thread([s] { s->listen_after_bind(); });
    server_ = std::move(server);
    // stop() before the loop runs would be lost: wait until it does.
    if (!wait_until([s] { return s->is_running(); })) throw std::runtime_error("server not up");
  }
  void stop() {
    if (!server_) return;
    server_->stop();
    thread_.join();
    server_.reset();
  }

  void set(mode m) { mode_.store(m); }
  int port() const { return port_; }
  const std::string& name() const { return name_; }
  int hits() const { return hits_.load(); }
  int probes() const { return probes_.load(); }
  replica_address address() const { return {name_, port_}; }

 private:
  std::string name_;
  int port_ = 0;
  std::atomic<mode> mode_{mode::ok};
  std::atomic<int> hits_{0};
  std::atomic<int> probes_{0};
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

using event_log = keel_test::event_log;

using breaker_t = keel::circuit_breaker<keel::on::any_failure_t, keel::no_listener, env_t>;

/// Per-replica layers: a breaker (consecutive failures, virtual time; shared
/// through a std::shared_ptr, as a pipeline never holds a breaker by value)
/// and a real-time attempt timeout. Keeps each breaker for the test to read.
struct replica_layers {
  env_t env;
  int breaker_threshold = 3;
  keel::duration open_for = 10s;
  keel::duration attempt_timeout = 1s;
  std::shared_ptr<std::vector<std::shared_ptr<breaker_t>>> breakers =
      std::make_shared<std::vector<std::shared_ptr<breaker_t>>>(3);

  auto operator()(const replica_address&, std::size_t i) const {
    auto breaker = std::make_shared<breaker_t>(
        keel::circuit_breaker_options{
            .trip = keel::consecutive_failures{.threshold = breaker_threshold},
            .open_duration = open_for},
        keel::on::any_failure_t(), keel::no_listener(), env);
    if (i < breakers->size()) (*breakers)[i] = breaker;
    return keel::pipeline(std::move(breaker), keel::timeout({.timeout = attempt_timeout}));
  }
  const breaker_t& breaker(std::size_t i) const { return *(*breakers)[i]; }
};

/// One request's story: the replica of each attempt, and the answer.
struct request_result {
  std::vector<std::size_t> attempts;  // slot of each attempt, in order
  std::string answer;                 // the body, "" when it failed
  keel::outcome<std::string> outcome = keel::outcome<std::string>::from_keel(keel::errc::cancelled);
  keel::duration took{};  // real time
};

/// Three replicas, and a way to send one request through a guarded pool.
class cluster {
 public:
  cluster() {
    // A replica stopped while a slow answer is on its way may write to a
    // closed socket: that must not kill the test.
    std::signal(SIGPIPE, SIG_IGN);
    for (const char* name : {"r0", "r1", "r2"})
      replicas_.push_back(std::make_unique<replica>(name));
  }

  replica& operator[](std::size_t i) { return *replicas_[i]; }
  std::vector<replica_address> addresses() const {
    std::vector<replica_address> out;
    for (const auto& r : replicas_) out.push_back(r->address());
    return out;
  }
  std::vector<keel::pool_member<replica_address>> members(std::vector<std::uint32_t> priorities) {
    std::vector<keel::pool_member<replica_address>> out;
    for (std::size_t i = 0; i < replicas_.size(); ++i)
      out.push_back({replicas_[i]->address(), 1, priorities[i]});
    return out;
  }

  env_t env{keel::testing::seeded_random(14)};
  /// Each call moves the virtual clock by the real time it took (for PeakEWMA).
  bool clock_follows_calls = false;

  /// Moves virtual time to `t` (not before now).
  void advance_to(keel::time_point t) const {
    const keel::time_point now = env.now();
    if (t > now) env.advance(t - now);
  }

  /// GET /who on the context's replica; the socket's timeouts are what is
  /// left of the attempt's deadline, plus `grace` (so the deadline passes
  /// first when a replica hangs).
  template <class Guarded>
  request_result request(const Guarded& guarded, keel::duration grace = 0ms) const {
    request_result r;
    const auto start = real_clock::now();
    r.outcome = guarded.try_execute([&](const keel::context& ctx) {
      const replica_address& to = *ctx.target().get<replica_address>();
      r.attempts.push_back(ctx.target().index());
      const auto began = real_clock::now();
      struct advance_on_exit {
        const cluster& c;
        real_clock::time_point began;
        ~advance_on_exit() {
          if (c.clock_follows_calls) c.env.advance(real_clock::now() - began);
        }
      } moves{*this, began};
      const auto left =
          std::chrono::duration_cast<std::chrono::microseconds>(ctx.remaining() + grace);
      httplib::Client client("127.0.0.1", to.port);
      client.set_connection_timeout(std::min<std::chrono::microseconds>(left, 500ms));
      client.set_read_timeout(left);
      client.set_write_timeout(left);
      const httplib::Result res = client.Get("/who");
      if (!res) throw std::runtime_error(to.name + ": " + httplib::to_string(res.error()));
      if (res->status != 200)
        throw std::runtime_error(to.name + ": HTTP " + std::to_string(res->status));
      return res->body;
    });
    r.took = real_clock::now() - start;
    if (r.outcome.has_value()) r.answer = r.outcome.value();
    return r;
  }

  /// The answers of `n` requests, space separated ("-" for a failed one).
  template <class Guarded>
  std::string answers(const Guarded& guarded, int n) const {
    std::string out;
    for (int i = 0; i < n; ++i) {
      const request_result r = request(guarded);
      out += (out.empty() ? "" : " ") + (r.answer.empty() ? std::string("-") : r.answer);
    }
    return out;
  }

 private:
  std::vector<std::unique_ptr<replica>> replicas_;
};

/// The active health check: GET /health, short timeouts.
bool probe(const replica_address& to) {
  httplib::Client client("127.0.0.1", to.port);
  client.set_connection_timeout(200ms);
  client.set_read_timeout(200ms);
  const httplib::Result res = client.Get("/health");
  return res && res->status == 200;
}

keel::outlier_detection_options eject_after(std::uint32_t failures) {
  keel::outlier_detection_options o;
  o.consecutive_failures = failures;
  o.success_rate = std::nullopt;
  o.always_eject_one = true;  // 10 % of 3 rounds to 0: allow one at a time
  return o;
}

std::string path(const std::vector<std::size_t>& attempts) {
  std::string out;
  for (const std::size_t a : attempts) out += (out.empty() ? "" : ">") + std::to_string(a);
  return out;
}

using strings = std::vector<std::string>;

}  // namespace

TEST_CASE(
    "http replicas: a killed replica is ejected, gets nothing while ejected, and returns "
    "on time",
    "[real][http][pool]") {
  cluster c;
  event_log log;
  const replica_layers layers{c.env};
  keel::endpoint_pool pool(
      c.addresses(), {.strategy = keel::balance::round_robin, .outlier_detection = eject_after(2)},
      layers, log, c.env);
  // Outermost first: a retry that re-picks, avoiding the replicas it tried.
  const auto guarded =
      keel::pipeline(keel::retry({.max_attempts = 3, .backoff = keel::constant_backoff{0ms}})
                         .with_environment(c.env),
                     std::ref(pool));

  CHECK(c.answers(guarded, 6) == "r0 r1 r2 r0 r1 r2");

  c[1].stop();  // connection refused from now on
  CHECK(c.request(guarded).answer == "r0");
  // r1's turn: refused, the retry goes on to r2 (r1 tried, so avoided).
  request_result r = c.request(guarded);
  CHECK(path(r.attempts) == "1>2");
  CHECK(r.answer == "r2");
  CHECK(log.take().empty());  // one failure of two
  CHECK(c.request(guarded).answer == "r0");
  r = c.request(guarded);  // r1's second failure in a row ejects it
  CHECK(path(r.attempts) == "1>2");
  CHECK(r.answer == "r2");
  const keel::time_point ejected_at = c.env.now();
  CHECK(log.take() == strings{"ejected 1 consecutive_failures"});
  CHECK(log.last_until() == ejected_at + 30s);  // base_ejection_time, exact
  CHECK(pool.status(1).ejected);
  CHECK(pool.status(1).ejections == 1);
  CHECK(pool.ejected_count() == 1);
  CHECK(pool.usable_count() == 2);

  // While ejected it gets no attempt, even once it is back up.
  std::vector<std::size_t> tried;
  std::string seen;
  for (int i = 0; i < 8; ++i) {
    if (i == 4) c[1].start();  // the same port again
    r = c.request(guarded);
    tried.insert(tried.end(), r.attempts.begin(), r.attempts.end());
    seen += (seen.empty() ? "" : " ") + r.answer;
  }
  CHECK(seen == "r0 r2 r0 r2 r0 r2 r0 r2");
  CHECK(tried == std::vector<std::size_t>{0, 2, 0, 2, 0, 2, 0, 2});
  CHECK(c[1].hits() == 2);  // its two answers before it was killed

  // 1 ns before the ejection ends: still out. At its end: back, in turn.
  c.advance_to(log.last_until() - 1ns);
  r = c.request(guarded);
  CHECK(path(r.attempts) == "0");
  CHECK(log.take().empty());
  CHECK(pool.status(1).ejected);
  c.advance_to(log.last_until());
  seen = c.answers(guarded, 3);
  CHECK(log.take() == strings{"restored 1"});
  CHECK(seen == "r0 r1 r2");
  CHECK_FALSE(pool.status(1).ejected);
  CHECK(c.answers(guarded, 3) == "r0 r1 r2");
  CHECK(c[1].hits() >= 3);
}

TEST_CASE(
    "http replicas: a replica answering 503 opens its own breaker and gets no calls while "
    "open",
    "[real][http][pool][breaker]") {
  cluster c;
  const replica_layers layers{.env = c.env, .breaker_threshold = 2, .open_for = 10s};
  keel::endpoint_pool pool(c.addresses(), {}, layers, keel::no_listener(), c.env);
  const auto guarded =
      keel::pipeline(keel::retry({.max_attempts = 3, .backoff = keel::constant_backoff{0ms}})
                         .with_environment(c.env),
                     std::ref(pool));
  c[0].set(mode::unavailable);
  // r0 answers 503 twice (each request then retried on another replica): its breaker opens.
  request_result r = c.request(guarded);
  CHECK(path(r.attempts) == "0>1");
  CHECK(r.answer == "r1");
  CHECK(c.request(guarded).answer == "r2");
  r = c.request(guarded);
  CHECK(path(r.attempts) == "0>1");
  CHECK(layers.breaker(0).state() == keel::circuit_state::open);
  CHECK(c[0].hits() == 2);
  // Its next turn: the breaker refuses (nothing sent), the pool moves the call and
  // holds r0 out for the breaker's open time.
  const keel::time_point opened = c.env.now();
  CHECK(c.answers(guarded, 6) == "r2 r2 r1 r2 r1 r2");
  CHECK(pool.status(0).held);
  CHECK(c[0].hits() == 2);
  // It recovers; once the open time is over its probe closes the breaker.
  c[0].set(mode::ok);
  c.advance_to(opened + 10s - 1ns);
  CHECK(c.answers(guarded, 2) == "r1 r2");
  CHECK(c[0].hits() == 2);
  c.advance_to(opened + 10s);
  CHECK(c.answers(guarded, 3) == "r2 r0 r1");
  CHECK(layers.breaker(0).state() == keel::circuit_state::closed);
  CHECK_FALSE(pool.status(0).held);
  CHECK(c[0].hits() >= 3);
}

TEST_CASE("http replicas: active health checks take a killed replica out and bring it back",
          "[real][http][pool][health]") {
  cluster c;
  event_log log;
  auto pool = keel::endpoint_pool(c.addresses(), {}, replica_layers{c.env}, log, c.env)
                  .with_health_check(probe, {.interval = 1s,
                                             .unhealthy_threshold = 2,
                                             .healthy_threshold = 2,
                                             .no_traffic_interval = 1s});
  CHECK(pool.run_health_checks(c.env.now()) == 3);
  CHECK(c[2].probes() == 1);
  c[2].stop();
  c.env.advance(1s);
  CHECK(pool.run_health_checks(c.env.now()) == 3);
  CHECK(log.take().empty());  // one failed probe of two
  c.env.advance(1s);
  pool.run_health_checks(c.env.now());
  CHECK(log.take() == strings{"unhealthy 2"});
  CHECK(pool.status(2).check_failed);
  // Out of rotation before any call failed on it.
  CHECK(c.answers(pool, 4) == "r0 r1 r0 r1");
  c[2].start();
  c.env.advance(1s);
  pool.run_health_checks(c.env.now());
  CHECK(log.take().empty());  // one passed probe of two
  CHECK(c.answers(pool, 2) == "r0 r1");
  c.env.advance(1s);
  pool.run_health_checks(c.env.now());
  CHECK(log.take() == strings{"healthy 2"});
  CHECK(c[2].probes() == 3);
  CHECK(c.answers(pool, 3) == "r0 r1 r2");
  CHECK(c[2].hits() >= 1);
}

TEST_CASE("http replicas: PeakEWMA sends a slow replica one call, to learn it is slow",
          "[real][http][pool][ewma]") {
  cluster c;
  c.clock_follows_calls = true;
  keel::endpoint_pool pool(c.addresses(), {.strategy = keel::balance::peak_ewma},
                           replica_layers{c.env}, keel::no_listener(), c.env);
  c[1].set(mode::slow);
  int to_slow = 0;
  keel::duration slow_took{};
  for (int i = 0; i < 30; ++i) {
    const request_result r = c.request(pool);
    REQUIRE(r.answer == c[r.attempts.at(0)].name());
    if (r.answer == "r1") {
      ++to_slow;
      slow_took = r.took;
    }
  }
  // Until a replica has answered once its cost is 0 and it wins; after that the
  // slow one's 300 ms loses every comparison with a fast one's round trip.
  CHECK(to_slow == 1);
  CHECK(c[1].hits() == 1);
  CHECK(slow_took >= replica::slow_for);
}

TEST_CASE("http replicas: a hang beyond the attempt timeout is a timeout, and ejects",
          "[real][http][pool][timeout]") {
  cluster c;
  event_log log;
  keel::endpoint_pool pool(c.addresses(), {.outlier_detection = eject_after(2)},
                           replica_layers{.env = c.env, .attempt_timeout = 150ms}, log, c.env);
  c[0].set(mode::slow);
  // The socket waits 100 ms past the deadline: the deadline passes first.
  request_result r = c.request(pool, 100ms);
  REQUIRE(r.outcome.has_keel_error());
  CHECK(r.outcome.keel_error().code == keel::errc::timeout);
  CHECK(r.took >= 150ms);
  CHECK(r.took < replica::slow_for);
  CHECK(c.answers(pool, 2) == "r1 r2");
  r = c.request(pool, 100ms);
  CHECK(path(r.attempts) == "0");
  CHECK(r.outcome.keel_error().code == keel::errc::timeout);
  CHECK(log.take() == strings{"ejected 0 consecutive_failures"});
  CHECK(c.answers(pool, 4) == "r1 r2 r1 r2");
}

TEST_CASE(
    "http replicas: priority fail over to the standbys, fail back after passed probes and "
    "the failback delay",
    "[real][http][pool][priority]") {
  cluster c;
  event_log log;
  auto pool = keel::endpoint_pool(c.members({0, 1, 1}), {.failback_delay = 5s},
                                  replica_layers{c.env}, log, c.env)
                  .with_health_check(probe, {.interval = 1s,
                                             .unhealthy_threshold = 1,
                                             .healthy_threshold = 2,
                                             .no_traffic_interval = 1s});
  pool.run_health_checks(c.env.now());
  CHECK(c.answers(pool, 3) == "r0 r0 r0");
  CHECK(pool.active_priority() == 0);

  c[0].stop();
  c.env.advance(1s);
  pool.run_health_checks(c.env.now());
  CHECK(log.take() == strings{"unhealthy 0"});
  const std::string standby = c.answers(pool, 4);
  CHECK(standby == "r2 r1 r2 r1");  // round robin over priority 1
  CHECK(log.take() == strings{"failover 0->1"});
  CHECK(pool.active_priority() == 1);

  c[0].start();
  c.env.advance(1s);
  pool.run_health_checks(c.env.now());  // one passed probe of two
  CHECK(log.take().empty());
  CHECK(c.answers(pool, 2) == "r2 r1");
  c.env.advance(1s);
  const keel::time_point healthy_at = c.env.now();
  pool.run_health_checks(healthy_at);
  CHECK(log.take() == strings{"healthy 0"});
  CHECK(pool.status(0).warming);
  const int hits_before = c[0].hits();
  CHECK(c.answers(pool, 2) == "r2 r1");
  c.advance_to(healthy_at + 5s - 1ns);  // the failback delay, to the nanosecond
  CHECK(c.request(pool).answer == "r2");
  CHECK(c[0].hits() == hits_before);
  c.advance_to(healthy_at + 5s);
  CHECK(c.answers(pool, 3) == "r0 r0 r0");
  CHECK(log.take() == strings{"failback 1->0"});
  CHECK(pool.active_priority() == 0);
  CHECK_FALSE(pool.status(0).warming);
}

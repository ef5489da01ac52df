// SPDX-License-Identifier: BSL-1.0
// A simulated server of capacity C in virtual time, driven through
// keel::adaptive_limiter_core by closed-loop clients: deterministic (seeded).
#ifndef KEEL_TEST_ADMISSION_LIMITER_SIM_HPP
#define KEEL_TEST_ADMISSION_LIMITER_SIM_HPP

#include <chrono>
#include <cstdint>
#include <deque>
#include <queue>
#include <random>
#include <vector>

#include <keel/admission/adaptive_limiter.hpp>

namespace sim {

using namespace std::chrono_literals;

enum class mode {
  serve,     // the server works: C workers, a queue of C / 10, 503 beyond
  time_out,  // the server never answers: each call times out after 1 s
  cancel,    // every caller cancels 10 ms after sending
};

template <class Algorithm>
class limiter_sim {
 public:
  /// Service time 100 ms +- `jitter`.
  limiter_sim(Algorithm algorithm, int capacity, int clients, std::uint64_t seed,
              std::int64_t jitter_ns = 10'000'000)
      : core_(std::move(algorithm)),
        rng_(seed),
        capacity_(capacity),
        jitter_ns_(jitter_ns),
        admitted_(static_cast<std::size_t>(clients)) {
    for (int c = 0; c < clients; ++c) push(now_ns_ + c * 1'000'000, kind::try_call, c);
  }

  void set_capacity(int c) { capacity_ = c; }
  void set_mode(mode m) { mode_ = m; }

  /// Runs until `seconds` more of virtual time passed; records the limit every second.
  void run_for(int seconds) {
    const std::int64_t end = now_ns_ + std::int64_t{seconds} * 1'000'000'000;
    while (!events_.empty() && events_.top().at <= end) {
      const event e = events_.top();
      events_.pop();
      now_ns_ = e.at;
      while (next_record_ns_ <= now_ns_) {
        limits_.push_back(core_.limit());
        next_record_ns_ += 1'000'000'000;
      }
      handle(e);
    }
    now_ns_ = end;
  }

  /// The mean limit over the last `seconds` recorded.
  double mean_limit(int seconds) const {
    double sum = 0;
    const auto n = static_cast<std::size_t>(seconds);
    for (std::size_t i = limits_.size() - n; i < limits_.size(); ++i) sum += limits_[i];
    return sum / static_cast<double>(n);
  }
  std::uint32_t limit() const { return core_.limit(); }
  keel::adaptive_limiter_core<Algorithm>& core() { return core_; }
  std::uint64_t cancelled() const { return cancelled_; }
  std::uint64_t drops() const { return drops_; }
  std::uint32_t limit_at_last_sample() const { return limit_at_last_sample_; }
  /// Checked at every admission: in flight never above the limit admitted under.
  bool bounded() const { return bounded_; }

 private:
  enum class kind { try_call, server_done, reply_503, timed_out, cancelled };
  struct event {
    std::int64_t at;
    std::uint64_t seq;
    kind what;
    int client;
    bool operator>(const event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };

  keel::time_point now() const { return keel::time_point(keel::duration(now_ns_)); }
  void push(std::int64_t at, kind k, int client) { events_.push({at, seq_++, k, client}); }
  std::int64_t service_ns() {
    const auto spread = static_cast<std::uint64_t>(2 * jitter_ns_ + 1);
    return 100'000'000 - jitter_ns_ + static_cast<std::int64_t>(rng_() % spread);
  }
  double draw() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

  void finish(int c, keel::limiter_result r) {
    core_.finish(admitted_[static_cast<std::size_t>(c)], r, now(), [this] { return draw(); });
    if (r != keel::limiter_result::ignored) limit_at_last_sample_ = core_.limit();
    // 1 ms to think; 100 ms after a drop (a client that got a 503 waits a little).
    push(now_ns_ + (r == keel::limiter_result::dropped ? 100'000'000 : 1'000'000), kind::try_call,
         c);
  }

  void handle(const event& e) {
    switch (e.what) {
      case kind::try_call: {
        const keel::limiter_admission a = core_.try_acquire(now());
        if (!a) {
          push(now_ns_ + 250'000'000, kind::try_call, e.client);  // refused: back in 250 ms
          return;
        }
        if (a.in_flight > a.limit) bounded_ = false;
        admitted_[static_cast<std::size_t>(e.client)] = a;
        if (mode_ == mode::time_out) {
          push(now_ns_ + 1'000'000'000, kind::timed_out, e.client);
        } else if (mode_ == mode::cancel) {
          push(now_ns_ + 10'000'000, kind::cancelled, e.client);
        } else if (busy_ < capacity_) {
          ++busy_;
          push(now_ns_ + service_ns(), kind::server_done, e.client);
        } else if (static_cast<int>(queue_.size()) < capacity_ / 10) {
          queue_.push_back(e.client);
        } else {
          push(now_ns_ + 1'000'000, kind::reply_503, e.client);
        }
        return;
      }
      case kind::server_done:
        --busy_;
        finish(e.client, keel::limiter_result::measured);
        while (busy_ < capacity_ && !queue_.empty()) {
          ++busy_;
          push(now_ns_ + service_ns(), kind::server_done, queue_.front());
          queue_.pop_front();
        }
        return;
      case kind::reply_503:
        ++drops_;
        finish(e.client, keel::limiter_result::dropped);
        return;
      case kind::timed_out:
        ++drops_;
        finish(e.client, keel::limiter_result::dropped);
        return;
      case kind::cancelled:
        ++cancelled_;
        finish(e.client, keel::limiter_result::ignored);
        return;
    }
  }

  keel::adaptive_limiter_core<Algorithm> core_;
  std::mt19937_64 rng_;
  int capacity_;
  std::int64_t jitter_ns_;
  int busy_ = 0;
  mode mode_ = mode::serve;
  std::deque<int> queue_;
  std::vector<keel::limiter_admission> admitted_;
  std::priority_queue<event, std::vector<event>, std::greater<>> events_;
  std::int64_t now_ns_ = 1'000'000'000;
  std::int64_t next_record_ns_ = 1'000'000'000;
  std::uint64_t seq_ = 0;
  std::uint64_t cancelled_ = 0;
  std::uint64_t drops_ = 0;
  std::uint32_t limit_at_last_sample_ = 0;
  bool bounded_ = true;
  std::vector<std::uint32_t> limits_;
};

}  // namespace sim

#endif  // KEEL_TEST_ADMISSION_LIMITER_SIM_HPP

// 11_llm_rate_limits: keep an LLM agent under a provider's requests-per-minute
// and tokens-per-minute limits, whose token cost is known only after the answer.
// SPDX-License-Identifier: BSL-1.0
//
// The provider (simulated, in virtual time) allows 60 requests and 10,000
// tokens in any 60 s window, answers 429 with Retry-After when a call goes
// over, and once has a hiccup of its own (a 429 asking for 5 s). The agent
// makes 120 calls of a prompt whose answer costs 100 to 400 tokens; it cannot
// know which before the answer. Its pipeline reserves an estimate (400) on a
// tokens limit and 1 on a requests limit, waits for its slots, settles the
// tokens to the answer's usage, tightens on the remaining-tokens header, and
// pauses on the Retry-After. Checked
// exactly: no call goes over, the only 429 is the hiccup, and after it no call
// is sent before its Retry-After has passed.
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <optional>
#include <stdexcept>
#include <utility>

#include <fmt/core.h>

#include <keel/admission/rate_limiter.hpp>
#include <keel/pipeline.hpp>
#include <keel/retry.hpp>
#include <keel/testing/virtual_environment.hpp>

using namespace std::chrono_literals;

namespace {

struct token_usage {
  std::uint64_t total_tokens = 0;
};
struct completion {
  token_usage usage;
  std::uint64_t remaining_tokens = 0;  // x-ratelimit-remaining-tokens
};

/// A 429: Too Many Requests, with the provider's Retry-After.
struct too_many_requests : std::runtime_error, keel::hint_source {
  keel::duration retry_after;
  explicit too_many_requests(keel::duration d) : std::runtime_error("429"), retry_after(d) {}
  keel::hint hint() const noexcept override { return {.retry_after = retry_after}; }
};

/// The provider: at most `rpm` requests and `tpm` tokens in any 60 s window.
class provider {
 public:
  provider(keel::testing::virtual_environment env, std::uint64_t rpm, std::uint64_t tpm)
      : env_(std::move(env)), rpm_(rpm), tpm_(tpm) {}

  completion complete(std::uint64_t cost) {
    const keel::time_point now = env_.now();
    while (!window_.empty() && window_.front().first <= now - 60s) window_.pop_front();
    ++requests_;
    if (requests_ == 70) {  // the hiccup
      ++throttled_;
      last_429_ = now;
      throw too_many_requests(5s);
    }
    std::uint64_t tokens = cost;
    for (const auto& [at, t] : window_) tokens += t;
    if (window_.size() + 1 > rpm_ || tokens > tpm_) {
      ++throttled_;
      ++over_;
      throw too_many_requests(1s);
    }
    if (last_429_ && now < *last_429_ + 5s) ++early_;
    window_.emplace_back(now, cost);
    return {{cost}, tpm_ - tokens};
  }

  int throttled() const { return throttled_; }
  int over() const { return over_; }
  int early() const { return early_; }

 private:
  keel::testing::virtual_environment env_;
  std::uint64_t rpm_, tpm_;
  std::deque<std::pair<keel::time_point, std::uint64_t>> window_;
  int requests_ = 0, throttled_ = 0, over_ = 0, early_ = 0;
  std::optional<keel::time_point> last_429_;
};

void check(bool condition, const char* what) {
  fmt::print("{} {}\n", condition ? "ok  " : "FAIL", what);
  if (!condition) std::exit(1);
}

}  // namespace

int main() {
  keel::testing::virtual_environment env;
  provider llm(env, 60, 10'000);

  // Each call is charged 1 request and an estimate of 400 tokens up front.
  static constexpr std::array<std::uint64_t, 2> estimate{1, 400};
  // A window of N per 60 s holds at most limit + burst of a token bucket:
  // 50 + 10 requests, 8,000 + 2,000 tokens.
  const auto limiter =
      keel::rate_limits(
          keel::rate_limit_options{.limit = 50, .period = 1min, .burst = 10, .max_wait = 2min},
          keel::rate_limit_options{
              .limit = 8'000, .period = 1min, .burst = 2'000, .max_wait = 2min})
          .with_environment(env)
          .with_cost([](const keel::context&) { return estimate; })
          .with_actual_cost([](const auto& o) -> std::optional<std::array<std::uint64_t, 2>> {
            if constexpr (requires { o.value().usage.total_tokens; }) {
              if (o.has_value())
                return std::array<std::uint64_t, 2>{1, o.value().usage.total_tokens};
            }
            return std::nullopt;
          })
          .with_hint([](const auto& o) {
            std::array<keel::hint, 2> h{};
            if constexpr (requires { o.value().remaining_tokens; }) {
              if (o.has_value()) {
                // x-ratelimit-remaining-tokens: tightens the tokens limit, never loosens it.
                h[1].quota = keel::quota_hint{o.value().remaining_tokens, 1min};
                return h;
              }
            }
            h[0] = h[1] = keel::failure_hint{}(o);  // a 429's Retry-After pauses both
            return h;
          });
  const auto agent =
      keel::pipeline(keel::retry({.max_attempts = 3}).with_environment(env), limiter);

  std::uint64_t tokens = 0;
  int answered = 0;
  for (int i = 0; i < 120; ++i) {
    const std::uint64_t cost = 100 + static_cast<std::uint64_t>((i * 37) % 301);
    const auto o = agent.try_execute([&] { return llm.complete(cost); });
    if (o.has_value()) {
      ++answered;
      tokens += o.value().usage.total_tokens;
    }
  }
  const double minutes = std::chrono::duration<double>(env.elapsed()).count() / 60.0;
  fmt::print("{} answers, {} tokens in {:.1f} virtual minutes ({:.0f} tokens/min)\n", answered,
             tokens, minutes, static_cast<double>(tokens) / minutes);
  check(answered == 120, "every call was answered");
  check(llm.over() == 0, "no call went over the provider's limits");
  check(llm.throttled() == 1, "the only 429 was the provider's own hiccup");
  check(llm.early() == 0, "no call was sent before the hiccup's Retry-After had passed");
  check(static_cast<double>(tokens) / minutes > 7'000.0 &&
            static_cast<double>(tokens) / minutes < 10'000.0,
        "settling to the real usage kept the agent near 8,000 tokens per minute");
  return 0;
}

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_RETRY_HPP_INCLUDED
#define KEEL_RETRY_HPP_INCLUDED

// keel::retry and everything it uses: options, backoff formulas, the shared
// retry budget, the Retry-After parser and the retry events.
#include "keel/retry/backoff.hpp"
#include "keel/retry/retry.hpp"
#include "keel/retry/retry_after.hpp"
#include "keel/retry/retry_budget.hpp"
#include "keel/retry/retry_events.hpp"
#include "keel/retry/retry_options.hpp"

#endif  // KEEL_RETRY_HPP_INCLUDED

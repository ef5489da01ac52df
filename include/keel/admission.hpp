// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_ADMISSION_HPP_INCLUDED
#define KEEL_ADMISSION_HPP_INCLUDED

// Admission control: policies that protect a dependency, and the caller's own
// resources, from too much traffic.
#include "keel/admission/adaptive_limiter.hpp"
#include "keel/admission/adaptive_throttle.hpp"
#include "keel/admission/bulkhead.hpp"
#include "keel/admission/bulkhead_core.hpp"
#include "keel/admission/limit_algorithms.hpp"
#include "keel/admission/rate_limiter.hpp"
#include "keel/admission/sliding_window_limit.hpp"

#endif  // KEEL_ADMISSION_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_ADMISSION_HPP_INCLUDED
#define KEEL_ADMISSION_HPP_INCLUDED

// Admission control: policies that limit how much traffic reaches a dependency.
#include "keel/admission/bulkhead.hpp"
#include "keel/admission/bulkhead_core.hpp"
#include "keel/admission/rate_limiter.hpp"

#endif  // KEEL_ADMISSION_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_KEEL_HPP_INCLUDED
#define KEEL_KEEL_HPP_INCLUDED

// Everything keel offers. Each header also compiles on its own.
#include "keel/admission.hpp"
#include "keel/any_pipeline.hpp"
#include "keel/circuit_breaker.hpp"
#include "keel/core.hpp"
#include "keel/fallback.hpp"
#include "keel/pipeline.hpp"
#include "keel/retry.hpp"
#include "keel/timeout.hpp"
#include "keel/version.hpp"

#endif  // KEEL_KEEL_HPP_INCLUDED

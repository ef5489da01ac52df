// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CORE_HPP_INCLUDED
#define KEEL_CORE_HPP_INCLUDED

// The vocabulary every policy shares.
#include "keel/core/classify.hpp"
#include "keel/core/config_error.hpp"
#include "keel/core/context.hpp"
#include "keel/core/environment.hpp"
#include "keel/core/error.hpp"
#include "keel/core/events.hpp"
#include "keel/core/expected_like.hpp"
#include "keel/core/fluent.hpp"
#include "keel/core/observe.hpp"
#include "keel/core/outcome.hpp"
#include "keel/core/policy.hpp"
#include "keel/core/time.hpp"

#endif  // KEEL_CORE_HPP_INCLUDED

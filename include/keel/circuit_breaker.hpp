// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CIRCUIT_BREAKER_HPP_INCLUDED
#define KEEL_CIRCUIT_BREAKER_HPP_INCLUDED

// keel::circuit_breaker, its options, events and state machine.
#include "keel/circuit_breaker/breaker_core.hpp"
#include "keel/circuit_breaker/circuit_breaker.hpp"
#include "keel/circuit_breaker/circuit_breaker_events.hpp"
#include "keel/circuit_breaker/circuit_breaker_options.hpp"

#endif  // KEEL_CIRCUIT_BREAKER_HPP_INCLUDED

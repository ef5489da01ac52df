// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_CIRCUIT_BREAKER_BREAKER_CORE_HPP_INCLUDED
#define KEEL_CIRCUIT_BREAKER_BREAKER_CORE_HPP_INCLUDED

// The circuit breaker's state machine, keel::breaker_state_machine (formerly
// circuit_breaker_core, still an alias), with its vocabulary. Its parts:
//   breaker_types.hpp          call_result, circuit_admission, circuit_transition, circuit_metrics
//   detail/state_word.hpp      the state word and the cells it lives in
//   detail/trip_rules.hpp      the four trip rules, behind one dispatch point
//   breaker_state_machine.hpp  the state machine, its step API and emit_for
#include "keel/circuit_breaker/breaker_state_machine.hpp"
#include "keel/circuit_breaker/breaker_types.hpp"

#endif  // KEEL_CIRCUIT_BREAKER_BREAKER_CORE_HPP_INCLUDED

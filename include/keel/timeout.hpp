// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_TIMEOUT_HPP_INCLUDED
#define KEEL_TIMEOUT_HPP_INCLUDED

// keel::timeout (a cooperative deadline), keel::watchdog and their events.
#include "keel/timeout/timeout.hpp"
#include "keel/timeout/timeout_events.hpp"
#include "keel/timeout/timeout_options.hpp"
#include "keel/timeout/watchdog.hpp"

#endif  // KEEL_TIMEOUT_HPP_INCLUDED

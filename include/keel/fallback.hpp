// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_FALLBACK_HPP_INCLUDED
#define KEEL_FALLBACK_HPP_INCLUDED

// keel::fallback (an ordered chain of alternatives), keel::alternative,
// keel::last_known_good and their events.
#include "keel/fallback/alternative.hpp"
#include "keel/fallback/fallback.hpp"
#include "keel/fallback/fallback_events.hpp"
#include "keel/fallback/last_known_good.hpp"

#endif  // KEEL_FALLBACK_HPP_INCLUDED

// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_FAILOVER_HPP_INCLUDED
#define KEEL_FAILOVER_HPP_INCLUDED

// Failover across replicas: keel::endpoint_pool, its outlier detector and
// health checker, and keel::leader_follower.
#include "keel/failover/endpoint_pool.hpp"
#include "keel/failover/leader_follower.hpp"
#include "keel/failover/outlier_detector.hpp"

#endif  // KEEL_FAILOVER_HPP_INCLUDED

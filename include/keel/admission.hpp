// SPDX-License-Identifier: BSL-1.0
#ifndef KEEL_ADMISSION_HPP_INCLUDED
#define KEEL_ADMISSION_HPP_INCLUDED

#include "keel/admission/rate_limiter.hpp"

#endif  // KEEL_ADMISSION_HPP_INCLUDED

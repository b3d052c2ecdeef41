// chorusConfig_t (the C API's per-communicator settings) applied on top of the environment's
// Config: the one place that knows which struct fields exist in which version.
#pragma once

#include <chorus/chorus.h>

#include "base/config.h"

namespace chorus {

// Checks the struct (made by CHORUS_CONFIG_INITIALIZER, values in range) and overrides the
// fields of `config` that the caller set. Throws chorusInvalidArgument naming the field.
void applyUserConfig(const chorusConfig_t& user, Config& config);

}  // namespace chorus

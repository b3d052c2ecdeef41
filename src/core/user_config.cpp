#include "core/user_config.h"

#include <cstddef>

#include "base/error.h"

namespace chorus {

void applyUserConfig(const chorusConfig_t& user, Config& config) {
  CHORUS_CHECK_ARG(user.magic == CHORUS_CONFIG_MAGIC,
                   "chorusConfig_t was not made from CHORUS_CONFIG_INITIALIZER (magic 0x%x)", user.magic);
  // A struct from an older header is shorter: it must at least hold the fields of version 1.
  CHORUS_CHECK_ARG(user.size >= offsetof(chorusConfig_t, timeoutSec) + sizeof(double),
                   "chorusConfig_t.size %zu is smaller than any version of the struct", user.size);
  if (user.timeoutSec != CHORUS_CONFIG_UNDEF_DOUBLE) {
    // The same range CHORUS_TIMEOUT accepts (deadline arithmetic stays far from overflow).
    CHORUS_CHECK_ARG(user.timeoutSec > 0 && user.timeoutSec <= 1e6,
                     "chorusConfig_t.timeoutSec must be in (0, 1e6] seconds (got %g)", user.timeoutSec);
    config.timeoutSec = user.timeoutSec;
  }
}

}  // namespace chorus

// Bandwidth-weighted all-reduce (placeholder until the builder lands; see issue 4).
#include "collectives/families.h"
#include "core/error.h"

namespace chorus {

RankSchedule buildWeighted(const CollArgs& args) {
  CHORUS_THROW(chorusInternalError, "weighted all-reduce is not built yet");
}

}  // namespace chorus

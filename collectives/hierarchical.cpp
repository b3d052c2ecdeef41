// Hierarchical all-reduce (placeholder until the builder lands; see issue 4).
#include "collectives/families.h"
#include "core/error.h"

namespace chorus {

RankSchedule buildHierarchical(const CollArgs& args) {
  CHORUS_THROW(chorusInternalError, "hierarchical all-reduce is not built yet");
}

}  // namespace chorus

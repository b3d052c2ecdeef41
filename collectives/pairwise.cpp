// PLACEHOLDER while the family is being written (replaced in this same change).
#include "collectives/families.h"
#include "core/error.h"

namespace chorus {

RankSchedule buildPairwise(const CollArgs& args) { CHORUS_THROW(chorusInternalError, "pairwise: %s is not written yet", collName(args.coll)); }

}  // namespace chorus

// PLACEHOLDER while the family is being written (replaced in this same change).
#include "collectives/families.h"
#include "core/error.h"

namespace chorus {

RankSchedule buildBruck(const CollArgs& args) { CHORUS_THROW(chorusInternalError, "bruck: %s is not written yet", collName(args.coll)); }

}  // namespace chorus

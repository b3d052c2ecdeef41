// Checks a call's arguments on the calling rank (see validate.cpp) and derives CollArgs.
#pragma once

#include "collectives/collective.h"
#include "core/coll_call.h"
#include "core/premul.h"

namespace chorus {

// Throws chorusInvalidArgument naming the bad argument; sets call.inPlace.
void validateCall(CollCall& call, int rank, int nranks, const PreMulSumOps& ops);
// The builders' view of a validated call on `rank` (sliceBytes left at its default).
CollArgs collArgsFor(const CollCall& call, int rank, int nranks);

}  // namespace chorus

// Symbolic verification of schedules: runs every rank's RankSchedule together on symbols
// instead of numbers, for any collective of collectives/collective.h.
//
// Each element carries which input element it stands for (its index in the source rank's
// Input) and the set of ranks whose contribution it holds; a reduction of two sets that share a
// rank is a double count and fails at once, and so does reducing two different elements.
// At the end every element of every rank's Output that the collective defines must hold
// exactly what the collective says: all ranks' element for reductions (divided once, for an
// average), the one right rank's element for gathers, broadcasts and all-to-alls.
//
// The run is adversarial about timing: a Send's data is read both when it is posted and when
// the matching receive consumes it (as a single-copy transport would, late), and the two must
// agree, so a missing read-after-write or write-after-read dependency is caught. Reading an
// element nobody has written yet is an error, and so is a region outside its buffer, and a
// schedule that cannot finish (a deadlock or mismatched send/recv counts or sizes). In-place
// calls are modelled as the collective defines: Input and Output share memory.
#pragma once

#include <string>
#include <vector>

#include "collectives/collective.h"
#include "exec/schedule.h"

namespace chorus {

struct VerifyResult {
  bool ok = true;
  std::string error;  // first problem found, naming the rank and step
};

// perRank[r] are rank r's arguments (identical but for `rank`, except AlltoAllV's own count
// vectors) and schedules[r] its schedule. Supports up to 1024 ranks.
VerifyResult verifyCollective(const std::vector<CollArgs>& perRank, const std::vector<RankSchedule>& schedules);

// Builds every rank's schedule with buildSchedule(algo, .) and verifies them. The first form
// sets `rank` in a copy of proto for each rank; the second takes each rank's arguments.
VerifyResult verifyAlgorithm(Algo algo, const CollArgs& proto);
VerifyResult verifyAlgorithm(Algo algo, const std::vector<CollArgs>& perRank);

// Compatibility form: an all-reduce (sum, no average) of `count` elements.
VerifyResult verifyAllReduce(const std::vector<RankSchedule>& schedules, size_t count, bool inPlace);

}  // namespace chorus

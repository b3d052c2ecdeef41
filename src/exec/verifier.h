// Symbolic verification of schedules: runs every rank's RankSchedule together on symbols
// instead of numbers. Each element carries the set of ranks whose input it contains (a bit
// set); a reduction of two sets that share a rank is a double count and fails at once.
//
// The run is adversarial about timing: a Send's data is read both when it is posted and when
// the matching receive consumes it (as a single-copy transport would, late), and the two must
// agree, so a missing read-after-write or write-after-read dependency is caught. Reading an
// output element nobody has written yet is an error, and so is a schedule that cannot finish
// (a deadlock or mismatched send/recv counts or sizes).
#pragma once

#include <string>
#include <vector>

#include "exec/schedule.h"

namespace chorus {

struct VerifyResult {
  bool ok = true;
  std::string error;  // first problem found, naming the rank and step
};

// Verifies an all-reduce: afterwards every rank's output element i must hold every rank's
// contribution exactly once. schedules[r] is rank r's schedule; `count` elements; inPlace:
// input and output are one buffer. Supports up to 1024 ranks.
VerifyResult verifyAllReduce(const std::vector<RankSchedule>& schedules, size_t count, bool inPlace);

}  // namespace chorus

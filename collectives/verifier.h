// Symbolic verification of schedules: runs every rank's RankSchedule together on symbols
// instead of numbers, for any collective of collectives/collective.h.
//
// Memory: each rank has the three buffers of a call, Input and Output sized by inputElems() /
// outputElems() and Scratch by RankSchedule::scratchElems. An in-place call is modelled as the
// collective defines it (inPlaceAlias()): Input and Output are one array, one at an offset
// inside the other, so a write through one is seen through the other.
//
// Symbols: each element carries which input element it stands for (its index in the source
// rank's Input), the set of ranks whose contribution it holds, and whether it was divided. A
// reduction must combine the same index from disjoint rank sets (sharing a rank is a double
// count and fails at once); a Divide needs a fully reduced element, divisor == nranks, an
// average call, and an element not divided before. At the end every element of every rank's
// Output that the collective defines must hold exactly what the layout table says: all
// ranks' element for reductions (divided once for an average with more than one rank), the
// one right rank's element for gathers, broadcasts and all-to-alls.
//
// What a schedule may touch: a step may write Scratch and the parts of Output the collective
// defines (for the V forms, the blocks given by the counts and displacements), nothing else:
// the caller's Input and the gaps of a V-form Output stay unchanged. Reading an element that
// nothing has written yet is an error (there are no such elements in Input, except where a
// rank has no Input at all), and so is a region outside its buffer.
//
// Timing is adversarial: the run has the executor's rules (per peer and direction, a step is
// posted only after the steps before it; everything is posted as soon as its dependencies are
// done) and the transport's worst case (a Send's data is read any time until its receiver has
// it, as a single-copy transport does; a Recv's destination is written any time between its
// post and its completion; a RecvReduce reads its local operand in that window too). Messages
// are posted before local steps that became ready with them, local steps ready together may
// run in any order, and a message completes only when nothing else can happen, so these
// windows are as wide as the executor allows. Any step that writes a region an in-flight step
// still reads, or reads or writes a region an in-flight step writes, is a missing dependency
// and fails. A schedule that cannot finish (a dependency cycle, or send/receive counts that do
// not pair up) fails naming what it waits for, and so does a message whose send and receive
// sizes differ.
//
// Cost: one pass over the steps driven by dependency counters and per-pair message queues,
// plus the elements each step touches. Rank sets are interned (an element holds a set id,
// 16 bytes per element with its in-flight marks), so p = 1024 with a few thousand elements per
// rank fits in a few hundred MB at most.
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
// vectors, which must agree: rank i's sendCounts[j] == rank j's recvCounts[i]; the rank
// layouts must be equal, and valid by checkLayout) and schedules[r] its schedule. Supports 1 to
// 1024 ranks and single-call schedules (BufferIds 0-2).
VerifyResult verifyCollective(const std::vector<CollArgs>& perRank, const std::vector<RankSchedule>& schedules);

// Builds every rank's schedule with buildSchedule(algo, .) and verifies them; a builder that
// throws is a failed result naming the rank and the exception's text. The first form sets
// `rank` in a copy of proto for each of proto.nranks ranks (for AlltoAllV every rank then has
// the same vectors); the second takes each rank's arguments.
VerifyResult verifyAlgorithm(Algo algo, const CollArgs& proto);
VerifyResult verifyAlgorithm(Algo algo, const std::vector<CollArgs>& perRank);

// Compatibility form: an all-reduce of `count` elements on schedules.size() ranks. The
// schedules do not say whether the call averages, so it is taken to be an average when any
// of them has a Divide step (the full form above checks that against the arguments).
VerifyResult verifyAllReduce(const std::vector<RankSchedule>& schedules, size_t count, bool inPlace);

}  // namespace chorus

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
// plus the runs of elements each step touches. Rank sets are interned (collectives/rank_sets.h:
// sorted runs of ranks, a bitset past max(8, p/64) runs), and each rank's buffers are runs of
// elements with affine symbols (collectives/element_runs.h: a gathered block of consecutive
// ranks, a reduced block over one set, is one run, whatever p and count), switching to a cell
// per element (24 bytes) where the data has no such shape (an all-to-all's blocks). Channels are
// found by sender, so nothing is p x p but what the schedules themselves hold. What grows with
// the work is the steps: the caller's (sizeof(Step) = 72 bytes, plus 4 per dependency) and
// about 50 bytes each of the verifier's own. Measured with chorus-verify (tools/chorus_verify/,
// verify time only, on this repository's 2-core machine while others used it: repeated runs
// differ by up to 2x; all-reduces at count 16p, the rest at 1 element per rank's block):
//   p = 16,384  tree all-reduce and broadcast, hd all-reduce and reduce-scatter, rd all-reduce
//               and all-gather, bruck all-gather, ring broadcast, ring and hierarchical
//               all-reduce at count 1: 0.01-0.9 s and 17-170 MB each.
//   ring all-gather, reduce-scatter, all-reduce: 2(p-1) to 4(p-1) steps per rank, 5.4e8 to
//               1.1e9 steps at p = 16,384 (39 to 77 GB of Step alone): they cannot fit, whatever
//               the verifier. Under 10 s: the all-gather to p = 2,048 (2-3 s; 4,096: 25 s,
//               3.8 GB), the reduce-scatter to 1,024 (1.7 s; 2,048: 10-17 s), the all-reduce to
//               1,024 (3.2 s; 2,048: 25-42 s, 5 GB).
//   hierarchical all-reduce at count 16p (8 ranks a host): a ring across the hosts, p/2 steps
//               per rank: 3.8 s at 2,048, 47 s at 8,192 (4.6 GB), 1.3e8 steps at 16,384.
//   all-to-all (p^2 blocks, as cells): in under 60 s bruck and direct to p = 4,096 (25-33 s,
//               5-8 GB), pairwise to 2,048 (6-16 s; 4,096: 73 s); 8,192 does not fit 10 GB.
// The partial sums of a ring reduce-scatter are p^2 distinct sets, all kept: its time per step
// grows with p (0.8 us at 1,024, 2-5 us at 4,096). Builders are not part of these times: the
// ring (with a null layout, a flat layout built per rank) and hierarchical ones take O(p) per
// rank, 4-14 s for all ranks at 16,384.
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
// 65536 ranks and single-call schedules (BufferIds 0-2).
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

// The algorithm families, one file each (collectives/<family>.cpp). Each builder serves the
// collectives algoServes() lists for it and is reached through buildSchedule(), which checks
// that pairing first; a builder may assume args.coll is one it serves.
#pragma once

#include <vector>

#include "collectives/collective.h"
#include "exec/schedule.h"

namespace chorus {

// Region shorthands for the builders (this header is included by builder files only).
inline Region in(size_t off, size_t n) { return {BufferId::Input, off, n}; }
inline Region out(size_t off, size_t n) { return {BufferId::Output, off, n}; }
inline Region scratch(size_t off, size_t n) { return {BufferId::Scratch, off, n}; }

RankSchedule buildRing(const CollArgs& args);               // ring.cpp
RankSchedule buildTree(const CollArgs& args);               // tree.cpp
RankSchedule buildHalvingDoubling(const CollArgs& args);    // halving_doubling.cpp
RankSchedule buildRecursiveDoubling(const CollArgs& args);  // recursive_doubling.cpp
RankSchedule buildBruck(const CollArgs& args);              // bruck.cpp
RankSchedule buildPairwise(const CollArgs& args);           // pairwise.cpp
RankSchedule buildDirect(const CollArgs& args);             // direct.cpp
RankSchedule buildHierarchical(const CollArgs& args);       // hierarchical.cpp
RankSchedule buildWeighted(const CollArgs& args);           // weighted.cpp

// The direct all-reduce over given blocks (direct.cpp): rank r reduces block r (offsets[r],
// sizes[r] elements; the blocks tile [0, args.count), some may be empty) from every rank's
// Input into its Output, in the fixed order own, r+1, r+2, ..., and sends it to every other
// rank; so every rank gets the same bits. Blocks travel whole, or `sliced` into pieces of about
// args.sliceBytes that are reduced and sent on one by one. Appends to `s`. The direct
// all-reduce uses equal blocks whole, the weighted one (weighted.cpp) blocks in proportion to
// the ranks' weights, sliced.
void directAllReduceBlocks(RankSchedule& s, const CollArgs& args, const std::vector<size_t>& offsets,
                           const std::vector<size_t>& sizes, bool sliced);

}  // namespace chorus

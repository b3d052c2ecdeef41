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

// The host-level all-reduce (hierarchical.cpp) over args' layout: reduce-scatter inside each
// host, an all-reduce of each chunk among its owners across hosts, all-gather inside each host.
// weighted false: the ring across hosts with equal sub-chunks (the hierarchical algorithm);
// true: a direct exchange across hosts in which host g reduces a sub-chunk in proportion to the
// sum of its ranks' weights (the weighted algorithm, weighted.cpp).
RankSchedule buildHostLevels(const CollArgs& args, bool weighted);
// Splits [0, count) into weights.size() consecutive parts in proportion to the weights, each
// starting on a multiple of `align` elements, summing to count; a weight of 0 gives an empty
// part (weighted.cpp documents the rounding).
void weightedSplit(size_t count, size_t align, const std::vector<double>& weights, std::vector<size_t>* offsets,
                   std::vector<size_t>* sizes);

}  // namespace chorus

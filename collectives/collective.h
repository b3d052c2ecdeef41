// What a collective call is, independent of how it is done: the collective kinds, the
// algorithm families, the arguments every schedule builder takes (CollArgs), the buffer layout
// each collective defines, and the registry that maps (algorithm, collective) to a builder.
//
// Builders are pure functions of CollArgs: no sockets, no buffers. Every rank calls the same
// builder with the same arguments except `rank` (and, for AlltoAllV, its own count vectors),
// and gets its RankSchedule (exec/schedule.h). Counts and offsets are in elements.
//
// Buffer layout per collective (p = nranks, n = count; "in"/"out" are BufferId Input/Output):
//   AllReduce      in n, out n.                       in place: in == out.
//   Broadcast      in n on root (unused elsewhere), out n.   in place (root): in == out.
//   Reduce         in n, out n on root (unused elsewhere).   in place (root): in == out.
//   AllGather      in n, out p*n (rank r's block at r*n).    in place: in == out + rank*n.
//   ReduceScatter  in p*n, out n (block rank of the sum).    in place: out == in + rank*n.
//   AlltoAll       in p*n (block j goes to rank j), out p*n (block i came from rank i). never in place.
//   Gather         in n, out p*n on root.                    in place (root): in == out + root*n.
//   Scatter        in p*n on root, out n.                    in place (root): out == in + root*n.
//   AllGatherV     in counts[rank], out holds block r (counts[r]) at displs[r].  in place: in == out + displs[rank].
//   ReduceScatterV in holds block r (counts[r]) at displs[r], out counts[rank].  in place: out == in + displs[rank].
//   AlltoAllV      in: sendCounts[j] at sendDispls[j] go to rank j; out: recvCounts[i] from
//                  rank i at recvDispls[i]. never in place.
// With inPlace set, a builder must not read the aliased part of Output before it has read the
// matching Input (they are the same memory), and should skip copies the aliasing makes free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "exec/schedule.h"

namespace chorus {

enum class Coll : uint8_t {
  AllReduce,
  Broadcast,
  Reduce,
  AllGather,
  ReduceScatter,
  AlltoAll,
  Gather,
  Scatter,
  AllGatherV,
  ReduceScatterV,
  AlltoAllV,
  kCount
};

// Algorithm families; tune-string / -A names in algoName().
enum class Algo : uint8_t { Ring, Tree, HalvingDoubling, RecursiveDoubling, Bruck, Pairwise, Direct, Hierarchical, Weighted, kCount };

// Where the ranks sit, as the topology-aware builders see it. The communicator derives it from
// the cluster topology (src/topology/cluster_topology.h) identically on every rank; builders
// and the verifier take it as plain data. Invariants (checkLayout): every rank is in exactly
// one host; hosts[h] lists its ranks in local-rank order; ringOrder is a permutation of the
// ranks; weight has one entry >= 0 per rank, summing to 1 (within rounding).
struct RankLayout {
  std::vector<std::vector<int>> hosts;  // hosts[h]: the ranks on host h, in local-rank order
  std::vector<int> hostOf;              // rank -> h
  std::vector<int> ringOrder;           // ring position -> rank: hosts contiguous, NUMA-local
  // The bandwidth-weighted all-reduce's share of the data per rank, from the bandwidth of the
  // link each rank reaches other hosts by (src/topology/weights.cpp explains the split).
  std::vector<double> weight;
};
// One host holding ranks 0..p-1, the identity ring, equal weights.
RankLayout flatLayout(int nranks);
// Throws chorusInvalidArgument (naming the broken invariant) unless `layout` is valid for nranks.
void checkLayout(const RankLayout& layout, int nranks);

struct CollArgs {
  Coll coll = Coll::AllReduce;
  int rank = 0;
  int nranks = 1;
  int root = 0;                   // Broadcast, Reduce, Gather, Scatter
  size_t count = 0;               // n of the layout table (unused by the V forms)
  size_t elemSize = 4;            // bytes per element (alignment of chunks and slices)
  size_t sliceBytes = 256 * 1024; // pipelining unit of the pipelined algorithms
  bool inPlace = false;
  bool average = false;           // reductions with chorusAvg: results are divided by nranks
  // AllGatherV / ReduceScatterV: every rank's block size and place (nranks entries, the same
  // on every rank).
  std::vector<size_t> counts, displs;
  // AlltoAllV: this rank's vectors (nranks entries each).
  std::vector<size_t> sendCounts, sendDispls, recvCounts, recvDispls;
  // Where the ranks sit (ring order, hosts, weights); null means flatLayout(nranks).
  std::shared_ptr<const RankLayout> layout;
};
// args.layout, or a flat layout when it is null (kept in `storage`).
const RankLayout& layoutOf(const CollArgs& args, RankLayout* storage);

const char* collName(Coll coll);  // "allreduce", "broadcast", ... (tune-string names)
const char* algoName(Algo algo);  // "ring", "tree", "hd", "rd", "bruck", "pairwise", "direct",
                                  // "hierarchical", "weighted"
// Parses a tune-string name; false if unknown.
bool parseColl(const std::string& name, Coll* coll);
bool parseAlgo(const std::string& name, Algo* algo);

// Whether the reduction collectives (AllReduce, Reduce, ReduceScatter, ReduceScatterV).
bool isReduction(Coll coll);
// Whether `algo` has a builder for `coll`.
bool algoServes(Algo algo, Coll coll);
// The algorithms that serve `coll`, comma-separated ("ring, tree, hd, rd, direct").
std::string algosServing(Coll coll);

// Elements of rank r's Input and Output buffers (0 where the buffer is unused on r).
size_t inputElems(const CollArgs& args, int rank);
size_t outputElems(const CollArgs& args, int rank);
// For an in-place call on `rank`: where the smaller buffer sits inside the larger one. Sets
// *outputInsideInput (true for ReduceScatter(V) and Scatter: Output lives inside Input) and
// returns the element offset; false when the call is not in place on that rank.
bool inPlaceAlias(const CollArgs& args, int rank, bool* outputInsideInput, size_t* offset);

// Builds rank args.rank's schedule. Throws chorusInvalidArgument when `algo` does not serve
// args.coll (naming the algorithms that do).
RankSchedule buildSchedule(Algo algo, const CollArgs& args);

// Pipelining helper for builders: cuts [0, count) into pieces of about sliceBytes, aligned to
// 64 bytes, with even sizes (the last piece is not a sliver). Always at least one piece.
struct Slices {
  Slices(size_t count, size_t elemSize, size_t sliceBytes);
  size_t num() const { return num_; }
  size_t offset(size_t j) const;
  size_t size(size_t j) const;

 private:
  size_t count_, per_, num_;
};

}  // namespace chorus

// The alpha-beta cost model behind the tuner (docs/TUNING.md has the formulas as a table).
//
// Both transports are driven by the ranks' own threads: a shm message is copied into a FIFO
// slot by the sender and out of it by the receiver, a TCP message crosses two system calls.
// So a message costs CPU time on both ends, and messages in flight at once do not hide each
// other's fixed cost (measured: cutting an np=2 all-reduce into 4 KiB slices costs ~0.35 us
// per extra message on shm, about the whole per-message latency). The model therefore charges
// one rank, for each message it sends and each it receives, half of alpha plus half of beta
// per byte; a step in which a rank sends and receives one message of b bytes costs
// alpha + b beta (that is how alpha and beta are calibrated: docs/TUNING.md). A call takes
// the longer of its busiest rank's work and its critical path of dependent hops; for the
// pipelined algorithms (slices) that is the first slice's trip plus the busiest rank's work
// per further slice. Reductions are fused into the receive (RecvReduce reduces out of the
// slot or socket buffer), so their cost is inside beta; local Copy steps are charged at
// memory-copy speed.
#include <algorithm>
#include <cmath>
#include <limits>

#include "tune/tuner.h"

namespace chorus {
namespace {

// Local copy bandwidth (Copy steps: Bruck's rotations and packing, own blocks out of place).
// memcpy of 64 MiB ran at 7.7-8.0 GB/s on the development machines (docs/PERFORMANCE.md);
// the copies that matter are the large ones, which run from memory.
constexpr double kCopyGBps = 8.0;

struct Model {
  double alpha;  // us per message
  double beta;   // us per byte
  double p;      // ranks
  double S;      // bytes (nccl-tests' S)
  int lg;        // ceil(log2 p): rounds of Bruck / dissemination
  double P2;     // largest power of two <= p (halving-doubling, recursive doubling)
  int k;         // log2 P2
  bool fold;     // p is not a power of two: the extra ranks fold into partners first

  // One dependent hop of b bytes: the sender's and the receiver's halves together.
  double hop(double b) const { return alpha + b * beta; }
  double copy(double b) const { return b / (kCopyGBps * 1e3); }
};

// Pieces of about `slice` bytes that `bytes` is cut into (Slices in collectives/collective.h:
// at least one, never a sliver).
double pieces(double bytes, size_t slice) { return std::max(1.0, std::ceil(bytes / static_cast<double>(std::max<size_t>(slice, 1)))); }

// A pipeline: the first slice travels `hops` dependent hops, then every further slice costs
// the busiest rank `perSlice` hops' worth of work (messages it sends and receives per slice,
// halved: see the file comment).
double pipeline(const Model& m, double bytes, size_t slice, double hops, double perSlice) {
  double R = pieces(bytes, slice);
  return (hops + (R - 1) * perSlice) * m.hop(bytes / R);
}

// Binary trees (tree.cpp): the depth of a p-node heap-shaped tree, and the work per slice, in
// hops, of its busiest node. One way, a node with k children and a parent handles k + 1
// messages per slice (the root k), each half a hop of its own work.
double treeDepth(double p) { return std::floor(std::log2(p)); }
double treeBusiest(double p, bool bothWays) {
  double rootKids = std::min(2.0, p - 1);
  double innerKids = p >= 5 ? 2 : p == 4 ? 1 : 0;
  return (bothWays ? 2 : 1) * std::max(rootKids, innerKids + 1) / 2;
}

double ring(const Model& m, Coll c, size_t slice) {
  const double p = m.p, S = m.S;
  switch (c) {
    case Coll::AllReduce: {  // reduce-scatter + all-gather around the ring, chunks of S/p in slices
      double R = pieces(S / p, slice);
      return 2 * (p - 1) * R * m.alpha + 2 * (p - 1) / p * S * m.beta;
    }
    case Coll::ReduceScatter:
    case Coll::ReduceScatterV:
    case Coll::AllGather:
    case Coll::AllGatherV: {  // p-1 steps of one block (S/p), in slices; the own block is copied out of place
      double R = pieces(S / p, slice);
      return (p - 1) * R * m.alpha + (p - 1) / p * S * m.beta + m.copy(S / p);
    }
    case Coll::Broadcast:
    case Coll::Reduce:  // a pipelined chain of p-1 hops; inner ranks receive and send each slice
      return pipeline(m, S, slice, p - 1, p > 2 ? 1 : 0.5);
    default: break;
  }
  return std::numeric_limits<double>::infinity();
}

double tree(const Model& m, Coll c, size_t slice) {
  const double p = m.p, S = m.S, d = treeDepth(p);
  switch (c) {
    case Coll::AllReduce:  // reduce up, broadcast down, slice by slice
      return pipeline(m, S, slice, 2 * d, treeBusiest(p, true));
    case Coll::Broadcast:
    case Coll::Reduce: return pipeline(m, S, slice, d, treeBusiest(p, false));
    default: break;
  }
  return std::numeric_limits<double>::infinity();
}

// Non-power-of-two ranks: each of the p - P2 extra ranks first hands its data to a partner
// (`in` bytes) and gets its result back at the end (`out` bytes): two more dependent hops.
double foldCost(const Model& m, double in, double out) { return m.fold ? m.hop(in) + m.hop(out) : 0; }

double halvingDoubling(const Model& m, Coll c) {
  const double S = m.S, P2 = m.P2;
  switch (c) {
    case Coll::AllReduce:  // Rabenseifner: recursive-halving reduce-scatter + recursive-doubling all-gather
      return 2 * m.k * m.alpha + 2 * (P2 - 1) / P2 * S * m.beta + foldCost(m, S, S);
    case Coll::ReduceScatter:  // recursive halving of the whole input
      return m.k * m.alpha + (P2 - 1) / P2 * S * m.beta + foldCost(m, S, S / m.p);
    default: break;
  }
  return std::numeric_limits<double>::infinity();
}

double recursiveDoubling(const Model& m, Coll c) {
  const double S = m.S, P2 = m.P2;
  switch (c) {
    case Coll::AllReduce:  // log2 p exchanges of the whole vector
      return m.k * m.hop(S) + foldCost(m, S, S);
    case Coll::AllGather:  // log2 p exchanges, the data doubling each time
      return m.k * m.alpha + (P2 - 1) / P2 * S * m.beta + foldCost(m, S / m.p, S) + m.copy(S / m.p);
    default: break;
  }
  return std::numeric_limits<double>::infinity();
}

double bruck(const Model& m, Coll c) {
  const double p = m.p, S = m.S;
  switch (c) {
    case Coll::AllGather:  // ceil(log2 p) rounds, (p-1)/p S in all; rotations into place at both ends
      return m.lg * m.alpha + (p - 1) / p * S * m.beta + m.copy(2 * S);
    case Coll::AlltoAll:  // ceil(log2 p) rounds of about half the buffer, packed and unpacked each round
      return m.lg * m.hop(S / 2) + m.copy((2 + m.lg) * S);
    default: break;
  }
  return std::numeric_limits<double>::infinity();
}

double pairwise(const Model& m, Coll c) {
  const double p = m.p, S = m.S;
  switch (c) {
    case Coll::AlltoAll:
    case Coll::AlltoAllV:  // p-1 exchanges of one block with one partner each
      return (p - 1) * m.hop(S / p) + m.copy(S / p);
    default: break;
  }
  return std::numeric_limits<double>::infinity();
}

double direct(const Model& m, Coll c) {
  const double p = m.p, S = m.S;
  // One round (two for all-reduce); every message posted at once, but each still costs its
  // ends alpha/2 and beta/2 per byte (collectives/direct.cpp lists the bytes).
  switch (c) {
    case Coll::AllReduce: return 2 * (p - 1) * m.alpha + 2 * (p - 1) / p * S * m.beta;
    case Coll::ReduceScatter:
    case Coll::ReduceScatterV:
    case Coll::AllGather:
    case Coll::AllGatherV:
    case Coll::AlltoAll:
    case Coll::AlltoAllV: return (p - 1) * m.alpha + (p - 1) / p * S * m.beta + m.copy(S / p);
    case Coll::Broadcast:
    case Coll::Reduce:  // the root sends (receives) p-1 whole vectors; the last peer waits for all
      return (p - 1) / 2 * m.hop(S) + m.hop(S) / 2;
    case Coll::Gather:
    case Coll::Scatter:  // S is the root's p blocks; it moves p-1 of them
      return (p - 1) / 2 * m.hop(S / p) + m.hop(S / p) / 2 + m.copy(S / p);
    default: break;
  }
  return std::numeric_limits<double>::infinity();
}

}  // namespace

bool algoPipelines(Algo algo, Coll coll) { return (algo == Algo::Ring || algo == Algo::Tree) && algoServes(algo, coll); }

double predictCostUs(Algo algo, Coll coll, size_t bytes, int nranks, size_t sliceBytes, const LinkModel& link) {
  if (!algoServes(algo, coll)) return std::numeric_limits<double>::infinity();
  Model m;
  m.alpha = link.latencyUs;
  m.beta = 1.0 / (link.bandwidthGBps * 1e3);
  m.p = std::max(1, nranks);
  m.S = static_cast<double>(bytes);
  m.lg = static_cast<int>(std::ceil(std::log2(m.p) - 1e-9));
  m.k = static_cast<int>(std::floor(std::log2(m.p) + 1e-9));
  m.P2 = std::ldexp(1.0, m.k);
  m.fold = m.P2 != m.p;
  // One rank: every algorithm is (at most) a local copy.
  if (nranks <= 1) return m.copy(m.S);
  switch (algo) {
    case Algo::Ring: return ring(m, coll, sliceBytes);
    case Algo::Tree: return tree(m, coll, sliceBytes);
    case Algo::HalvingDoubling: return halvingDoubling(m, coll);
    case Algo::RecursiveDoubling: return recursiveDoubling(m, coll);
    case Algo::Bruck: return bruck(m, coll);
    case Algo::Pairwise: return pairwise(m, coll);
    case Algo::Direct: return direct(m, coll);
    case Algo::kCount: break;
  }
  return std::numeric_limits<double>::infinity();
}

}  // namespace chorus

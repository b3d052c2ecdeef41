// The alpha-beta cost model behind the tuner (docs/TUNING.md has the formulas as a table).
//
// Both transports are driven by the ranks' own threads: a shm message is copied into FIFO
// slots by the sender and out of them by the receiver, a TCP message crosses two system calls
// per stripe chunk. So a message costs CPU time on both ends, and messages in flight at once do
// not hide each other's fixed cost (measured: cutting an np=2 all-reduce into 4 KiB slices
// costs ~0.35 us per extra message on shm, about the whole per-message latency). The model
// therefore charges a rank, for each message it sends and each it receives, half of alpha per
// fragment (the transport's unit; a message is at least one) plus half of beta per byte. A step
// in which a rank sends and receives one message of b bytes then costs hop(b) = alpha + b beta,
// which is how alpha and beta are calibrated (np=2 ring all-reduce, docs/TUNING.md).
//
// A call takes its busiest rank's work or its critical path of dependent hops, whichever is
// longer; for the pipelined algorithms that is the first slice's trip plus the busiest rank's
// work per further slice. Reductions are fused into the receive (RecvReduce reduces out of the
// slot or socket buffer), so their cost is inside beta. Local copies that some algorithms make
// and others do not (Bruck's rotations and packing) are charged at memory-copy speed; the copy
// of a rank's own block in an out-of-place call is the same for every algorithm of a
// collective and is left out. tests/unit/test_tuner.cpp runs the schedules the families build
// under these same rules and checks that the formulas here stay close to them.
#include <algorithm>
#include <cmath>
#include <limits>

#include "tune/tuner.h"

namespace chorus {
namespace {

// Local copy bandwidth (Bruck's Copy steps). memcpy of 64 MiB ran at 7.7-8.0 GB/s on the
// development machines (docs/PERFORMANCE.md); the copies that decide anything are the large
// ones, which run from memory.
constexpr double kCopyGBps = 8.0;
constexpr double kInf = std::numeric_limits<double>::infinity();

struct Model {
  double round;  // us per dependent round beyond its messages (LinkModel::roundUs)
  double alpha;  // us per fragment of a message
  double beta;   // us per byte
  double frag;   // bytes per fragment
  double p;      // ranks
  double S;      // bytes (nccl-tests' S)
  int lg;        // ceil(log2 p): rounds of Bruck
  double P2;     // largest power of two <= p (halving-doubling, recursive doubling)
  int k;         // log2 P2
  bool fold;     // p is not a power of two: the extra ranks fold into partners first

  // One message's fixed cost, both ends together.
  double msg(double b) const { return alpha * std::max(1.0, std::ceil(b / frag)); }
  // One dependent hop of b bytes (or one step that sends and receives b bytes).
  double hop(double b) const { return msg(b) + b * beta; }
  double copy(double b) const { return b / (kCopyGBps * 1e3); }
};

// Pieces of about `slice` bytes that `bytes` is cut into (Slices in collectives/collective.h:
// at least one, never a sliver).
double pieces(double bytes, size_t slice) { return std::max(1.0, std::ceil(bytes / static_cast<double>(std::max<size_t>(slice, 1)))); }

// A pipeline of `n` slices of `b` bytes: the first travels `hops` dependent hops, and every
// further one costs the busiest rank `perSlice` hops' worth of work.
double pipeline(const Model& m, double n, double b, double hops, double perSlice) { return (hops + (n - 1) * perSlice) * m.hop(b); }

double ring(const Model& m, Coll c, size_t slice) {
  const double p = m.p, S = m.S;
  switch (c) {
    case Coll::AllReduce: {  // 2(p-1) steps of every slice of a chunk (S/p); all links busy throughout
      double R = pieces(S / p, slice);
      return 2 * (p - 1) * R * m.hop(S / p / R);
    }
    case Coll::ReduceScatter:
    case Coll::ReduceScatterV:
    case Coll::AllGather:
    case Coll::AllGatherV: {  // p-1 steps of one block (S/p), slice by slice
      double R = pieces(S / p, slice);
      return (p - 1) * R * m.hop(S / p / R);
    }
    case Coll::Broadcast:
    case Coll::Reduce: {  // a chain of p-1 hops; inner ranks receive and send every slice
      double R = pieces(S, slice);
      return pipeline(m, R, S / R, p - 1, p > 2 ? 1 : 0.5);
    }
    default: break;
  }
  return kInf;
}

// The double binary tree (tree.cpp): each tree carries half of the data, J slices of b bytes
// each, d hops from the root to the deepest rank. A slice's trip is one and a half hops per
// level (a parent serves its two children one after the other): 1.5 d for broadcast and
// reduce, 3 d for all-reduce, and the other tree's first slice half a hop more. After that the
// busiest rank's work per slice: a rank is interior in at most one tree, so per pair of slices
// it handles (all-reduce) 3 messages each way in one tree and 1 in the other, two hops per
// slice from p = 4; from p = 6 on, running tree.cpp's schedules under the model's rules
// (test_tuner.cpp) shows the busiest ranks idle a fifth of the time on top (the up and down
// streams meet at ranks that are parent in one tree and child in the other): two and a half.
// With p = 3 the interior ranks have one child (one and a half), with p = 2 none (one).
// Broadcast and reduce move each slice one way: half of that, one hop per slice.
double tree(const Model& m, Coll c, size_t slice) {
  const double p = m.p, S = m.S;
  const double d = std::floor(std::log2(p - 1)) + 1;
  const double J = pieces(S / 2, slice), b = S / 2 / J;
  const double perSlice = p == 2 ? 1 : p == 3 ? 1.5 : p <= 5 ? 2 : 2.5;
  switch (c) {
    case Coll::AllReduce: return (3 * d + 0.5 + (2 * J - 2) * perSlice) * m.hop(b);
    case Coll::Broadcast:
    case Coll::Reduce: return (1.5 * d + 0.5 + (2 * J - 2) * std::min(1.0, perSlice / 2)) * m.hop(b);
    default: break;
  }
  return kInf;
}

// Non-power-of-two ranks (collectives/logstep.h): each of the p - P2 extra ranks first hands
// its data to a partner (`in` bytes) and gets its result back at the end (`out` bytes): two
// more dependent hops.
double foldCost(const Model& m, double in, double out) { return m.fold ? m.hop(in) + m.hop(out) : 0; }

// Recursive halving over P2 units of S: rounds of S/2, S/4, ..., S/P2.
double halving(const Model& m) {
  double t = 0;
  for (int i = 1; i <= m.k; ++i) t += m.hop(m.S / std::ldexp(1.0, i));
  return t;
}

double halvingDoubling(const Model& m, Coll c) {
  switch (c) {
    case Coll::AllReduce:  // halving reduce-scatter, then the same rounds backwards as an all-gather
      return 2 * halving(m) + foldCost(m, m.S, m.S);
    case Coll::ReduceScatter: return halving(m) + foldCost(m, m.S, m.S / m.p);
    default: break;
  }
  return kInf;
}

double recursiveDoubling(const Model& m, Coll c) {
  switch (c) {
    case Coll::AllReduce:  // log2 P2 exchanges of the whole vector
      return m.k * m.hop(m.S) + foldCost(m, m.S, m.S);
    case Coll::AllGather:  // the halving's rounds in reverse: S/P2, 2S/P2, ..., S/2
      return halving(m) + foldCost(m, m.S / m.p, m.S);
    default: break;
  }
  return kInf;
}

// How many of 0..p-1 have bit `bit` set: Bruck's all-to-all moves those blocks in round `bit`.
double withBit(double p, int bit) {
  double period = std::ldexp(1.0, bit + 1), half = period / 2;
  return std::floor(p / period) * half + std::max(0.0, std::fmod(p, period) - half);
}

double bruck(const Model& m, Coll c) {
  const double p = m.p, S = m.S, block = S / p;
  double t = 0;
  switch (c) {
    case Coll::AllGather:  // round k moves min(2^k, p - 2^k) blocks; one rotation into Output at the end
      for (int r = 0; r < m.lg; ++r) t += m.hop(std::min(std::ldexp(1.0, r), p - std::ldexp(1.0, r)) * block);
      return t + m.copy(S);
    case Coll::AlltoAll: {
      // Round k moves the blocks whose index has bit k set. Counted from bruck.cpp's schedules:
      // the rotation in, packing, unpacking and final placement copy about twice the bytes sent
      // plus half the buffer, less the own block (left out, as everywhere).
      double sent = 0;
      for (int r = 0; r < m.lg; ++r) {
        t += m.hop(withBit(p, r) * block);
        sent += withBit(p, r) * block;
      }
      return t + m.copy(2 * sent + S / 2 - block);
    }
    default: break;
  }
  return kInf;
}

double pairwise(const Model& m, Coll c) {
  switch (c) {
    case Coll::AlltoAll:
    case Coll::AlltoAllV:  // p-1 exchanges of one block with one partner each
      return (m.p - 1) * m.hop(m.S / m.p);
    default: break;
  }
  return kInf;
}

double direct(const Model& m, Coll c) {
  const double p = m.p, S = m.S;
  // One round (two for all-reduce) with every message posted at once; each still costs both
  // its ends (collectives/direct.cpp lists the bytes).
  switch (c) {
    case Coll::AllReduce: return 2 * (p - 1) * m.hop(S / p);
    case Coll::ReduceScatter:
    case Coll::ReduceScatterV:
    case Coll::AllGather:
    case Coll::AllGatherV:
    case Coll::AlltoAll:
    case Coll::AlltoAllV: return (p - 1) * m.hop(S / p);
    case Coll::Broadcast:
    case Coll::Reduce:  // the root's p-1 whole vectors, then the last peer's end of the last one
      return p / 2 * m.hop(S);
    case Coll::Gather:
    case Coll::Scatter:  // S is the root's p blocks
      return p / 2 * m.hop(S / p);
    default: break;
  }
  return kInf;
}

}  // namespace

bool algoPipelines(Algo algo, Coll coll) {
  return (algo == Algo::Ring || algo == Algo::Tree || algo == Algo::Hierarchical || algo == Algo::Weighted) && algoServes(algo, coll);
}

namespace {

Model modelOf(const LinkModel& link, int nranks, double bytes) {
  Model m;
  m.round = link.roundUs;
  m.alpha = link.latencyUs;
  m.beta = 1.0 / (link.bandwidthGBps * 1e3);
  m.frag = static_cast<double>(std::max<size_t>(link.fragmentBytes, 1));
  m.p = nranks;
  m.S = bytes;
  m.lg = 0;
  while ((1 << m.lg) < nranks) ++m.lg;
  m.k = m.lg - ((1 << m.lg) == nranks ? 0 : 1);
  m.P2 = std::ldexp(1.0, m.k);
  m.fold = m.P2 != m.p;
  return m;
}

// Dependent rounds on a call's critical path (messages that must arrive before the next step
// can go), charged LinkModel::roundUs each: what matters where ranks outnumber CPUs, and nothing
// elsewhere (roundUs = 0). Pipelined algorithms add a round per further slice.
double rounds(Algo algo, Coll c, const Model& m, size_t slice) {
  const double p = m.p, fold = m.fold ? 2 : 0;
  switch (algo) {
    case Algo::Ring: {
      const bool twice = c == Coll::AllReduce;
      const double R = pieces(c == Coll::Broadcast || c == Coll::Reduce ? m.S : m.S / p, slice);
      return (twice ? 2 : 1) * (p - 1) + R - 1;
    }
    case Algo::Tree: {
      const double d = std::floor(std::log2(p - 1)) + 1, J = pieces(m.S / 2, slice);
      return (c == Coll::AllReduce ? 2 * d : d) + J - 1;
    }
    case Algo::HalvingDoubling: return (c == Coll::AllReduce ? 2 * m.k : m.k) + fold;
    case Algo::RecursiveDoubling: return m.k + fold;
    case Algo::Bruck: return m.lg;
    case Algo::Pairwise: return std::ceil((p - 1) / 8.0);  // pairwise.cpp: 8 exchange rounds in flight
    case Algo::Direct: return c == Coll::AllReduce ? 2 : 1;
    default: break;
  }
  return 0;
}

// The flat families' messages and bytes.
double messageCost(Algo algo, Coll coll, const Model& m, size_t sliceBytes) {
  switch (algo) {
    case Algo::Ring: return ring(m, coll, sliceBytes);
    case Algo::Tree: return tree(m, coll, sliceBytes);
    case Algo::HalvingDoubling: return halvingDoubling(m, coll);
    case Algo::RecursiveDoubling: return recursiveDoubling(m, coll);
    case Algo::Bruck: return bruck(m, coll);
    case Algo::Pairwise: return pairwise(m, coll);
    case Algo::Direct: return direct(m, coll);
    case Algo::Hierarchical:
    case Algo::Weighted:
    case Algo::kCount: break;
  }
  return kInf;
}

// The flat families on one link class: their messages, and their dependent rounds where those
// cost anything.
double flatCost(Algo algo, Coll coll, double bytes, int nranks, size_t sliceBytes, const LinkModel& link) {
  const Model m = modelOf(link, nranks, bytes);
  const double t = messageCost(algo, coll, m, sliceBytes);
  return m.round > 0 ? t + m.round * rounds(algo, coll, m, sliceBytes) : t;
}

// The host-level all-reduces (collectives/hierarchical.cpp, weighted.cpp): a ring
// reduce-scatter over the L ranks of a host, an exchange across the H hosts of each rank's 1/L
// of the vector, and a ring all-gather inside the host. The levels are pipelined slice by
// slice, so the slower level paces the call and the faster one adds only its share of one
// slice's trip: max(a, b) + min(a, b) / J for J slices. On one host only the intra-host ring is
// left, for both algorithms.
//
// The exchange across hosts:
//  - hierarchical: a ring all-reduce over the hosts' owners; the L rings of a host share its
//    uplink, each at 1/L of the bandwidth, so the uplink carries 2(H-1)/H S in all.
//  - weighted: direct, per slice two steps of H-1 messages per owner, its bytes paced by the
//    busiest host link: the link-bound time of the weights (topology/weights.h).
double hostLevels(Algo algo, double S, int nranks, size_t slice, const TopoModel& topo) {
  const int H = std::max(1, topo.hosts);
  const int L = H == 1 ? nranks : std::max(1, topo.maxRanksPerHost);
  double intra = L > 1 ? 2 * flatCost(Algo::Ring, Coll::ReduceScatter, S, L, slice, topo.intra) : 0;
  if (H == 1) return intra;
  const double J = pieces(S / L / H, slice);
  double inter = 0;
  if (algo == Algo::Hierarchical) {
    LinkModel shared = topo.inter;
    shared.bandwidthGBps /= L;
    inter = flatCost(Algo::Ring, Coll::AllReduce, S / L, H, slice, shared);
  } else {
    inter = 2 * (H - 1) * J * modelOf(topo.inter, H, S).msg(S / L / H / J) + S * topo.weightedUsPerByte;
  }
  return std::max(intra, inter) + std::min(intra, inter) / J;
}

}  // namespace

double predictCostUs(Algo algo, Coll coll, size_t bytes, int nranks, size_t sliceBytes, const LinkModel& link, const TopoModel& topo) {
  if (!algoServes(algo, coll)) return kInf;
  // One rank: every algorithm is at most the own-block copy, left out (see above).
  if (nranks <= 1 || bytes == 0) return 0;
  const double S = static_cast<double>(bytes);
  if (algo == Algo::Hierarchical || algo == Algo::Weighted) return hostLevels(algo, S, nranks, sliceBytes, topo);
  LinkModel l = link;
  // Across hosts, every rank of a host talks over its uplink at once, except in the ring
  // all-reduce, whose ring order (collectives/ring.cpp) keeps a host's ranks contiguous: one
  // ring edge leaves each host.
  if (topo.hosts > 1 && !(algo == Algo::Ring && coll == Coll::AllReduce)) l.bandwidthGBps /= std::max(1, topo.maxRanksPerHost);
  return flatCost(algo, coll, S, nranks, sliceBytes, l);
}

double predictCostUs(Algo algo, Coll coll, size_t bytes, int nranks, size_t sliceBytes, const LinkModel& link) {
  TopoModel one;
  one.intra = link;
  one.inter = link;
  return predictCostUs(algo, coll, bytes, nranks, sliceBytes, link, one);
}

}  // namespace chorus

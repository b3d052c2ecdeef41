#include "collectives/collective.h"

#include <algorithm>

#include "collectives/families.h"
#include "base/error.h"

namespace chorus {
namespace {

constexpr const char* kCollNames[] = {"allreduce",  "broadcast",      "reduce",    "allgather", "reducescatter", "alltoall",
                                      "gather",     "scatter",        "allgatherv", "reducescatterv", "alltoallv"};
constexpr const char* kAlgoNames[] = {"ring", "tree", "hd", "rd", "bruck", "pairwise", "direct", "hierarchical", "weighted"};
static_assert(sizeof(kCollNames) / sizeof(kCollNames[0]) == static_cast<size_t>(Coll::kCount));
static_assert(sizeof(kAlgoNames) / sizeof(kAlgoNames[0]) == static_cast<size_t>(Algo::kCount));

size_t maxEnd(const std::vector<size_t>& counts, const std::vector<size_t>& displs) {
  size_t end = 0;
  for (size_t i = 0; i < counts.size() && i < displs.size(); ++i)
    if (counts[i]) end = std::max(end, displs[i] + counts[i]);
  return end;
}

}  // namespace

const char* collName(Coll coll) { return coll < Coll::kCount ? kCollNames[static_cast<int>(coll)] : "?"; }
const char* algoName(Algo algo) { return algo < Algo::kCount ? kAlgoNames[static_cast<int>(algo)] : "?"; }

bool parseColl(const std::string& name, Coll* coll) {
  for (int i = 0; i < static_cast<int>(Coll::kCount); ++i)
    if (name == kCollNames[i]) {
      *coll = static_cast<Coll>(i);
      return true;
    }
  return false;
}

bool parseAlgo(const std::string& name, Algo* algo) {
  for (int i = 0; i < static_cast<int>(Algo::kCount); ++i)
    if (name == kAlgoNames[i]) {
      *algo = static_cast<Algo>(i);
      return true;
    }
  return false;
}

bool isReduction(Coll c) { return c == Coll::AllReduce || c == Coll::Reduce || c == Coll::ReduceScatter || c == Coll::ReduceScatterV; }

bool algoServes(Algo algo, Coll c) {
  switch (algo) {
    case Algo::Ring:
      return c == Coll::AllReduce || c == Coll::AllGather || c == Coll::ReduceScatter || c == Coll::Broadcast || c == Coll::Reduce ||
             c == Coll::AllGatherV || c == Coll::ReduceScatterV;
    case Algo::Tree: return c == Coll::AllReduce || c == Coll::Broadcast || c == Coll::Reduce;
    case Algo::HalvingDoubling: return c == Coll::AllReduce || c == Coll::ReduceScatter;
    case Algo::RecursiveDoubling: return c == Coll::AllReduce || c == Coll::AllGather;
    case Algo::Bruck: return c == Coll::AllGather || c == Coll::AlltoAll;
    case Algo::Pairwise: return c == Coll::AlltoAll || c == Coll::AlltoAllV;
    case Algo::Direct: return c < Coll::kCount;
    case Algo::Hierarchical: return c == Coll::AllReduce;
    case Algo::Weighted: return c == Coll::AllReduce;
    case Algo::kCount: break;
  }
  return false;
}

std::string algosServing(Coll coll) {
  std::string out;
  for (int i = 0; i < static_cast<int>(Algo::kCount); ++i)
    if (algoServes(static_cast<Algo>(i), coll)) out += std::string(out.empty() ? "" : ", ") + kAlgoNames[i];
  return out;
}

size_t inputElems(const CollArgs& a, int rank) {
  size_t p = static_cast<size_t>(a.nranks), n = a.count;
  switch (a.coll) {
    case Coll::AllReduce:
    case Coll::Reduce:
    case Coll::AllGather:
    case Coll::Gather: return n;
    case Coll::Broadcast: return rank == a.root ? n : 0;
    case Coll::ReduceScatter:
    case Coll::AlltoAll: return p * n;
    case Coll::Scatter: return rank == a.root ? p * n : 0;
    case Coll::AllGatherV: return static_cast<size_t>(rank) < a.counts.size() ? a.counts[rank] : 0;
    case Coll::ReduceScatterV: return maxEnd(a.counts, a.displs);
    case Coll::AlltoAllV: return maxEnd(a.sendCounts, a.sendDispls);
    case Coll::kCount: break;
  }
  return 0;
}

size_t outputElems(const CollArgs& a, int rank) {
  size_t p = static_cast<size_t>(a.nranks), n = a.count;
  switch (a.coll) {
    case Coll::AllReduce:
    case Coll::Broadcast:
    case Coll::ReduceScatter:
    case Coll::Scatter: return n;
    case Coll::Reduce: return rank == a.root ? n : 0;
    case Coll::AllGather:
    case Coll::AlltoAll: return p * n;
    case Coll::Gather: return rank == a.root ? p * n : 0;
    case Coll::AllGatherV: return maxEnd(a.counts, a.displs);
    case Coll::ReduceScatterV: return static_cast<size_t>(rank) < a.counts.size() ? a.counts[rank] : 0;
    case Coll::AlltoAllV: return maxEnd(a.recvCounts, a.recvDispls);
    case Coll::kCount: break;
  }
  return 0;
}

bool inPlaceAlias(const CollArgs& a, int rank, bool* outputInsideInput, size_t* offset) {
  *outputInsideInput = false;
  *offset = 0;
  if (!a.inPlace) return false;
  size_t n = a.count;
  switch (a.coll) {
    case Coll::AllReduce: return true;
    case Coll::Broadcast:
    case Coll::Reduce: return rank == a.root;
    case Coll::AllGather: *offset = rank * n; return true;
    case Coll::Gather:
      if (rank != a.root) return false;
      *offset = rank * n;
      return true;
    case Coll::ReduceScatter:
      *outputInsideInput = true;
      *offset = rank * n;
      return true;
    case Coll::Scatter:
      if (rank != a.root) return false;
      *outputInsideInput = true;
      *offset = rank * n;
      return true;
    case Coll::AllGatherV: *offset = a.displs[rank]; return true;
    case Coll::ReduceScatterV:
      *outputInsideInput = true;
      *offset = a.displs[rank];
      return true;
    case Coll::AlltoAll:
    case Coll::AlltoAllV:
    case Coll::kCount: break;
  }
  return false;
}

RankSchedule buildSchedule(Algo algo, const CollArgs& args) {
  if (!algoServes(algo, args.coll))
    CHORUS_THROW(chorusInvalidArgument, "algorithm '%s' cannot run %s; algorithms for %s: %s", algoName(algo), collName(args.coll),
                 collName(args.coll), algosServing(args.coll).c_str());
  CHORUS_ASSERT(args.nranks >= 1 && args.rank >= 0 && args.rank < args.nranks);
  RankSchedule s;
  switch (algo) {
    case Algo::Ring: s = buildRing(args); break;
    case Algo::Tree: s = buildTree(args); break;
    case Algo::HalvingDoubling: s = buildHalvingDoubling(args); break;
    case Algo::RecursiveDoubling: s = buildRecursiveDoubling(args); break;
    case Algo::Bruck: s = buildBruck(args); break;
    case Algo::Pairwise: s = buildPairwise(args); break;
    case Algo::Direct: s = buildDirect(args); break;
    case Algo::Hierarchical: s = buildHierarchical(args); break;
    case Algo::Weighted: s = buildWeighted(args); break;
    case Algo::kCount: break;
  }
  s.algorithm = algoName(algo);
  s.rank = args.rank;
  s.nranks = args.nranks;
  return s;
}

Slices::Slices(size_t count, size_t elemSize, size_t sliceBytes) : count_(count) {
  size_t align = std::max<size_t>(1, 64 / std::max<size_t>(1, elemSize));
  size_t want = std::max(align, sliceBytes / std::max<size_t>(1, elemSize) / align * align);
  num_ = std::max<size_t>(1, (count + want - 1) / want);
  per_ = ((count + num_ - 1) / num_ + align - 1) / align * align;
  if (per_ == 0) per_ = 1;
}

size_t Slices::offset(size_t j) const { return std::min(count_, j * per_); }
size_t Slices::size(size_t j) const { return std::min(count_, offset(j) + per_) - offset(j); }

}  // namespace chorus

namespace chorus {

RankLayout flatLayout(int nranks) {
  RankLayout l;
  l.hosts.assign(1, {});
  for (int r = 0; r < nranks; ++r) {
    l.hosts[0].push_back(r);
    l.hostOf.push_back(0);
    l.ringOrder.push_back(r);
    l.weight.push_back(1.0 / nranks);
  }
  return l;
}

void checkLayout(const RankLayout& l, int nranks) {
  size_t p = static_cast<size_t>(nranks);
  CHORUS_CHECK_ARG(l.hostOf.size() == p && l.ringOrder.size() == p && l.weight.size() == p,
                   "rank layout has %zu host entries, %zu ring positions and %zu weights for %d ranks", l.hostOf.size(),
                   l.ringOrder.size(), l.weight.size(), nranks);
  std::vector<int> seenHost(p, 0), seenRing(p, 0);
  for (size_t h = 0; h < l.hosts.size(); ++h) {
    CHORUS_CHECK_ARG(!l.hosts[h].empty(), "rank layout: host %zu has no ranks", h);
    for (int r : l.hosts[h]) {
      CHORUS_CHECK_ARG(r >= 0 && r < nranks && !seenHost[r]++, "rank layout: host %zu lists rank %d, out of range or twice", h, r);
      CHORUS_CHECK_ARG(l.hostOf[r] == static_cast<int>(h), "rank layout: rank %d is listed by host %zu but hostOf says %d", r, h,
                       l.hostOf[r]);
    }
  }
  double sum = 0;
  for (size_t i = 0; i < p; ++i) {
    CHORUS_CHECK_ARG(seenHost[i], "rank layout: rank %zu is on no host", i);
    int r = l.ringOrder[i];
    CHORUS_CHECK_ARG(r >= 0 && r < nranks && !seenRing[r]++, "rank layout: ring order is not a permutation (position %zu: %d)", i, r);
    CHORUS_CHECK_ARG(l.weight[i] >= 0, "rank layout: rank %zu has a negative weight", i);
    sum += l.weight[i];
  }
  CHORUS_CHECK_ARG(p == 0 || (sum > 0.999 && sum < 1.001), "rank layout: weights sum to %g, not 1", sum);
}

const RankLayout& layoutOf(const CollArgs& args, RankLayout* storage) {
  if (args.layout) return *args.layout;
  *storage = flatLayout(args.nranks);
  return *storage;
}

}  // namespace chorus

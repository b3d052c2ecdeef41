// The topology-aware schedules (collectives/ring.cpp's ring order, hierarchical.cpp,
// weighted.cpp) over many rank layouts, checked by the symbolic verifier (collectives/verifier.h):
// flat groups of 1-16 ranks, 2 hosts x 2, 3 hosts of 3/1/2 ranks interleaved by number, 4 x 2,
// 8 x 1, 16 hosts of mixed sizes (64 ranks) with shuffled numbers, weights uneven, zero and
// dominant; counts 0, 1, primes and several slices; in place and average. Then the shapes the
// headers claim (ring neighbours, which peers talk across hosts and how much, the weighted
// blocks), identical bits on every rank in a numeric run, invalid layouts, and mutations of
// built hierarchical schedules that the verifier must catch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "collectives/collective.h"
#include "collectives/families.h"
#include "collectives/verifier.h"
#include "base/error.h"

namespace chorus {
namespace {

using Layout = std::shared_ptr<const RankLayout>;

// A layout from host lists (local order); ring order: the hosts one after another unless
// given; weights: equal unless given (normalized here).
Layout makeLayout(const std::vector<std::vector<int>>& hosts, std::vector<int> ring = {}, std::vector<double> weight = {}) {
  auto l = std::make_shared<RankLayout>();
  l->hosts = hosts;
  size_t p = 0;
  for (const auto& h : hosts) p += h.size();
  l->hostOf.assign(p, -1);
  for (size_t h = 0; h < hosts.size(); ++h)
    for (int r : hosts[h]) {
      l->hostOf[r] = static_cast<int>(h);
      l->ringOrder.push_back(r);
    }
  if (!ring.empty()) l->ringOrder = ring;
  if (weight.empty()) weight.assign(p, 1.0);
  double sum = 0;
  for (double w : weight) sum += w;
  for (double w : weight) l->weight.push_back(w / sum);
  return l;
}

// Hosts of the given sizes; rank numbers dealt round-robin over the hosts that still have room
// (sizes 3/1/2 give {0,3,5} {1} {2,4}), or shuffled when `seed` is non-zero.
std::vector<std::vector<int>> hostsOfSizes(const std::vector<int>& sizes, unsigned seed = 0) {
  std::vector<std::vector<int>> hosts(sizes.size());
  int p = 0;
  for (int s : sizes) p += s;
  std::vector<int> ranks(p);
  for (int r = 0; r < p; ++r) ranks[r] = r;
  if (seed) std::shuffle(ranks.begin(), ranks.end(), std::mt19937(seed));
  size_t next = 0;
  for (int dealt = 0; dealt < p;)
    for (size_t h = 0; h < sizes.size(); ++h)
      if (static_cast<int>(hosts[h].size()) < sizes[h]) {
        hosts[h].push_back(ranks[next++]);
        ++dealt;
      }
  return hosts;
}

struct NamedLayout {
  std::string name;
  int p;
  Layout layout;  // null: flat
};

const std::vector<int> kMixed16 = {4, 1, 7, 2, 5, 3, 6, 1, 4, 2, 8, 3, 5, 1, 6, 6};  // 64 ranks

// The multi-host layouts every family runs on (weights uneven: a zero, one dominant rank).
std::vector<NamedLayout> hostLayouts() {
  std::vector<NamedLayout> out;
  auto add = [&](const std::string& name, const std::vector<std::vector<int>>& hosts, std::vector<double> w = {}) {
    Layout l = makeLayout(hosts, {}, std::move(w));
    out.push_back({name, static_cast<int>(l->hostOf.size()), l});
  };
  add("2x2", {{0, 1}, {2, 3}}, {0.4, 0.4, 0.1, 0.1});
  add("3/1/2 interleaved", hostsOfSizes({3, 1, 2}), {0.3, 0, 0.1, 0.2, 0.1, 0.3});
  add("4x2", {{0, 1}, {2, 3}, {4, 5}, {6, 7}}, {1, 1, 1, 1, 2, 2, 0, 0});
  add("8x1", {{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}}, {10, 1, 1, 1, 1, 1, 1, 1});
  add("1+5", {{3}, {0, 1, 2, 4, 5}});
  add("one host, scrambled local order", {{3, 0, 2, 1}}, {0, 0, 1, 0});
  std::vector<double> w64(64);
  for (int r = 0; r < 64; ++r) w64[r] = r % 5 == 0 ? 0 : 1 + (r * 7) % 4;
  add("16 mixed hosts", hostsOfSizes(kMixed16, 5), w64);
  return out;
}

std::vector<NamedLayout> allLayouts() {
  std::vector<NamedLayout> out;
  for (int p = 1; p <= 16; ++p) out.push_back({"flat", p, nullptr});
  for (NamedLayout& l : hostLayouts()) out.push_back(l);
  return out;
}

CollArgs argsFor(Coll coll, const NamedLayout& l, size_t count, size_t elemSize, bool inPlace, bool average) {
  CollArgs a;
  a.coll = coll;
  a.nranks = l.p;
  a.count = count;
  a.elemSize = elemSize;
  a.sliceBytes = 64;  // several slices from a few hundred bytes on
  a.inPlace = inPlace;
  a.average = average;
  a.layout = l.layout;
  return a;
}

int hostsOf(const NamedLayout& l) {
  return l.layout ? static_cast<int>(l.layout->hosts.size()) : 1;
}
int maxHostSize(const NamedLayout& l) {
  size_t k = l.layout ? 1 : static_cast<size_t>(l.p);
  if (l.layout)
    for (const auto& h : l.layout->hosts) k = std::max(k, h.size());
  return static_cast<int>(k);
}

// Counts for one layout: 0, 1, 2, primes, and one that gives every hierarchical sub-chunk about
// three 64-byte slices.
std::vector<size_t> countsFor(const NamedLayout& l, size_t elemSize) {
  size_t several = static_cast<size_t>(maxHostSize(l)) * hostsOf(l) * 3 * (64 / elemSize) + 5;
  return {0, 1, 2, 13, 97, several};
}

std::string caseText(Algo algo, const CollArgs& a, const std::string& layout) {
  return format("%s %s on %s (p=%d) count=%zu elemSize=%zu%s%s root=%d", algoName(algo), collName(a.coll), layout.c_str(),
                a.nranks, a.count, a.elemSize, a.inPlace ? " in-place" : "", a.average ? " avg" : "", a.root);
}

// Every layout x count x (in place, average), element sizes rotating.
void verifyOverLayouts(Algo algo, const std::vector<NamedLayout>& layouts) {
  int failures = 0, cases = 0, variant = 0;
  for (const NamedLayout& l : layouts)
    for (size_t ci = 0; ci < 6; ++ci)
      for (bool inPlace : {false, true})
        for (bool average : {false, true}) {
          const size_t elemSize = size_t{1} << (variant++ % 4);
          CollArgs a = argsFor(Coll::AllReduce, l, countsFor(l, elemSize)[ci], elemSize, inPlace, average);
          ++cases;
          VerifyResult v = verifyAlgorithm(algo, a);
          if (!v.ok && ++failures <= 5) ADD_FAILURE() << caseText(algo, a, l.name) << ": " << v.error;
        }
  EXPECT_EQ(failures, 0) << "of " << cases << " cases";
}

// ---- ring order --------------------------------------------------------------------------------

// Ring orders that are not the identity: reversed, the host-contiguous order of an interleaved
// layout, and shuffles.
std::vector<NamedLayout> permutedRings() {
  std::vector<NamedLayout> out;
  auto add = [&](const std::string& name, int p, std::vector<int> ring) {
    std::vector<int> all(p);
    for (int r = 0; r < p; ++r) all[r] = r;
    out.push_back({name, p, makeLayout({all}, std::move(ring))});
  };
  add("reversed", 5, {4, 3, 2, 1, 0});
  add("two ranks swapped", 2, {1, 0});
  std::mt19937 rng(3);
  for (int p : {3, 7, 9, 16}) {
    std::vector<int> ring(p);
    for (int r = 0; r < p; ++r) ring[r] = r;
    std::shuffle(ring.begin(), ring.end(), rng);
    add("shuffled", p, ring);
  }
  for (const NamedLayout& l : hostLayouts())
    if (l.name == "3/1/2 interleaved" || l.name == "16 mixed hosts") out.push_back(l);
  return out;
}

TEST(TopologyRing, EveryRingCollectiveVerifiesOnPermutedRingOrders) {
  int failures = 0;
  for (const NamedLayout& l : permutedRings())
    for (Coll coll : {Coll::AllReduce, Coll::Broadcast, Coll::Reduce, Coll::AllGather, Coll::ReduceScatter, Coll::AllGatherV,
                      Coll::ReduceScatterV})
      for (size_t count : {size_t{0}, size_t{1}, size_t{13}, size_t{40} * l.p + 3})
        for (int root : {0, l.p / 2, l.p - 1})
          for (bool inPlace : {false, true}) {
            const bool rooted = coll == Coll::Broadcast || coll == Coll::Reduce;
            if (!rooted && root) continue;
            CollArgs a = argsFor(coll, l, count, 4, inPlace, isReduction(coll) && inPlace);
            a.root = root;
            if (coll == Coll::AllGatherV || coll == Coll::ReduceScatterV) {
              size_t at = 0;
              for (int q = 0; q < l.p; ++q) {  // irregular, some empty, with gaps
                a.counts.push_back(q % 3 == 1 ? 0 : (count * (q + 1)) % 29);
                a.displs.push_back(at);
                at += a.counts.back() + q % 2;
              }
            }
            if (coll != Coll::AllReduce && coll != Coll::Broadcast && coll != Coll::Reduce) a.count = count % 50;
            VerifyResult v = verifyAlgorithm(Algo::Ring, a);
            if (!v.ok && ++failures <= 5) ADD_FAILURE() << caseText(Algo::Ring, a, l.name) << ": " << v.error;
          }
  EXPECT_EQ(failures, 0);
}

TEST(TopologyRing, MessagesGoOnlyToTheRingOrderNeighbours) {
  for (const NamedLayout& l : permutedRings()) {
    const std::vector<int>& ring = l.layout->ringOrder;
    for (Coll coll : {Coll::AllReduce, Coll::Broadcast, Coll::Reduce, Coll::AllGather, Coll::ReduceScatter}) {
      CollArgs a = argsFor(coll, l, 1000, 4, false, false);
      a.root = l.p - 1;
      for (int v = 0; v < l.p; ++v) {
        a.rank = ring[v];
        const int left = ring[(v + l.p - 1) % l.p], right = ring[(v + 1) % l.p];
        for (const Step& st : buildSchedule(Algo::Ring, a).steps) {
          if (st.kind == StepKind::Send) EXPECT_EQ(st.peer, right) << l.name << " " << collName(coll) << " rank " << a.rank;
          if (st.kind == StepKind::Recv || st.kind == StepKind::RecvReduce)
            EXPECT_EQ(st.peer, left) << l.name << " " << collName(coll) << " rank " << a.rank;
        }
      }
    }
  }
}

TEST(TopologyRing, TheIdentityRingOrderBuildsTheSameScheduleAsNoLayout) {
  for (int p : {2, 5, 8}) {
    NamedLayout flat{"flat", p, nullptr}, identity{"identity", p, makeLayout({hostsOfSizes({p})})};
    for (Coll coll : {Coll::AllReduce, Coll::Broadcast, Coll::Reduce, Coll::AllGather, Coll::ReduceScatter})
      for (int r = 0; r < p; ++r) {
        CollArgs a = argsFor(coll, flat, 333, 4, false, false), b = argsFor(coll, identity, 333, 4, false, false);
        a.rank = b.rank = r;
        a.root = b.root = p / 2;
        EXPECT_EQ(buildSchedule(Algo::Ring, a).describe(), buildSchedule(Algo::Ring, b).describe()) << collName(coll) << " " << r;
      }
  }
}

// ---- hierarchical and weighted: verified over every layout ----------------------------------

TEST(TopologyHierarchical, VerifiesOnEveryLayout) {
  verifyOverLayouts(Algo::Hierarchical, allLayouts());
}

TEST(TopologyWeighted, VerifiesOnEveryLayout) {
  verifyOverLayouts(Algo::Weighted, allLayouts());
}

TEST(TopologyHierarchical, VerifiesAcrossHundredsOfHosts) {
  // 128 hosts of 1-3 ranks (256 ranks, numbers shuffled), three rounds of slices, in place with
  // an average: 2(H-1) = 254 hops per piece across hosts.
  std::vector<int> sizes;
  for (int h = 0; h < 128; ++h) sizes.push_back(1 + (h * 7) % 3);
  NamedLayout l{"128 hosts", 0, makeLayout(hostsOfSizes(sizes, 17))};
  l.p = static_cast<int>(l.layout->hostOf.size());
  CollArgs a = argsFor(Coll::AllReduce, l, 3 * 128 * 16 + 7, 8, true, true);
  VerifyResult v = verifyAlgorithm(Algo::Hierarchical, a);
  EXPECT_TRUE(v.ok) << v.error;
}

// ---- the shapes the headers claim ----------------------------------------------------------

struct Traffic {
  size_t sent = 0, received = 0, sends = 0;
  std::vector<int> peers;
};

Traffic trafficOf(const RankSchedule& s) {
  Traffic t;
  t.peers = s.peers();
  for (const Step& st : s.steps) {
    if (st.kind == StepKind::Send) {
      t.sent += st.src.count;
      ++t.sends;
    }
    if (st.kind == StepKind::Recv || st.kind == StepKind::RecvReduce) t.received += st.dst.count;
  }
  return t;
}

TEST(TopologyHierarchical, HostsExchangeTheRingOptimumBetweenSameLocalRankPeers) {
  // 4 hosts x 2 ranks: every rank owns one of K = 2 chunks; across hosts it talks only to the
  // same local rank of the previous and next host, and each host's link carries 2(H-1)/H n
  // each way. Inside the host each rank sends (L-1)/L n each way per phase.
  const NamedLayout l{"4x2", 8, makeLayout({{0, 1}, {2, 3}, {4, 5}, {6, 7}})};
  const size_t n = 2 * 4 * 16 * 5;  // K x H sub-chunks of 5 x 16 floats
  CollArgs a = argsFor(Coll::AllReduce, l, n, 4, false, false);
  a.sliceBytes = 1 << 20;
  std::vector<size_t> offHostSent(4, 0), offHostReceived(4, 0);
  for (int r = 0; r < 8; ++r) {
    a.rank = r;
    const int h = r / 2, local = r % 2;
    RankSchedule s = buildSchedule(Algo::Hierarchical, a);
    size_t onHostSent = 0;
    for (const Step& st : s.steps) {
      if (st.peer < 0) continue;
      const bool send = st.kind == StepKind::Send;
      const size_t elems = send ? st.src.count : st.dst.count;
      if (st.peer / 2 == h) {
        EXPECT_EQ(st.peer, 2 * h + 1 - local);
        if (send) onHostSent += elems;
        continue;
      }
      EXPECT_EQ(st.peer % 2, local) << "rank " << r << " talks to rank " << st.peer << " across hosts";
      EXPECT_TRUE(st.peer / 2 == (h + 1) % 4 || st.peer / 2 == (h + 3) % 4) << r << " -> " << st.peer;
      (send ? offHostSent : offHostReceived)[h] += elems;
    }
    EXPECT_EQ(onHostSent, n / 2 + n / 2) << "rank " << r << ": (L-1)/L n in each intra-host phase";
  }
  for (int h = 0; h < 4; ++h) {
    EXPECT_EQ(offHostSent[h], 2 * 3 * n / 4) << "host " << h;
    EXPECT_EQ(offHostReceived[h], 2 * 3 * n / 4) << "host " << h;
  }
}

TEST(TopologyHierarchical, OneHostIsARingAndOneRankPerHostIsARingOverHosts) {
  // Both degenerate layouts send 2(p-1) messages of n/p per rank, as the ring all-reduce does.
  for (const NamedLayout& l :
       {NamedLayout{"one host", 5, nullptr}, NamedLayout{"5x1", 5, makeLayout({{0}, {1}, {2}, {3}, {4}})}}) {
    const size_t n = 5 * 16 * 3;
    CollArgs a = argsFor(Coll::AllReduce, l, n, 4, false, false);
    a.sliceBytes = 1 << 20;
    for (int r = 0; r < 5; ++r) {
      a.rank = r;
      Traffic t = trafficOf(buildSchedule(Algo::Hierarchical, a));
      EXPECT_EQ(t.sends, 8u) << l.name << " rank " << r;
      EXPECT_EQ(t.sent, 8 * n / 5) << l.name << " rank " << r;
      EXPECT_EQ(t.received, 8 * n / 5) << l.name << " rank " << r;
      EXPECT_EQ(t.peers.size(), 2u) << l.name << " rank " << r;
    }
  }
}

TEST(TopologyHierarchical, SmallSubChunksShareIntraHostMessages) {
  // 16 hosts, K = 8 chunks of 1024 floats, each cut into 16 sub-chunks of 64 floats; inside a
  // host the pieces of a chunk that lie together travel as one message of up to a slice (4 KiB
  // here, the whole chunk), so a rank of the 8-rank host sends one message per chunk and phase
  // (14 in all) instead of one per sub-chunk (224).
  const NamedLayout l = hostLayouts().back();
  CollArgs a = argsFor(Coll::AllReduce, l, 8 * 16 * 32 * 2, 4, false, false);
  a.sliceBytes = 4096;
  const std::vector<int>& big = l.layout->hosts[10];  // 8 ranks
  ASSERT_EQ(big.size(), 8u);
  a.rank = big[3];
  size_t intra = 0;
  for (const Step& st : buildSchedule(Algo::Hierarchical, a).steps)
    if (st.kind == StepKind::Send && l.layout->hostOf[st.peer] == 10) ++intra;
  EXPECT_EQ(intra, 2u * 7);
  EXPECT_TRUE(verifyAlgorithm(Algo::Hierarchical, a).ok);
}

// The weighted all-reduce across hosts as the schedules show it: host h (total weight W_h)
// reduces its parts of every chunk and its link carries n [1 + (H-2) W_h] each way (the parts
// are rounded to 64-byte units per chunk, so within a unit per chunk of that); a host of
// weight 0 reduces nothing from other hosts.
TEST(TopologyWeighted, HostLinksCarryWhatTheHeaderSays) {
  for (const NamedLayout& l : hostLayouts()) {
    const int H = static_cast<int>(l.layout->hosts.size());
    if (H < 2) continue;
    size_t K = 1;
    for (const auto& h : l.layout->hosts) K = std::max(K, h.size());
    for (size_t elemSize : {size_t{1}, size_t{4}, size_t{8}}) {
      const size_t n = 10007, unit = std::max<size_t>(1, 64 / elemSize);
      CollArgs a = argsFor(Coll::AllReduce, l, n, elemSize, false, false);
      a.sliceBytes = 4096;
      std::vector<size_t> out(H, 0), in(H, 0), reducedFromOthers(H, 0);
      for (int r = 0; r < l.p; ++r) {
        a.rank = r;
        const int h = l.layout->hostOf[r];
        for (const Step& st : buildSchedule(Algo::Weighted, a).steps) {
          if (st.peer < 0 || l.layout->hostOf[st.peer] == h) continue;
          if (st.kind == StepKind::Send) out[h] += st.src.count;
          if (st.kind == StepKind::Recv || st.kind == StepKind::RecvReduce) in[h] += st.dst.count;
          if (st.kind == StepKind::RecvReduce) reducedFromOthers[h] += st.dst.count;
        }
      }
      for (int h = 0; h < H; ++h) {
        double W = 0;
        for (int r : l.layout->hosts[h]) W += l.layout->weight[r];
        const double expect = n * (1 + (H - 2) * W);
        EXPECT_EQ(out[h], in[h]) << l.name << " host " << h;
        EXPECT_LE(std::fabs(out[h] - expect), double(H) * K * unit) << l.name << " host " << h << " elemSize " << elemSize;
        if (W == 0) EXPECT_EQ(reducedFromOthers[h], 0u) << l.name << " host " << h;
      }
    }
  }
}

TEST(TopologyWeighted, AllTheWeightOnOneHost) {
  // Host {2, 3} owns every part across hosts: host {0, 1} only sends its host sum and receives
  // the result, and it still crosses its link once each way (n), the floor of any algorithm.
  NamedLayout l{"dominant", 4, makeLayout({{0, 1}, {2, 3}}, {}, {0, 0, 1, 0})};
  const size_t n = 160;
  CollArgs a = argsFor(Coll::AllReduce, l, n, 4, true, true);
  a.sliceBytes = 4096;
  EXPECT_TRUE(verifyAlgorithm(Algo::Weighted, a).ok);
  size_t out0 = 0, reduced0 = 0, reduced1 = 0;
  for (int r = 0; r < 4; ++r) {
    a.rank = r;
    for (const Step& st : buildSchedule(Algo::Weighted, a).steps) {
      if (st.peer < 0 || l.layout->hostOf[st.peer] == l.layout->hostOf[r]) continue;
      if (r < 2 && st.kind == StepKind::Send) out0 += st.src.count;
      if (st.kind == StepKind::RecvReduce) (r < 2 ? reduced0 : reduced1) += st.dst.count;
    }
  }
  EXPECT_EQ(out0, n);
  EXPECT_EQ(reduced0, 0u);
  EXPECT_EQ(reduced1, n);
}

// weightedSplit: parts in proportion, 64-byte aligned, tiling the range, empty for weight 0.
TEST(TopologyWeighted, SplitFollowsTheWeights) {
  std::vector<size_t> off, size;
  weightedSplit(1000, 16, {1, 0, 3}, &off, &size);
  EXPECT_EQ(off, (std::vector<size_t>{0, 256, 256}));
  EXPECT_EQ(size, (std::vector<size_t>{256, 0, 744}));
  weightedSplit(5, 16, {1, 1}, &off, &size);  // one unit: it goes to whichever rounds up
  EXPECT_EQ(size[0] + size[1], 5u);
  weightedSplit(0, 16, {1, 1}, &off, &size);
  EXPECT_EQ(size, (std::vector<size_t>{0, 0}));
}

// ---- identical bits ------------------------------------------------------------------------

// Runs every rank's schedule on floats in one process: a worklist of steps whose dependencies
// are done; the k-th send from a to b in a's schedule is the k-th receive from a in b's. The
// sums of random floats depend on the order they are added in, so a rank that reduced in its
// own order shows.
std::vector<std::vector<float>> runOnFloats(const std::vector<CollArgs>& args, const std::vector<RankSchedule>& sched,
                                            const std::vector<std::vector<float>>& input) {
  const int p = static_cast<int>(args.size());
  using Message = std::tuple<int, int, uint32_t>;  // from, to, k
  std::vector<std::vector<float>> in = input, out(p), scratch(p);
  std::vector<std::vector<uint32_t>> waiting(p), messageOf(p);
  std::vector<std::vector<std::vector<uint32_t>>> after(p);  // per step: the steps that wait for it
  std::map<Message, std::vector<float>> wire;                // sent, not yet received
  std::map<Message, uint32_t> posted;                        // receives ready before their message
  std::deque<std::pair<int, uint32_t>> ready;
  size_t left = 0;
  for (int r = 0; r < p; ++r) {
    out[r] = args[r].inPlace ? input[r] : std::vector<float>(args[r].count, 0);
    scratch[r].assign(sched[r].scratchElems, 0);
    const RankSchedule& s = sched[r];
    waiting[r].resize(s.steps.size());
    messageOf[r].resize(s.steps.size());
    after[r].resize(s.steps.size());
    std::map<std::pair<int, bool>, uint32_t> perChannel;
    for (uint32_t i = 0; i < s.steps.size(); ++i) {
      const Step& st = s.steps[i];
      if (st.peer >= 0) messageOf[r][i] = perChannel[{st.peer, st.kind == StepKind::Send}]++;
      waiting[r][i] = st.depCount;
      for (uint32_t d = 0; d < st.depCount; ++d) after[r][s.deps[st.depBegin + d]].push_back(i);
      if (!st.depCount) ready.push_back({r, i});
    }
    left += s.steps.size();
  }
  auto at = [&](int r, const Region& g) -> float* {
    if (g.buf == BufferId::Scratch) return scratch[r].data() + g.offset;
    return (g.buf == BufferId::Output || args[r].inPlace ? out[r] : in[r]).data() + g.offset;
  };
  auto finish = [&](int r, uint32_t i) {
    --left;
    for (uint32_t j : after[r][i])
      if (--waiting[r][j] == 0) ready.push_back({r, j});
  };
  auto receive = [&](int r, uint32_t i, const std::vector<float>& msg) {
    const Step& st = sched[r].steps[i];
    EXPECT_EQ(msg.size(), st.dst.count);
    float* dst = at(r, st.dst);
    const float* local = st.kind == StepKind::RecvReduce ? at(r, st.src) : nullptr;
    for (size_t k = 0; k < st.dst.count && k < msg.size(); ++k) dst[k] = local ? local[k] + msg[k] : msg[k];
    finish(r, i);
  };
  while (!ready.empty()) {
    auto [r, i] = ready.front();
    ready.pop_front();
    const Step& st = sched[r].steps[i];
    if (st.kind == StepKind::Send) {
      const Message m{r, st.peer, messageOf[r][i]};
      std::vector<float> data(at(r, st.src), at(r, st.src) + st.src.count);
      finish(r, i);
      auto waiter = posted.find(m);
      if (waiter == posted.end()) {
        wire[m] = std::move(data);
      } else {
        receive(st.peer, waiter->second, data);
        posted.erase(waiter);
      }
    } else if (st.kind == StepKind::Recv || st.kind == StepKind::RecvReduce) {
      const Message m{st.peer, r, messageOf[r][i]};
      auto msg = wire.find(m);
      if (msg == wire.end()) {
        posted[m] = i;
      } else {
        receive(r, i, msg->second);
        wire.erase(msg);
      }
    } else if (st.kind == StepKind::Copy) {
      std::memmove(at(r, st.dst), at(r, st.src), st.dst.count * sizeof(float));
      finish(r, i);
    } else {
      for (size_t k = 0; k < st.dst.count; ++k) at(r, st.dst)[k] /= static_cast<float>(st.divisor);
      finish(r, i);
    }
  }
  EXPECT_EQ(left, 0u) << "steps never ran";
  return out;
}

std::vector<std::vector<float>> randomFloats(int p, size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mantissa(-1, 1);
  std::uniform_int_distribution<int> exponent(-12, 12);
  std::vector<std::vector<float>> v(p, std::vector<float>(n));
  for (auto& x : v)
    for (float& f : x) f = std::ldexp(mantissa(rng), exponent(rng));
  return v;
}

// How many elements differ in bits from rank 0's, over all ranks.
size_t bitDifferences(const std::vector<std::vector<float>>& out) {
  size_t d = 0;
  for (size_t r = 1; r < out.size(); ++r)
    for (size_t k = 0; k < out[0].size(); ++k) d += std::memcmp(&out[r][k], &out[0][k], sizeof(float)) != 0;
  return d;
}

std::vector<RankSchedule> buildAll(Algo algo, const std::vector<CollArgs>& args) {
  std::vector<RankSchedule> s;
  for (const CollArgs& a : args) s.push_back(buildSchedule(algo, a));
  return s;
}

std::vector<CollArgs> perRank(const CollArgs& a) {
  std::vector<CollArgs> v(a.nranks, a);
  for (int r = 0; r < a.nranks; ++r) v[r].rank = r;
  return v;
}

TEST(TopologyNumeric, EveryRankGetsTheSameBits) {
  unsigned seed = 1;
  for (Algo algo : {Algo::Hierarchical, Algo::Weighted, Algo::Ring})
    for (const NamedLayout& l : hostLayouts())
      for (bool inPlace : {false, true}) {
        const size_t n = 1500;
        CollArgs a = argsFor(Coll::AllReduce, l, n, 4, inPlace, !inPlace);
        a.sliceBytes = 256;
        std::vector<CollArgs> args = perRank(a);
        const std::vector<std::vector<float>> input = randomFloats(l.p, n, seed++);
        const std::vector<std::vector<float>> out = runOnFloats(args, buildAll(algo, args), input);
        EXPECT_EQ(bitDifferences(out), 0u) << algoName(algo) << " on " << l.name << (inPlace ? " in place" : "");
        for (size_t k = 0; k < n; k += 97) {
          double sum = 0, magnitude = 0;
          for (int r = 0; r < l.p; ++r) {
            sum += input[r][k];
            magnitude += std::fabs(input[r][k]);
          }
          const double scale = a.average ? l.p : 1;
          EXPECT_NEAR(out[l.p - 1][k], sum / scale, 1e-5 * magnitude / scale)
              << algoName(algo) << " on " << l.name << " element " << k;
        }
      }
}

TEST(TopologyNumeric, TheBitCheckSeesRanksThatSumInTheirOwnOrder) {
  // Control: every rank receives everyone's input and adds it up itself (own, r+1, r+2, ...).
  const int p = 4;
  const size_t n = 200;
  CollArgs a = argsFor(Coll::AllReduce, {"flat", p, nullptr}, n, 4, false, false);
  std::vector<RankSchedule> s(p);
  for (int r = 0; r < p; ++r) {
    for (int k = 1; k < p; ++k) s[r].add({StepKind::Send, (r + k) % p, 1, {BufferId::Input, 0, n}, {}});
    uint32_t last = s[r].add({StepKind::RecvReduce, (r + 1) % p, 1, {BufferId::Input, 0, n}, {BufferId::Output, 0, n}});
    for (int k = 2; k < p; ++k)
      last = s[r].add({StepKind::RecvReduce, (r + k) % p, 1, {BufferId::Output, 0, n}, {BufferId::Output, 0, n}}, {last});
  }
  EXPECT_GT(bitDifferences(runOnFloats(perRank(a), s, randomFloats(p, n, 99))), 0u);
}

// ---- invalid layouts -----------------------------------------------------------------------

TEST(TopologyLayouts, AnInvalidLayoutIsAClearError) {
  struct Broken {
    const char* what;
    const char* message;
    void (*breakIt)(RankLayout&);
  };
  const Broken cases[] = {
      {"ring order repeats a rank", "ring order is not a permutation", [](RankLayout& l) { l.ringOrder[1] = l.ringOrder[0]; }},
      {"a rank on two hosts", "out of range or twice", [](RankLayout& l) { l.hosts[1].push_back(l.hosts[0][0]); }},
      {"hostOf disagrees", "hostOf says", [](RankLayout& l) { l.hostOf[l.hosts[0][0]] = 1; }},
      {"weights do not sum to 1", "weights sum to", [](RankLayout& l) { l.weight[0] += 1; }},
      {"a negative weight", "negative weight", [](RankLayout& l) { l.weight[0] = -l.weight[0]; }},
      {"too few ranks", "for 6 ranks", [](RankLayout& l) { l.weight.pop_back(); }},
  };
  for (const Broken& b : cases) {
    auto l = std::make_shared<RankLayout>(*makeLayout(hostsOfSizes({3, 1, 2})));
    b.breakIt(*l);
    NamedLayout named{"broken", 6, l};
    for (Algo algo : {Algo::Hierarchical, Algo::Weighted}) {
      CollArgs a = argsFor(Coll::AllReduce, named, 100, 4, false, false);
      a.rank = 2;
      try {
        buildSchedule(algo, a);
        ADD_FAILURE() << algoName(algo) << " built a schedule on a layout where " << b.what;
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), chorusInvalidArgument) << e.what();
        EXPECT_NE(std::string(e.what()).find(b.message), std::string::npos) << b.what << ": " << e.what();
      }
      VerifyResult v = verifyAlgorithm(algo, a);
      EXPECT_FALSE(v.ok) << b.what;
      EXPECT_NE(v.error.find(b.message), std::string::npos) << v.error;
    }
  }
}

TEST(TopologyLayouts, TheVerifierWantsOneLayoutOnEveryRank) {
  NamedLayout l{"3/1/2", 6, makeLayout(hostsOfSizes({3, 1, 2}))};
  std::vector<CollArgs> args = perRank(argsFor(Coll::AllReduce, l, 100, 4, false, false));
  std::vector<RankSchedule> s = buildAll(Algo::Hierarchical, args);
  EXPECT_TRUE(verifyCollective(args, s).ok);
  // An equal copy is the same layout; a different ring order on one rank is not.
  args[3].layout = std::make_shared<RankLayout>(*l.layout);
  EXPECT_TRUE(verifyCollective(args, s).ok);
  auto other = std::make_shared<RankLayout>(*l.layout);
  std::swap(other->ringOrder[0], other->ringOrder[1]);
  args[3].layout = other;
  VerifyResult v = verifyCollective(args, s);
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.error.find("rank 3's rank layout differs"), std::string::npos) << v.error;
  // A ring order that is not a permutation fails the ring's build too.
  auto bad = std::make_shared<RankLayout>(*l.layout);
  bad->ringOrder[2] = bad->ringOrder[0];
  CollArgs a = args[0];
  a.layout = bad;
  EXPECT_THROW(buildSchedule(Algo::Ring, a), Error);
}

// ---- mutations the verifier must catch -----------------------------------------------------

// A built hierarchical schedule on the interleaved 3/1/2 layout (several rounds, in place,
// average) verifies; each mutation, applied to the steps it picks on every rank, must not.
using Mutate = std::function<bool(RankSchedule& s, uint32_t i, const RankLayout& l, int r)>;  // true: changed step i
struct Mutation {
  const char* what;
  Mutate apply;
};

bool onHost(const RankLayout& l, int r, int peer) {
  return l.hostOf[r] == l.hostOf[peer];
}

bool dropDeps(Step& st) {
  if (!st.depCount) return false;
  st.depCount = 0;
  return true;
}

// Drops the dependencies of the steps of `kind` with a peer on the same host or on another.
Mutate dropDepsOf(StepKind kind, bool acrossHosts) {
  return [=](RankSchedule& s, uint32_t i, const RankLayout& l, int r) {
    Step& st = s.steps[i];
    return st.kind == kind && onHost(l, r, st.peer) != acrossHosts && dropDeps(st);
  };
}

const std::vector<Mutation> kMutations = {
    {"phase-2 all-gather receives do not wait for the send from the same piece (WAR)", dropDepsOf(StepKind::Recv, true)},
    {"phase-3 receives do not wait for the phase-1 send from the same batch (WAR)", dropDepsOf(StepKind::Recv, false)},
    {"phase-2 reductions do not wait for the host's sum (RAW)", dropDepsOf(StepKind::RecvReduce, true)},
    {"phase-3 sends from the owner do not wait for phase 2 (RAW)",
     [](RankSchedule& s, uint32_t i, const RankLayout& l, int r) {
       Step& st = s.steps[i];
       if (st.kind != StepKind::Send || !onHost(l, r, st.peer) || !st.depCount) return false;
       for (uint32_t d = 0; d < st.depCount; ++d) {  // what it waits for is all phase 2
         const Step& dep = s.steps[s.deps[st.depBegin + d]];
         if (dep.kind != StepKind::Divide && (dep.peer < 0 || onHost(l, r, dep.peer))) return false;
       }
       return dropDeps(st);
     }},
    {"a phase-1 reduction lands one element off",
     [](RankSchedule& s, uint32_t i, const RankLayout& l, int r) {
       Step& st = s.steps[i];
       if (r != 0 || st.kind != StepKind::RecvReduce || !onHost(l, r, st.peer) || st.dst.offset == 0) return false;
       for (uint32_t j = 0; j < i; ++j)  // only the first such step
         if (s.steps[j].kind == StepKind::RecvReduce && onHost(l, r, s.steps[j].peer) && s.steps[j].dst.offset) return false;
       --st.dst.offset;
       --st.src.offset;
       return true;
     }},
    {"the average is not divided",
     [](RankSchedule& s, uint32_t i, const RankLayout&, int) {
       Step& st = s.steps[i];
       if (st.kind != StepKind::Divide) return false;
       st = {StepKind::Copy, -1, 1, st.dst, st.dst, st.depBegin, st.depCount};  // a copy onto itself: nothing
       return true;
     }},
};

TEST(TopologyHierarchical, TheVerifierCatchesEveryMutation) {
  NamedLayout l{"3/1/2 interleaved", 6, makeLayout(hostsOfSizes({3, 1, 2}))};
  CollArgs a = argsFor(Coll::AllReduce, l, 3 * 3 * 3 * 16 + 5, 4, true, true);
  std::vector<CollArgs> args = perRank(a);
  const std::vector<RankSchedule> built = buildAll(Algo::Hierarchical, args);
  VerifyResult ok = verifyCollective(args, built);
  ASSERT_TRUE(ok.ok) << ok.error;
  for (const Mutation& m : kMutations) {
    std::vector<RankSchedule> s = built;
    int changed = 0;
    for (int r = 0; r < l.p; ++r)
      for (uint32_t i = 0; i < s[r].steps.size(); ++i) changed += m.apply(s[r], i, *l.layout, r);
    EXPECT_GT(changed, 0) << m.what << ": nothing to mutate";
    VerifyResult v = verifyCollective(args, s);
    EXPECT_FALSE(v.ok) << "not caught: " << m.what;
  }
}

}  // namespace
}  // namespace chorus

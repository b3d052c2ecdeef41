// The tree family: the shape of the double binary tree (collectives/tree.h) and the claims of
// collectives/tree.cpp's header about its schedules: latency steps (a critical path counted in
// messages), bytes per rank, bounded scratch. The symbolic verification of its schedules (p =
// 1..64, roots, in place, average, counts) shares the ring's matrix: RingAndTreeMatrix in
// test_ring_schedule.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "collectives/collective.h"
#include "collectives/tree.h"

namespace chorus {
namespace {

int floorLog2(int x) {
  int l = 0;
  while ((2 << l) <= x) ++l;
  return l;
}

// Hops from the root to the deepest rank of each tree, and the check that the links of all
// ranks form two trees rooted at `root`.
std::vector<int> checkTrees(int p, int root) {
  std::vector<DoubleTree> all;
  for (int r = 0; r < p; ++r) all.push_back(doubleBinaryTree(p, root, r));
  std::vector<int> depthOf;
  for (int t = 0; t < 2; ++t) {
    for (int r = 0; r < p; ++r) {
      const TreeLinks& l = all[r].tree[t];
      EXPECT_LE(l.numChildren, 2);
      EXPECT_EQ(l.parent < 0, r == root) << "p=" << p << " root=" << root << " tree " << t << " rank " << r;
      if (l.parent >= 0) {
        const TreeLinks& up = all[l.parent].tree[t];
        EXPECT_EQ(std::count(up.child, up.child + up.numChildren, r), 1) << "rank " << r << " is not its parent's child";
      }
      for (int c = 0; c < l.numChildren; ++c) EXPECT_EQ(all[l.child[c]].tree[t].parent, r);
    }
    EXPECT_EQ(all[root].tree[t].numChildren, p > 1 ? 1 : 0) << "the root has one child per tree";
    int deepest = 0;
    for (int r = 0; r < p; ++r) {
      int depth = 0;
      for (int x = r; x != root && x >= 0 && depth < p; x = all[x].tree[t].parent) ++depth;
      EXPECT_LT(depth, p) << "p=" << p << " rank " << r << ": no path to the root";
      deepest = std::max(deepest, depth);
    }
    depthOf.push_back(deepest);
  }
  for (int r = 0; r < p; ++r)
    if (r != root) {
      int interior = (all[r].tree[0].numChildren > 0) + (all[r].tree[1].numChildren > 0);
      EXPECT_LE(interior, 1) << "p=" << p << " rank " << r << " has children in both trees";
      // With p-1 even every rank but the root has children in exactly one tree.
      if ((p - 1) % 2 == 0 && p > 1) EXPECT_EQ(interior, 1) << "p=" << p << " rank " << r;
    }
  return depthOf;
}

TEST(TreeShape, TwoTreesRootedAtTheRootWithLogDepth) {
  for (int p = 1; p <= 130; ++p) {
    for (int root : {0, p / 2, p - 1}) {
      std::vector<int> depth = checkTrees(p, root);
      ASSERT_EQ(depth.size(), 2u);
      int want = p == 1 ? 0 : floorLog2(p - 1) + 1;
      EXPECT_EQ(depth[0], want) << "p=" << p;
      EXPECT_EQ(depth[1], want) << "p=" << p;
    }
  }
  for (int p : {1000, 1024, 1025}) checkTrees(p, 17);
}

TEST(TreeShape, SmallTreesAreTheExpectedOnes) {
  // p = 2: rank 1 is the only child, in both trees.
  DoubleTree t = doubleBinaryTree(2, 0, 1);
  EXPECT_EQ(t.tree[0].parent, 0);
  EXPECT_EQ(t.tree[1].parent, 0);
  // p = 3: chains 0 -> 2 -> 1 and 0 -> 1 -> 2 (the mirror).
  EXPECT_EQ(doubleBinaryTree(3, 0, 1).tree[0].parent, 2);
  EXPECT_EQ(doubleBinaryTree(3, 0, 2).tree[1].parent, 1);
  // Rooted elsewhere, the same shapes shifted.
  EXPECT_EQ(doubleBinaryTree(3, 2, 0).tree[0].parent, 1);
  EXPECT_EQ(doubleBinaryTree(3, 2, 1).tree[1].parent, 0);
}

std::vector<RankSchedule> build(Algo algo, Coll coll, int p, size_t count, int root, size_t sliceBytes = 256 * 1024) {
  std::vector<RankSchedule> out;
  CollArgs a;
  a.coll = coll;
  a.nranks = p;
  a.root = root;
  a.count = count;
  a.sliceBytes = sliceBytes;
  for (a.rank = 0; a.rank < p; ++a.rank) out.push_back(buildSchedule(algo, a));
  return out;
}

// The latency of a set of schedules in messages: every message takes one unit, local work and
// bandwidth are free, a rank posts its messages to a peer in schedule order. The longest chain.
int latencySteps(const std::vector<RankSchedule>& s) {
  const int p = static_cast<int>(s.size());
  std::vector<std::vector<int>> when(p);                     // when[r][i]: the time step i is done; -1 unknown
  std::map<std::pair<int, int>, std::vector<int>> sendDone;  // (from, to) -> done times in order
  std::map<std::pair<int, int>, size_t> recvSeen;
  for (int r = 0; r < p; ++r) when[r].assign(s[r].steps.size(), -1);
  std::vector<size_t> next(p, 0);
  // Steps in schedule order per rank; a receive waits for its matching send's time. Keep
  // sweeping until every rank is through (deadlock-free schedules always get there).
  for (bool moved = true; moved;) {
    moved = false;
    for (int r = 0; r < p; ++r) {
      while (next[r] < s[r].steps.size()) {
        const Step& st = s[r].steps[next[r]];
        int t = 0;
        for (uint32_t d = 0; d < st.depCount; ++d) t = std::max(t, when[r][s[r].deps[st.depBegin + d]]);
        if (st.kind == StepKind::Recv || st.kind == StepKind::RecvReduce) {
          const std::vector<int>& sent = sendDone[{st.peer, r}];
          size_t& k = recvSeen[{st.peer, r}];
          if (k >= sent.size()) break;  // its send is not placed yet
          t = std::max(t, sent[k++] + 1);
        } else if (st.kind == StepKind::Send) {
          std::vector<int>& sent = sendDone[{r, st.peer}];
          if (!sent.empty()) t = std::max(t, sent.back());
          sent.push_back(t);
        }
        when[r][next[r]++] = t;
        moved = true;
      }
    }
  }
  int longest = 0;
  for (int r = 0; r < p; ++r) {
    EXPECT_EQ(next[r], s[r].steps.size()) << "rank " << r << " is stuck";
    for (int t : when[r]) longest = std::max(longest, t);
  }
  return longest;
}

TEST(TreeSchedule, LatencyIsTheTreeDepthNotTheRankCount) {
  for (int p : {2, 3, 4, 5, 8, 13, 33, 64}) {
    const int depth = floorLog2(p - 1) + 1;
    // One slice per tree, so the count is not what sets the time.
    EXPECT_EQ(latencySteps(build(Algo::Tree, Coll::Broadcast, p, 1000, p / 2)), depth) << p;
    EXPECT_EQ(latencySteps(build(Algo::Tree, Coll::Reduce, p, 1000, p - 1)), depth) << p;
    EXPECT_EQ(latencySteps(build(Algo::Tree, Coll::AllReduce, p, 1000, 0)), 2 * depth) << p;
    // The ring's chain, for contrast: p-1 hops.
    EXPECT_EQ(latencySteps(build(Algo::Ring, Coll::Broadcast, p, 1000, p / 2)), p - 1) << p;
  }
}

struct Traffic {
  size_t sent = 0, received = 0;
};

Traffic trafficOf(const RankSchedule& s) {
  Traffic t;
  for (const Step& st : s.steps) {
    if (st.kind == StepKind::Send) t.sent += st.src.count;
    if (st.kind == StepKind::Recv || st.kind == StepKind::RecvReduce) t.received += st.dst.count;
    if (st.peer >= 0) EXPECT_GT(st.kind == StepKind::Send ? st.src.count : st.dst.count, 0u) << "zero-element message";
  }
  return t;
}

TEST(TreeSchedule, BytesPerRankAreAtMostTwiceTheBufferEachWay) {
  // Halves are 64-byte aligned: a rank forwarding one half to two children sends up to 32
  // four-byte elements more than the count.
  constexpr size_t kSlack = 32;
  for (int p : {2, 3, 4, 7, 16, 31}) {
    for (size_t count : {1, 13, 1000, 100000}) {
      const int root = p / 2;
      auto bc = build(Algo::Tree, Coll::Broadcast, p, count, root, 4096);
      auto rd = build(Algo::Tree, Coll::Reduce, p, count, root, 4096);
      auto ar = build(Algo::Tree, Coll::AllReduce, p, count, root, 4096);
      for (int r = 0; r < p; ++r) {
        Traffic b = trafficOf(bc[r]), d = trafficOf(rd[r]), a = trafficOf(ar[r]);
        EXPECT_EQ(b.received, r == root ? 0 : count);
        EXPECT_LE(b.sent, r == root ? count : count + kSlack);
        EXPECT_EQ(d.sent, r == root ? 0 : count);
        EXPECT_LE(d.received, r == root ? count : count + kSlack);
        EXPECT_LE(a.sent, 2 * count + kSlack);
        EXPECT_LE(a.received, 2 * count + kSlack);
        EXPECT_GE(a.sent, count);
      }
      EXPECT_EQ(trafficOf(bc[root]).sent, count);
    }
  }
}

TEST(TreeSchedule, ReduceScratchIsAFewSlicesWhateverTheCount) {
  const size_t sliceBytes = 64 * 1024, sliceElems = sliceBytes / 4;
  auto s = build(Algo::Tree, Coll::Reduce, 9, 1 << 22, 4, sliceBytes);
  for (const RankSchedule& rs : s) {
    EXPECT_LE(rs.scratchElems, 8 * sliceElems);
    // Only ranks that forward partial sums need any; the root reduces into its Output.
    DoubleTree t = doubleBinaryTree(9, 4, rs.rank);
    bool forwards = rs.rank != 4 && (t.tree[0].numChildren || t.tree[1].numChildren);
    EXPECT_EQ(rs.scratchElems > 0, forwards) << rs.rank;
  }
  for (const RankSchedule& rs : build(Algo::Tree, Coll::AllReduce, 9, 1 << 22, 0, sliceBytes)) EXPECT_EQ(rs.scratchElems, 0u);
}

TEST(TreeSchedule, SingleRankAndEmptyCalls) {
  for (Coll c : {Coll::AllReduce, Coll::Broadcast, Coll::Reduce}) {
    auto one = build(Algo::Tree, c, 1, 100, 0);
    ASSERT_EQ(one[0].steps.size(), 1u);
    EXPECT_EQ(one[0].steps[0].kind, StepKind::Copy);
    for (const RankSchedule& rs : build(Algo::Tree, c, 5, 0, 3)) EXPECT_TRUE(rs.steps.empty());
  }
}

}  // namespace
}  // namespace chorus

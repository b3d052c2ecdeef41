// Tree: a double binary tree, pipelined by slices. The latency family for the rooted
// collectives and for mid-size all-reduces: a slice crosses log2 p hops instead of the ring's p.
//
// Cost (p ranks, n elements of s bytes; d = floor(log2(p-1)) + 1 = ceil(log2 p) hops from the
// root to the deepest rank; J = slices per half of the data):
//   broadcast    d + J - 1 steps. The root sends n s (half into each tree); every other rank
//                receives n s and sends at most n s (two children of one half).
//   reduce       d + J - 1 steps; the same bytes in the other direction: the root receives n s,
//                every other rank sends n s and receives at most n s.
//   all-reduce   2d + J - 1 steps: reduce up both trees, broadcast down. A rank with children
//                sends and receives 2 n s, a rank that is a leaf of both trees (there is one
//                when p is even) and the root send and receive n s. That is the ring's
//                2(p-1)/p n s give or take, with log p latency instead of p.
// Each tree carries half the data, so the interior ranks of one tree (which send twice what
// they receive going down) are leaves, sending nothing down, in the other: no rank forwards more
// than n s each way.
//
// The trees. Positions 0..m (m = p-1); position 0 is the root of both trees and has one child,
// the largest power of two T <= m. Below it, tree 0 is the in-order binary tree over 1..m:
// position i with lowest set bit b has children i - b/2 and i + b/2 (where i + b/2 is past m,
// the nearest of i + b/4, i + b/8, ... that is not), so the odd positions are its leaves and
// the even ones interior. Tree 1 renumbers positions so that tree 0's interior positions land on
// odd ones: i -> m+1-i (the mirror) when m is even, i -> i+1 (and m -> 1) when m is odd. Then
// every rank but the root is interior in at most one tree (when m is odd, position m is a leaf
// in both). Rank r sits at position (r - root) mod p, so `root` is the root of both trees; the
// all-reduce uses root 0.
//
// Data: tree 0 carries the first half of the buffer, tree 1 the second, each cut into slices of
// about sliceBytes. Reductions are deterministic: a rank reduces its own input, then its first
// child's partial, then its second's, always in that order, and the all-reduce's sum is made
// once, at the root, then broadcast, so every rank gets identical bits; an average is one
// Divide, at the root, before the result goes down. Partial sums of the reduce go to scratch
// slots on ranks that have no Output; the all-reduce keeps them in Output.
//
// Ordering. Every rank emits its part of one global sequence of events: up(tree, slice) and
// down(tree, slice), with the ups running kDownLag slices ahead of the downs. A pair of ranks
// exchanges at most one message per direction per event, so the per-pair FIFO order agrees on
// both sides, and an event depends only on earlier ones: no deadlock. The lag keeps a rank's
// send queue to its parent (which may also be its child in the other tree) from holding the
// next slice's partial behind a result that is still coming down.
#include "collectives/tree.h"

#include <algorithm>

#include "collectives/families.h"
#include "collectives/ring.h"
#include "base/error.h"

namespace chorus {
namespace {

constexpr size_t kDownLag = 2;

// Links of position `pos` in the tree over positions 0..m described above (positions, not ranks).
TreeLinks bitTree(int pos, int m) {
  TreeLinks t;
  auto addChild = [&t](int c) { t.child[t.numChildren++] = c; };
  if (pos == 0) {
    if (m >= 1) {
      int top = 1;
      while (top * 2 <= m) top *= 2;
      addChild(top);
    }
    return t;
  }
  const int low = pos & -pos;
  // The parent has the next lowest bit (2 * low) unless that node is past m; then it is the one
  // whose right child search (below) skipped past m down to us.
  t.parent = (pos ^ low) | (low << 1);
  if (t.parent > m) t.parent = pos ^ low;
  if (low > 1) {
    addChild(pos - low / 2);
    for (int h = low / 2; h >= 1; h /= 2)
      if (pos + h <= m) {
        addChild(pos + h);
        break;
      }
  }
  return t;
}

// Tree 1's position of tree 0's position i, and back.
int mirrorPos(int i, int m) {
  if (i == 0) return 0;
  return m % 2 == 0 ? m + 1 - i : i % m + 1;
}
int unmirrorPos(int i, int m) {
  if (i == 0) return 0;
  return m % 2 == 0 ? m + 1 - i : (i == 1 ? m : i - 1);
}

Region inputAt(size_t off, size_t n) {
  return {BufferId::Input, off, n};
}
Region outputAt(size_t off, size_t n) {
  return {BufferId::Output, off, n};
}

// Tree 0 carries [0, half), tree 1 the rest; half is 64-byte aligned.
size_t firstHalf(const CollArgs& a) {
  size_t align = std::max<size_t>(1, 64 / std::max<size_t>(1, a.elemSize));
  return std::min(a.count, ((a.count + 1) / 2 + align - 1) / align * align);
}

// The two halves of the data, one per tree, and their slices.
struct TreeData {
  explicit TreeData(const CollArgs& a)
      : base{0, firstHalf(a)},
        slices{Slices(base[1], a.elemSize, a.sliceBytes), Slices(a.count - base[1], a.elemSize, a.sliceBytes)},
        rounds(std::max(slices[0].num(), slices[1].num())) {}
  // Slice j of tree t: offset into the buffer and size (0 when the tree has no slice j).
  size_t offset(int t, size_t j) const { return base[t] + slices[t].offset(j); }
  size_t size(int t, size_t j) const { return j < slices[t].num() ? slices[t].size(j) : 0; }
  size_t base[2];
  Slices slices[2];
  size_t rounds;
};

bool copyOnly(const CollArgs& a, RankSchedule& s) {
  if (a.count == 0) return true;
  if (a.nranks > 1) return false;
  if (!a.inPlace) s.add({StepKind::Copy, -1, 1, inputAt(0, a.count), outputAt(0, a.count)});
  return true;
}

RankSchedule treeAllReduce(const CollArgs& a) {
  RankSchedule s;
  if (copyOnly(a, s)) return s;
  const DoubleTree dt = doubleBinaryTree(a.nranks, 0, a.rank);
  const TreeData data(a);
  // upDone[t][j]: the step after which slice j of tree t is no longer read by the up phase here
  // (the send to the parent) or, at the root, is final in Output.
  std::vector<uint32_t> upDone[2] = {std::vector<uint32_t>(data.rounds, kNoStep), std::vector<uint32_t>(data.rounds, kNoStep)};

  auto up = [&](int t, size_t j) {
    const TreeLinks& l = dt.tree[t];
    const size_t off = data.offset(t, j), n = data.size(t, j);
    if (n == 0) return;
    if (l.numChildren == 0) {
      upDone[t][j] = s.add({StepKind::Send, l.parent, 1, inputAt(off, n), {}});
      return;
    }
    uint32_t sum = recvReduceAll(s, l.child, l.numChildren, inputAt(off, n), outputAt(off, n), kNoStep);
    if (l.parent >= 0) {
      upDone[t][j] = s.add({StepKind::Send, l.parent, 1, outputAt(off, n), {}}, {sum});
    } else {
      upDone[t][j] = a.average ? s.add({StepKind::Divide, -1, a.nranks, {}, outputAt(off, n)}, {sum}) : sum;
    }
  };
  auto down = [&](int t, size_t j) {
    const TreeLinks& l = dt.tree[t];
    const size_t off = data.offset(t, j), n = data.size(t, j);
    if (n == 0) return;
    uint32_t have = upDone[t][j];
    if (l.parent >= 0) {
      // The result lands where the up phase's send reads (Output on an interior rank; Input,
      // which is Output, on a leaf in place): wait for that send (WAR).
      bool overwritesSent = l.numChildren > 0 || a.inPlace;
      have = addStepAfter(s, {StepKind::Recv, l.parent, 1, {}, outputAt(off, n)}, overwritesSent ? upDone[t][j] : kNoStep);
    }
    for (int c = 0; c < l.numChildren; ++c) s.add({StepKind::Send, l.child[c], 1, outputAt(off, n), {}}, {have});
  };
  for (size_t round = 0; round < data.rounds + kDownLag; ++round) {
    if (round < data.rounds)
      for (int t = 0; t < 2; ++t) up(t, round);
    if (round >= kDownLag)
      for (int t = 0; t < 2; ++t) down(t, round - kDownLag);
  }
  return s;
}

RankSchedule treeBroadcast(const CollArgs& a) {
  RankSchedule s;
  const bool isRoot = a.rank == a.root;
  if (isRoot && a.count && !a.inPlace) s.add({StepKind::Copy, -1, 1, inputAt(0, a.count), outputAt(0, a.count)});
  if (a.count == 0 || a.nranks == 1) return s;
  const DoubleTree dt = doubleBinaryTree(a.nranks, a.root, a.rank);
  const TreeData data(a);
  for (size_t j = 0; j < data.rounds; ++j) {
    for (int t = 0; t < 2; ++t) {
      const TreeLinks& l = dt.tree[t];
      const size_t off = data.offset(t, j), n = data.size(t, j);
      if (n == 0) continue;
      // The root sends from Input, so its sends do not wait for the copy.
      Region src = isRoot ? inputAt(off, n) : outputAt(off, n);
      uint32_t have = isRoot ? kNoStep : s.add({StepKind::Recv, l.parent, 1, {}, src});
      for (int c = 0; c < l.numChildren; ++c) addStepAfter(s, {StepKind::Send, l.child[c], 1, src, {}}, have);
    }
  }
  return s;
}

RankSchedule treeReduce(const CollArgs& a) {
  RankSchedule s;
  if (copyOnly(a, s)) return s;
  const DoubleTree dt = doubleBinaryTree(a.nranks, a.root, a.rank);
  const TreeData data(a);
  // A rank other than the root has no Output: the partial sums it forwards go to scratch. It has
  // children in at most one tree.
  size_t uses = 0, slotElems = 0;
  for (int t = 0; t < 2; ++t)
    if (dt.tree[t].parent >= 0 && dt.tree[t].numChildren > 0 && data.size(t, 0) > 0) {
      uses += data.slices[t].num();
      slotElems = std::max(slotElems, data.size(t, 0));
    }
  ScratchSlots slots(slotElems, uses, a.elemSize);
  s.scratchElems = slots.end();
  for (size_t j = 0; j < data.rounds; ++j) {
    for (int t = 0; t < 2; ++t) {
      const TreeLinks& l = dt.tree[t];
      const size_t off = data.offset(t, j), n = data.size(t, j);
      if (n == 0) continue;
      if (l.numChildren == 0) {
        s.add({StepKind::Send, l.parent, 1, inputAt(off, n), {}});
      } else if (l.parent >= 0) {
        reduceAndForward(s, slots, l.child, l.numChildren, inputAt(off, n), l.parent);
      } else {
        uint32_t sum = recvReduceAll(s, l.child, l.numChildren, inputAt(off, n), outputAt(off, n), kNoStep);
        if (a.average) s.add({StepKind::Divide, -1, a.nranks, {}, outputAt(off, n)}, {sum});
      }
    }
  }
  return s;
}

}  // namespace

DoubleTree doubleBinaryTree(int nranks, int root, int rank) {
  CHORUS_ASSERT(nranks >= 1 && root >= 0 && root < nranks && rank >= 0 && rank < nranks);
  const int m = nranks - 1;
  const int pos = ((rank - root) % nranks + nranks) % nranks;
  auto rankOf = [&](int position) { return position < 0 ? -1 : (root + position) % nranks; };
  DoubleTree dt;
  for (int t = 0; t < 2; ++t) {
    TreeLinks l = bitTree(t == 0 ? pos : mirrorPos(pos, m), m);
    auto toRank = [&](int p) { return p < 0 ? -1 : rankOf(t == 0 ? p : unmirrorPos(p, m)); };
    l.parent = toRank(l.parent);
    for (int c = 0; c < l.numChildren; ++c) l.child[c] = toRank(l.child[c]);
    dt.tree[t] = l;
  }
  return dt;
}

RankSchedule buildTree(const CollArgs& args) {
  switch (args.coll) {
    case Coll::AllReduce:
      return treeAllReduce(args);
    case Coll::Broadcast:
      return treeBroadcast(args);
    case Coll::Reduce:
      return treeReduce(args);
    default:
      break;
  }
  CHORUS_THROW(chorusInternalError, "tree: no builder for %s", collName(args.coll));
}

}  // namespace chorus

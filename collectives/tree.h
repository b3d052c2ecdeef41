// The double binary tree of the tree family (collectives/tree.cpp), exposed for tests and for
// anyone who wants to draw it.
#pragma once

namespace chorus {

// One rank's place in one tree: ranks, -1 where there is none.
struct TreeLinks {
  int parent = -1;  // -1 at the root
  int child[2] = {-1, -1};
  int numChildren = 0;
};

// Two binary trees over the same nranks ranks, both rooted at `root`, where the root has one
// child in each and every other rank has children in at most one of them. Rank `rank`'s links
// in tree 0 and tree 1.
struct DoubleTree {
  TreeLinks tree[2];
};
DoubleTree doubleBinaryTree(int nranks, int root, int rank);

}  // namespace chorus

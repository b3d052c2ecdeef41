// Bandwidth-weighted all-reduce: a direct reduce-scatter and all-gather (direct.cpp's
// directAllReduceBlocks) in which rank r owns a block in proportion to its weight
// (RankLayout::weight), so a rank behind a slow link reduces and redistributes less, and the slow
// link does not pace everyone.
//
// Blocks. With U = ceil(n / a) units of a = 64 / elemSize elements (64 bytes; one element when
// elements are larger), prefix sums S_r = w_0 + ... + w_r and W = S_{p-1}, rank r's block ends
// at unit B_r = round(U S_r / W) (B_{p-1} = U exactly) and starts where rank r-1's ends; offsets
// are clipped to n, so only the block holding the last unit is short. Blocks lie in rank order,
// start on 64-byte boundaries, differ from their exact share n w_r / W by less than one unit, sum
// to n, and a weight of 0 gives an empty block. Every rank does the same double arithmetic on the
// same weights in the same order, so every rank computes the same blocks.
//
// Cost (n elements of s bytes, p ranks, rank r's block b_r = n w_r): two latency steps; blocks
// travel in slices of about sliceBytes, so a message count of (p-1) times the slices per rank and
// phase: this is for tens of ranks, not thousands. Rank r sends n - b_r (its Input of every other
// block) + (p-1) b_r (its block, complete, to everyone) = n [1 + (p-2) w_r] elements, and
// receives the same. What crosses host h's link (L_h ranks, weight W_h = the sum of theirs): its
// ranks' Input of the other hosts' blocks, L_h n (1 - W_h), plus their blocks to the p - L_h
// ranks elsewhere, (p - L_h) n W_h: n [L_h + (p - 2 L_h) W_h] s bytes each way, in about
// n [L_h + (p - 2 L_h) W_h] s / B_h on a link of bandwidth B_h. With L_h < p/2 that grows with
// W_h, so a slower link gets a smaller share, and src/topology/weights.cpp solves for the weights
// that give every host the same time: no link finishes last, where equal blocks leave the slow
// link the last by the ratio of the speeds. The slices are what let a link's two halves of the
// work overlap: an owner sends slice j of its finished block to everyone while slice j+1 is
// still arriving, so each direction of a link is busy for the whole call and its time is the
// sum above; sent whole, the all-gather would wait for the whole reduce-scatter, and a link's
// time would be max(reduce-scatter in, out) + max(all-gather in, out), up to twice as long.
//
// Every element is reduced by its block's owner in the order own, rank+1, rank+2, ... and then
// copied, so every rank gets the same bits; an average is divided once, by the owner.
#include <algorithm>
#include <cmath>
#include <vector>

#include "collectives/families.h"
#include "core/error.h"

namespace chorus {

RankSchedule buildWeighted(const CollArgs& args) {
  RankLayout flat;
  const RankLayout& layout = layoutOf(args, &flat);
  checkLayout(layout, args.nranks);
  RankSchedule s;
  if (args.count == 0) return s;
  const int p = args.nranks;
  const size_t align = std::max<size_t>(1, 64 / args.elemSize);
  const size_t units = (args.count + align - 1) / align;
  double total = 0;
  for (double w : layout.weight) total += w;
  std::vector<size_t> offsets(p), sizes(p);
  double prefix = 0;
  size_t begin = 0;  // in units
  for (int r = 0; r < p; ++r) {
    prefix += layout.weight[r];
    size_t end = r == p - 1 ? units : static_cast<size_t>(std::llround(static_cast<double>(units) * (prefix / total)));
    end = std::clamp(end, begin, units);
    offsets[r] = std::min(args.count, begin * align);
    sizes[r] = std::min(args.count, end * align) - offsets[r];
    begin = end;
  }
  directAllReduceBlocks(s, args, offsets, sizes, true);
  return s;
}

}  // namespace chorus

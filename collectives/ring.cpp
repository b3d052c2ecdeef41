// Ring: every rank talks only to its neighbours on a ring, left and right; data flows one way
// round it. The bandwidth family: each link carries every byte once, whatever p.
//
// Which ring: every collective here walks the layout's ring order (CollArgs::layout,
// RankLayout::ringOrder; a null layout is the identity ring 0, 1, ..., p-1). The rank at ring
// position v has left = ringOrder[v-1] and right = ringOrder[v+1] (positions mod p), and below,
// "rank r", "r+1", "root+1" mean ring positions, except that block c of a blocked collective
// always belongs to rank number c (it travels the ring from wherever that rank sits). The
// topology puts each host's ranks next to each other in that order (NUMA-local inside the host),
// so the ring leaves and enters each host once, and a host's link carries what one ring link
// does (2(p-1)/p n s for the all-reduce), however the launcher numbered the ranks.
//
// Cost (p ranks, n elements of s bytes, J slices of about sliceBytes per chunk or block; "steps"
// are latency terms of the alpha-beta model, bytes are per rank):
//   all-reduce        2(p-1) steps per slice round, J rounds; sends and receives 2(p-1)/p n s
//                     (the optimum).
//   reduce-scatter    p-1 steps per slice round, J rounds; sends and receives (p-1) n s
//                     (n: one rank's block).
//   reduce-scatter-v  the same with irregular blocks: a rank sends every block but its own and
//                     receives every block but its left neighbour's (an empty block costs no
//                     message).
//   all-gather        p-1 + J-1 steps (each block streams round the ring); sends and receives
//                     (p-1) n s (n: one rank's block).
//   all-gather-v      p-1 + J-1 steps; a rank sends every block but its right neighbour's and
//                     receives every block but its own.
//   broadcast         p-1 + J-1 steps (a pipelined chain root -> root+1 -> ... -> root-1, in
//                     ring positions); every rank but the root receives n s, every rank but the
//                     chain's end sends n s.
//   reduce            p-1 + J-1 steps (the chain root+1 -> ... -> root-1 -> root); every rank
//                     but root+1 receives n s, every rank but the root sends n s.
// The all-gathers and reduce-scatters move the minimum; the chains move n s per rank like the
// tree family does, with p latency steps where the trees take log2 p.
//
// All-reduce: reduce-scatter, then all-gather. The buffer is cut into p chunks, indexed by ring
// position (chunk c is owned, at the end of the reduce-scatter, by position c-1). Reduce-scatter:
// at step k = 0 position v sends chunk v to its right neighbour; at steps k = 1..p-1 it receives
// chunk v-k from its left neighbour, reduces it with its own input, and (for k < p-1) forwards
// the partial sum. After p-1 steps position v holds chunk v+1 fully reduced. All-gather: it sends
// chunk v+1, then receives chunk v+1-k at step k and forwards it, p-1 steps again. Each chunk is
// cut into slices of about sliceBytes and the schedule is emitted slice round by slice round
// (round j = slice j of every chunk, through all 2(p-1) steps). A step depends only on the step
// before it on the same slice, so the executor keeps several rounds in flight and the data of one
// slice stays cache-sized while it travels. The partial sums live in Output (all-reduce has n
// there).
//
// All-gather(-v) and reduce-scatter(-v) are the halves of that, over the collective's blocks
// (block c belongs to rank c). The all-gather is emitted step by step rather than round by
// round: at step k rank r forwards every slice of one block, so its link to the right streams
// as soon as the first slice arrives. Reduce-scatter block c starts at rank c+1 and ends, fully
// reduced, at rank c; the partial sums in between go to scratch slots (collectives/ring.h),
// since Output holds only the rank's own block, and it is emitted round by round (see there).
//
// Hazards the dependencies cover: a Send starts after the RecvReduce/Recv that produced its
// data (RAW); an all-reduce all-gather Recv into a region waits for the reduce-scatter Send from
// that same region to complete, and a scratch slot is rewritten only after the send of its
// previous partial completed (WAR: with single-copy transports the peer reads our buffer late).
#include "collectives/ring.h"

#include <algorithm>
#include <vector>

#include "collectives/families.h"
#include "base/error.h"

namespace chorus {

uint32_t addStepAfter(RankSchedule& s, const Step& step, uint32_t dep1, uint32_t dep2) {
  if (dep1 == kNoStep) std::swap(dep1, dep2);
  if (dep1 == kNoStep) return s.add(step);
  if (dep2 == kNoStep || dep2 == dep1) return s.add(step, {dep1});
  return s.add(step, {dep1, dep2});
}

RingChunks::RingChunks(size_t count_, int nranks, size_t alignElems) : count(count_) {
  size_t p = static_cast<size_t>(nranks);
  size_t per = (count + p - 1) / p;
  chunkElems = (per + alignElems - 1) / alignElems * alignElems;
  if (chunkElems == 0) chunkElems = 1;
}

size_t RingChunks::offset(int c) const {
  return std::min(count, static_cast<size_t>(c) * chunkElems);
}

size_t RingChunks::size(int c) const {
  return std::min(count, offset(c) + chunkElems) - offset(c);
}

ScratchSlots::ScratchSlots(size_t slotElems, size_t uses, size_t elemSize, size_t base, size_t maxSlots)
    : base_(base), lastSend_(std::min(uses, maxSlots), kNoStep) {
  CHORUS_ASSERT(maxSlots >= 2);
  size_t align = std::max<size_t>(1, 64 / std::max<size_t>(1, elemSize));
  slotElems_ = (slotElems + align - 1) / align * align;
}

Region ScratchSlots::next(size_t count, uint32_t* after) {
  CHORUS_ASSERT(!lastSend_.empty() && count <= slotElems_);
  size_t slot = used_++ % lastSend_.size();
  *after = lastSend_[slot];
  return {BufferId::Scratch, base_ + slot * slotElems_, count};
}

void ScratchSlots::sentBy(uint32_t step) {
  CHORUS_ASSERT(used_ > 0);
  lastSend_[(used_ - 1) % lastSend_.size()] = step;
}

uint32_t recvReduceAll(RankSchedule& s, const int* peers, int n, Region local, Region dst, uint32_t after) {
  CHORUS_ASSERT(n > 0);
  uint32_t last = kNoStep;
  for (int i = 0; i < n; ++i) {
    last = addStepAfter(s, {StepKind::RecvReduce, peers[i], 1, i == 0 ? local : dst, dst}, i == 0 ? after : last);
  }
  return last;
}

uint32_t reduceAndForward(RankSchedule& s, ScratchSlots& slots, const int* peers, int n, Region local, int to) {
  uint32_t after = kNoStep;
  Region partial = slots.next(local.count, &after);
  uint32_t reduced = recvReduceAll(s, peers, n, local, partial, after);
  uint32_t send = s.add({StepKind::Send, to, 1, partial, {}}, {reduced});
  slots.sentBy(send);
  return send;
}

namespace {

Region inputAt(size_t off, size_t n) {
  return {BufferId::Input, off, n};
}
Region outputAt(size_t off, size_t n) {
  return {BufferId::Output, off, n};
}

int wrap(int x, int p) {
  return ((x % p) + p) % p;
}

// The layout's ring order (the identity for a null layout): rank <-> position.
class RingOrder {
 public:
  explicit RingOrder(const CollArgs& a) {
    RankLayout flat;
    order_ = layoutOf(a, &flat).ringOrder;
    const int p = a.nranks;
    CHORUS_CHECK_ARG(order_.size() == static_cast<size_t>(p), "ring order has %zu ranks for a group of %d", order_.size(), p);
    pos_.assign(p, -1);
    for (int v = 0; v < p; ++v) {
      const int r = order_[v];
      CHORUS_CHECK_ARG(r >= 0 && r < p && pos_[r] < 0, "ring order is not a permutation (position %d: %d)", v, r);
      pos_[r] = v;
    }
  }
  int pos(int rank) const { return pos_[rank]; }
  int at(int pos) const { return order_[wrap(pos, static_cast<int>(order_.size()))]; }

 private:
  std::vector<int> order_, pos_;
};

RankSchedule buildRingAllReduce(const CollArgs& prm) {
  RankSchedule s;
  const int p = prm.nranks;
  if (prm.count == 0) return s;
  if (p == 1) {
    if (!prm.inPlace) s.add({StepKind::Copy, -1, 1, inputAt(0, prm.count), outputAt(0, prm.count)});
    return s;
  }
  // Chunks and steps are indexed by ring position (r below); messages go to ranks.
  const RingOrder ring(prm);
  const int r = ring.pos(prm.rank);
  const int left = ring.at(r - 1);
  const int right = ring.at(r + 1);
  const size_t alignElems = std::max<size_t>(1, 64 / prm.elemSize);
  RingChunks chunks(prm.count, p, alignElems);

  // Slices: every chunk is cut the same way; sliceElems is a multiple of alignElems.
  size_t sliceElems = std::max<size_t>(alignElems, prm.sliceBytes / prm.elemSize / alignElems * alignElems);
  size_t rounds = (chunks.chunkElems + sliceElems - 1) / sliceElems;
  // Even out the slices so the last round is not a sliver.
  sliceElems = ((chunks.chunkElems + rounds - 1) / rounds + alignElems - 1) / alignElems * alignElems;

  std::vector<uint32_t> rsSend(p);

  for (size_t j = 0; j < rounds; ++j) {
    auto slice = [&](int c, BufferId buf) {
      size_t begin = std::min(chunks.size(c), j * sliceElems);
      size_t end = std::min(chunks.size(c), begin + sliceElems);
      return Region{buf, chunks.offset(c) + begin, end - begin};
    };
    std::fill(rsSend.begin(), rsSend.end(), kNoStep);

    // Reduce-scatter.
    uint32_t owned = kNoStep;
    if (slice(r, BufferId::Input).count) rsSend[r] = s.add({StepKind::Send, right, 1, slice(r, BufferId::Input), {}});
    for (int k = 1; k < p; ++k) {
      int c = wrap(r - k, p);
      if (!slice(c, BufferId::Output).count) continue;
      uint32_t rr = s.add({StepKind::RecvReduce, left, 1, slice(c, BufferId::Input), slice(c, BufferId::Output)});
      if (k < p - 1) {
        rsSend[c] = s.add({StepKind::Send, right, 1, slice(c, BufferId::Output), {}}, {rr});
      } else {
        owned = rr;
        if (prm.average) owned = s.add({StepKind::Divide, -1, p, {}, slice(c, BufferId::Output)}, {rr});
      }
    }

    // All-gather.
    if (owned != kNoStep) s.add({StepKind::Send, right, 1, slice(wrap(r + 1, p), BufferId::Output), {}}, {owned});
    for (int k = 1; k < p; ++k) {
      int c = wrap(r + 1 - k, p);
      Region dst = slice(c, BufferId::Output);
      if (!dst.count) continue;
      uint32_t rv = addStepAfter(s, {StepKind::Recv, left, 1, {}, dst}, rsSend[c]);
      if (k < p - 1) s.add({StepKind::Send, right, 1, dst, {}}, {rv});
    }
  }
  return s;
}

// Block c of a blocked collective (AllGather(V), ReduceScatter(V)): the part that belongs to
// rank c, at off[c] in the buffer that holds all blocks (Output for the gathers, Input for the
// reduce-scatters).
struct BlockLayout {
  std::vector<size_t> off, size;
};

BlockLayout blocksOf(const CollArgs& a) {
  BlockLayout b;
  if (a.coll == Coll::AllGatherV || a.coll == Coll::ReduceScatterV) {
    CHORUS_ASSERT(a.counts.size() == static_cast<size_t>(a.nranks) && a.displs.size() == a.counts.size());
    b.off = a.displs;
    b.size = a.counts;
    return b;
  }
  for (int c = 0; c < a.nranks; ++c) {
    b.off.push_back(static_cast<size_t>(c) * a.count);
    b.size.push_back(a.count);
  }
  return b;
}

RankSchedule buildRingAllGather(const CollArgs& a) {
  RankSchedule s;
  const int p = a.nranks, r = a.rank;
  const BlockLayout b = blocksOf(a);
  // In place, Input is Output block r already.
  if (!a.inPlace && b.size[r]) s.add({StepKind::Copy, -1, 1, inputAt(0, b.size[r]), outputAt(b.off[r], b.size[r])});
  if (p == 1) return s;
  const RingOrder ring(a);
  const int v = ring.pos(r);
  const int left = ring.at(v - 1), right = ring.at(v + 1);
  // Step k: receive the block of position v-k (k >= 1) and send it on (k <= p-2); step 0 sends
  // our own block from Input, so it does not wait for the copy above.
  for (int k = 0; k < p; ++k) {
    const int c = ring.at(v - k);
    const Slices sl(b.size[c], a.elemSize, a.sliceBytes);
    for (size_t j = 0; j < sl.num(); ++j) {
      const size_t n = sl.size(j);
      if (n == 0) continue;
      if (k == 0) {
        s.add({StepKind::Send, right, 1, inputAt(sl.offset(j), n), {}});
        continue;
      }
      const Region dst = outputAt(b.off[c] + sl.offset(j), n);
      uint32_t rv = s.add({StepKind::Recv, left, 1, {}, dst});
      if (k < p - 1) s.add({StepKind::Send, right, 1, dst, {}}, {rv});
    }
  }
  return s;
}

RankSchedule buildRingReduceScatter(const CollArgs& a) {
  RankSchedule s;
  const int p = a.nranks, r = a.rank;
  const BlockLayout b = blocksOf(a);
  if (p == 1) {
    // In place, Output is Input block 0 already.
    if (!a.inPlace && b.size[0]) s.add({StepKind::Copy, -1, 1, inputAt(b.off[0], b.size[0]), outputAt(0, b.size[0])});
    return s;
  }
  const RingOrder ring(a);
  const int v = ring.pos(r);
  const int left = ring.at(v - 1), right = ring.at(v + 1);
  // Step k handles the block of position v-1-k: k = 0 starts it (our Input block), 0 < k < p-1
  // add our Input to the partial from the left and forward it (through scratch), k = p-1 finishes
  // block r into
  // Output. Emitted round by round (round j: slice j of every step), as the all-reduce: with
  // slots reused in turn, step by step would deadlock (a rank could not take the left's next
  // step-0 slice before its own forwards were taken, queued behind the right's step-0 slices).
  std::vector<Slices> sl;
  size_t rounds = 0, slotElems = 0, uses = 0;
  for (int c = 0; c < p; ++c) {
    sl.emplace_back(b.size[c], a.elemSize, a.sliceBytes);
    if (b.size[c]) rounds = std::max(rounds, sl[c].num());
    if (c != r && c != left && b.size[c]) {
      slotElems = std::max(slotElems, sl[c].size(0));
      uses += sl[c].num();
    }
  }
  ScratchSlots slots(slotElems, uses, a.elemSize);
  s.scratchElems = slots.end();
  for (size_t j = 0; j < rounds; ++j) {
    for (int k = 0; k < p; ++k) {
      const int c = ring.at(v - 1 - k);
      if (j >= sl[c].num() || sl[c].size(j) == 0) continue;
      const size_t n = sl[c].size(j);
      const Region local = inputAt(b.off[c] + sl[c].offset(j), n);
      if (k == 0) {
        s.add({StepKind::Send, right, 1, local, {}});
      } else if (k < p - 1) {
        reduceAndForward(s, slots, &left, 1, local, right);
      } else {
        const Region dst = outputAt(sl[c].offset(j), n);
        uint32_t done = recvReduceAll(s, &left, 1, local, dst, kNoStep);
        if (a.average) s.add({StepKind::Divide, -1, p, {}, dst}, {done});
      }
    }
  }
  return s;
}

// The pipelined chain root -> root+1 -> ... -> root-1: slice j leaves the root while slice j-1
// is one hop further down, so the chain streams.
RankSchedule buildRingBroadcast(const CollArgs& a) {
  RankSchedule s;
  const int p = a.nranks, r = a.rank;
  if (a.count == 0) return s;
  if (r == a.root && !a.inPlace) s.add({StepKind::Copy, -1, 1, inputAt(0, a.count), outputAt(0, a.count)});
  if (p == 1) return s;
  const RingOrder ring(a);
  const int v = ring.pos(r);
  const int pos = wrap(v - ring.pos(a.root), p);  // 0: the root, p-1: the chain's end
  const int prev = ring.at(v - 1), next = ring.at(v + 1);
  const Slices sl(a.count, a.elemSize, a.sliceBytes);
  for (size_t j = 0; j < sl.num(); ++j) {
    const size_t off = sl.offset(j), n = sl.size(j);
    if (pos == 0) {
      s.add({StepKind::Send, next, 1, inputAt(off, n), {}});
      continue;
    }
    uint32_t rv = s.add({StepKind::Recv, prev, 1, {}, outputAt(off, n)});
    if (pos < p - 1) s.add({StepKind::Send, next, 1, outputAt(off, n), {}}, {rv});
  }
  return s;
}

// The chain root+1 -> ... -> root-1 -> root; each rank adds its Input to the partial sum it
// passes on, and the root adds its own last (into Output, the only Output in a reduce).
RankSchedule buildRingReduce(const CollArgs& a) {
  RankSchedule s;
  const int p = a.nranks, r = a.rank;
  if (a.count == 0) return s;
  if (p == 1) {
    if (!a.inPlace) s.add({StepKind::Copy, -1, 1, inputAt(0, a.count), outputAt(0, a.count)});
    return s;
  }
  const RingOrder ring(a);
  const int v = ring.pos(r);
  const int pos = wrap(v - ring.pos(a.root) - 1, p);  // 0: the chain's start, p-1: the root
  const int prev = ring.at(v - 1), next = ring.at(v + 1);
  const Slices sl(a.count, a.elemSize, a.sliceBytes);
  const bool middle = pos > 0 && pos < p - 1;
  ScratchSlots slots(sl.size(0), middle ? sl.num() : 0, a.elemSize);
  s.scratchElems = slots.end();
  for (size_t j = 0; j < sl.num(); ++j) {
    const Region local = inputAt(sl.offset(j), sl.size(j));
    if (pos == 0) {
      s.add({StepKind::Send, next, 1, local, {}});
    } else if (middle) {
      reduceAndForward(s, slots, &prev, 1, local, next);
    } else {
      const Region dst = outputAt(sl.offset(j), sl.size(j));
      uint32_t done = recvReduceAll(s, &prev, 1, local, dst, kNoStep);
      if (a.average) s.add({StepKind::Divide, -1, p, {}, dst}, {done});
    }
  }
  return s;
}

}  // namespace

RankSchedule buildRing(const CollArgs& args) {
  switch (args.coll) {
    case Coll::AllReduce:
      return buildRingAllReduce(args);
    case Coll::AllGather:
    case Coll::AllGatherV:
      return buildRingAllGather(args);
    case Coll::ReduceScatter:
    case Coll::ReduceScatterV:
      return buildRingReduceScatter(args);
    case Coll::Broadcast:
      return buildRingBroadcast(args);
    case Coll::Reduce:
      return buildRingReduce(args);
    default:
      break;
  }
  CHORUS_THROW(chorusInternalError, "ring: no builder for %s", collName(args.coll));
}

}  // namespace chorus

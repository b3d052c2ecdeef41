// Ring all-reduce: reduce-scatter, then all-gather, around the ring r -> r+1.
//
// The buffer of `count` elements is cut into p chunks (chunk c is owned, at the end of the
// reduce-scatter, by rank c-1). Reduce-scatter: at step k = 0 rank r sends chunk r to its right
// neighbour; at steps k = 1..p-1 it receives chunk r-k from its left neighbour, reduces it with
// its own input, and (for k < p-1) forwards the partial sum. After p-1 steps rank r holds chunk
// r+1 fully reduced. All-gather: rank r sends chunk r+1, then receives chunk r+1-k at step k and
// forwards it, p-1 steps again. Each rank sends and receives 2(p-1)/p of the buffer: the
// bandwidth optimum; the cost is 2(p-1) latency steps (the log-step algorithms answer that).
//
// Pipelining: each chunk is cut into slices of about sliceBytes and the schedule is emitted
// slice round by slice round (round j = slice j of every chunk, through all 2(p-1) steps). A
// step depends only on the step before it on the same slice, so the executor keeps several
// rounds in flight and the data of one slice stays cache-sized while it travels.
//
// Hazards the dependencies cover: a Send starts after the RecvReduce/Recv that produced its
// data (RAW); an all-gather Recv into a region waits for the reduce-scatter Send from that same
// region to complete (WAR: with single-copy transports the peer reads our buffer late).
#include "collectives/ring.h"

#include "collectives/families.h"

#include <algorithm>
#include <vector>

#include "core/error.h"

namespace chorus {

RingChunks::RingChunks(size_t count_, int nranks, size_t alignElems) : count(count_) {
  size_t p = static_cast<size_t>(nranks);
  size_t per = (count + p - 1) / p;
  chunkElems = (per + alignElems - 1) / alignElems * alignElems;
  if (chunkElems == 0) chunkElems = 1;
}

size_t RingChunks::offset(int c) const { return std::min(count, static_cast<size_t>(c) * chunkElems); }

size_t RingChunks::size(int c) const { return std::min(count, offset(c) + chunkElems) - offset(c); }

namespace {

RankSchedule buildRingAllReduce(const CollArgs& prm) {
  RankSchedule s;
  s.rank = prm.rank;
  s.nranks = prm.nranks;
  const int p = prm.nranks;
  const int r = prm.rank;
  if (prm.count == 0) return s;
  if (p == 1) {
    if (!prm.inPlace) s.add({StepKind::Copy, -1, 1, {BufferId::Input, 0, prm.count}, {BufferId::Output, 0, prm.count}});
    return s;
  }
  const int left = (r - 1 + p) % p;
  const int right = (r + 1) % p;
  const size_t alignElems = std::max<size_t>(1, 64 / prm.elemSize);
  RingChunks chunks(prm.count, p, alignElems);

  // Slices: every chunk is cut the same way; sliceElems is a multiple of alignElems.
  size_t sliceElems = std::max<size_t>(alignElems, prm.sliceBytes / prm.elemSize / alignElems * alignElems);
  size_t rounds = (chunks.chunkElems + sliceElems - 1) / sliceElems;
  // Even out the slices so the last round is not a sliver.
  sliceElems = ((chunks.chunkElems + rounds - 1) / rounds + alignElems - 1) / alignElems * alignElems;

  auto mod = [p](int x) { return ((x % p) + p) % p; };
  constexpr uint32_t kNone = ~0u;
  std::vector<uint32_t> rsSend(p);

  for (size_t j = 0; j < rounds; ++j) {
    auto slice = [&](int c, BufferId buf) {
      size_t begin = std::min(chunks.size(c), j * sliceElems);
      size_t end = std::min(chunks.size(c), begin + sliceElems);
      return Region{buf, chunks.offset(c) + begin, end - begin};
    };
    std::fill(rsSend.begin(), rsSend.end(), kNone);

    // Reduce-scatter.
    uint32_t owned = kNone;
    if (slice(r, BufferId::Input).count) rsSend[r] = s.add({StepKind::Send, right, 1, slice(r, BufferId::Input), {}});
    for (int k = 1; k < p; ++k) {
      int c = mod(r - k);
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
    if (owned != kNone) s.add({StepKind::Send, right, 1, slice(mod(r + 1), BufferId::Output), {}}, {owned});
    for (int k = 1; k < p; ++k) {
      int c = mod(r + 1 - k);
      Region dst = slice(c, BufferId::Output);
      if (!dst.count) continue;
      uint32_t rv = rsSend[c] != kNone ? s.add({StepKind::Recv, left, 1, {}, dst}, {rsSend[c]})
                                       : s.add({StepKind::Recv, left, 1, {}, dst});
      if (k < p - 1) s.add({StepKind::Send, right, 1, dst, {}}, {rv});
    }
  }
  return s;
}

}  // namespace

RankSchedule buildRing(const CollArgs& args) {
  switch (args.coll) {
    case Coll::AllReduce: return buildRingAllReduce(args);
    default: break;
  }
  CHORUS_THROW(chorusInternalError, "ring: %s is not written yet", collName(args.coll));
}

}  // namespace chorus

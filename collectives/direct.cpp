// Direct: every rank talks to every rank it has data for, in one round.
//
// Cost (p ranks, n elements of s bytes, alpha-beta model): one latency step for the gathers,
// scatters, broadcast, reduce and all-to-alls; two for all-reduce. Bytes on the wire per rank:
//   broadcast / scatter       root sends (p-1) n s (Scatter: (p-1)/p of its p n s), others 0
//   reduce / gather           root receives (p-1) n s, every other rank sends n s
//   all-gather / all-to-all   (p-1) n s sent and received by every rank
//   reduce-scatter            (p-1) n s sent and received (n: the per-rank block)
//   all-reduce                2 (p-1)/p n s sent and received: a direct reduce-scatter of p
//                             chunks (chunk c is summed by rank c), then a direct all-gather.
// The message count is p-1 per rank per round, so this family is for tiny messages on few
// ranks, and it is the family that serves every collective (gather, scatter and the V forms
// have no other builder).
//
// Reductions are deterministic: a chunk is reduced by one rank, always in the order own input,
// then rank+1, rank+2, ... (each RecvReduce depends on the previous one), and the result is
// distributed, so every rank gets identical bits.
#include <algorithm>
#include <vector>

#include "collectives/families.h"
#include "collectives/ring.h"
#include "base/error.h"

namespace chorus {
namespace {

constexpr uint32_t kNone = ~0u;

uint32_t addAfter(RankSchedule& s, const Step& step, uint32_t dep) {
  return dep == kNone ? s.add(step) : s.add(step, {dep});
}

// Block b of a collective whose blocks are given by offset/size functions.
struct Blocks {
  std::vector<size_t> off, size;
  explicit Blocks(int p) : off(p, 0), size(p, 0) {}
};

Blocks uniform(int p, size_t n) {
  Blocks b(p);
  for (int i = 0; i < p; ++i) {
    b.off[i] = static_cast<size_t>(i) * n;
    b.size[i] = n;
  }
  return b;
}

Blocks fromVectors(const std::vector<size_t>& counts, const std::vector<size_t>& displs) {
  Blocks b(static_cast<int>(counts.size()));
  b.size = counts;
  b.off = displs;
  return b;
}

// Reduce-scatter of `src` blocks: block j (in Input) goes to rank j; rank r sums its block
// into Output at `dstOffset`. Returns the step that completes rank r's block (kNone if empty),
// and the sends of each block in *sendOf (kNone where none).
uint32_t reduceScatterDirect(RankSchedule& s, const CollArgs& a, const Blocks& src, size_t dstOffset, std::vector<uint32_t>* sendOf) {
  const int p = a.nranks, r = a.rank;
  sendOf->assign(p, kNone);
  for (int k = 1; k < p; ++k) {
    int j = (r + k) % p;
    if (src.size[j]) (*sendOf)[j] = s.add({StepKind::Send, j, 1, in(src.off[j], src.size[j]), {}});
  }
  size_t n = src.size[r];
  if (n == 0) return kNone;
  Region mine = out(dstOffset, n);
  uint32_t last = kNone;
  for (int k = 1; k < p; ++k) {
    int j = (r + k) % p;
    Region local = last == kNone ? in(src.off[r], n) : mine;
    last = addAfter(s, {StepKind::RecvReduce, j, 1, local, mine}, last);
  }
  if (last == kNone) {  // p == 1
    bool same = a.inPlace;  // in place: Output is exactly this Input block
    if (!same) last = s.add({StepKind::Copy, -1, 1, in(src.off[r], n), mine});
  }
  if (a.average && p > 1) last = s.add({StepKind::Divide, -1, p, {}, mine}, {last});
  return last;
}

RankSchedule allReduce(const CollArgs& a) {
  RankSchedule s;
  const int p = a.nranks, r = a.rank;
  if (a.count == 0) return s;
  RingChunks chunks(a.count, p, std::max<size_t>(1, 64 / a.elemSize));
  Blocks b(p);
  for (int c = 0; c < p; ++c) {
    b.off[c] = chunks.offset(c);
    b.size[c] = chunks.size(c);
  }
  std::vector<uint32_t> sendOf;
  uint32_t mine = reduceScatterDirect(s, a, b, b.off[r], &sendOf);
  if (p == 1) {
    if (!a.inPlace && mine == kNone) s.add({StepKind::Copy, -1, 1, in(0, a.count), out(0, a.count)});
    return s;
  }
  for (int k = 1; k < p; ++k) {
    int j = (r + k) % p;
    if (b.size[r]) s.add({StepKind::Send, j, 1, out(b.off[r], b.size[r]), {}}, {mine});
  }
  for (int k = 1; k < p; ++k) {
    int j = (r - k + p) % p;
    if (!b.size[j]) continue;
    // In place, chunk j of Output is chunk j of Input, which the reduce-scatter sent to rank j.
    addAfter(s, {StepKind::Recv, j, 1, {}, out(b.off[j], b.size[j])}, a.inPlace ? sendOf[j] : kNone);
  }
  return s;
}

// All-gather of rank r's `mine` (an Input region, or an Output one) into Output blocks `dst`.
void allGatherDirect(RankSchedule& s, const CollArgs& a, Region mine, const Blocks& dst, bool ownInPlace) {
  const int p = a.nranks, r = a.rank;
  for (int k = 1; k < p; ++k)
    if (mine.count) s.add({StepKind::Send, (r + k) % p, 1, mine, {}});
  for (int k = 1; k < p; ++k) {
    int j = (r - k + p) % p;
    if (dst.size[j]) s.add({StepKind::Recv, j, 1, {}, out(dst.off[j], dst.size[j])});
  }
  if (!ownInPlace && mine.count) s.add({StepKind::Copy, -1, 1, mine, out(dst.off[r], dst.size[r])});
}

RankSchedule broadcast(const CollArgs& a) {
  RankSchedule s;
  const int p = a.nranks, r = a.rank;
  if (a.count == 0) return s;
  if (r == a.root) {
    for (int k = 1; k < p; ++k) s.add({StepKind::Send, (r + k) % p, 1, in(0, a.count), {}});
    if (!a.inPlace) s.add({StepKind::Copy, -1, 1, in(0, a.count), out(0, a.count)});
  } else {
    s.add({StepKind::Recv, a.root, 1, {}, out(0, a.count)});
  }
  return s;
}

RankSchedule reduce(const CollArgs& a) {
  RankSchedule s;
  const int p = a.nranks, r = a.rank;
  if (a.count == 0) return s;
  if (r != a.root) {
    s.add({StepKind::Send, a.root, 1, in(0, a.count), {}});
    return s;
  }
  uint32_t last = kNone;
  Region all = out(0, a.count);
  for (int k = 1; k < p; ++k) {
    int j = (r + k) % p;
    last = addAfter(s, {StepKind::RecvReduce, j, 1, last == kNone ? in(0, a.count) : all, all}, last);
  }
  if (last == kNone && !a.inPlace) last = s.add({StepKind::Copy, -1, 1, in(0, a.count), all});
  if (a.average && p > 1) s.add({StepKind::Divide, -1, p, {}, all}, {last});
  return s;
}

// Gather and Scatter mirror each other: block j of the root's large buffer is rank j's small one.
RankSchedule gatherOrScatter(const CollArgs& a, bool gather) {
  RankSchedule s;
  const int p = a.nranks, r = a.rank;
  const size_t n = a.count;
  if (n == 0) return s;
  if (r != a.root) {
    if (gather)
      s.add({StepKind::Send, a.root, 1, in(0, n), {}});
    else
      s.add({StepKind::Recv, a.root, 1, {}, out(0, n)});
    return s;
  }
  for (int k = 1; k < p; ++k) {
    int j = (r + k) % p;
    size_t at = static_cast<size_t>(j) * n;
    if (gather)
      s.add({StepKind::Recv, j, 1, {}, out(at, n)});
    else
      s.add({StepKind::Send, j, 1, in(at, n), {}});
  }
  size_t mine = static_cast<size_t>(r) * n;
  if (!a.inPlace) s.add({StepKind::Copy, -1, 1, gather ? in(0, n) : in(mine, n), gather ? out(mine, n) : out(0, n)});
  return s;
}

RankSchedule alltoall(const CollArgs& a, const Blocks& send, const Blocks& recv) {
  RankSchedule s;
  const int p = a.nranks, r = a.rank;
  for (int k = 1; k < p; ++k) {
    int j = (r + k) % p;
    if (send.size[j]) s.add({StepKind::Send, j, 1, in(send.off[j], send.size[j]), {}});
  }
  for (int k = 1; k < p; ++k) {
    int i = (r - k + p) % p;
    if (recv.size[i]) s.add({StepKind::Recv, i, 1, {}, out(recv.off[i], recv.size[i])});
  }
  CHORUS_CHECK_ARG(send.size[r] == recv.size[r], "rank %d sends %zu elements to itself but receives %zu", r, send.size[r], recv.size[r]);
  if (send.size[r]) s.add({StepKind::Copy, -1, 1, in(send.off[r], send.size[r]), out(recv.off[r], recv.size[r])});
  return s;
}

}  // namespace

RankSchedule buildDirect(const CollArgs& a) {
  const int p = a.nranks, r = a.rank;
  switch (a.coll) {
    case Coll::AllReduce: return allReduce(a);
    case Coll::Broadcast: return broadcast(a);
    case Coll::Reduce: return reduce(a);
    case Coll::Gather: return gatherOrScatter(a, true);
    case Coll::Scatter: return gatherOrScatter(a, false);
    case Coll::AllGather: {
      RankSchedule s;
      if (a.count) allGatherDirect(s, a, in(0, a.count), uniform(p, a.count), a.inPlace);
      return s;
    }
    case Coll::AllGatherV: {
      RankSchedule s;
      Blocks b = fromVectors(a.counts, a.displs);
      allGatherDirect(s, a, in(0, b.size[r]), b, a.inPlace);
      return s;
    }
    case Coll::ReduceScatter:
    case Coll::ReduceScatterV: {
      RankSchedule s;
      Blocks b = a.coll == Coll::ReduceScatter ? uniform(p, a.count) : fromVectors(a.counts, a.displs);
      std::vector<uint32_t> sendOf;
      reduceScatterDirect(s, a, b, 0, &sendOf);
      return s;
    }
    case Coll::AlltoAll: return alltoall(a, uniform(p, a.count), uniform(p, a.count));
    case Coll::AlltoAllV: return alltoall(a, fromVectors(a.sendCounts, a.sendDispls), fromVectors(a.recvCounts, a.recvDispls));
    case Coll::kCount: break;
  }
  CHORUS_THROW(chorusInternalError, "direct: unknown collective %d", static_cast<int>(a.coll));
}

}  // namespace chorus

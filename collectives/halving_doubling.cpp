// Halving-doubling (Rabenseifner): a reduce-scatter by recursive halving, then (all-reduce) an
// all-gather by recursive doubling.
//
// Cost (p ranks a power of two, n elements of s bytes, alpha-beta model):
//   all-reduce      2 log2 p steps; 2 (p - 1)/p n s bytes sent and received per rank, the
//                   ring's bandwidth with logarithmic latency.
//   reduce-scatter  log2 p steps; (p - 1) n s bytes sent and received per rank (n: the
//                   per-rank block), the optimum.
// Other rank counts fold (collectives/logstep.h) onto p' = the largest power of two <= p: 2
// more steps on the critical path, log2 p' in place of log2 p above, and the folded pairs
// carry one extra full vector in and the result out (all-reduce: n s each way; reduce-scatter:
// p n s in, n s out).
//
// Halving: the core ranks split the data into p' units (all-reduce: 64-byte aligned chunks of
// the vector; reduce-scatter: core rank c's unit is the blocks of the ranks it stands for).
// In the round with mask m = p'/2, p'/4, ..., 1 a core rank holds 2m units' partial sums,
// sends the half that belongs to the side of me ^ m to it and reduces the half it keeps with
// what it receives. After log2 p' rounds core rank c holds unit c fully reduced; the
// reduce-scatter is then done (a folded pair's unit is two blocks: one for the partner that
// sat out, sent to it), the all-reduce runs the rounds backwards as an all-gather. Every
// element is reduced by exactly one rank and then copied, so all ranks hold identical bits; an
// average divides each unit once, at its owner, before it is spread.
//
// Buffers: the all-reduce works in Output (a round's send and its reduction touch different
// halves, so no scratch is needed); the reduce-scatter's Output is one block, so the partial
// sums of the halves it keeps live in Scratch, and only the last reduction lands in Output.
// The one write-after-read hazard: the all-gather's receive from the core rank of mask m
// rewrites exactly the half sent to it in the halving round of mask m, so it waits for that
// send (in place, that half is Input, which the send may still be reading).
#include <algorithm>
#include <functional>
#include <vector>

#include "collectives/families.h"
#include "collectives/logstep.h"
#include "collectives/ring.h"
#include "base/error.h"

namespace chorus {
namespace {

// Where one rank's halving finds its data. Offsets are into the whole vector being reduced
// ([0, at(p')) of the units); `source` is the data before the first round, `work` the partial
// sums of the halves it keeps (`last`: the final round's, i.e. its own unit).
struct HalvingBuffers {
  std::function<Region(size_t off, size_t n)> source;
  std::function<Region(size_t off, size_t n, bool last)> work;
};

struct Halved {
  uint32_t done = kNoStep;     // the step that completed our unit (or `after` when no round did)
  std::vector<uint32_t> sent;  // per round: the send of the half given away (kNoStep: empty)
};

// Recursive halving among the core ranks; the first round waits for `after`.
Halved recursiveHalving(RankSchedule& s, const Pow2Fold& fold, int me, const UnitBounds& at, const HalvingBuffers& b,
                        uint32_t after) {
  Halved res;
  res.done = after;  // the step that wrote the current partial sums
  int lo = 0;        // we hold units [lo, lo + 2m)
  for (int m = fold.core / 2; m >= 1; m /= 2) {
    const bool first = res.sent.empty();
    int keep = (me & m) ? lo + m : lo, give = (me & m) ? lo : lo + m;
    auto data = [&](int u) {
      size_t off = at(u), len = at(u + m) - off;
      return first ? b.source(off, len) : b.work(off, len, false);
    };
    int peer = fold.rankOf(me ^ m);
    Region gone = data(give);
    res.sent.push_back(gone.count ? addStepAfter(s, {StepKind::Send, peer, 1, gone, {}}, res.done) : kNoStep);
    Region kept = data(keep);
    if (kept.count) {
      Region dst = b.work(at(keep), kept.count, m == 1);
      res.done = addStepAfter(s, {StepKind::RecvReduce, peer, 1, kept, dst}, res.done);
    }
    lo = keep;
  }
  return res;
}

RankSchedule allReduce(const CollArgs& a) {
  RankSchedule s;
  if (nothingToExchange(a, &s)) return s;
  const int p = a.nranks, r = a.rank;
  const size_t n = a.count;
  Pow2Fold fold(p);
  const int partner = fold.partner(r);
  if (fold.sitsOut(r)) {
    sitOut(s, partner, in(0, n), out(0, n));
    return s;
  }
  const int me = fold.coreIndex(r);
  RingChunks chunks(n, fold.core, std::max<size_t>(1, 64 / a.elemSize));
  UnitBounds at = [&](int c) { return chunks.offset(c); };
  uint32_t folded = partner >= 0 ? s.add({StepKind::RecvReduce, partner, 1, in(0, n), out(0, n)}) : kNoStep;
  // Once folded (or in place) the data is in Output; reductions always land there.
  const bool fromOutput = partner >= 0 || a.inPlace;
  HalvingBuffers b;
  b.source = [&](size_t off, size_t len) { return Region{fromOutput ? BufferId::Output : BufferId::Input, off, len}; };
  b.work = [&](size_t off, size_t len, bool) { return out(off, len); };
  Halved h = recursiveHalving(s, fold, me, at, b, folded);
  uint32_t mine = h.done;
  if (a.average && chunks.size(me)) mine = s.add({StepKind::Divide, -1, p, {}, out(at(me), chunks.size(me))}, {mine});
  // The all-gather's round k talks to the halving's round L-1-k peer and rewrites what it sent.
  std::vector<uint32_t> recvAfter(h.sent.rbegin(), h.sent.rend());
  std::vector<uint32_t> done = doublingAllGather(s, fold, me, at, {mine}, recvAfter);
  if (partner >= 0) addStepAfterAll(s, {StepKind::Send, partner, 1, out(0, n), {}}, done);
  return s;
}

RankSchedule reduceScatter(const CollArgs& a) {
  RankSchedule s;
  if (nothingToExchange(a, &s)) return s;
  const int p = a.nranks, r = a.rank;
  const size_t n = a.count;
  Pow2Fold fold(p);
  const int partner = fold.partner(r);
  const size_t total = static_cast<size_t>(p) * n;
  if (fold.sitsOut(r)) {
    sitOut(s, partner, in(0, total), out(0, n));
    return s;
  }
  const int me = fold.coreIndex(r);
  UnitBounds at = [&](int c) { return static_cast<size_t>(fold.firstRank(c)) * n; };
  // Scratch holds the partial sums from the first round's kept half on (base: its offset in
  // the vector); a folded rank reduces the whole vector into it first.
  size_t base = 0;
  if (partner >= 0) {
    s.scratchElems = total;
  } else if (fold.rounds >= 2) {
    int half = fold.core / 2, keep = (me & half) ? half : 0;
    base = at(keep);
    s.scratchElems = at(keep + half) - base;
  }
  Region all{BufferId::Scratch, 0, total};
  uint32_t folded = partner >= 0 ? s.add({StepKind::RecvReduce, partner, 1, in(0, total), all}) : kNoStep;
  HalvingBuffers b;
  b.source = [&](size_t off, size_t len) { return partner >= 0 ? Region{BufferId::Scratch, off, len} : in(off, len); };
  b.work = [&](size_t off, size_t len, bool last) {
    return last && partner < 0 ? out(0, len) : Region{BufferId::Scratch, off - base, len};
  };
  uint32_t done = recursiveHalving(s, fold, me, at, b, folded).done;
  if (partner < 0) {
    if (a.average) s.add({StepKind::Divide, -1, p, {}, out(0, n)}, {done});
    return s;
  }
  // Our unit is the partner's block then ours, in Scratch.
  Region both{BufferId::Scratch, at(me), 2 * n};
  if (a.average) done = s.add({StepKind::Divide, -1, p, {}, both}, {done});
  s.add({StepKind::Send, partner, 1, {BufferId::Scratch, partner * n, n}, {}}, {done});
  s.add({StepKind::Copy, -1, 1, {BufferId::Scratch, r * n, n}, out(0, n)}, {done});
  return s;
}

}  // namespace

RankSchedule buildHalvingDoubling(const CollArgs& args) {
  switch (args.coll) {
    case Coll::AllReduce: return allReduce(args);
    case Coll::ReduceScatter: return reduceScatter(args);
    default: break;
  }
  CHORUS_THROW(chorusInternalError, "halving-doubling does not serve %s", collName(args.coll));
}

}  // namespace chorus

// Recursive doubling: log2 p rounds; in round k each rank exchanges with the rank whose index
// differs in bit k, and the amount exchanged doubles (all-gather) or stays the whole vector
// (all-reduce).
//
// Cost (p ranks, p' the largest power of two <= p, n elements of s bytes, alpha-beta model):
//   all-reduce  log2 p' steps, each sending and receiving the whole vector: log2 p' * n s bytes
//               per rank. The latency optimum for small vectors; bandwidth-heavy for large
//               ones (halving-doubling or ring serve those).
//   all-gather  log2 p' steps, 2^k n s bytes in round k: (p' - 1) n s sent and received per
//               core rank, the optimum for powers of two.
// Other rank counts fold (collectives/logstep.h): 2 more steps on the critical path. For the
// all-reduce the partner of a folded rank receives and sends back n s more; for the
// all-gather the folded rank sends its n s block in and receives the whole p n s result back
// in one message (so its partner sends p n s more and the critical path grows by p n s of
// bandwidth: Bruck's all-gather avoids that for any p).
//
// Identical bits everywhere: in each all-reduce round the two partners combine the same two
// partial sums, a OP b on one side and b OP a on the other, and every op is commutative, so
// they hold identical bits after every round; folded ranks get a copy of their partner's.
//
// Buffers: an all-reduce round cannot reduce into the vector it is sending (the partner may
// read it until its own receive is done, and waiting for that would deadlock the pair, both
// waiting for each other), so rounds alternate between Output and an n-element Scratch,
// arranged so the last round lands in Output. In place with an odd number of rounds that is
// impossible without writing Input before it is sent, so the last round lands in Scratch
// and one local copy moves it to Output.
#include <algorithm>
#include <vector>

#include "collectives/families.h"
#include "collectives/logstep.h"
#include "collectives/ring.h"
#include "base/error.h"

namespace chorus {

uint32_t addStepAfterAll(RankSchedule& s, const Step& step, const std::vector<uint32_t>& deps) {
  uint32_t i = s.add(step);
  Step& added = s.steps[i];
  added.depBegin = static_cast<uint32_t>(s.deps.size());
  for (uint32_t d : deps) {
    if (d == kNoStep) continue;
    CHORUS_ASSERT(d < i);
    s.deps.push_back(d);
  }
  added.depCount = static_cast<uint32_t>(s.deps.size()) - added.depBegin;
  return i;
}

bool nothingToExchange(const CollArgs& a, RankSchedule* s) {
  if (a.count && a.nranks > 1) return false;
  if (a.count && !a.inPlace) s->add({StepKind::Copy, -1, 1, {BufferId::Input, 0, a.count}, {BufferId::Output, 0, a.count}});
  return true;
}

void sitOut(RankSchedule& s, int partner, Region mine, Region result) {
  uint32_t sent = mine.count ? s.add({StepKind::Send, partner, 1, mine, {}}) : kNoStep;
  if (result.count) addStepAfter(s, {StepKind::Recv, partner, 1, {}, result}, sent);
}

std::vector<uint32_t> doublingAllGather(RankSchedule& s, const Pow2Fold& fold, int me, const UnitBounds& at,
                                        std::vector<uint32_t> ready, const std::vector<uint32_t>& recvAfter) {
  auto units = [&](int lo, int hi) { return Region{BufferId::Output, at(lo), at(hi) - at(lo)}; };
  for (int k = 0, m = 1; m < fold.core; ++k, m *= 2) {
    int lo = me & ~(m - 1);  // we hold units [lo, lo + m); the peer holds [lo ^ m, (lo ^ m) + m)
    int peer = fold.rankOf(me ^ m);
    Region mine = units(lo, lo + m), theirs = units(lo ^ m, (lo ^ m) + m);
    // Everything received so far is part of what we send: the send waits for all of it.
    if (mine.count) addStepAfterAll(s, {StepKind::Send, peer, 1, mine, {}}, ready);
    if (theirs.count) ready.push_back(addStepAfter(s, {StepKind::Recv, peer, 1, {}, theirs}, recvAfter[k]));
  }
  return ready;
}

namespace {

RankSchedule allReduce(const CollArgs& a) {
  RankSchedule s;
  if (nothingToExchange(a, &s)) return s;
  const size_t n = a.count;
  const int r = a.rank;
  Pow2Fold fold(a.nranks);
  Region output = out(0, n), scratch{BufferId::Scratch, 0, n};
  if (fold.sitsOut(r)) {
    sitOut(s, fold.partner(r), in(0, n), output);
    return s;
  }
  const int L = fold.rounds;
  const bool folded = fold.partner(r) >= 0;
  // buf[k]: where the vector is before round k (buf[L]: after the last one). Counted back
  // from buf[L] = Output, alternating; buf[0] is Input unless a fold reduces into it first.
  std::vector<Region> buf(L + 1);
  for (int k = L; k >= 0; --k) buf[k] = (L - k) % 2 == 0 ? output : scratch;
  bool copyOut = false;
  if (!folded) {
    buf[0] = a.inPlace ? output : in(0, n);
    if (a.inPlace && buf[1].buf == BufferId::Output) {
      // Odd L in place: alternate forward from Output instead and copy the result back.
      for (int k = 1; k <= L; ++k) buf[k] = k % 2 ? scratch : output;
      copyOut = true;
    }
  }
  uint32_t produced = kNoStep;  // the step that wrote buf[k]
  if (folded) produced = s.add({StepKind::RecvReduce, fold.partner(r), 1, in(0, n), buf[0]});
  uint32_t prevSend = kNoStep;  // the last send from buf[k - 1]
  const int me = fold.coreIndex(r);
  for (int k = 0; k < L; ++k) {
    int peer = fold.rankOf(me ^ (1 << k));
    uint32_t send = addStepAfter(s, {StepKind::Send, peer, 1, buf[k], {}}, produced);
    // buf[k + 1] is buf[k - 1], which the previous round's send may still be reading.
    produced = addStepAfter(s, {StepKind::RecvReduce, peer, 1, buf[k], buf[k + 1]}, produced, prevSend);
    prevSend = send;
  }
  if (copyOut) produced = addStepAfter(s, {StepKind::Copy, -1, 1, buf[L], output}, produced, prevSend);
  if (a.average) produced = s.add({StepKind::Divide, -1, a.nranks, {}, output}, {produced});
  if (folded) s.add({StepKind::Send, fold.partner(r), 1, output, {}}, {produced});
  s.scratchElems = std::any_of(buf.begin(), buf.end(), [](const Region& b) { return b.buf == BufferId::Scratch; }) ? n : 0;
  return s;
}

RankSchedule allGather(const CollArgs& a) {
  RankSchedule s;
  if (nothingToExchange(a, &s)) return s;
  const size_t n = a.count;
  const int r = a.rank;
  Pow2Fold fold(a.nranks);
  const size_t total = static_cast<size_t>(a.nranks) * n;
  if (fold.sitsOut(r)) {
    // In place our block is part of Output already; receiving all of it rewrites it with the
    // same data, which saves the partner a second message.
    sitOut(s, fold.partner(r), in(0, n), out(0, total));
    return s;
  }
  std::vector<uint32_t> ready;
  if (!a.inPlace) ready.push_back(s.add({StepKind::Copy, -1, 1, in(0, n), out(r * n, n)}));
  const int partner = fold.partner(r);
  if (partner >= 0) ready.push_back(s.add({StepKind::Recv, partner, 1, {}, out(partner * n, n)}));
  UnitBounds at = [&](int c) { return static_cast<size_t>(fold.firstRank(c)) * n; };
  std::vector<uint32_t> noWait(fold.rounds, kNoStep);
  std::vector<uint32_t> done = doublingAllGather(s, fold, fold.coreIndex(r), at, ready, noWait);
  if (partner >= 0) addStepAfterAll(s, {StepKind::Send, partner, 1, out(0, total), {}}, done);
  return s;
}

}  // namespace

RankSchedule buildRecursiveDoubling(const CollArgs& args) {
  switch (args.coll) {
    case Coll::AllReduce: return allReduce(args);
    case Coll::AllGather: return allGather(args);
    default: break;
  }
  CHORUS_THROW(chorusInternalError, "recursive doubling does not serve %s", collName(args.coll));
}

}  // namespace chorus

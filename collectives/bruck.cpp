// Bruck's log-step algorithms, for any rank count: ceil(log2 p) rounds; in round k (distance
// d = 2^k) rank r sends to r - d or r + d and receives from the other side.
//
// Cost (p ranks, n elements of s bytes per block, alpha-beta model, K = ceil(log2 p)):
//   all-gather  K steps; (p - 1) n s bytes sent and received per rank (the optimum), in any p,
//               with no fold: rounds 0..K-2 send 2^k blocks, the last the p - 2^(K-1) missing.
//   all-to-all  K steps; about (p / 2) K n s bytes sent and received per rank (each round
//               moves the blocks whose index has bit k set: exactly the count of i in [0, p)
//               with that bit), so blocks travel up to K times: for small blocks, where the p - 1
//               steps of the pairwise exchange (pairwise.cpp) cost more than the extra bytes.
// Local copies: the all-gather rotates p n elements once at the end; the all-to-all rotates
// its Input once into Scratch, packs and unpacks the non-contiguous blocks of each round
// (about p copies in all, runs of 2^k blocks at once), and places every block in its final
// slot once (p - 1 copies: the final order is reversed, so block by block).
//
// All-gather. Scratch holds the gathered blocks rotated by r: slot i = rank (r + i)'s block.
// Round k sends slots [0, c) to r - d and receives slots [d, d + c) from r + d, where
// c = min(d, p - d); after K rounds all p slots are there, and two copies rotate them into
// Output (our own block goes straight from Input, or is there already in place).
//
// All-to-all. Slot i of Scratch starts as the block for rank r + i. In round k every slot i
// with bit k set goes to rank r + d, and the slot is refilled with what rank r - d sends for the
// same slot index. A block headed from a to b sits in slot b - a and so moves by exactly the
// bits of b - a: after K rounds it has arrived, in slot r - a. Slot 0 never moves (our own
// block: copied straight to Output). A slot is final after the round of its highest set bit,
// so that round's receive is copied straight to Output instead of back to the slot.
//
// Dependencies: every receive of the all-gather lands in slots no earlier send reads (slots
// [d, 2d) are sent only from round k + 1 on), and each send waits for every receive so far.
// The all-to-all's local copies run as one chain; a round's packing waits for the previous
// round's send (the pack buffer is reused), and its receive and unpacking wait for the
// chain (the receive buffer is reused), and the unpacking waits for the round's own send too
// (when a round sends straight from its slots, they are rewritten only after it is read).
#include <algorithm>
#include <vector>

#include "collectives/families.h"
#include "collectives/logstep.h"
#include "base/error.h"

namespace chorus {
namespace {

RankSchedule allGather(const CollArgs& a) {
  RankSchedule s;
  const int p = a.nranks, r = a.rank;
  const size_t n = a.count;
  if (n == 0) return s;
  if (!a.inPlace) s.add({StepKind::Copy, -1, 1, in(0, n), out(r * n, n)});
  if (p == 1) return s;
  std::vector<uint32_t> have{s.add({StepKind::Copy, -1, 1, in(0, n), scratch(0, n)})};
  for (int d = 1; d < p; d *= 2) {
    size_t c = std::min(d, p - d);
    // Round 0 sends just our own block: straight from Input, not waiting for the copy.
    Region send = d == 1 ? in(0, n) : scratch(0, c * n);
    addStepAfterAll(s, {StepKind::Send, (r - d + p) % p, 1, send, {}}, d == 1 ? std::vector<uint32_t>() : have);
    have.push_back(s.add({StepKind::Recv, (r + d) % p, 1, {}, scratch(d * n, c * n)}));
  }
  // Slots [1, p - r) are ranks r + 1 .. p - 1, slots [p - r, p) are ranks 0 .. r - 1.
  const size_t after = (p - r - 1) * n;
  if (after) addStepAfterAll(s, {StepKind::Copy, -1, 1, scratch(n, after), out((r + 1) * n, after)}, have);
  if (r > 0) addStepAfterAll(s, {StepKind::Copy, -1, 1, scratch((p - r) * n, r * n), out(0, r * n)}, have);
  s.scratchElems = p * n;
  return s;
}

// A run of consecutive slots [first, end).
struct Run {
  int first, end;
};

// The slots in [0, p) whose bit k (d = 2^k) is set, as runs in increasing order.
std::vector<Run> slotsWithBit(int p, int d) {
  std::vector<Run> runs;
  for (int first = d; first < p; first += 2 * d) runs.push_back({first, std::min(first + d, p)});
  return runs;
}

RankSchedule alltoall(const CollArgs& a) {
  RankSchedule s;
  const int p = a.nranks, r = a.rank;
  const size_t n = a.count;
  if (n == 0) return s;
  s.add({StepKind::Copy, -1, 1, in(r * n, n), out(r * n, n)});
  if (p == 1) return s;
  // Scratch: the p slots (slot 0 unused), then the pack and receive buffers of a round.
  size_t most = 0;
  for (int d = 1; d < p; d *= 2) {
    size_t set = 0;
    for (Run run : slotsWithBit(p, d)) set += run.end - run.first;
    most = std::max(most, set);
  }
  auto slot = [&](int i, int count) { return scratch(i * n, count * n); };
  const size_t packAt = p * n, recvAt = packAt + most * n;
  s.scratchElems = recvAt + most * n;

  // Rotate: slot i = Input block (r + i) % p, in two contiguous pieces.
  uint32_t chain = kNoStep;  // the last local step; every local step waits for the one before
  if (r + 1 < p) chain = s.add({StepKind::Copy, -1, 1, in((r + 1) * n, (p - r - 1) * n), slot(1, p - r - 1)});
  if (r > 0) chain = addStepAfter(s, {StepKind::Copy, -1, 1, in(0, r * n), slot(p - r, r)}, chain);

  uint32_t prevSend = kNoStep;
  for (int d = 1; d < p; d *= 2) {
    std::vector<Run> runs = slotsWithBit(p, d);
    size_t set = 0;
    Region send;
    if (runs.size() == 1) {
      send = slot(runs[0].first, runs[0].end - runs[0].first);
      set = send.count / n;
    } else {
      for (Run run : runs) {
        size_t len = run.end - run.first;
        Region packed = scratch(packAt + set * n, len * n);
        chain = addStepAfter(s, {StepKind::Copy, -1, 1, slot(run.first, len), packed}, chain, prevSend);
        set += len;
      }
      send = scratch(packAt, set * n);
    }
    uint32_t sent = addStepAfter(s, {StepKind::Send, (r + d) % p, 1, send, {}}, chain);
    uint32_t got = addStepAfter(s, {StepKind::Recv, (r - d + p) % p, 1, {}, scratch(recvAt, set * n)}, chain);
    size_t pos = 0;  // slot position in the receive buffer
    auto unpack = [&](size_t slots, Region dst) {
      chain = addStepAfterAll(s, {StepKind::Copy, -1, 1, scratch(recvAt + pos * n, slots * n), dst}, {chain, got, sent});
      pos += slots;
    };
    for (Run run : runs) {
      if (run.first != d) {
        unpack(run.end - run.first, slot(run.first, run.end - run.first));
        continue;
      }
      // Highest bit k: final. Slot i holds the block from rank r - i.
      for (int i = run.first; i < run.end; ++i) unpack(1, out((r - i + p) % p * n, n));
    }
    prevSend = sent;
  }
  return s;
}

}  // namespace

RankSchedule buildBruck(const CollArgs& args) {
  switch (args.coll) {
    case Coll::AllGather: return allGather(args);
    case Coll::AlltoAll: return alltoall(args);
    default: break;
  }
  CHORUS_THROW(chorusInternalError, "bruck does not serve %s", collName(args.coll));
}

}  // namespace chorus

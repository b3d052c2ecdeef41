// Pieces shared by the log-step families (halving_doubling.cpp, recursive_doubling.cpp,
// bruck.cpp, pairwise.cpp): the fold that runs a power-of-two algorithm on any rank count,
// the recursive-doubling all-gather that both the halving-doubling all-reduce and the
// recursive-doubling all-gather end with, and a dependency helper for steps that wait on a
// list of others.
//
// The fold: with p ranks and p' the largest power of two <= p, the first 2(p - p') ranks pair
// up as (2i, 2i+1). The even one of each pair sends its data to the odd one and sits out; the
// p' "core" ranks (the odd ones of the pairs, then every rank from 2(p - p') on, in rank order)
// run the power-of-two algorithm, and each odd partner finally sends the result back. Core
// rank c stands for ranks [firstRank(c), firstRank(c + 1)): itself and, for c < p - p', its
// partner. Those ranges are contiguous and in rank order, which is what lets the per-rank
// blocks of a reduce-scatter or all-gather be split among the core ranks without any
// permutation. The cost is two extra latency steps on the critical path (in and back out),
// and the partners carry their partner's data in and the result out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "collectives/collective.h"
#include "collectives/ring.h"
#include "exec/schedule.h"

namespace chorus {

struct Pow2Fold {
  explicit Pow2Fold(int nranks) : p(nranks) {
    while (core * 2 <= p) {
      core *= 2;
      ++rounds;
    }
    extra = p - core;
  }
  int p;
  int core = 1;    // p', the largest power of two <= p
  int rounds = 0;  // log2 p'
  int extra = 0;   // p - p': the number of ranks that sit out

  bool sitsOut(int r) const { return r < 2 * extra && r % 2 == 0; }
  // The other rank of r's pair; -1 when r is not in a pair.
  int partner(int r) const { return r < 2 * extra ? (r ^ 1) : -1; }
  // Core index of a rank that takes part (!sitsOut(r)).
  int coreIndex(int r) const { return r < 2 * extra ? r / 2 : r - extra; }
  int rankOf(int c) const { return c < extra ? 2 * c + 1 : c + extra; }
  // The first of the ranks core rank c stands for; firstRank(core) == p.
  int firstRank(int c) const { return c < extra ? 2 * c : c + extra; }
};

// Element offsets of the units the core ranks hold: core rank c's unit is [at(c), at(c + 1)),
// at(0) == 0, nondecreasing (a unit may be empty).
using UnitBounds = std::function<size_t(int)>;

// Count 0 (nothing to do) or one rank (Output = Input: a copy unless in place), for the
// collectives whose Output has the size of Input at p == 1. True when `a` is such a call;
// *s is then its schedule.
bool nothingToExchange(const CollArgs& a, RankSchedule* s);

// Appends `step` after every step in `deps` that is not kNoStep; returns its index.
uint32_t addStepAfterAll(RankSchedule& s, const Step& step, const std::vector<uint32_t>& deps);

// The sitting-out side of the fold: send `mine` to the partner, then receive the result into
// `result` (after the send: in place the two overlap, and the partner may read `mine` late).
void sitOut(RankSchedule& s, int partner, Region mine, Region result);

// Recursive-doubling all-gather into Output among the core ranks of `fold`: core rank `me`
// holds unit `me` once the steps `ready` are done; round k exchanges the 2^k units it holds
// with core rank me ^ 2^k, so after log2 p' rounds every core rank holds all of [0, at(p')).
// The receive of round k also waits for recvAfter[k] (kNoStep: nothing), for callers whose
// earlier sends read that region. Messages with no elements are skipped on both sides.
// Returns `ready` plus the receives: all of Output is in place once they are done.
std::vector<uint32_t> doublingAllGather(RankSchedule& s, const Pow2Fold& fold, int me, const UnitBounds& at,
                                        std::vector<uint32_t> ready, const std::vector<uint32_t>& recvAfter);

}  // namespace chorus

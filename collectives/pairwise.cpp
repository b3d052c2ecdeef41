// Pairwise exchange all-to-all: p - 1 rounds; in round k rank r sends its block for rank
// (r + k) % p and receives rank (r - k) % p's block for it, straight from Input to Output.
//
// Cost (p ranks, alpha-beta model): p - 1 latency steps; every rank sends and receives each
// of its blocks exactly once, (p - 1) n s bytes for AlltoAll with n elements of s bytes per
// block, and the sum of its counts (its own block excluded) for AlltoAllV. Each round has one
// peer in each direction, so a rank never has more than the window's messages in flight and
// no peer is sent to by many ranks at once: the algorithm for large blocks and for uneven
// AlltoAllV. For small blocks Bruck's log-step all-to-all (bruck.cpp) has fewer steps.
//
// The window: a round's steps wait for the steps of the round kWindow rounds (with any
// message) before it, so at most kWindow rounds are in flight: enough to hide a round's
// latency behind the others, bounded so a large all-to-all does not post p - 1 messages of
// every size at once. Dependencies only point at earlier rounds, and a round-k send is
// received in round k of its receiver, so the window cannot deadlock.
//
// Empty messages are skipped: rank a's send to b and b's receive from a have the same size
// (AlltoAllV's sendCounts[b] on a equals recvCounts[a] on b), so both sides skip together.
#include <vector>

#include "collectives/families.h"
#include "collectives/logstep.h"
#include "base/error.h"

namespace chorus {
namespace {

constexpr int kWindow = 8;

RankSchedule pairwise(const CollArgs& a, const std::vector<size_t>& sendCounts, const std::vector<size_t>& sendDispls,
                      const std::vector<size_t>& recvCounts, const std::vector<size_t>& recvDispls) {
  RankSchedule s;
  const int p = a.nranks, r = a.rank;
  CHORUS_CHECK_ARG(sendCounts[r] == recvCounts[r], "rank %d sends %zu elements to itself but receives %zu", r, sendCounts[r],
                   recvCounts[r]);
  auto sendBlock = [&](int j) { return Region{BufferId::Input, sendDispls[j], sendCounts[j]}; };
  auto recvBlock = [&](int j) { return Region{BufferId::Output, recvDispls[j], recvCounts[j]}; };
  if (sendCounts[r]) s.add({StepKind::Copy, -1, 1, sendBlock(r), recvBlock(r)});
  std::vector<std::vector<uint32_t>> rounds;  // the steps of each round that has any
  for (int k = 1; k < p; ++k) {
    int to = (r + k) % p, from = (r - k + p) % p;
    std::vector<uint32_t> after = rounds.size() >= kWindow ? rounds[rounds.size() - kWindow] : std::vector<uint32_t>();
    std::vector<uint32_t> steps;
    if (sendCounts[to]) steps.push_back(addStepAfterAll(s, {StepKind::Send, to, 1, sendBlock(to), {}}, after));
    if (recvCounts[from]) steps.push_back(addStepAfterAll(s, {StepKind::Recv, from, 1, {}, recvBlock(from)}, after));
    if (!steps.empty()) rounds.push_back(std::move(steps));
  }
  return s;
}

}  // namespace

RankSchedule buildPairwise(const CollArgs& a) {
  switch (a.coll) {
    case Coll::AlltoAll: {
      if (a.count == 0) return {};
      std::vector<size_t> counts(a.nranks, a.count), displs(a.nranks);
      for (int i = 0; i < a.nranks; ++i) displs[i] = i * a.count;
      return pairwise(a, counts, displs, counts, displs);
    }
    case Coll::AlltoAllV: return pairwise(a, a.sendCounts, a.sendDispls, a.recvCounts, a.recvDispls);
    default: break;
  }
  CHORUS_THROW(chorusInternalError, "pairwise does not serve %s", collName(a.coll));
}

}  // namespace chorus

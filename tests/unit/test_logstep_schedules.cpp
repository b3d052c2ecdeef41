// The log-step families (halving-doubling, recursive doubling, Bruck, pairwise): every pair
// they serve checked by the symbolic verifier (collectives/verifier.h) at every p up to 64
// (every fold shape and round count up to 6) and at 127, 128, 1000 and 1024 ranks; the cost
// each file's header states (latency steps, elements on the wire per rank, what a folded rank
// does, the pairwise window); and, numerically, that the reductions leave identical bits on
// every rank, which symbols cannot show. CHORUS_TEST_SWEEP=short (the sanitizer stage) checks
// fewer rank counts: fixtures/sweep.h.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "collectives/collective.h"
#include "collectives/verifier.h"
#include "base/error.h"
#include "fixtures/sweep.h"

namespace chorus {
namespace {

struct Pair {
  Algo algo;
  Coll coll;
};

const Pair kPairs[] = {{Algo::HalvingDoubling, Coll::AllReduce}, {Algo::HalvingDoubling, Coll::ReduceScatter},
                       {Algo::RecursiveDoubling, Coll::AllReduce}, {Algo::RecursiveDoubling, Coll::AllGather},
                       {Algo::Bruck, Coll::AllGather},             {Algo::Bruck, Coll::AlltoAll},
                       {Algo::Pairwise, Coll::AlltoAll},           {Algo::Pairwise, Coll::AlltoAllV}};

std::string pairName(const testing::TestParamInfo<Pair>& info) {
  return std::string(algoName(info.param.algo)) + "_" + collName(info.param.coll);
}

CollArgs proto(Coll coll, int p, size_t count) {
  CollArgs a;
  a.coll = coll;
  a.nranks = p;
  a.count = count;
  return a;
}

// Every rank's arguments. AlltoAllV: rank i sends `count`-ish elements to j, zero for about a
// quarter of the pairs, with gaps between the blocks and the receive side in reverse order.
std::vector<CollArgs> perRankArgs(const CollArgs& a) {
  const int p = a.nranks;
  auto sent = [&](int i, int j) -> size_t { return (i * 5 + j * 3) % 4 == 0 ? 0 : a.count + (i + 2 * j) % 3; };
  std::vector<CollArgs> out(p, a);
  for (int r = 0; r < p; ++r) {
    CollArgs& x = out[r];
    x.rank = r;
    if (a.coll != Coll::AlltoAllV) continue;
    x.sendCounts.resize(p);
    x.sendDispls.resize(p);
    x.recvCounts.resize(p);
    x.recvDispls.resize(p);
    size_t sendAt = 0, recvAt = 0;
    for (int j = 0; j < p; ++j) {
      x.sendCounts[j] = sent(r, j);
      x.sendDispls[j] = sendAt;
      sendAt += x.sendCounts[j] + 1;
      int from = p - 1 - j;
      x.recvCounts[from] = sent(from, r);
      x.recvDispls[from] = recvAt;
      recvAt += x.recvCounts[from] + 2;
    }
  }
  return out;
}

bool hasInPlace(Coll c) { return c != Coll::AlltoAll && c != Coll::AlltoAllV; }

// Verifies one pair at p ranks over the counts, in place or not, average on or off.
void verifyMatrix(Pair pr, int p, std::initializer_list<size_t> counts) {
  for (size_t count : counts) {
    for (bool inPlace : {false, true}) {
      for (bool avg : {false, true}) {
        if ((inPlace && !hasInPlace(pr.coll)) || (avg && !isReduction(pr.coll))) continue;
        CollArgs a = proto(pr.coll, p, count);
        a.inPlace = inPlace;
        a.average = avg;
        VerifyResult v = verifyAlgorithm(pr.algo, perRankArgs(a));
        ASSERT_TRUE(v.ok) << algoName(pr.algo) << " " << collName(pr.coll) << " p=" << p << " count=" << count
                          << (inPlace ? " in place" : "") << (avg ? " avg" : "") << ": " << v.error;
      }
    }
  }
}

class LogStep : public testing::TestWithParam<Pair> {};

TEST_P(LogStep, VerifiesAtEveryRankCountUpTo64) {
  for (int p : test::rankCountsUpTo(64)) verifyMatrix(GetParam(), p, {0, 1, 13, 101});
}

TEST_P(LogStep, VerifiesAtLargeRankCounts) {
  // All-to-all moves p^2 blocks (Bruck's through Scratch log2 p times): one element each.
  const bool alltoall = !hasInPlace(GetParam().coll);
  for (int p : test::largeRankCounts({127, 128, 1000, 1024})) {
    if (alltoall)
      verifyMatrix(GetParam(), p, {1});
    else
      verifyMatrix(GetParam(), p, {0, 1, 5});
  }
}

INSTANTIATE_TEST_SUITE_P(LogStepSchedules, LogStep, testing::ValuesIn(kPairs), pairName);

// What one rank's schedule puts on the wire.
struct Wire {
  size_t sends = 0, recvs = 0, sentElems = 0, recvElems = 0;
};

Wire wire(const RankSchedule& s) {
  Wire w;
  for (const Step& st : s.steps) {
    if (st.kind == StepKind::Send) {
      ++w.sends;
      w.sentElems += st.src.count;
    } else if (st.kind == StepKind::Recv || st.kind == StepKind::RecvReduce) {
      ++w.recvs;
      w.recvElems += st.dst.count;
    }
  }
  return w;
}

RankSchedule build(Algo algo, Coll coll, int p, size_t count, int rank) {
  CollArgs a = proto(coll, p, count);
  a.rank = rank;
  return buildSchedule(algo, a);
}

int ceilLog2(int p) {
  int k = 0;
  while ((1 << k) < p) ++k;
  return k;
}

TEST(LogStepCost, HalvingDoublingAllReduceIsTwoLogStepsAndTwiceTheRingBytes) {
  for (int p : {2, 4, 8, 16, 32}) {
    size_t n = 16 * static_cast<size_t>(p) * 3;  // whole 64-byte chunks of 4-byte elements
    for (int r = 0; r < p; ++r) {
      Wire w = wire(build(Algo::HalvingDoubling, Coll::AllReduce, p, n, r));
      EXPECT_EQ(w.sends, 2u * ceilLog2(p)) << p;
      EXPECT_EQ(w.recvs, 2u * ceilLog2(p)) << p;
      EXPECT_EQ(w.sentElems, 2 * (p - 1) * n / p) << p;
      EXPECT_EQ(w.recvElems, 2 * (p - 1) * n / p) << p;
    }
  }
}

TEST(LogStepCost, HalvingDoublingReduceScatterIsLogStepsAndOptimalBytes) {
  for (int p : {2, 4, 8, 16}) {
    const size_t n = 7;
    for (int r = 0; r < p; ++r) {
      RankSchedule s = build(Algo::HalvingDoubling, Coll::ReduceScatter, p, n, r);
      Wire w = wire(s);
      EXPECT_EQ(w.sends, static_cast<size_t>(ceilLog2(p)));
      EXPECT_EQ(w.sentElems, (p - 1) * n);
      EXPECT_EQ(w.recvElems, (p - 1) * n);
      // Partial sums of the first kept half only: Scratch is far below the p n input.
      EXPECT_LE(s.scratchElems, p / 2 * n) << p;
    }
  }
}

TEST(LogStepCost, RecursiveDoublingAllReduceSendsTheWholeVectorEachRound) {
  for (int p : {2, 4, 8, 64}) {
    for (int r = 0; r < p; ++r) {
      Wire w = wire(build(Algo::RecursiveDoubling, Coll::AllReduce, p, 11, r));
      EXPECT_EQ(w.sends, static_cast<size_t>(ceilLog2(p)));
      EXPECT_EQ(w.sentElems, ceilLog2(p) * 11u);
    }
  }
}

TEST(LogStepCost, AllGathersSendEveryOtherBlockOnceInLogSteps) {
  for (int p : {2, 3, 4, 5, 7, 8, 13, 16, 33}) {
    for (int r = 0; r < p; ++r) {
      Wire w = wire(build(Algo::Bruck, Coll::AllGather, p, 3, r));
      EXPECT_EQ(w.sends, static_cast<size_t>(ceilLog2(p))) << "bruck p=" << p;
      EXPECT_EQ(w.sentElems, (p - 1) * 3u) << "bruck p=" << p;
      EXPECT_EQ(w.recvElems, (p - 1) * 3u) << "bruck p=" << p;
    }
  }
  for (int p : {2, 4, 8, 16}) {
    for (int r = 0; r < p; ++r) {
      Wire w = wire(build(Algo::RecursiveDoubling, Coll::AllGather, p, 3, r));
      EXPECT_EQ(w.sends, static_cast<size_t>(ceilLog2(p))) << "rd p=" << p;
      EXPECT_EQ(w.sentElems, (p - 1) * 3u) << "rd p=" << p;
    }
  }
}

TEST(LogStepCost, BruckAlltoAllMovesTheBlocksWithBitKInRoundK) {
  for (int p : {2, 3, 5, 8, 12, 31, 64}) {
    size_t blocks = 0;  // over the rounds: the slots i in [0, p) with bit k set
    for (int d = 1; d < p; d *= 2)
      for (int i = 0; i < p; ++i) blocks += (i & d) ? 1 : 0;
    for (int r = 0; r < p; ++r) {
      Wire w = wire(build(Algo::Bruck, Coll::AlltoAll, p, 2, r));
      EXPECT_EQ(w.sends, static_cast<size_t>(ceilLog2(p))) << p;
      EXPECT_EQ(w.sentElems, blocks * 2) << p;
      EXPECT_EQ(w.recvElems, blocks * 2) << p;
    }
  }
}

// The fold: a rank that sits out sends once and receives once; its partner adds that pair of
// messages to the power-of-two algorithm of p' = 4 ranks.
TEST(LogStepCost, NonPowerOfTwoFoldsTheExtraRanksIntoPartners) {
  const int p = 6;  // ranks 0 and 2 sit out, 1 and 3 are their partners, 4 and 5 plain
  const size_t n = 16 * 4;
  for (Algo algo : {Algo::HalvingDoubling, Algo::RecursiveDoubling}) {
    int steps = algo == Algo::HalvingDoubling ? 4 : 2;  // at p' = 4
    for (int r = 0; r < p; ++r) {
      RankSchedule s = build(algo, Coll::AllReduce, p, n, r);
      Wire w = wire(s);
      bool out = r < 4 && r % 2 == 0, partner = r < 4 && r % 2 == 1;
      EXPECT_EQ(w.sends, out ? 1u : static_cast<size_t>(steps + partner)) << algoName(algo) << " rank " << r;
      EXPECT_EQ(w.recvs, out ? 1u : static_cast<size_t>(steps + partner)) << algoName(algo) << " rank " << r;
      if (out) {
        EXPECT_EQ(s.peers(), std::vector<int>{r + 1});
      }
    }
  }
}

// Pairwise: p - 1 rounds, and at most kWindow (8) of them can be posted before any message
// completes: only the first 8 rounds' sends and receives wait for nothing.
TEST(LogStepCost, PairwiseHasPMinusOneRoundsAndABoundedWindow) {
  for (int p : {2, 5, 9, 40}) {
    for (int r = 0; r < p; ++r) {
      RankSchedule s = build(Algo::Pairwise, Coll::AlltoAll, p, 4, r);
      Wire w = wire(s);
      EXPECT_EQ(w.sends, static_cast<size_t>(p - 1));
      EXPECT_EQ(w.sentElems, (p - 1) * 4u);
      size_t free = 0;
      for (const Step& st : s.steps) free += st.peer >= 0 && st.depCount == 0;
      EXPECT_EQ(free, 2u * std::min(p - 1, 8)) << "p=" << p;
    }
  }
}

TEST(LogStepCost, PairwiseAlltoAllvSkipsEmptyMessagesOnBothSides) {
  CollArgs a = proto(Coll::AlltoAllV, 7, 2);
  std::vector<CollArgs> args = perRankArgs(a);
  size_t zeros = 0;
  for (int r = 0; r < 7; ++r) {
    for (int j = 0; j < 7; ++j) zeros += j != r && args[r].sendCounts[j] == 0;
    RankSchedule s = buildSchedule(Algo::Pairwise, args[r]);
    for (const Step& st : s.steps) {
      size_t elems = st.kind == StepKind::Send ? st.src.count : st.dst.count;
      if (st.peer < 0) continue;
      EXPECT_GT(elems, 0u) << "rank " << r << " " << stepKindName(st.kind) << " peer " << st.peer;
    }
  }
  EXPECT_GT(zeros, 0u);  // the case has empty messages to skip
  EXPECT_TRUE(verifyAlgorithm(Algo::Pairwise, args).ok);
}

// A numeric run of every rank's schedule in one process (steps in dependency order, messages
// in per-pair FIFO order, sends buffered): float sums of random data, so the order in which
// each rank combines contributions shows in the bits.
std::vector<std::vector<float>> runNumerically(const std::vector<CollArgs>& args, const std::vector<RankSchedule>& sched,
                                               const std::vector<std::vector<float>>& input) {
  const int p = static_cast<int>(args.size());
  struct Mem {
    std::vector<float> in, out, scratch;
  };
  std::vector<Mem> mem(p);
  std::vector<std::vector<uint8_t>> done(p);
  for (int r = 0; r < p; ++r) {
    mem[r].in = input[r];
    mem[r].out.assign(outputElems(args[r], r), 0);
    if (args[r].inPlace) mem[r].out = input[r];  // all-reduce: in place means one buffer
    mem[r].scratch.assign(sched[r].scratchElems, 0);
    done[r].assign(sched[r].steps.size(), 0);
  }
  auto at = [&](int r, const Region& g) {
    Mem& m = mem[r];
    std::vector<float>& v = g.buf == BufferId::Input ? (args[r].inPlace ? m.out : m.in) : g.buf == BufferId::Output ? m.out : m.scratch;
    return v.data() + g.offset;
  };
  std::map<std::pair<int, int>, std::deque<std::vector<float>>> wires;
  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < p; ++r) {
      // Per peer and direction, a step waits for the ones before it (the matching rule).
      std::map<std::pair<int, bool>, bool> blocked;
      for (size_t i = 0; i < sched[r].steps.size(); ++i) {
        const Step& st = sched[r].steps[i];
        if (done[r][i]) continue;
        bool ready = true;
        for (uint32_t d = 0; d < st.depCount; ++d) ready &= done[r][sched[r].deps[st.depBegin + d]] != 0;
        bool isRecv = st.kind == StepKind::Recv || st.kind == StepKind::RecvReduce;
        if (st.peer >= 0 && blocked[{st.peer, isRecv}]) ready = false;
        if (isRecv && wires[{st.peer, r}].empty()) ready = false;
        if (!ready) {
          if (st.peer >= 0) blocked[{st.peer, isRecv}] = true;
          continue;
        }
        if (st.kind == StepKind::Send) {
          wires[{r, st.peer}].emplace_back(at(r, st.src), at(r, st.src) + st.src.count);
        } else if (isRecv) {
          std::vector<float> msg = std::move(wires[{st.peer, r}].front());
          wires[{st.peer, r}].pop_front();
          float* dst = at(r, st.dst);
          const float* local = st.kind == StepKind::RecvReduce ? at(r, st.src) : nullptr;
          for (size_t k = 0; k < msg.size(); ++k) dst[k] = local ? local[k] + msg[k] : msg[k];
        } else if (st.kind == StepKind::Copy) {
          std::memmove(at(r, st.dst), at(r, st.src), st.dst.count * sizeof(float));
        } else {
          for (size_t k = 0; k < st.dst.count; ++k) at(r, st.dst)[k] /= st.divisor;
        }
        done[r][i] = 1;
        progress = true;
      }
    }
  }
  std::vector<std::vector<float>> out(p);
  for (int r = 0; r < p; ++r) {
    EXPECT_EQ(std::count(done[r].begin(), done[r].end(), 0), 0) << "rank " << r << " did not finish";
    out[r] = mem[r].out;
  }
  return out;
}

// The first (rank, element) whose bits differ from rank 0's; {-1, 0} when all agree.
std::pair<int, size_t> firstDifference(const std::vector<std::vector<float>>& out) {
  for (size_t r = 1; r < out.size(); ++r)
    for (size_t k = 0; k < out[0].size(); ++k)
      if (std::memcmp(&out[r][k], &out[0][k], sizeof(float)) != 0) return {static_cast<int>(r), k};
  return {-1, 0};
}

std::vector<std::vector<float>> randomInputs(int p, size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> value(-1000, 1000);
  std::vector<std::vector<float>> input(p, std::vector<float>(n));
  for (auto& v : input)
    for (float& x : v) x = value(rng);
  return input;
}

TEST(LogStepNumeric, AllReducesGiveIdenticalBitsOnEveryRank) {
  std::mt19937 rng(7);
  for (Algo algo : {Algo::HalvingDoubling, Algo::RecursiveDoubling}) {
    for (int p : {2, 3, 5, 6, 7, 8, 12, 13}) {
      for (bool inPlace : {false, true}) {
        const size_t n = 37;
        CollArgs a = proto(Coll::AllReduce, p, n);
        a.inPlace = inPlace;
        a.average = p % 2 == 1;
        std::vector<CollArgs> args = perRankArgs(a);
        std::vector<RankSchedule> sched;
        for (int r = 0; r < p; ++r) sched.push_back(buildSchedule(algo, args[r]));
        std::vector<std::vector<float>> input = randomInputs(p, n, rng);
        std::vector<std::vector<float>> out = runNumerically(args, sched, input);
        for (size_t k = 0; k < n; ++k) {
          double exact = 0;
          for (int r = 0; r < p; ++r) exact += input[r][k];
          if (a.average) exact /= p;
          EXPECT_NEAR(out[0][k], exact, 1e-2) << algoName(algo) << " p=" << p << " element " << k;
        }
        auto [rank, elem] = firstDifference(out);
        EXPECT_EQ(rank, -1) << algoName(algo) << " p=" << p << (inPlace ? " in place" : "") << ": rank " << rank << " element "
                            << elem << " is " << out[std::max(rank, 0)][elem] << ", rank 0 has " << out[0][elem];
      }
    }
  }
}

// The control: when each rank sums everyone's vector in its own order (own, r+1, r+2), the
// bits differ, and the check above sees it.
TEST(LogStepNumeric, TheBitCheckSeesRankDependentSummationOrder) {
  const int p = 3;
  const size_t n = 64;
  std::mt19937 rng(11);
  std::vector<CollArgs> args = perRankArgs(proto(Coll::AllReduce, p, n));
  std::vector<RankSchedule> sched(p);
  for (int r = 0; r < p; ++r) {
    RankSchedule& s = sched[r];
    for (int k = 1; k < p; ++k) s.add({StepKind::Send, (r + k) % p, 1, {BufferId::Input, 0, n}, {}});
    uint32_t first = s.add({StepKind::RecvReduce, (r + 1) % p, 1, {BufferId::Input, 0, n}, {BufferId::Output, 0, n}});
    s.add({StepKind::RecvReduce, (r + 2) % p, 1, {BufferId::Output, 0, n}, {BufferId::Output, 0, n}}, {first});
  }
  EXPECT_NE(firstDifference(runNumerically(args, sched, randomInputs(p, n, rng))).first, -1);
}

}  // namespace
}  // namespace chorus

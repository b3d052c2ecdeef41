// The ring family (and, sharing its matrix, the tree family), checked symbolically
// (collectives/verifier.h): every collective each serves for p = 1..64, counts 0, 1, 13 and
// one that spans many slices (slices small enough that many pipelined rounds are in flight),
// in place and out of place, average on and off, roots first, middle and last, and for the V
// forms irregular blocks with empty ones and gaps. Then the bytes per rank and the shape
// collectives/ring.cpp's header claims, bounded scratch, and that the hazard dependencies are
// all needed. CHORUS_TEST_SWEEP=short (the sanitizer stage) checks fewer rank counts:
// fixtures/sweep.h.
#include <gtest/gtest.h>

#include "collectives/collective.h"
#include "collectives/verifier.h"
#include "fixtures/sweep.h"

namespace chorus {
namespace {

std::vector<RankSchedule> ringSchedules(int p, size_t count, size_t elemSize, size_t sliceBytes, bool inPlace, bool average) {
  std::vector<RankSchedule> out;
  for (int r = 0; r < p; ++r) {
    CollArgs prm;
    prm.rank = r;
    prm.nranks = p;
    prm.count = count;
    prm.elemSize = elemSize;
    prm.sliceBytes = sliceBytes;
    prm.inPlace = inPlace;
    prm.average = average;
    out.push_back(buildSchedule(Algo::Ring, prm));
  }
  return out;
}

TEST(RingSchedule, VerifiesForAllSmallRankCountsAndAwkwardCounts) {
  for (int p = 1; p <= 16; ++p) {
    for (size_t count : {0, 1, 2, 7, 13, 64, 97, 1000}) {
      for (size_t slice : {64, 256, 256 * 1024}) {
        for (bool inPlace : {false, true}) {
          for (bool avg : {false, true}) {
            auto s = ringSchedules(p, count, 4, slice, inPlace, avg);
            VerifyResult v = verifyAllReduce(s, count, inPlace);
            ASSERT_TRUE(v.ok) << "p=" << p << " count=" << count << " slice=" << slice << " inPlace=" << inPlace << " avg=" << avg
                              << ": " << v.error << "\n"
                              << s[0].describe();
          }
        }
      }
    }
  }
}

TEST(RingSchedule, VerifiesWithOneByteAndEightByteElements) {
  for (int p : {3, 5, 8}) {
    for (size_t elem : {1, 2, 8}) {
      auto s = ringSchedules(p, 1009, elem, 128, false, false);
      VerifyResult v = verifyAllReduce(s, 1009, false);
      EXPECT_TRUE(v.ok) << p << " " << elem << ": " << v.error;
    }
  }
}

TEST(RingSchedule, StepAndTrafficCountsMatchTheRingFormula) {
  // One slice per chunk: each rank sends 2(p-1) messages of count/p elements.
  for (int p : {2, 3, 5, 8}) {
    size_t count = 64 * p;
    auto s = ringSchedules(p, count, 4, 1 << 20, false, false);
    for (const RankSchedule& rs : s) {
      size_t sends = 0, sentElems = 0;
      for (const Step& st : rs.steps)
        if (st.kind == StepKind::Send) {
          ++sends;
          sentElems += st.src.count;
        }
      EXPECT_EQ(sends, static_cast<size_t>(2 * (p - 1)));
      EXPECT_EQ(sentElems, 2 * (p - 1) * count / p);
      EXPECT_EQ(rs.peers().size(), p == 2 ? 1u : 2u);
    }
  }
}

TEST(RingSchedule, SingleRankCopiesOutOfPlaceAndDoesNothingInPlace) {
  auto out = ringSchedules(1, 10, 4, 64, false, false);
  ASSERT_EQ(out[0].steps.size(), 1u);
  EXPECT_EQ(out[0].steps[0].kind, StepKind::Copy);
  EXPECT_TRUE(ringSchedules(1, 10, 4, 64, true, false)[0].steps.empty());
}

CollArgs ringArgs(Coll coll, int p, size_t count, size_t sliceBytes) {
  CollArgs a;
  a.coll = coll;
  a.nranks = p;
  a.count = count;
  a.sliceBytes = sliceBytes;
  return a;
}

// Irregular blocks for the V forms, about `scale` elements each: some empty, with gaps between
// them.
void irregularBlocks(CollArgs* a, size_t scale) {
  size_t off = 0;
  for (int q = 0; q < a->nranks; ++q) {
    size_t n = q % 3 == 1 ? 0 : (7 * q + scale) % (2 * scale + 1);
    a->counts.push_back(n);
    a->displs.push_back(off);
    off += n + (q % 4 == 3 ? 5 : 0);
  }
}

struct RankTraffic {
  size_t sent = 0, received = 0;
  std::vector<int> peers;
};

RankTraffic trafficAt(CollArgs a, int rank) {
  a.rank = rank;
  RankSchedule s = buildSchedule(Algo::Ring, a);
  RankTraffic t;
  t.peers = s.peers();
  for (const Step& st : s.steps) {
    if (st.kind == StepKind::Send) t.sent += st.src.count;
    if (st.kind == StepKind::Recv || st.kind == StepKind::RecvReduce) t.received += st.dst.count;
    if (st.peer >= 0) EXPECT_GT(st.kind == StepKind::Send ? st.src.count : st.dst.count, 0u) << "zero-element message";
  }
  return t;
}

// Every case of the matrix for one (family, collective) through verifyAlgorithm; reports the
// first few failing cases and counts them all.
void verifyMatrix(Algo algo, Coll coll, size_t elemSize, int maxRanks) {
  const bool rooted = coll == Coll::Broadcast || coll == Coll::Reduce;
  const bool vForm = coll == Coll::AllGatherV || coll == Coll::ReduceScatterV;
  // Many 64-byte slices: 1200 bytes where count is the whole buffer (all-reduce chunks, chain
  // and tree halves), 160 where it is one rank's block (p of them).
  const bool wholeBuffer = coll == Coll::AllReduce || rooted;
  const size_t several = (wholeBuffer ? 1200 : 160) / elemSize;
  int failures = 0;
  for (int p : test::rankCountsUpTo(maxRanks))
    for (int root : {0, p / 2, p - 1}) {
      if (!rooted && root) continue;
      for (size_t count : {size_t{0}, size_t{1}, size_t{13}, several}) {
        for (bool inPlace : {false, true})
          for (bool average : {false, true}) {
            if (average && !isReduction(coll)) continue;
            CollArgs a = ringArgs(coll, p, count, 64);
            a.root = root;
            a.elemSize = elemSize;
            a.inPlace = inPlace;
            a.average = average;
            // V forms: `count` scales irregular blocks (some empty, gaps between some).
            if (vForm) irregularBlocks(&a, count);
            VerifyResult v = verifyAlgorithm(algo, a);
            if (!v.ok && ++failures <= 5)
              ADD_FAILURE() << algoName(algo) << " " << collName(coll) << " p=" << p << " root=" << root << " count=" << count
                            << " elemSize=" << elemSize << " inPlace=" << inPlace << " average=" << average << ": " << v.error;
          }
      }
    }
  EXPECT_EQ(failures, 0);
}

struct FamilyColl {
  Algo algo;
  Coll coll;
};

void PrintTo(const FamilyColl& f, std::ostream* os) { *os << algoName(f.algo) << " " << collName(f.coll); }

class RingAndTreeMatrix : public testing::TestWithParam<FamilyColl> {};

TEST_P(RingAndTreeMatrix, VerifiesUpTo64Ranks) {
  verifyMatrix(GetParam().algo, GetParam().coll, 4, 64);
}

TEST_P(RingAndTreeMatrix, VerifiesWithOneTwoAndEightByteElements) {
  for (size_t elemSize : {1, 2, 8}) verifyMatrix(GetParam().algo, GetParam().coll, elemSize, 9);
}

INSTANTIATE_TEST_SUITE_P(Served, RingAndTreeMatrix,
                         testing::Values(FamilyColl{Algo::Ring, Coll::AllReduce}, FamilyColl{Algo::Ring, Coll::AllGather},
                                         FamilyColl{Algo::Ring, Coll::ReduceScatter}, FamilyColl{Algo::Ring, Coll::AllGatherV},
                                         FamilyColl{Algo::Ring, Coll::ReduceScatterV}, FamilyColl{Algo::Ring, Coll::Broadcast},
                                         FamilyColl{Algo::Ring, Coll::Reduce}, FamilyColl{Algo::Tree, Coll::AllReduce},
                                         FamilyColl{Algo::Tree, Coll::Broadcast}, FamilyColl{Algo::Tree, Coll::Reduce}),
                         [](const testing::TestParamInfo<FamilyColl>& info) {
                           return std::string(algoName(info.param.algo)) + "_" + collName(info.param.coll);
                         });

TEST(RingSchedule, VFormsWithOneNonEmptyBlockOrNone) {
  for (Coll c : {Coll::AllGatherV, Coll::ReduceScatterV})
    for (int p : {1, 2, 3, 6})
      for (int only = -1; only < p; ++only) {
        CollArgs a = ringArgs(c, p, 0, 64);
        for (int q = 0; q < p; ++q) {
          a.counts.push_back(q == only ? 100 : 0);
          a.displs.push_back(q == only ? 3 : 0);
        }
        VerifyResult v = verifyAlgorithm(Algo::Ring, a);
        EXPECT_TRUE(v.ok) << collName(c) << " p=" << p << " only=" << only << ": " << v.error;
      }
}

// The hazards the ring and tree builders' dependencies are there for (both forward partial
// sums through the ScratchSlots of collectives/ring.h): the schedules as built verify, and
// dropping the dependencies of the steps `pick` selects, on every rank, must be caught.
struct Hazard {
  const char* what;
  Algo algo;
  Coll coll;
  int p;
  size_t count;
  bool inPlace;
  bool (*pick)(const Step&);
};

bool startsAPartialInScratch(const Step& st) {
  // The first RecvReduce of a partial sum reads Input; its only dependency is the slot's reuse.
  return st.kind == StepKind::RecvReduce && st.dst.buf == BufferId::Scratch && st.src.buf == BufferId::Input;
}
bool isRecv(const Step& st) {
  return st.kind == StepKind::Recv;
}

TEST(RingAndTreeSchedules, EveryHazardDependencyIsNeeded) {
  // 64-byte slices: with 320 elements per block or 1280 per tree half, more slices than slots.
  const Hazard hazards[] = {
      {"ring reduce-scatter: a scratch slot is rewritten only after its partial was sent", Algo::Ring, Coll::ReduceScatter, 4,
       320, false, startsAPartialInScratch},
      {"ring reduce: the same along the chain", Algo::Ring, Coll::Reduce, 5, 320, false, startsAPartialInScratch},
      {"tree reduce: the same up the trees", Algo::Tree, Coll::Reduce, 5, 2560, false, startsAPartialInScratch},
      {"tree all-reduce: the result lands in Output after the partial sum sent from there left", Algo::Tree, Coll::AllReduce, 7,
       64, false, isRecv},
      {"tree all-reduce in place: on a leaf too, whose Input is Output", Algo::Tree, Coll::AllReduce, 2, 64, true, isRecv},
      {"ring all-reduce: all-gather receives wait for the reduce-scatter sends from the same chunk", Algo::Ring, Coll::AllReduce,
       4, 64, true, isRecv},
  };
  for (const Hazard& h : hazards) {
    CollArgs a = ringArgs(h.coll, h.p, h.count, 64);
    a.inPlace = h.inPlace;
    a.root = h.p - 1;
    std::vector<CollArgs> perRank(h.p, a);
    std::vector<RankSchedule> s;
    for (int r = 0; r < h.p; ++r) {
      perRank[r].rank = r;
      s.push_back(buildSchedule(h.algo, perRank[r]));
    }
    VerifyResult built = verifyCollective(perRank, s);
    ASSERT_TRUE(built.ok) << h.what << ": " << built.error;
    int dropped = 0;
    for (RankSchedule& rs : s)
      for (Step& st : rs.steps)
        if (h.pick(st) && st.depCount) {
          st.depCount = 0;
          ++dropped;
        }
    EXPECT_GT(dropped, 0) << h.what;
    EXPECT_FALSE(verifyCollective(perRank, s).ok) << h.what;
  }
}

TEST(RingSchedule, GatherAndScatterMoveEveryOtherBlockOnceToTheNeighbours) {
  for (int p : {2, 3, 5, 8}) {
    for (Coll c : {Coll::AllGather, Coll::ReduceScatter, Coll::AllGatherV, Coll::ReduceScatterV}) {
      CollArgs a = ringArgs(c, p, 100, 64);
      if (c == Coll::AllGatherV || c == Coll::ReduceScatterV) irregularBlocks(&a, 50);
      size_t total = 0;
      for (size_t n : a.counts) total += n;
      for (int r = 0; r < p; ++r) {
        RankTraffic t = trafficAt(a, r);
        const int left = (r + p - 1) % p, right = (r + 1) % p;
        for (int peer : t.peers) EXPECT_TRUE(peer == left || peer == right) << peer;
        if (c == Coll::AllGather || c == Coll::ReduceScatter) {
          EXPECT_EQ(t.sent, (p - 1) * a.count);
          EXPECT_EQ(t.received, (p - 1) * a.count);
        } else if (c == Coll::AllGatherV) {
          EXPECT_EQ(t.sent, total - a.counts[right]) << r;
          EXPECT_EQ(t.received, total - a.counts[r]) << r;
        } else {
          EXPECT_EQ(t.sent, total - a.counts[r]) << r;
          EXPECT_EQ(t.received, total - a.counts[left]) << r;
        }
      }
    }
  }
}

TEST(RingSchedule, BroadcastAndReduceAreAChainThroughTheRoot) {
  for (int p : {2, 3, 6}) {
    for (int root : {0, p - 1}) {
      CollArgs a = ringArgs(Coll::Broadcast, p, 1000, 256);
      a.root = root;
      CollArgs b = a;
      b.coll = Coll::Reduce;
      for (int r = 0; r < p; ++r) {
        RankTraffic bc = trafficAt(a, r), rd = trafficAt(b, r);
        const bool last = r == (root + p - 1) % p;  // the broadcast chain's end
        EXPECT_EQ(bc.received, r == root ? 0u : 1000u);
        EXPECT_EQ(bc.sent, last ? 0u : 1000u);
        EXPECT_EQ(rd.sent, r == root ? 0u : 1000u);
        EXPECT_EQ(rd.received, r == (root + 1) % p ? 0u : 1000u);
      }
    }
  }
}

TEST(RingSchedule, ForwardedPartialSumsUseAFewScratchSlices) {
  const size_t sliceBytes = 4096, sliceElems = sliceBytes / 4;
  for (int p : {2, 3, 7}) {
    CollArgs rs = ringArgs(Coll::ReduceScatter, p, 1 << 18, sliceBytes);
    CollArgs rd = ringArgs(Coll::Reduce, p, 1 << 18, sliceBytes);
    rd.root = 1 % p;
    for (int r = 0; r < p; ++r) {
      rs.rank = rd.rank = r;
      size_t scratch = buildSchedule(Algo::Ring, rs).scratchElems;
      EXPECT_LE(scratch, 8 * sliceElems);
      EXPECT_EQ(scratch > 0, p > 2) << "p=2 forwards no partial sums";
      // The reduce chain's ends (root+1 sends its Input, the root reduces into Output) need none.
      bool middle = r != rd.root && r != (rd.root + 1) % p;
      EXPECT_EQ(buildSchedule(Algo::Ring, rd).scratchElems > 0, middle) << r;
      EXPECT_LE(buildSchedule(Algo::Ring, rd).scratchElems, 8 * sliceElems);
    }
  }
}

TEST(Verifier, CatchesASendBeforeItsDataIsReduced) {
  auto s = ringSchedules(4, 400, 4, 1 << 20, false, false);
  // Drop the dependencies of every step of rank 2: its forwarding sends may now read chunks
  // before the reduction wrote them.
  for (Step& st : s[2].steps) st.depCount = 0;
  VerifyResult v = verifyAllReduce(s, 400, false);
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.error.find("rank 2"), std::string::npos) << v.error;
}

TEST(Verifier, CatchesMismatchedSizes) {
  auto s = ringSchedules(3, 300, 4, 1 << 20, false, false);
  for (Step& st : s[1].steps)
    if (st.kind == StepKind::RecvReduce) {
      st.dst.count -= 1;
      st.src.count -= 1;
      break;
    }
  VerifyResult v = verifyAllReduce(s, 300, false);
  EXPECT_FALSE(v.ok);
}

TEST(Verifier, CatchesAMissingContribution) {
  auto s = ringSchedules(3, 30, 4, 1 << 20, false, false);
  s[0].steps.clear();  // rank 0 does nothing: its peers wait forever
  s[0].deps.clear();
  VerifyResult v = verifyAllReduce(s, 30, false);
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.error.find("never ran"), std::string::npos) << v.error;
}

}  // namespace
}  // namespace chorus

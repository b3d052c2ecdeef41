// The ring all-reduce schedule, checked symbolically (collectives/verifier.h) for every rank
// count 1..16 and awkward element counts, in place and out of place, with slices small
// enough that many pipelined rounds are in flight.
#include <gtest/gtest.h>

#include "collectives/collective.h"
#include "collectives/verifier.h"

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

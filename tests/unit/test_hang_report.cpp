// The hang report's summary (src/health/hang_report.cpp): the culprits first, with host and pid,
// then the ranks that wait for them, in rank ranges.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "collectives/collective.h"
#include "fixtures/stamps.h"
#include "health/hang_report.h"

namespace chorus {
namespace {

using test::broadcastStamp;

std::vector<PeerCard> cardsFor(int n) {
  std::vector<PeerCard> cards(n);
  for (int r = 0; r < n; ++r) {
    cards[r].rank = r;
    cards[r].pid = 1000 + r;
    snprintf(cards[r].hostname, sizeof cards[r].hostname, "h%d", r / 4);
  }
  return cards;
}

RankStatus waiting(int rank, uint32_t seq, int on) {
  RankStatus s;
  s.rank = rank;
  s.state = RankState::InCall;
  s.coll = static_cast<uint8_t>(Coll::AllReduce);
  s.startedSeq = seq;
  s.finishedSeq = seq - 1;
  s.waitingOn = on;
  return s;
}

TEST(RankRanges, CompressesRuns) {
  EXPECT_EQ(rankRanges({0, 1, 2, 3, 5, 7, 8}), "0-3,5,7-8");
  EXPECT_EQ(rankRanges({4}), "4");
  EXPECT_EQ(rankRanges({}), "");
}

TEST(HangReport, NamesTheRankThatHasNotEnteredTheCall) {
  const int n = 32;
  std::vector<RankStatus> st;
  for (int r = 0; r < n; ++r) st.push_back(waiting(r, 42, 15));
  st[15].state = RankState::Idle;
  st[15].startedSeq = 41;
  st[15].finishedSeq = 41;
  HangReport rep = summarizeStatuses(st, cardsFor(n));
  EXPECT_EQ(rep.summary,
            "rank 15 (host h3, pid 1015) last finished #41 and has not entered #42; ranks 0-14,16-31 wait in chorusAllReduce #42 "
            "(on rank 15)");
  EXPECT_EQ(rep.culprits, std::vector<int>{15});
}

TEST(HangReport, NamesUnreachableRanksFirst) {
  const int n = 8;
  std::vector<RankStatus> st;
  for (int r = 0; r < n; ++r) st.push_back(waiting(r, 7, r == 4 ? 6 : 3));
  st[3] = RankStatus{};
  st[3].rank = 3;  // did not answer
  HangReport rep = summarizeStatuses(st, cardsFor(n));
  EXPECT_EQ(rep.summary.rfind("rank 3 (host h0, pid 1003) did not answer", 0), 0u) << rep.summary;
  EXPECT_NE(rep.summary.find("wait in chorusAllReduce #7 (on rank 3)"), std::string::npos) << rep.summary;
  EXPECT_EQ(rep.culprits, std::vector<int>{3});
  EXPECT_EQ(rep.lines.size(), 3u);  // unreachable, waiting on 3, waiting on 6
}

TEST(HangReport, ARankThatDestroyedTheCommunicatorIsACulprit) {
  const int n = 4;
  std::vector<RankStatus> st;
  for (int r = 0; r < n; ++r) st.push_back(waiting(r, 9, 1));
  st[1] = RankStatus{};
  st[1].rank = 1;
  st[1].state = RankState::Closed;
  HangReport rep = summarizeStatuses(st, cardsFor(n));
  EXPECT_EQ(rep.culprits, std::vector<int>{1});
  EXPECT_EQ(rep.summary.rfind("rank 1 (host h0, pid 1001) destroyed the communicator", 0), 0u) << rep.summary;
}

TEST(HangReport, RanksInAnEarlierCallAreBehind) {
  const int n = 4;
  std::vector<RankStatus> st;
  for (int r = 0; r < n; ++r) st.push_back(waiting(r, 9, -1));
  st[2] = waiting(2, 8, 1);  // still in #8 while the others are in #9
  HangReport rep = summarizeStatuses(st, cardsFor(n));
  EXPECT_EQ(rep.culprits, std::vector<int>{2});
  EXPECT_NE(rep.summary.find("rank 2 (host h0, pid 1002) waits in chorusAllReduce #8, behind #9"), std::string::npos) << rep.summary;
}

TEST(HangReport, AllIdleIsNotAHang) {
  std::vector<RankStatus> st(3);
  for (int r = 0; r < 3; ++r) {
    st[r].rank = r;
    st[r].state = RankState::Idle;
    st[r].startedSeq = st[r].finishedSeq = 5;
  }
  HangReport rep = summarizeStatuses(st, cardsFor(3));
  EXPECT_TRUE(rep.culprits.empty());
  EXPECT_EQ(rep.summary, "ranks 0-2 are idle after #5");
}

// Ranks waiting in the same collective with different roots wait for each other forever: the
// report names the disagreement, the odd rank out as the culprit, and calls it misuse.
TEST(HangReport, NamesRanksThatDisagreeAboutACall) {
  const int n = 4;
  std::vector<RankStatus> st;
  for (int r = 0; r < n; ++r) {
    st.push_back(waiting(r, 5, r == 2 ? 1 : -1));
    st[r].coll = static_cast<uint8_t>(Coll::Broadcast);
    st[r].call = broadcastStamp(5, r == 2 ? 1 : 0);
  }
  HangReport rep = summarizeStatuses(st, cardsFor(n));
  EXPECT_TRUE(rep.mismatch);
  EXPECT_EQ(rep.culprits, std::vector<int>{2});
  EXPECT_EQ(rep.summary.rfind("ranks disagree about collective #5: rank 2 called chorusBroadcast #5 (", 0), 0u) << rep.summary;
  EXPECT_NE(rep.summary.find("root 1); ranks 0-1,3 called chorusBroadcast #5 ("), std::string::npos) << rep.summary;
}

TEST(HangReport, ATieNamesEveryDisagreeingRank) {
  std::vector<RankStatus> st;
  for (int r = 0; r < 2; ++r) {
    st.push_back(waiting(r, 3, 1 - r));
    st[r].call = broadcastStamp(3, 1 - r);  // swapped roots: both wait to receive
  }
  HangReport rep = summarizeStatuses(st, cardsFor(2));
  EXPECT_TRUE(rep.mismatch);
  EXPECT_EQ(rep.culprits, (std::vector<int>{0, 1}));
}

TEST(HangReport, StampsOfDifferentOrdinalsAreNoDisagreement) {
  std::vector<RankStatus> st;
  for (int r = 0; r < 3; ++r) {
    st.push_back(waiting(r, r == 1 ? 6 : 7, -1));
    st[r].call = broadcastStamp(st[r].startedSeq, 0);
  }
  HangReport rep = summarizeStatuses(st, cardsFor(3));
  EXPECT_FALSE(rep.mismatch);
  EXPECT_EQ(rep.culprits, std::vector<int>{1});
}

TEST(HangReport, TravelsWithItsCulprits) {
  HangReport rep;
  rep.summary = "rank 3 did not answer";
  rep.lines = {"a", "", "b"};
  rep.culprits = {3, 17};
  rep.mismatch = true;
  HangReport back = decodeReport(encodeReport(rep));
  EXPECT_EQ(back.summary, rep.summary);
  EXPECT_EQ(back.lines, rep.lines);
  EXPECT_EQ(back.culprits, rep.culprits);
  EXPECT_TRUE(back.mismatch);
  HangReport none = decodeReport(encodeReport(HangReport{"all idle", {}, {}, false}));
  EXPECT_TRUE(none.culprits.empty());
  EXPECT_EQ(none.summary, "all idle");
  // Text without the culprits line (or junk) is a summary, never a crash.
  EXPECT_EQ(decodeReport("just text").summary, "just text");
  EXPECT_TRUE(decodeReport("culprits 1 ,,x\ns").culprits.empty());
  EXPECT_EQ(decodeReport("culprits 1 99999999999999\ns").culprits.size(), 0u);
}

}  // namespace
}  // namespace chorus

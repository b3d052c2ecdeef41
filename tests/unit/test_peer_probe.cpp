// Asking a stalled wait's peer (src/core/peer_probe.h) and the send-only run-ahead watch
// (src/core/run_ahead.h), fed made-up answers: which answers end a wait, with which code, and
// when a peer that only receives from this rank counts as too late.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "collectives/collective.h"
#include "fixtures/stamps.h"
#include "base/error.h"
#include "core/peer_probe.h"
#include "core/run_ahead.h"

namespace chorus {
namespace {

using test::broadcastStamp;

PeerProbe answered(RankState state, uint32_t started, uint32_t finished, const CallStamp& call) {
  PeerProbe p;
  p.reach = HealthService::Reach::Answered;
  p.status.state = state;
  p.status.startedSeq = started;
  p.status.finishedSeq = finished;
  p.status.call = call;
  return p;
}

chorusResult_t codeOf(int peer, const PeerProbe& p, const CallStamp& ours, bool finishedIsMismatch = false) {
  try {
    throwIfPeerWillNotCome(peer, p, ours, "a test", finishedIsMismatch);
  } catch (const Error& e) {
    EXPECT_EQ(e.peer(), peer) << e.what();
    return e.code();
  }
  return chorusSuccess;
}

TEST(PeerProbe, GoneAndBrokenPeersEndTheWaitAsRemoteErrors) {
  PeerProbe gone;
  gone.reach = HealthService::Reach::Gone;
  EXPECT_EQ(codeOf(3, gone, broadcastStamp(5, 0)), chorusRemoteError);
  EXPECT_EQ(codeOf(3, answered(RankState::Broken, 5, 4, broadcastStamp(5, 0)), broadcastStamp(5, 0)), chorusRemoteError);
}

TEST(PeerProbe, SilentOrBehindPeersMayStillCome) {
  PeerProbe silent;  // stopped, or slow: the deadline decides
  EXPECT_EQ(codeOf(1, silent, broadcastStamp(5, 0)), chorusSuccess);
  EXPECT_EQ(codeOf(1, answered(RankState::InCall, 4, 3, broadcastStamp(4, 0)), broadcastStamp(5, 0)), chorusSuccess);
  EXPECT_EQ(codeOf(1, answered(RankState::Idle, 4, 4, broadcastStamp(4, 0)), broadcastStamp(5, 0), true), chorusSuccess);
  EXPECT_EQ(codeOf(1, answered(RankState::InCall, 5, 4, broadcastStamp(5, 0)), broadcastStamp(5, 0)), chorusSuccess);  // same call
}

TEST(PeerProbe, SameCollectiveWithAnotherStampIsAMismatch) {
  try {
    throwIfPeerWillNotCome(2, answered(RankState::InCall, 5, 4, broadcastStamp(5, 1)), broadcastStamp(5, 0), "a test");
    FAIL() << "no mismatch";
  } catch (const CallMismatch& m) {
    EXPECT_EQ(m.code(), chorusInvalidUsage);
    EXPECT_EQ(m.sent().root, 1);
    EXPECT_EQ(m.posted().root, 0);
  }
  // Outside a collective (send/recv, init) nothing is compared.
  EXPECT_EQ(codeOf(2, answered(RankState::InCall, 5, 4, broadcastStamp(5, 1)), CallStamp{}), chorusSuccess);
}

TEST(PeerProbe, APeerPastTheCallIsAMismatchOnlyWhereAsked) {
  PeerProbe past = answered(RankState::InCall, 9457, 9456, broadcastStamp(9457, 0));
  EXPECT_EQ(codeOf(2, past, broadcastStamp(5, 2)), chorusSuccess);
  EXPECT_EQ(codeOf(2, past, broadcastStamp(5, 2), true), chorusInvalidUsage);
  // Ordinals wrap at 2^32: 3 is after 0xfffffff0.
  EXPECT_EQ(codeOf(2, answered(RankState::Idle, 3, 3, broadcastStamp(3, 0)), broadcastStamp(0xfffffff0u, 0), true), chorusInvalidUsage);
}

// A schedule in which this rank (0 of 3) sends to 1 and 2 and receives from nobody, or also
// receives from 1.
RankSchedule rootSchedule(bool hearsFromOne) {
  RankSchedule s;
  s.nranks = 3;
  Step send;
  send.kind = StepKind::Send;
  send.src = {BufferId::Input, 0, 1};
  send.peer = 1;
  s.add(send);
  send.peer = 2;
  s.add(send);
  if (hearsFromOne) {
    Step recv;
    recv.kind = StepKind::Recv;
    recv.peer = 1;
    recv.dst = {BufferId::Output, 0, 1};
    s.add(recv);
  }
  return s;
}

TEST(RunAheadWatch, APeerThatKeepsUpIsAskedAtMostOncePerPeriod) {
  RankSchedule s = rootSchedule(false);
  ExecPlan plan(s);
  RunAheadWatch watch(3, /*timeout=*/0.2, /*period=*/0.02);
  uint32_t seq = 0;
  int asked = 0;
  auto keepsUp = [&](int, Deadline) {
    ++asked;
    return answered(RankState::InCall, seq, seq - 1, broadcastStamp(seq, 0));
  };
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  while (std::chrono::steady_clock::now() < until) {
    ++seq;
    watch.afterRun(plan, seq, seq, broadcastStamp(seq, 0), keepsUp);
  }
  EXPECT_GT(seq, 1000u);
  EXPECT_GT(asked, 2);
  // Two peers, one question per period each, and one per half lead of calls (a peer more
  // than kMaxLead calls behind its last answer is asked at once).
  EXPECT_LT(asked, 2 * (500 / 20 + 2) + 2 * static_cast<int>(seq / (RunAheadWatch::kMaxLead / 2)) + 4);
}

TEST(RunAheadWatch, APeerThatStopsIsATimeoutNamingIt) {
  RankSchedule s = rootSchedule(false);
  ExecPlan plan(s);
  RunAheadWatch watch(3, 0.2, 0.02);
  auto twoStopped = [](int peer, Deadline) {
    if (peer == 2) return PeerProbe{};  // silent
    return answered(RankState::Idle, 1u << 30, 1u << 30, broadcastStamp(1u << 30, 0));
  };
  uint32_t seq = 0;
  auto start = std::chrono::steady_clock::now();
  try {
    for (;;) {
      ++seq;
      watch.afterRun(plan, seq, seq, broadcastStamp(seq, 0), twoStopped);
      ASSERT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5)) << "never timed out";
    }
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusTimeout) << e.what();
    EXPECT_EQ(e.peer(), 2);
    EXPECT_NE(std::string(e.what()).find("rank 2 does not answer"), std::string::npos) << e.what();
  }
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(took, 0.2);
  EXPECT_LT(took, 1.5);
}

// A live peer that falls far behind holds the sender back (asking it) until it is within half
// the lead again; it is not an error while it keeps moving.
TEST(RunAheadWatch, ASenderFarAheadWaitsForTheSlowPeer) {
  RankSchedule s = rootSchedule(false);
  ExecPlan plan(s);
  RunAheadWatch watch(3, /*timeout=*/5, /*period=*/10);  // no periodic question in this test
  uint32_t peerAt = 1;  // the collective peer 1 is in; each question finds it 50 further
  int asked = 0;
  auto slow = [&](int peer, Deadline) {
    ++asked;
    if (peer == 1) peerAt += 50;
    uint32_t at = peer == 1 ? peerAt : 1u << 30;
    return answered(RankState::InCall, at, at - 1, broadcastStamp(at, 0));
  };
  uint32_t maxLead = 0;
  for (uint32_t seq = 1; seq <= 3 * RunAheadWatch::kMaxLead; ++seq) {
    watch.afterRun(plan, seq, seq, broadcastStamp(seq, 0), slow);
    if (seq > peerAt) maxLead = std::max(maxLead, seq - peerAt);
  }
  EXPECT_LE(maxLead, RunAheadWatch::kMaxLead + 1);
  EXPECT_GT(asked, 2);
}

// chorusCommAbort must return promptly: a sender held back for a slow peer gives up at once.
TEST(RunAheadWatch, AHeldBackSenderStopsOnAbort) {
  RankSchedule s = rootSchedule(false);
  ExecPlan plan(s);
  std::atomic<bool> aborted{false};
  RunAheadWatch watch(3, /*timeout=*/60, /*period=*/10, &aborted);
  int asked = 0;
  auto stuck = [&](int peer, Deadline) {
    if (++asked == 3) aborted = true;  // the peer stays at #1 but answers
    uint32_t at = peer == 1 ? 1u : 1u << 30;
    return answered(RankState::InCall, at, at - 1, broadcastStamp(at, 0));
  };
  auto start = std::chrono::steady_clock::now();
  try {
    for (uint32_t seq = 1; seq <= 2 * RunAheadWatch::kMaxLead; ++seq) watch.afterRun(plan, seq, seq, broadcastStamp(seq, 0), stuck);
    FAIL() << "never held back";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusInvalidUsage) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

// A peer that took the data and destroyed its communicator refuses the question just as a dead
// one does: that is no error for the sender, whose part is done (CI: the last call of a perf
// run, a 1-element ring all-reduce at np 5, failed on the rank before the one that had left).
// A broken peer still is.
TEST(RunAheadWatch, APeerThatIsGoneIsDroppedButABrokenOneIsAnError) {
  RankSchedule s = rootSchedule(false);
  ExecPlan plan(s);
  RunAheadWatch watch(3, /*timeout=*/5, /*period=*/0);  // asks after every call
  bool broken = false;
  auto probe = [&](int peer, Deadline) {
    if (peer == 2 && !broken) {
      PeerProbe gone;
      gone.reach = HealthService::Reach::Gone;
      return gone;
    }
    if (peer == 2) return answered(RankState::Broken, 3, 2, broadcastStamp(3, 0));
    return answered(RankState::InCall, 1u << 20, 0, CallStamp{});
  };
  EXPECT_NO_THROW(watch.afterRun(plan, 1, 1, broadcastStamp(1, 0), probe));
  EXPECT_EQ(watch.pendingPeers(), 0u);
  broken = true;
  try {
    watch.afterRun(plan, 2, 2, broadcastStamp(2, 0), probe);
    FAIL() << "a broken peer was not an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusRemoteError) << e.what();
    EXPECT_EQ(e.peer(), 2);
  }
}

TEST(RunAheadWatch, APeerThatAlsoSendsToThisRankIsNeverAsked) {
  RankSchedule s = rootSchedule(true);
  ExecPlan plan(s);
  RunAheadWatch watch(3, 0.05, 0.01);
  int askedOne = 0;
  auto probe = [&](int peer, Deadline) {
    askedOne += peer == 1;
    return answered(RankState::InCall, 1u << 20, 0, CallStamp{});
  };
  for (uint32_t seq = 1; seq < 200; ++seq) {
    watch.afterRun(plan, seq, seq, broadcastStamp(seq, 0), probe);
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  EXPECT_EQ(askedOne, 0);
}

}  // namespace
}  // namespace chorus

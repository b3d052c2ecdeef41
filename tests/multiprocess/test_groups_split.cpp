// Groups, point to point and communicator splits end to end: sends and receives in rings
// inside chorusGroupStart/End (one way, both ways, several messages per peer, a self pair, a
// collective mixed in), a group cancelled by a bad argument, plain blocking send/recv,
// chorusCommSplit with colors and keys, and a split communicator running concurrently with its
// parent on other streams and threads. Every payload element is checked.
#include <chorus/chorus.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "collectives/collective.h"
#include "fixtures/coll_check.h"
#include "fixtures/ranks.h"

namespace chorus::test {
namespace {

// Errors of calls run by a stream's worker are recorded on the communicator, not on this thread.
const char* errorText(chorusComm_t comm) {
  const char* text = comm ? chorusGetLastError(comm) : "";
  return *text ? text : chorusGetLastError(nullptr);
}

#define RANK_CALL(call)                                                                                        \
  do {                                                                                                         \
    chorusResult_t r_ = (call);                                                                                \
    if (r_ != chorusSuccess) {                                                                                 \
      fprintf(stderr, "rank %d: %s failed: %s: %s\n", rank, #call, chorusGetErrorString(r_), errorText(comm)); \
      return 10 + static_cast<int>(r_);                                                                        \
    }                                                                                                          \
  } while (0)

// Element i of message `msg` from src to dst: distinct for every (src, dst, msg, i) in use.
int32_t payload(int src, int dst, int msg, size_t i) {
  return ((src * 8 + dst) * 8 + msg) * 100000 + static_cast<int32_t>(i);
}

std::vector<int32_t> message(int src, int dst, int msg, size_t n) {
  std::vector<int32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = payload(src, dst, msg, i);
  return v;
}

// Number of elements of buf that are not message (src, dst, msg).
size_t wrongIn(const std::vector<int32_t>& buf, int src, int dst, int msg) {
  size_t wrong = 0;
  for (size_t i = 0; i < buf.size(); ++i) wrong += buf[i] != payload(src, dst, msg, i);
  return wrong;
}

int reportWrong(int rank, const char* what, size_t wrong) {
  if (!wrong) return 0;
  fprintf(stderr, "rank %d: %s: %zu wrong elements\n", rank, what, wrong);
  return 1;
}

// Checks every call of a list that has completed; returns how many were wrong.
int checkCalls(int rank, const std::vector<std::unique_ptr<PreparedCall>>& calls) {
  int bad = 0;
  for (const auto& call : calls) {
    std::string report;
    if (size_t wrong = call->check(&report)) {
      fprintf(stderr, "rank %d: %s: %zu wrong: %s\n", rank, call->collCase().describe().c_str(), wrong, report.c_str());
      ++bad;
    }
  }
  return bad;
}

TEST(Groups, RingOfSendsAndReceives) {
  for (int p : {2, 3, 4}) {
    auto exits = runRanksWithComm(p, [p](chorusComm_t comm, int rank) {
      const int next = (rank + 1) % p, prev = (rank + p - 1) % p;
      // Large enough not to fit any FIFO: without the group, everyone would block in the send.
      const size_t n = 300007;
      std::vector<int32_t> out = message(rank, next, 0, n), in(n, -1);
      RANK_CALL(chorusGroupStart());
      RANK_CALL(chorusSend(out.data(), n, chorusInt32, next, comm, nullptr));
      RANK_CALL(chorusRecv(in.data(), n, chorusInt32, prev, comm, nullptr));
      RANK_CALL(chorusGroupEnd());
      return reportWrong(rank, "ring", wrongIn(in, prev, rank, 0));
    });
    EXPECT_TRUE(allRanksSucceeded(exits)) << "p=" << p;
  }
}

TEST(Groups, BothDirectionsSeveralMessagesPerPeerAndASelfPair) {
  const int p = 4;
  auto exits = runRanksWithComm(p, [p](chorusComm_t comm, int rank) {
    const int next = (rank + 1) % p, prev = (rank + p - 1) % p;
    const size_t sizes[] = {1, 0, 70001, 13};  // per message: they match in order, per peer
    std::vector<std::vector<int32_t>> toNext, toPrev, fromPrev, fromNext;
    for (int m = 0; m < 4; ++m) {
      toNext.push_back(message(rank, next, m, sizes[m]));
      toPrev.push_back(message(rank, prev, m, sizes[m]));
      fromPrev.emplace_back(sizes[m], -1);
      fromNext.emplace_back(sizes[m], -1);
    }
    std::vector<int32_t> self = message(rank, rank, 0, 4099), selfIn(4099, -1);
    RANK_CALL(chorusGroupStart());
    for (int m = 0; m < 4; ++m) {
      // Receives posted before the sends on purpose: order inside a group does not matter.
      RANK_CALL(chorusRecv(fromPrev[m].data(), sizes[m], chorusInt32, prev, comm, nullptr));
      RANK_CALL(chorusRecv(fromNext[m].data(), sizes[m], chorusInt32, next, comm, nullptr));
    }
    RANK_CALL(chorusRecv(selfIn.data(), selfIn.size(), chorusInt32, rank, comm, nullptr));
    for (int m = 0; m < 4; ++m) {
      RANK_CALL(chorusSend(toNext[m].data(), sizes[m], chorusInt32, next, comm, nullptr));
      RANK_CALL(chorusSend(toPrev[m].data(), sizes[m], chorusInt32, prev, comm, nullptr));
    }
    RANK_CALL(chorusSend(self.data(), self.size(), chorusInt32, rank, comm, nullptr));
    RANK_CALL(chorusGroupEnd());
    int bad = 0;
    for (int m = 0; m < 4; ++m) {
      std::string what = "message " + std::to_string(m);
      bad += reportWrong(rank, (what + " from prev").c_str(), wrongIn(fromPrev[m], prev, rank, m));
      bad += reportWrong(rank, (what + " from next").c_str(), wrongIn(fromNext[m], next, rank, m));
    }
    bad += reportWrong(rank, "self", wrongIn(selfIn, rank, rank, 0));
    return bad;
  });
  EXPECT_TRUE(allRanksSucceeded(exits));
}

// One group per round holding a ring send, a collective and a ring receive in the order
// `order` gives ('S', 'C', 'R'), on a stream; checks both the collective and the message.
int mixedGroups(chorusComm_t comm, int rank, int p, const char* order) {
  const int next = (rank + 1) % p, prev = (rank + p - 1) % p;
  chorusStream_t stream;
  RANK_CALL(chorusStreamCreate(&stream));
  int bad = 0;
  for (int round = 0; round < 3; ++round) {
    CollCase c;
    c.coll = round == 1 ? Coll::AllGather : Coll::AllReduce;
    c.dtype = round == 2 ? chorusBfloat16 : chorusInt64;
    c.count = 1031;
    c.salt = 77 + round;
    PreparedCall coll(c, rank, p);
    std::vector<int32_t> out = message(rank, next, round, 5003), in(5003, -1);
    RANK_CALL(chorusGroupStart());
    for (const char* k = order; *k; ++k) {
      if (*k == 'S') RANK_CALL(chorusSend(out.data(), out.size(), chorusInt32, next, comm, stream));
      if (*k == 'C') RANK_CALL(coll.issue(comm, stream));
      if (*k == 'R') RANK_CALL(chorusRecv(in.data(), in.size(), chorusInt32, prev, comm, stream));
    }
    RANK_CALL(chorusGroupEnd());
    RANK_CALL(chorusStreamSynchronize(stream));
    std::string report;
    if (size_t wrong = coll.check(&report)) {
      fprintf(stderr, "rank %d: %s in group %s: %zu wrong: %s\n", rank, c.describe().c_str(), order, wrong, report.c_str());
      ++bad;
    }
    bad += reportWrong(rank, "p2p next to a collective", wrongIn(in, prev, rank, round));
  }
  RANK_CALL(chorusStreamDestroy(stream));
  return bad;
}

TEST(Groups, CollectiveMixedWithPointToPointBeforeOrAfterIt) {
  for (const char* order : {"SRC", "CSR", "RSC"}) {
    auto exits = runRanksWithComm(3, [order](chorusComm_t comm, int rank) { return mixedGroups(comm, rank, 3, order); });
    EXPECT_TRUE(allRanksSucceeded(exits)) << "group order " << order;
  }
}

// With the collective between a rank's send and its receive, each pair's messages must still
// agree on both sides: a group runs its collectives first, then its point-to-point calls (a
// merge by call index once sent a p2p message where the peer expected all-reduce data).
TEST(Groups, CollectiveBetweenSendAndRecvInOneGroup) {
  for (const char* order : {"SCR", "RCS"}) {
    auto exits = runRanksWithComm(3, [order](chorusComm_t comm, int rank) { return mixedGroups(comm, rank, 3, order); });
    EXPECT_TRUE(allRanksSucceeded(exits)) << "group order " << order;
  }
}

TEST(Groups, SeveralCollectivesInOneGroup) {
  const int p = 4;
  auto exits = runRanksWithComm(p, [p](chorusComm_t comm, int rank) {
    // Every kind of collective once, in a fixed shuffled order, then all of them again: one
    // merged operation whose messages per pair must keep the calls' order.
    std::vector<std::unique_ptr<PreparedCall>> calls;
    Rng rng(2024);
    for (int k = 0; k < 2 * static_cast<int>(Coll::kCount); ++k) {
      CollCase c;
      c.coll = static_cast<Coll>((k * 7) % static_cast<int>(Coll::kCount));
      c.dtype = kEveryType[rng.below(12)];
      c.op = kBuiltinOps[rng.below(5)];
      c.count = rng.below(2) ? 1 + rng.below(3000) : rng.below(20);
      c.root = static_cast<int>(rng.below(p));
      c.inPlace = rng.below(2) == 1;
      c.salt = 3000 + k;
      if (c.coll == Coll::AllGatherV || c.coll == Coll::ReduceScatterV || c.coll == Coll::AlltoAllV)
        makeVLayout(c, p, rng.next(), 500);
      calls.push_back(std::make_unique<PreparedCall>(c, rank, p));
    }
    RANK_CALL(chorusGroupStart());
    for (auto& call : calls) RANK_CALL(call->issue(comm, nullptr));
    RANK_CALL(chorusBarrier(comm, nullptr));
    RANK_CALL(chorusGroupEnd());
    return checkCalls(rank, calls);
  });
  EXPECT_TRUE(allRanksSucceeded(exits));
}

TEST(Groups, BadArgumentCancelsTheWholeGroup) {
  const int p = 2;
  auto exits = runRanksWithComm(p, [](chorusComm_t comm, int rank) {
    const int peer = 1 - rank;
    std::vector<int32_t> first = message(rank, peer, 1, 257), in(257, -1);
    RANK_CALL(chorusGroupStart());
    RANK_CALL(chorusSend(first.data(), first.size(), chorusInt32, peer, comm, nullptr));
    RANK_CALL(chorusRecv(in.data(), in.size(), chorusInt32, peer, comm, nullptr));
    chorusResult_t bad = chorusSend(first.data(), first.size(), chorusInt32, 7, comm, nullptr);  // peer out of range
    std::string badText = chorusGetLastError(comm);
    chorusResult_t end = chorusGroupEnd();
    std::string endText = chorusGetLastError(nullptr);
    if (bad != chorusInvalidArgument || badText.find("peer 7") == std::string::npos) {
      fprintf(stderr, "rank %d: bad send gave %s: %s\n", rank, chorusGetErrorString(bad), badText.c_str());
      return 1;
    }
    if (end != chorusInvalidArgument || endText.find("cancelled") == std::string::npos) {
      fprintf(stderr, "rank %d: chorusGroupEnd after a bad call gave %s: %s\n", rank, chorusGetErrorString(end), endText.c_str());
      return 2;
    }
    // Nothing of the cancelled group was sent: the next exchange gets the next message, not
    // the cancelled one (sends to a peer match its receives in order).
    std::vector<int32_t> second = message(rank, peer, 2, 257);
    RANK_CALL(chorusGroupStart());
    RANK_CALL(chorusSend(second.data(), second.size(), chorusInt32, peer, comm, nullptr));
    RANK_CALL(chorusRecv(in.data(), in.size(), chorusInt32, peer, comm, nullptr));
    RANK_CALL(chorusGroupEnd());
    if (wrongIn(in, peer, rank, 2) == 0) return 0;
    fprintf(stderr, "rank %d: after a cancelled group received %s\n", rank,
            wrongIn(in, peer, rank, 1) == 0 ? "the cancelled group's message" : "garbage");
    return 3;
  });
  EXPECT_TRUE(allRanksSucceeded(exits));
}

TEST(PointToPoint, PlainSendAndRecvWithoutAGroup) {
  const int p = 3;
  auto exits = runRanksWithComm(p, [](chorusComm_t comm, int rank) {
    // 0 -> 1 -> 2 -> 0, each hop after its predecessor: small messages, no group.
    const size_t n = 1000;
    std::vector<int32_t> in(n, -1);
    int bad = 0;
    for (int hop = 0; hop < 3; ++hop) {
      int src = hop, dst = (hop + 1) % 3;
      if (rank == src) {
        std::vector<int32_t> out = message(src, dst, hop, n);
        RANK_CALL(chorusSend(out.data(), n, chorusInt32, dst, comm, nullptr));
      } else if (rank == dst) {
        RANK_CALL(chorusRecv(in.data(), n, chorusInt32, src, comm, nullptr));
        bad += reportWrong(rank, "plain recv", wrongIn(in, src, dst, hop));
      }
    }
    // Empty messages complete at once and need no partner.
    RANK_CALL(chorusSend(nullptr, 0, chorusInt32, (rank + 1) % 3, comm, nullptr));
    RANK_CALL(chorusRecv(nullptr, 0, chorusInt32, (rank + 2) % 3, comm, nullptr));
    return bad;
  });
  EXPECT_TRUE(allRanksSucceeded(exits));
}

// Checks that comm has `size` ranks and this process is rank `rank` of it.
int expectShape(chorusComm_t comm, int parentRank, int size, int rank, const char* what) {
  int n = -1, r = -1;
  if (chorusCommCount(comm, &n) != chorusSuccess || chorusCommUserRank(comm, &r) != chorusSuccess || n != size || r != rank) {
    fprintf(stderr, "parent rank %d: %s: count %d rank %d, want %d and %d (%s)\n", parentRank, what, n, r, size, rank,
            chorusGetLastError(comm));
    return 1;
  }
  return 0;
}

// A few collectives of different kinds on comm (p ranks, this is rank), every result checked.
int someCollectives(chorusComm_t comm, int rank, int p, uint64_t salt, const std::string& label) {
  int bad = 0;
  const Coll colls[] = {Coll::AllReduce, Coll::AllGather, Coll::Broadcast, Coll::ReduceScatter, Coll::AlltoAll};
  for (Coll coll : colls) {
    CollCase c;
    c.coll = coll;
    c.dtype = coll == Coll::AllReduce ? chorusFloat32 : chorusInt8;
    c.count = 1031;
    c.root = p - 1;
    c.salt = salt++;
    int r = runCase(comm, rank, p, c, label);
    if (r == 2) return 1;
    bad += r;
  }
  return bad;
}

TEST(CommSplit, EvenAndOddWithReversedKeys) {
  const int p = 5;
  auto exits = runRanksWithComm(p, [p](chorusComm_t comm, int rank) {
    chorusComm_t child = nullptr;
    // Keys descending with the parent rank: the child's rank order is the parent's reversed.
    RANK_CALL(chorusCommSplit(comm, rank % 2, p - rank, &child));
    if (!child) return 2;
    std::vector<int> members;
    for (int r = p - 1; r >= 0; --r)
      if (r % 2 == rank % 2) members.push_back(r);
    const int childSize = static_cast<int>(members.size());
    const int childRank = static_cast<int>(std::find(members.begin(), members.end(), rank) - members.begin());
    int bad = expectShape(child, rank, childSize, childRank, "split child");
    bad += expectShape(comm, rank, p, rank, "parent after the split");
    // The child's all-gather of parent ranks spells out its order.
    int32_t mine = rank;
    std::vector<int32_t> all(childSize, -1);
    RANK_CALL(chorusAllGather(&mine, all.data(), 1, chorusInt32, child, nullptr));
    for (int i = 0; i < childSize; ++i)
      if (all[i] != members[i]) {
        fprintf(stderr, "rank %d: child rank %d is parent rank %d, want %d\n", rank, i, all[i], members[i]);
        ++bad;
      }
    bad += someCollectives(child, childRank, childSize, 100 + rank % 2, "child");
    bad += someCollectives(comm, rank, p, 200, "parent");
    bad += someCollectives(child, childRank, childSize, 300 + rank % 2, "child again");
    RANK_CALL(chorusCommDestroy(child));
    bad += someCollectives(comm, rank, p, 400, "parent after the child was destroyed");
    return bad;
  });
  EXPECT_TRUE(allRanksSucceeded(exits));
}

TEST(CommSplit, NoColorGivesNullAndTheOthersStillSplit) {
  const int p = 4;
  auto exits = runRanksWithComm(p, [p](chorusComm_t comm, int rank) {
    const bool out = rank == 1;
    chorusComm_t child = reinterpret_cast<chorusComm_t>(&child);  // must be overwritten
    RANK_CALL(chorusCommSplit(comm, out ? CHORUS_SPLIT_NOCOLOR : 7, 0, &child));
    if (out) {
      if (child == nullptr) return 0;
      fprintf(stderr, "rank %d: CHORUS_SPLIT_NOCOLOR gave a communicator\n", rank);
      return 1;
    }
    if (!child) return 2;
    const int childRank = rank == 0 ? 0 : rank - 1;  // equal keys: ties by parent rank
    int bad = expectShape(child, rank, p - 1, childRank, "split without rank 1");
    bad += someCollectives(child, childRank, p - 1, 500, "child of three");
    RANK_CALL(chorusCommDestroy(child));
    return bad;
  });
  EXPECT_TRUE(allRanksSucceeded(exits));
}

TEST(CommSplit, OneGroupAcrossChildAndParent) {
  const int p = 4;
  auto exits = runRanksWithComm(p, [p](chorusComm_t comm, int rank) {
    chorusComm_t child = nullptr;
    RANK_CALL(chorusCommSplit(comm, rank / 2, rank, &child));  // {0, 1} and {2, 3}
    if (!child) return 2;
    // Interleaved calls on two communicators: the group runs the child's (first used) and then
    // the parent's, each merged.
    std::vector<std::unique_ptr<PreparedCall>> onChild, onParent;
    for (int k = 0; k < 6; ++k) {
      CollCase c;
      c.coll = k % 3 == 0 ? Coll::AllReduce : k % 3 == 1 ? Coll::AllGather : Coll::Broadcast;
      c.dtype = k % 2 ? chorusFloat64 : chorusUint8;
      c.count = 100 + 37 * k;
      c.root = 1;
      c.salt = 4000 + k;
      onChild.push_back(std::make_unique<PreparedCall>(c, rank % 2, 2));
      c.salt = 5000 + k;
      onParent.push_back(std::make_unique<PreparedCall>(c, rank, p));
    }
    RANK_CALL(chorusGroupStart());
    for (int k = 0; k < 6; ++k) {
      RANK_CALL(onChild[k]->issue(child, nullptr));
      RANK_CALL(onParent[k]->issue(comm, nullptr));
    }
    RANK_CALL(chorusGroupEnd());
    int bad = checkCalls(rank, onChild) + checkCalls(rank, onParent);
    RANK_CALL(chorusCommDestroy(child));
    return bad;
  });
  EXPECT_TRUE(allRanksSucceeded(exits));
}

TEST(CommSplit, ChildAndParentRunConcurrentlyOnOtherStreamsAndThreads) {
  const int p = 4, calls = 40;
  auto exits = runRanksWithComm(p, [p](chorusComm_t comm, int rank) {
    chorusComm_t child = nullptr;
    RANK_CALL(chorusCommSplit(comm, 0, rank, &child));  // same members, same order
    if (!child) return 2;
    chorusStream_t childStream, parentStream;
    RANK_CALL(chorusStreamCreate(&childStream));
    RANK_CALL(chorusStreamCreate(&parentStream));
    // Child: many all-reduces enqueued at once; the buffers live until the check.
    std::vector<std::unique_ptr<PreparedCall>> childCalls, parentCalls;
    for (int k = 0; k < calls; ++k) {
      CollCase c;
      c.coll = Coll::AllReduce;
      c.dtype = k % 2 ? chorusFloat32 : chorusInt64;
      c.op = k % 3 ? chorusSum : chorusMax;
      c.count = k % 4 ? 1031 : 20011;
      c.salt = 1000 + k;
      c.inPlace = k % 5 == 0;
      childCalls.push_back(std::make_unique<PreparedCall>(c, rank, p));
      RANK_CALL(childCalls.back()->issue(child, childStream));
    }
    // Parent, meanwhile: half the calls from another thread without a stream, half on a stream.
    chorusResult_t threadResult = chorusSuccess;
    std::vector<std::unique_ptr<PreparedCall>> threadCalls;
    for (int k = 0; k < calls; ++k) {
      CollCase c;
      c.coll = k % 2 ? Coll::AllGather : Coll::ReduceScatter;
      c.dtype = chorusFloat16;
      c.count = 777;
      c.salt = 2000 + k;
      (k < calls / 2 ? threadCalls : parentCalls).push_back(std::make_unique<PreparedCall>(c, rank, p));
    }
    std::thread parentThread([&] {
      for (auto& call : threadCalls)
        if ((threadResult = call->issue(comm, nullptr)) != chorusSuccess) return;
    });
    parentThread.join();  // the parent's calls must keep one order: the stream's come after these
    if (threadResult != chorusSuccess) {
      fprintf(stderr, "rank %d: parent call on a thread failed: %s\n", rank, chorusGetLastError(comm));
      return 3;
    }
    for (auto& call : parentCalls) RANK_CALL(call->issue(comm, parentStream));
    RANK_CALL(chorusStreamSynchronize(childStream));
    RANK_CALL(chorusStreamSynchronize(parentStream));
    int bad = checkCalls(rank, childCalls) + checkCalls(rank, threadCalls) + checkCalls(rank, parentCalls);
    RANK_CALL(chorusStreamDestroy(childStream));
    RANK_CALL(chorusStreamDestroy(parentStream));
    RANK_CALL(chorusCommDestroy(child));
    return bad;
  });
  EXPECT_TRUE(allRanksSucceeded(exits));
}

}  // namespace
}  // namespace chorus::test

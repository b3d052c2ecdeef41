// Faults of the whole collective suite: a rank killed or stopped in the middle of broadcasts,
// all-to-alls or all-gathers fails every survivor within a bounded time (never a hang); every
// bad argument of the new API is chorusInvalidArgument with a message that says what was wrong,
// without breaking the communicator; a CHORUS_ALGO naming an algorithm that cannot serve a
// collective fails chorusCommInitRank and names the algorithms that can.
#include <chorus/chorus.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "collectives/collective.h"
#include "fixtures/coll_check.h"
#include "fixtures/ranks.h"

namespace chorus::test {
namespace {

// ---- a rank dies or stops mid-loop -----------------------------------------------------------

constexpr int kSurvivorFailedCleanly = 42;

struct Strike {
  Coll coll;
  int signal;
  const char* transport;
  int p, victim;
};

std::string strikeName(const Strike& s) {
  return std::string(collName(s.coll)) + "_" + (s.signal == SIGKILL ? "sigkill" : "sigstop") + "_" + s.transport + "_np" +
         std::to_string(s.p) + "_victim" + std::to_string(s.victim);
}

void PrintTo(const Strike& s, std::ostream* os) {
  *os << strikeName(s);
}  // readable test parameters

const char* apiName(Coll coll) {
  switch (coll) {
    case Coll::Broadcast:
      return "chorusBroadcast";
    case Coll::AlltoAll:
      return "chorusAlltoAll";
    default:
      return "chorusAllGather";
  }
}

// Every rank loops over large calls of s.coll; the victim writes to pipeFd after a few calls so
// the parent can strike while the others are mid-call. A survivor must fail with a remote error
// or a timeout naming the call, and see the communicator's async error.
int loopUntilFailure(const Strike& s, chorusComm_t comm, int rank, int pipeFd) {
  const size_t n = 1 << 19;  // 2 MiB of floats per block
  const size_t p = static_cast<size_t>(s.p);
  std::vector<float> send(s.coll == Coll::AlltoAll ? p * n : n, 1.0f), recv(s.coll == Coll::Broadcast ? n : p * n);
  const int root = s.p - 1;
  for (int call = 0; call < 100000; ++call) {
    if (rank == s.victim && call == 3) {
      char c = 'x';
      if (write(pipeFd, &c, 1) != 1) return 4;
    }
    chorusResult_t r = chorusSuccess;
    switch (s.coll) {
      case Coll::Broadcast:
        r = chorusBroadcast(send.data(), recv.data(), n, chorusFloat32, root, comm, nullptr);
        break;
      case Coll::AlltoAll:
        r = chorusAlltoAll(send.data(), recv.data(), n, chorusFloat32, comm, nullptr);
        break;
      default:
        r = chorusAllGather(send.data(), recv.data(), n, chorusFloat32, comm, nullptr);
        break;
    }
    if (r == chorusSuccess) continue;
    std::string text = chorusGetLastError(comm);
    fprintf(stderr, "rank %d: call %d failed as expected: %s: %s\n", rank, call, chorusGetErrorString(r), text.c_str());
    chorusResult_t async = chorusSuccess;
    chorusCommGetAsyncError(comm, &async);
    bool kind = r == chorusRemoteError || r == chorusTimeout;
    bool named = text.find(std::string(apiName(s.coll)) + " #") != std::string::npos;
    return kind && named && async != chorusSuccess ? kSurvivorFailedCleanly : 5;
  }
  return 6;  // never saw the failure
}

class RankStruck : public ::testing::TestWithParam<Strike> {};

TEST_P(RankStruck, EverySurvivorFailsWithinTheDeadline) {
  const Strike s = GetParam();
  const bool stopped = s.signal == SIGSTOP;
  ScopedEnv transport("CHORUS_TRANSPORT", s.transport);
  // A stopped peer is only noticed by its silence: a short CHORUS_TIMEOUT bounds that.
  ScopedEnv timeout("CHORUS_TIMEOUT", stopped ? "3" : "30");
  const double allowedSec = stopped ? 20 : 15;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  auto exits = runRanksWithId(
      s.p,
      [&](int rank, const chorusUniqueId& id) {
        chorusComm_t comm = nullptr;
        if (chorusCommInitRank(&comm, s.p, id, rank) != chorusSuccess) {
          fprintf(stderr, "rank %d: init failed: %s\n", rank, chorusGetLastError(nullptr));
          return 3;
        }
        int code = loopUntilFailure(s, comm, rank, fds[1]);
        chorusCommAbort(comm);
        return code;
      },
      120,
      [&](RankHandles& h) {
        pollfd pfd{fds[0], POLLIN, 0};
        ASSERT_EQ(poll(&pfd, 1, 60000), 1) << "the victim never reported";
        kill(h.pids[s.victim], s.signal);
        h.expendable[s.victim] = true;  // a stopped victim is killed once the survivors are done
      });
  close(fds[0]);
  close(fds[1]);
  for (int r = 0; r < s.p; ++r) {
    if (r == s.victim) {
      EXPECT_EQ(exits[r].signal, SIGKILL) << exits[r].describe();
      continue;
    }
    EXPECT_TRUE(exits[r].exited && exits[r].code == kSurvivorFailedCleanly) << "survivor " << r << ": " << exits[r].describe();
    EXPECT_LT(exits[r].seconds, allowedSec) << "survivor " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(
    MidLoop, RankStruck,
    ::testing::Values(Strike{Coll::Broadcast, SIGKILL, "shm", 4, 3},  // the root dies
                      Strike{Coll::Broadcast, SIGSTOP, "shm", 3, 1}, Strike{Coll::Broadcast, SIGKILL, "tcp", 3, 1},
                      Strike{Coll::AlltoAll, SIGKILL, "shm", 4, 1}, Strike{Coll::AlltoAll, SIGSTOP, "shm", 3, 2},
                      Strike{Coll::AlltoAll, SIGKILL, "tcp", 3, 0}, Strike{Coll::AllGather, SIGKILL, "shm", 4, 2},
                      Strike{Coll::AllGather, SIGSTOP, "shm", 3, 0}, Strike{Coll::AllGather, SIGKILL, "tcp", 3, 2}),
    [](const auto& info) { return strikeName(info.param); });

// ---- bad arguments ----------------------------------------------------------------------------

// Expects `got` to be `want` (chorusInvalidArgument unless said) with a message containing
// `needle`; returns 1 and explains otherwise.
int expectInvalid(chorusComm_t comm, int rank, const char* what, chorusResult_t got, const char* needle,
                  chorusResult_t want = chorusInvalidArgument) {
  std::string text = chorusGetLastError(comm);
  if (got == want && text.find(needle) != std::string::npos) return 0;
  fprintf(stderr, "rank %d: %s: got %s \"%s\", want %s mentioning \"%s\"\n", rank, what, chorusGetErrorString(got), text.c_str(),
          chorusGetErrorString(want), needle);
  return 1;
}

// Every bad call of the collective API this rank can make on a 2-rank communicator. None of
// them communicates, so the ranks need not make them in step.
int badCalls(chorusComm_t comm, int rank) {
  const int p = 2;
  std::vector<float> a(64, 1.0f), b(64, 0.0f);
  float* x = a.data();
  float* y = b.data();
  const chorusDataType_t f32 = chorusFloat32;
  const size_t huge = SIZE_MAX / 2 + 1;  // twice it overflows
  int bad = 0;
  auto check = [&](const char* what, chorusResult_t got, const char* needle) {
    bad += expectInvalid(comm, rank, what, got, needle);
  };

  // NULL buffers with count > 0.
  check("allreduce NULL sendbuf", chorusAllReduce(nullptr, y, 4, f32, chorusSum, comm, nullptr), "sendbuf is NULL");
  check("allgather NULL recvbuf", chorusAllGather(x, nullptr, 4, f32, comm, nullptr), "recvbuf is NULL");
  check("broadcast NULL recvbuf", chorusBroadcast(x, nullptr, 4, f32, 0, comm, nullptr), "recvbuf is NULL");
  check("reduce NULL recvbuf on the root", chorusReduce(x, nullptr, 4, f32, chorusSum, rank, comm, nullptr), "recvbuf is NULL");
  check("scatter NULL sendbuf on the root", chorusScatter(nullptr, y, 4, f32, rank, comm, nullptr), "sendbuf is NULL");
  check("gather NULL recvbuf on the root", chorusGather(x, nullptr, 4, f32, rank, comm, nullptr), "recvbuf is NULL");
  check("send NULL buffer", chorusSend(nullptr, 4, f32, 1 - rank, comm, nullptr), "NULL buffer");
  check("recv NULL buffer", chorusRecv(nullptr, 4, f32, 1 - rank, comm, nullptr), "NULL buffer");

  // Root and peer out of range.
  check("broadcast root = nranks", chorusBroadcast(x, y, 4, f32, p, comm, nullptr), "root 2 is out of range");
  check("reduce root = -1", chorusReduce(x, y, 4, f32, chorusSum, -1, comm, nullptr), "root -1 is out of range");
  check("gather root = nranks", chorusGather(x, y, 4, f32, p, comm, nullptr), "root 2 is out of range");
  check("scatter root = -1", chorusScatter(x, y, 4, f32, -1, comm, nullptr), "root -1 is out of range");
  check("send peer = nranks", chorusSend(x, 4, f32, p, comm, nullptr), "peer 2 is out of range");
  check("recv peer = -1", chorusRecv(y, 4, f32, -1, comm, nullptr), "peer -1 is out of range");

  // Counts whose byte size (or nranks x count) overflows.
  check("allreduce count x size overflows", chorusAllReduce(x, y, huge, chorusInt64, chorusSum, comm, nullptr), "overflows");
  check("allgather nranks x count overflows", chorusAllGather(x, y, huge, chorusInt8, comm, nullptr), "overflows");
  check("alltoall nranks x count overflows", chorusAlltoAll(x, y, huge, chorusInt8, comm, nullptr), "overflows");
  check("send count x size overflows", chorusSend(x, huge, chorusFloat64, 1 - rank, comm, nullptr), "overflows");
  const size_t hugeCounts[2] = {huge, huge}, zeroDispls[2] = {0, 0}, farDispls[2] = {0, SIZE_MAX - 1};
  check("allgatherv block overflows", chorusAllGatherV(x, huge, y, hugeCounts, zeroDispls, chorusInt32, comm, nullptr),
        "overflows");
  const size_t ones[2] = {1, 1};
  check("reducescatterv displacement overflows",
        chorusReduceScatterV(x, y, ones, farDispls, chorusInt32, chorusSum, comm, nullptr), "overflows");

  // NULL count / displacement arrays.
  const size_t counts[2] = {4, 4}, displs[2] = {0, 4};
  check("allgatherv NULL recvcounts", chorusAllGatherV(x, 4, y, nullptr, displs, f32, comm, nullptr), "recvcounts is NULL");
  check("allgatherv NULL displs", chorusAllGatherV(x, 4, y, counts, nullptr, f32, comm, nullptr), "displs is NULL");
  check("reducescatterv NULL recvcounts", chorusReduceScatterV(x, y, nullptr, displs, f32, chorusSum, comm, nullptr),
        "recvcounts is NULL");
  check("alltoallv NULL sendcounts", chorusAlltoAllV(x, nullptr, displs, y, counts, displs, f32, comm, nullptr),
        "sendcounts is NULL");
  check("alltoallv NULL sdispls", chorusAlltoAllV(x, counts, nullptr, y, counts, displs, f32, comm, nullptr), "sdispls is NULL");
  check("alltoallv NULL recvcounts", chorusAlltoAllV(x, counts, displs, y, nullptr, displs, f32, comm, nullptr),
        "recvcounts is NULL");
  check("alltoallv NULL rdispls", chorusAlltoAllV(x, counts, displs, y, counts, nullptr, f32, comm, nullptr), "rdispls is NULL");

  // Overlapping V blocks, and AllGatherV's own block of the wrong size.
  const size_t overlapping[2] = {0, 2};
  check("allgatherv overlapping blocks", chorusAllGatherV(x, 4, y, counts, overlapping, f32, comm, nullptr), "overlap");
  check("reducescatterv overlapping blocks", chorusReduceScatterV(x, y, counts, overlapping, f32, chorusSum, comm, nullptr),
        "overlap");
  check("alltoallv overlapping send blocks", chorusAlltoAllV(x, counts, overlapping, y, counts, displs, f32, comm, nullptr),
        "overlap");
  check("alltoallv overlapping recv blocks", chorusAlltoAllV(x, counts, displs, y, counts, overlapping, f32, comm, nullptr),
        "overlap");
  check("allgatherv sendcount != recvcounts[rank]", chorusAllGatherV(x, 3, y, counts, displs, f32, comm, nullptr),
        "differs from recvcounts");
  const size_t shortOwn[2][2] = {{3, 4}, {4, 3}};  // recvcounts[rank] = 3, sendcounts[rank] = 4
  check("alltoallv sendcounts[rank] != recvcounts[rank]",
        chorusAlltoAllV(x, counts, displs, y, shortOwn[rank], displs, f32, comm, nullptr), "itself");

  // Send and receive buffers that overlap without being the in-place layout.
  check("allreduce recvbuf = sendbuf + 1", chorusAllReduce(x, x + 1, 8, f32, chorusSum, comm, nullptr), "overlap");
  check("allgather sendbuf not at recvbuf + rank*count", chorusAllGather(x + (1 - rank) * 4, x, 4, f32, comm, nullptr),
        "overlap");
  check("reducescatter recvbuf not at sendbuf + rank*count",
        chorusReduceScatter(x, x + 1 + (1 - rank) * 4, 4, f32, chorusSum, comm, nullptr), "overlap");
  check("alltoall in place", chorusAlltoAll(x, x, 4, f32, comm, nullptr), "overlap");
  check("reduce on the root, recvbuf = sendbuf + 2", chorusReduce(x, x + 2, 8, f32, chorusSum, rank, comm, nullptr), "overlap");
  check("allgatherv sendbuf inside another block",
        chorusAllGatherV(y + displs[1 - rank], 4, y, counts, displs, f32, comm, nullptr), "overlap");

  // Unknown op and datatype.
  check("unknown op 99", chorusAllReduce(x, y, 4, f32, static_cast<chorusRedOp_t>(99), comm, nullptr),
        "unknown reduction operator");
  check("unknown op -1", chorusReduce(x, y, 4, f32, static_cast<chorusRedOp_t>(-1), 0, comm, nullptr),
        "unknown reduction operator");
  check("unknown datatype 12", chorusBroadcast(x, y, 4, static_cast<chorusDataType_t>(12), 0, comm, nullptr), "unknown datatype");
  check("unknown datatype -3", chorusAlltoAll(x, y, 4, static_cast<chorusDataType_t>(-3), comm, nullptr), "unknown datatype");
  check("send unknown datatype", chorusSend(x, 4, static_cast<chorusDataType_t>(40), 1 - rank, comm, nullptr),
        "unknown datatype");

  // PreMulSum: wrong type, after destroy, twice destroyed, bad creation arguments.
  chorusRedOp_t op;
  if (createPreMulSum(comm, chorusFloat32, 0.5, &op) != chorusSuccess) {
    fprintf(stderr, "rank %d: chorusRedOpCreatePreMulSum failed: %s\n", rank, chorusGetLastError(comm));
    return bad + 1;
  }
  check("premulsum used with another type", chorusAllReduce(x, y, 4, chorusFloat64, op, comm, nullptr), "created for");
  check("premulsum used with fp16 in reducescatter", chorusReduceScatter(x, y, 2, chorusFloat16, op, comm, nullptr),
        "created for");
  if (chorusRedOpDestroy(op, comm) != chorusSuccess) ++bad;
  check("premulsum used after destroy", chorusAllReduce(x, y, 4, f32, op, comm, nullptr), "unknown reduction operator");
  check("premulsum destroyed twice", chorusRedOpDestroy(op, comm), "not a live PreMulSum");
  check("premulsum NULL scalar", chorusRedOpCreatePreMulSum(&op, nullptr, f32, chorusScalarHostImmediate, comm),
        "scalar is NULL");
  float half = 0.5f;
  check("premulsum unknown type",
        chorusRedOpCreatePreMulSum(&op, &half, static_cast<chorusDataType_t>(77), chorusScalarHostImmediate, comm),
        "unknown datatype");
  check("premulsum unknown residence", chorusRedOpCreatePreMulSum(&op, &half, f32, static_cast<chorusScalarResidence_t>(5), comm),
        "residence");
  check("destroy a built-in op", chorusRedOpDestroy(chorusSum, comm), "not a live PreMulSum");

  // Calls that are well formed but not valid now (chorusInvalidUsage), and splits in a group.
  bad += expectInvalid(comm, rank, "send to itself outside a group", chorusSend(x, 4, f32, rank, comm, nullptr),
                       "needs the matching chorusRecv in the same group", chorusInvalidUsage);
  chorusComm_t child = nullptr;
  chorusGroupStart();
  check("split inside a group", chorusCommSplit(comm, 0, 0, &child), "inside a group");
  if (chorusGroupEnd() != chorusSuccess || child) ++bad;
  return bad;
}

TEST(BadArguments, EveryBadCallIsInvalidArgumentAndTheCommunicatorStillWorks) {
  auto exits = runRanksWithComm(2, [](chorusComm_t comm, int rank) {
    int bad = badCalls(comm, rank);
    // Argument errors do not communicate and do not break the communicator.
    for (Coll coll : {Coll::AllReduce, Coll::AllGatherV, Coll::AlltoAll}) {
      CollCase c;
      c.coll = coll;
      c.dtype = chorusInt32;
      c.count = 100;
      c.salt = 5;
      if (coll == Coll::AllGatherV) makeVLayout(c, 2, 11, 50);
      if (runCase(comm, rank, 2, c, "after the bad calls")) ++bad;
    }
    return bad;
  });
  EXPECT_TRUE(allRanksSucceeded(exits));
}

TEST(BadArguments, PreMulSumOfOneCommunicatorIsUnknownOnAnother) {
  auto exits = runRanksWithComm(2, [](chorusComm_t comm, int rank) {
    chorusComm_t child = nullptr;
    if (chorusCommSplit(comm, 0, rank, &child) != chorusSuccess || !child) return 2;
    chorusRedOp_t op;
    float x[4] = {1, 2, 3, 4}, y[4];
    if (createPreMulSum(comm, chorusFloat32, 2, &op) != chorusSuccess) return 3;
    int bad = expectInvalid(child, rank, "parent's premulsum on the child",
                            chorusAllReduce(x, y, 4, chorusFloat32, op, child, nullptr), "unknown reduction operator");
    chorusRedOpDestroy(op, comm);
    chorusCommDestroy(child);
    return bad;
  });
  EXPECT_TRUE(allRanksSucceeded(exits));
}

// ---- CHORUS_ALGO that cannot serve --------------------------------------------------------------

TEST(ForcedAlgorithm, OneThatCannotServeFailsInitAndNamesTheValidOnes) {
  ScopedEnv timeout("CHORUS_TIMEOUT", "5");
  const std::tuple<const char*, Coll> cases[] = {{"allgather:tree", Coll::AllGather},
                                                 {"allreduce:ring;reducescatter:bruck", Coll::ReduceScatter},
                                                 {"alltoallv:ring", Coll::AlltoAllV},
                                                 {"broadcast:0-4K:tree,4K-inf:hd", Coll::Broadcast},
                                                 {"gather:pairwise", Coll::Gather}};
  for (const auto& [tune, coll] : cases) {
    ScopedEnv algo("CHORUS_ALGO", tune);
    const std::string valid = std::string("algorithms for ") + collName(coll) + ": " + algosServing(coll);
    auto exits = runRanksWithId(2, [&](int rank, const chorusUniqueId& id) {
      chorusComm_t comm = nullptr;
      chorusResult_t r = chorusCommInitRank(&comm, 2, id, rank);
      std::string text = chorusGetLastError(nullptr);
      if (r == chorusInvalidArgument && !comm && text.find(valid) != std::string::npos) return 0;
      fprintf(stderr, "rank %d: CHORUS_ALGO=%s: init gave %s \"%s\", want invalid argument naming \"%s\"\n", rank,
              getenv("CHORUS_ALGO"), chorusGetErrorString(r), text.c_str(), valid.c_str());
      if (comm) chorusCommDestroy(comm);
      return 1;
    });
    EXPECT_TRUE(allRanksSucceeded(exits)) << tune;
  }
}

}  // namespace
}  // namespace chorus::test

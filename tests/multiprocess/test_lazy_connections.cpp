// Connections are made on first use, to the peers a schedule has: after one all-reduce each
// rank holds exactly its schedule's peers (ring: 2, not p - 1), every other pair unconnected;
// before it, init has used the bootstrap for the join only (L + 1 messages each way).
// Forked ranks over shm; the schedule each rank should have is built here from the same
// layout the communicator uses. (A peer that dies before or during that first connection is
// an error, not a hang: tests/fault/test_health.cpp, DeadPeerDuringLazyTcpSetupFailsFast, and
// tests/fault/test_abort.cpp, StuckInConnectionSetup*.)
#include <gtest/gtest.h>

#include <chorus/chorus.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "bootstrap/wire.h"
#include "collectives/collective.h"
#include "core/api_internal.h"
#include "core/comm.h"
#include "fixtures/ranks.h"
#include "fixtures/typed_data.h"

namespace chorus::test {
namespace {

// One all-reduce of `count` floats with algo forced, on p ranks; each rank then compares its
// connections with its schedule's peers. Returns the ranks' exits.
std::vector<RankExit> connectionsAfterOneAllReduce(int p, const char* algo, size_t count) {
  std::string tune = std::string("allreduce:") + algo;
  ScopedEnv forced("CHORUS_ALGO", tune.c_str());
  ScopedEnv shm("CHORUS_TRANSPORT", "shm");
  return runRanksWithId(
      p,
      [&](int rank, const chorusUniqueId& id) {
        chorusComm_t comm = nullptr;
        if (chorusCommInitRank(&comm, p, id, rank) != chorusSuccess) return 2;
        const Communicator& c = communicatorOf(comm);
        if (c.connectedPeers() != 0) return 3;  // nothing before the first call
        // Init's bootstrap traffic is the join's alone: the check-in and L card rounds each way.
        const uint64_t L = static_cast<uint64_t>(wire::log2Ceil(p));
        BootstrapTraffic joined = c.bootstrapTraffic();
        if (joined.msgsSent != 1 + L || joined.msgsRecv != 1 + L || joined.connsOpened != 1 + L) {
          fprintf(stderr, "rank %d: init took %s, expected %llu messages each way and %llu connections\n", rank,
                  describeTraffic(joined).c_str(), static_cast<unsigned long long>(1 + L), static_cast<unsigned long long>(1 + L));
          return 8;
        }
        std::vector<char> in = makeBuffer(chorusFloat32, count), out = makeBuffer(chorusFloat32, count);
        fillInput(in.data(), chorusFloat32, chorusSum, count, rank);
        if (chorusAllReduce(in.data(), out.data(), count, chorusFloat32, chorusSum, comm, nullptr) != chorusSuccess) {
          fprintf(stderr, "rank %d: %s\n", rank, chorusGetLastError(comm));
          return 4;
        }
        if (countWrong(out.data(), chorusFloat32, chorusSum, count, p) != 0) return 5;
        Algo a;
        if (!parseAlgo(algo, &a)) return 6;
        CollArgs args;
        args.coll = Coll::AllReduce;
        args.rank = rank;
        args.nranks = p;
        args.count = count;
        args.elemSize = sizeof(float);
        args.layout = c.cluster().layout();
        std::vector<int> want = buildSchedule(a, args).peers();
        int bad = 0;
        std::vector<bool> isPeer(static_cast<size_t>(p), false);
        for (int q : want) isPeer[static_cast<size_t>(q)] = true;
        for (int q = 0; q < p; ++q) {
          bool connected = c.connectionKind(q) != nullptr;
          if (q != rank && connected != isPeer[static_cast<size_t>(q)]) {
            fprintf(stderr, "rank %d (%s): rank %d %s, but the schedule %s it\n", rank, algo, q,
                    connected ? "is connected" : "is not connected", isPeer[static_cast<size_t>(q)] ? "uses" : "does not use");
            ++bad;
          }
        }
        if (c.connectedPeers() != static_cast<int>(want.size())) {
          fprintf(stderr, "rank %d (%s): %d connections counted, schedule has %zu peers\n", rank, algo, c.connectedPeers(),
                  want.size());
          ++bad;
        }
        if (std::string(algo) == "ring" && p > 2 && c.connectedPeers() != 2) ++bad;
        chorusCommDestroy(comm);
        return bad ? 7 : 0;
      },
      120);
}

TEST(LazyConnections, RingConnectsTwoNeighboursOfSixteen) {
  EXPECT_TRUE(allRanksSucceeded(connectionsAfterOneAllReduce(16, "ring", 4096)));
}

TEST(LazyConnections, LogStepAlgorithmsConnectTheirSchedulesPeersOnly) {
  for (const char* algo : {"tree", "rd", "hd"}) {
    SCOPED_TRACE(algo);
    EXPECT_TRUE(allRanksSucceeded(connectionsAfterOneAllReduce(12, algo, 4096)));
  }
}

}  // namespace
}  // namespace chorus::test

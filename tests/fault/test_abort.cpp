// chorusCommAbort always returns promptly, even while a call on another thread waits for a peer
// that will never answer, including during the first call's connection setup. A thread that
// exits inside chorusGroupStart holding a call breaks that call's communicator, loudly.
#include <gtest/gtest.h>

#include <chorus/chorus.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/log.h"
#include "fixtures/ranks.h"

namespace chorus::test {
namespace {

double secondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Rank 0 starts an all-reduce that rank 1 never joins; abort must end it long before the
// 60 s deadline. `warm`: run one all-reduce together first, so the stuck call is past
// connection setup and waits in the executor instead.
void abortStuckCall(const char* transport, bool warm) {
  ScopedEnv env("CHORUS_TRANSPORT", transport);
  ScopedEnv timeout("CHORUS_TIMEOUT", "60");
  chorusComm_t comms[2];
  ASSERT_EQ(chorusCommInitAll(comms, 2, nullptr), chorusSuccess) << chorusGetLastError(nullptr);
  std::vector<float> a(1 << 16, 1.0f), b(1 << 16, 1.0f);
  if (warm) {
    std::thread peer([&] { chorusAllReduce(b.data(), b.data(), b.size(), chorusFloat32, chorusSum, comms[1], nullptr); });
    ASSERT_EQ(chorusAllReduce(a.data(), a.data(), a.size(), chorusFloat32, chorusSum, comms[0], nullptr), chorusSuccess);
    peer.join();
  }
  chorusStream_t stream;
  ASSERT_EQ(chorusStreamCreate(&stream), chorusSuccess);
  ASSERT_EQ(chorusAllReduce(a.data(), a.data(), a.size(), chorusFloat32, chorusSum, comms[0], stream), chorusSuccess);
  // Let the call get going (setup or executor wait); then abort from this thread.
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  while (std::chrono::steady_clock::now() < until && chorusStreamQuery(stream) == chorusInProgress) std::this_thread::yield();
  EXPECT_EQ(chorusStreamQuery(stream), chorusInProgress) << "the call should still be waiting for rank 1";
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(chorusCommAbort(comms[0]), chorusSuccess);
  EXPECT_LT(secondsSince(t0), 5.0) << "abort took too long";
  chorusResult_t r = chorusStreamSynchronize(stream);
  EXPECT_NE(r, chorusSuccess);
  EXPECT_EQ(chorusStreamDestroy(stream), r);
  EXPECT_EQ(chorusCommAbort(comms[1]), chorusSuccess);
}

TEST(Abort, StuckInExecutorOverShm) { abortStuckCall("shm", true); }
TEST(Abort, StuckInConnectionSetupOverShm) { abortStuckCall("shm", false); }
TEST(Abort, StuckInExecutorOverTcp) { abortStuckCall("tcp", true); }
TEST(Abort, StuckInConnectionSetupOverTcp) { abortStuckCall("tcp", false); }

// Rank 0's call is recorded in a group by a thread that then exits without chorusGroupEnd.
// Rank 1, already waiting in the matching all-reduce, must fail now (its connection to rank 0
// is aborted), not at its 60 s deadline; rank 0's communicator is broken, and its next call
// and the log say which thread-exit dropped which call. Runs in a forked child: the fixture's
// watchdog turns a regression (a wait until the deadline) into a failure.
void threadExitsInsideGroup(const char* transport) {
  std::string logPath = "/tmp/chorus-thread-exit-" + std::to_string(getpid()) + ".log";
  auto exits = runRanks(
      1,
      [&](int) {
        ScopedEnv env("CHORUS_TRANSPORT", transport);
        ScopedEnv timeout("CHORUS_TIMEOUT", "60");
        ScopedEnv log("CHORUS_DEBUG_FILE", logPath.c_str());
        logReloadConfig();
        chorusComm_t comms[2];
        if (chorusCommInitAll(comms, 2, nullptr) != chorusSuccess) return 2;
        std::vector<float> a(1 << 16, 1.0f), b(1 << 16, 1.0f);
        std::thread warm([&] { chorusAllReduce(b.data(), b.data(), b.size(), chorusFloat32, chorusSum, comms[1], nullptr); });
        EXPECT_EQ(chorusAllReduce(a.data(), a.data(), a.size(), chorusFloat32, chorusSum, comms[0], nullptr), chorusSuccess);
        warm.join();
        chorusResult_t peerResult = chorusSuccess;
        double peerSeconds = 0;
        std::thread peer([&] {
          auto t0 = std::chrono::steady_clock::now();
          peerResult = chorusAllReduce(b.data(), b.data(), b.size(), chorusFloat32, chorusSum, comms[1], nullptr);
          peerSeconds = secondsSince(t0);
        });
        std::this_thread::sleep_for(std::chrono::milliseconds(200));  // rank 1 is waiting by now
        std::thread quitter([&] {
          chorusGroupStart();
          chorusAllReduce(a.data(), a.data(), a.size(), chorusFloat32, chorusSum, comms[0], nullptr);
        });  // exits with the group open
        quitter.join();
        peer.join();
        EXPECT_NE(peerResult, chorusSuccess);
        EXPECT_LT(peerSeconds, 10.0) << "rank 1 waited for the dropped call instead of failing at once";
        const char* expected = "a thread exited inside chorusGroupStart holding chorusAllReduce (65536 x float sum)";
        EXPECT_EQ(chorusAllReduce(a.data(), a.data(), a.size(), chorusFloat32, chorusSum, comms[0], nullptr), chorusInvalidUsage);
        std::string text = chorusGetLastError(comms[0]);
        EXPECT_NE(text.find(expected), std::string::npos) << text;
        chorusResult_t async = chorusSuccess;
        EXPECT_EQ(chorusCommGetAsyncError(comms[0], &async), chorusSuccess);
        EXPECT_EQ(async, chorusInvalidUsage);
        EXPECT_EQ(chorusCommDestroy(comms[0]), chorusSuccess);
        EXPECT_EQ(chorusCommAbort(comms[1]), chorusSuccess);
        std::stringstream logged;
        logged << std::ifstream(logPath).rdbuf();
        EXPECT_NE(logged.str().find(expected), std::string::npos) << "log: " << logged.str();
        return 0;
      },
      40);
  unlink(logPath.c_str());
  EXPECT_TRUE(allRanksSucceeded(exits));
}

TEST(Abort, ThreadExitInsideGroupBreaksTheCommunicatorOverShm) { threadExitsInsideGroup("shm"); }
TEST(Abort, ThreadExitInsideGroupBreaksTheCommunicatorOverTcp) { threadExitsInsideGroup("tcp"); }

// A rank that finishes a collective and aborts at once (or breaks on its next call) must not
// fail that collective on its peers: what it sent before the abort is delivered. Rank 0 of each
// pair runs the recursive-doubling all-reduce, whose last step is an exchange, and aborts right
// after; rank 1 may still be receiving. 20 rounds per transport.
void abortRightAfterASuccessfulCall(const char* transport) {
  ScopedEnv t("CHORUS_TRANSPORT", transport);
  ScopedEnv timeout("CHORUS_TIMEOUT", "20");
  for (int round = 0; round < 20; ++round) {
    auto exits = runRanksWithId(
        2,
        [&](int rank, const chorusUniqueId& id) {
          chorusComm_t comm = nullptr;
          if (chorusCommInitRank(&comm, 2, id, rank) != chorusSuccess) return 2;
          std::vector<float> buf(1 << 16, static_cast<float>(rank + 1));
          if (chorusAllReduce(buf.data(), buf.data(), buf.size(), chorusFloat32, chorusSum, comm, nullptr) != chorusSuccess) {
            fprintf(stderr, "rank %d: %s\n", rank, chorusGetLastError(comm));
            return 3;
          }
          for (float x : buf)
            if (x != 3.0f) return 4;
          if (rank == 0) chorusCommAbort(comm);
          else chorusCommDestroy(comm);
          return 0;
        },
        60);
    ASSERT_TRUE(allRanksSucceeded(exits)) << transport << " round " << round;
  }
}

TEST(Abort, RightAfterASuccessfulCallOverShm) { abortRightAfterASuccessfulCall("shm"); }
TEST(Abort, RightAfterASuccessfulCallOverTcp) { abortRightAfterASuccessfulCall("tcp"); }
#ifdef CHORUS_HAVE_UCX
TEST(Abort, RightAfterASuccessfulCallOverUcx) { abortRightAfterASuccessfulCall("ucx"); }
#endif
#ifdef CHORUS_HAVE_OFI
TEST(Abort, RightAfterASuccessfulCallOverOfi) { abortRightAfterASuccessfulCall("ofi"); }
#endif

TEST(Abort, DestroyedHandlesAreRejectedNotReused) {
  chorusComm_t comms[1];
  ASSERT_EQ(chorusCommInitAll(comms, 1, nullptr), chorusSuccess);
  ASSERT_EQ(chorusCommDestroy(comms[0]), chorusSuccess);
  EXPECT_EQ(chorusCommDestroy(comms[0]), chorusInvalidUsage);
  EXPECT_EQ(chorusCommAbort(comms[0]), chorusInvalidUsage);
  chorusStream_t s;
  ASSERT_EQ(chorusStreamCreate(&s), chorusSuccess);
  ASSERT_EQ(chorusStreamDestroy(s), chorusSuccess);
  EXPECT_EQ(chorusStreamDestroy(s), chorusInvalidUsage);
  EXPECT_EQ(chorusStreamQuery(s), chorusInvalidUsage);
}

}  // namespace
}  // namespace chorus::test
